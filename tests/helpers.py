"""Shared test helpers: batch consistency and a model registry that is restored.

Import as ``from helpers import ...`` (``tests/`` is on ``sys.path`` under pytest's
default rootdir-based import mode, as for ``conftest``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def assert_batch_consistent(fn: Callable, batch, *, atol: float = 0.0, rtol: float = 0.0,
                            batch_ndim: int = 1, keepdim: bool = False) -> None:
    """Assert that ``fn(batch)`` equals ``fn`` applied to each example, stacked.

    Parameters
    ----------
    fn : callable
        A batched function (numpy or torch in, numpy or torch out).
    batch : np.ndarray or torch.Tensor [shape=(*batch_shape, ...)]
        The first ``batch_ndim`` axes index the examples.
    atol, rtol : float
        Tolerances (``0``: bit-identical).
    batch_ndim : int
        How many leading axes are batch axes.
    keepdim : bool
        Give each example to ``fn`` with a batch axis of size 1 (``batch[i:i+1]``,
        output ``[0]``), as models and torch front ends expect; otherwise
        ``batch[i]`` as it is (librosa-style functions on ``(..., n)``).
    """
    together = _to_numpy(fn(batch))
    shape = tuple(batch.shape[:batch_ndim])
    assert together.shape[:batch_ndim] == shape, (
        f"batched output has shape {together.shape}, expected leading axes {shape}")
    assert np.prod(shape) > 1, "a batch-consistency check needs at least two examples"
    for idx in np.ndindex(*shape):
        if keepdim:
            single = _to_numpy(fn(batch[idx[:-1] + (slice(idx[-1], idx[-1] + 1),)]))[0]
        else:
            single = _to_numpy(fn(batch[idx]))
        np.testing.assert_allclose(together[idx], single, atol=atol, rtol=rtol,
                                   err_msg=f"example {idx} differs from the batch")


@contextlib.contextmanager
def restored_model_registry() -> Iterator[None]:
    """Undo every model registration made inside the block (for module- or session-scoped
    fixtures; function-scoped tests get this from the autouse ``model_registry`` fixture)."""
    from soundclass.models import registry

    builders, specs = dict(registry._BUILDERS), dict(registry._SPECS)
    try:
        yield
    finally:
        registry._BUILDERS.clear()
        registry._BUILDERS.update(builders)
        registry._SPECS.clear()
        registry._SPECS.update(specs)


_BUILTIN_MODELS: tuple[str, ...] | None = None


def record_builtin_models() -> None:
    """Remember the models soundclass itself registers (called by conftest before any
    test module is imported, so no test model is among them)."""
    global _BUILTIN_MODELS
    from soundclass.models import list_models

    _BUILTIN_MODELS = tuple(list_models())


def builtin_models() -> list[str]:
    """The models soundclass registers, whatever test modules registered since."""
    if _BUILTIN_MODELS is None:
        record_builtin_models()
    return list(_BUILTIN_MODELS)


SAMPLE_CLASSES = ("aloe", "burger", "chips")


def read_csv_rows(path):
    """Rows of a CSV that soundclass wrote (UTF-8, surrogateescape, so any file name reads back)."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(csv.reader(fh))


def sample_predictions(failures=None):
    """Four predictions over :data:`SAMPLE_CLASSES` (a sub-folder and a non-ASCII name among them);
    the paths in ``failures`` (``{path: reason}``) are failed files."""
    import numpy as np

    from soundclass.inference.predictions import Predictions

    paths = ("/data/test/b_2.wav", "/data/test/a_1.wav", "/data/test/sous-dossier/c_\u00fc.wav", "/data/test/d.wav")
    proba = np.array([
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.2, 0.3, 0.5],
        [0.1, 0.8, 0.1],
    ])
    failures = dict(failures or {})
    for p in failures:
        proba[paths.index(p)] = np.nan
    return Predictions(paths, proba, failures, SAMPLE_CLASSES)
