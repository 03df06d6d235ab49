"""Shared fixtures: signals generated in code and the optional real datasets.

Real data lives in ``../shared/datasets`` (beside the repository) or in
``$SOUNDCLASS_DATASETS``; tests that need it skip cleanly when it is absent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SOUNDCLASS_DATASETS", REPO.parent / "shared" / "datasets"))


def pytest_configure(config):
    if not os.environ.get("SOUNDCLASS_CACHE"):  # backbone graphs: never in the user's own cache
        cache = tempfile.mkdtemp(prefix="soundclass-test-cache-")
        os.environ["SOUNDCLASS_CACHE"] = cache  # CLI subprocesses inherit it
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    import torch

    torch.set_num_threads(1)  # tests run beside other work on 2 cores
    from helpers import record_builtin_models

    record_builtin_models()  # before any test module can register its own


@pytest.fixture(autouse=True)
def model_registry():
    """Restore the model registry after every test: a model a test registers is gone
    afterwards, so what another test lists never depends on the order tests run in.
    (Module-level registrations belong in a module-scoped fixture using
    ``helpers.restored_model_registry``.)"""
    from helpers import restored_model_registry

    with restored_model_registry():
        yield


def _dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"optional extra: the shared dataset {name!r} is not at {path}")
    return path


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """``../shared/datasets/fsdd`` (3000 spoken digits, 8 kHz); skips if absent."""
    return _dataset("fsdd")


@pytest.fixture(scope="session")
def donateacry_dir() -> Path:
    """``../shared/datasets/donateacry`` (457 baby cries, 5 classes); skips if absent."""
    return _dataset("donateacry")


def make_signal(sr: int = 22050, seconds: float = 1.0, *, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A chirp plus a little noise, float32 in [-0.5, 0.5]; shape (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f = 220.0 + 2000.0 * t / max(seconds, 1e-9)
    y = 0.4 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
    y = y.astype(np.float32)
    if channels == 1:
        return y
    cols = [y * (1.0 - 0.3 * c) for c in range(channels)]
    return np.stack(cols, axis=1)


@pytest.fixture
def signal():
    """Factory: ``signal(sr=..., seconds=..., seed=..., channels=...)``."""
    return make_signal
