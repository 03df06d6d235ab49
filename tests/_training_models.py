"""Tiny models and synthetic features shared by the training tests.

:func:`registered` registers the tiny models for the length of a test module
and removes them afterwards, so what other modules see in the registry does
not depend on the collection order.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.models import ModelSpec, register_model
from soundclass.models import registry as registry_module

VEC = "test-tiny-vector"
SEQ = "test-tiny-sequence"
E2E = "test-tiny-demo"
N_FEAT = 8
CLASSES = ("a", "b", "c")


class TinyMLP(nn.Module):
    def __init__(self, *, n_classes, n_features, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(hidden, n_classes))

    def forward(self, x):  # (B, n_features) -> (B, n_classes)
        return self.net(x)


class TinyConv(nn.Module):
    def __init__(self, *, n_classes, n_features, hidden=12):
        super().__init__()
        self.conv = nn.Conv1d(n_features, hidden, 3, padding=1)
        self.bn = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x):  # (B, n_features, T) -> (B, n_classes)
        h = torch.relu(self.bn(self.conv(x)))  # (B, hidden, T)
        return self.fc(self.drop(h.mean(dim=-1)))


_SPECS = {
    VEC: (ModelSpec(
        feature=FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=N_FEAT, pooling="mean"),
        input="vector", standardize=True,
        train={"epochs": 6, "batch_size": 16, "lr": 3e-2, "scheduler": "none", "optimizer": "adam"},
        description="tiny MLP on pooled features for the unit tests",
    ), TinyMLP),
    SEQ: (ModelSpec(
        feature=FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=N_FEAT),
        input="sequence", standardize=True, clip_seconds=None,
        train={"epochs": 5, "batch_size": 16, "lr": 2e-2},
        description="tiny conv on sequences for the unit tests",
    ), TinyConv),
    E2E: (ModelSpec(
        feature=FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=N_FEAT),
        input="sequence", standardize=True, clip_seconds=0.5,
        train={"epochs": 3, "batch_size": 8, "lr": 1e-2},
        description="tiny conv for the end-to-end tests",
    ), TinyConv),
}


@contextlib.contextmanager
def registered():
    """The tiny models in the registry inside the block, gone after it."""
    for name, (spec, builder) in _SPECS.items():
        register_model(name, spec=spec)(builder)
    try:
        yield
    finally:
        for name in _SPECS:
            registry_module._BUILDERS.pop(name, None)
            registry_module._SPECS.pop(name, None)


def vector_data(n_per_class=20, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((len(CLASSES), N_FEAT)) * 3 + 10  # far from 0: standardization matters
    X = [centers[c] + noise * rng.standard_normal(N_FEAT) for c in range(3) for _ in range(n_per_class)]
    y = [c for c in range(3) for _ in range(n_per_class)]
    return [x.astype(np.float32) for x in X], np.array(y)


def sequence_data(n_per_class=16, seed=0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(3):
        for _ in range(n_per_class):
            t = int(rng.integers(8, 60))
            x = rng.standard_normal((N_FEAT, t)) - 40.0
            x[2 * c : 2 * c + 2] += 3.0
            X.append(x.astype(np.float32))
            y.append(c)
    return X, np.array(y)


def split(X, y, seed=1):
    idx = np.random.default_rng(seed).permutation(len(y))
    va, tr = idx[: len(y) // 4], idx[len(y) // 4 :]
    return [X[i] for i in tr], y[tr], [X[i] for i in va], y[va]
