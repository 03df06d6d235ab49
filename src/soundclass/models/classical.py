"""Classical small-data models as torch modules: clip statistics -> standardise -> head.

The models are fitted with scikit-learn (:mod:`soundclass.training.classical`)
and then carried by these modules, whose buffers and parameters hold the
fitted arrays, so a checkpoint stores them like any other model (safetensors +
JSON, no pickle) and ``predict``/``evaluate``/``serve`` work unchanged.  Every
module takes the cached per-clip feature ``(B, n_features, T)`` and computes the
statistics itself (:class:`FeatureStats`, the torch twin of
:func:`soundclass.dsp.stats.feature_stats`), so the graph is plain tensor
algebra and exports to ONNX.

``logmel-logreg``
    log-mel (128 bands) mean and std -> :class:`Standardize` -> linear logits
    (a multinomial ``LogisticRegression``: ``softmax(logits)`` is its
    ``predict_proba``).
``mfcc-svm``
    20 MFCC + deltas + delta-deltas (60 rows; 22.05 kHz, n_fft 1024, hop 256) mean, std, min and max ->
    :class:`Standardize` -> RBF kernel against the support vectors -> the
    one-vs-one decision values of ``SVC`` (a linear map of the kernel values) ->
    a linear calibrator fitted on cross-validated decision values (a
    multinomial logistic regression, our choice instead of libsvm's
    Platt/pairwise coupling, which is iterative and not a matrix product).

Before fitting, the modules hold random values (a builder must give a usable,
distinct network per seed, as every registered model does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.dsp.stats import check_stats
from soundclass.errors import ParameterError, check_positive_int
from soundclass.models.registry import ModelSpec, register_model

__all__ = [
    "CLASSICAL_MODELS",
    "FeatureStats",
    "Standardize",
    "StatsLinear",
    "StatsSVM",
    "MFCC_SVM_SPEC",
    "LOGMEL_LOGREG_SPEC",
    "is_classical",
]

#: Registered models fitted by :func:`soundclass.training.classical.fit_classical`,
#: not by gradient steps.
CLASSICAL_MODELS = ("mfcc-svm", "logmel-logreg", "aisfx-probe", "whisper-probe", "fusion-probe")


def is_classical(name: str) -> bool:
    """Whether a registered model is fitted in closed form (scikit-learn), not trained."""
    return name in CLASSICAL_MODELS


class FeatureStats(nn.Module):
    """Per-row statistics over time, as :func:`soundclass.dsp.stats.feature_stats`.

    ``(B, n_features, T) -> (B, len(stats) * n_features)``, statistic-major.
    """

    def __init__(self, stats: Sequence[str] = ("mean", "std")):
        super().__init__()
        self.stats = check_stats(stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ParameterError(f"expected (B, n_features, T), got shape {tuple(x.shape)}")
        mean = x.mean(dim=-1)  # (B, n_features)
        parts = []
        for s in self.stats:
            if s == "mean":
                parts.append(mean)
            elif s == "std":  # population std, written out so it exports to ONNX
                parts.append(torch.sqrt(((x - mean.unsqueeze(-1)) ** 2).mean(dim=-1)))
            elif s == "min":
                parts.append(x.amin(dim=-1))
            else:
                parts.append(x.amax(dim=-1))
        return torch.cat(parts, dim=-1)  # (B, n_stats * n_features)

    def extra_repr(self) -> str:
        return f"stats={self.stats}"


class Standardize(nn.Module):
    """``(x - mean) / scale`` with fitted buffers (scikit-learn's ``StandardScaler``)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class StatsLinear(nn.Module):
    """Statistics -> standardise -> linear logits (logistic regression, linear probe).

    Parameters
    ----------
    n_classes : int
    n_features : int
        Rows of the input feature.
    stats : sequence of str
        Statistics over time (:data:`soundclass.dsp.stats.STATS`).
    """

    def __init__(self, *, n_classes: int, n_features: int, stats: Sequence[str] = ("mean", "std")):
        super().__init__()
        self.pool = FeatureStats(stats)
        n_in = len(self.pool.stats) * check_positive_int("n_features", n_features)
        self.scaler = Standardize(n_in)
        self.linear = nn.Linear(n_in, check_positive_int("n_classes", n_classes))

    @property
    def model_kwargs(self) -> dict:
        """The ``create_model`` keyword arguments that rebuild this module's shapes."""
        return {"stats": list(self.pool.stats)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, n_features, T)] -> logits [shape=(B, n_classes)]."""
        return self.linear(self.scaler(self.pool(x)))


class StatsSVM(nn.Module):
    """Statistics -> standardise -> RBF-SVM one-vs-one decisions -> calibrated logits.

    Parameters
    ----------
    n_classes : int
    n_features : int
        Rows of the input feature.
    n_support : int
        Number of support vectors.
    n_pairs : int or None
        One-vs-one decision values (``k (k - 1) / 2`` for the ``k`` classes seen
        in training; ``None``: from ``n_classes``).
    stats : sequence of str
    """

    def __init__(
        self,
        *,
        n_classes: int,
        n_features: int,
        n_support: int = 64,
        n_pairs: int | None = None,
        stats: Sequence[str] = ("mean", "std", "min", "max"),
    ):
        super().__init__()
        n_classes = check_positive_int("n_classes", n_classes)
        self.pool = FeatureStats(stats)
        n_in = len(self.pool.stats) * check_positive_int("n_features", n_features)
        n_support = check_positive_int("n_support", n_support)
        n_pairs = max(1, n_classes * (n_classes - 1) // 2) if n_pairs is None else n_pairs
        n_pairs = check_positive_int("n_pairs", n_pairs)
        self.scaler = Standardize(n_in)
        self.register_buffer("support_vectors", torch.randn(n_support, n_in))
        self.register_buffer("gamma", torch.tensor(1.0 / n_in))
        self.ovo = nn.Linear(n_support, n_pairs)  # dual coefficients and intercepts
        self.calibrator = nn.Linear(n_pairs, n_classes)

    @property
    def model_kwargs(self) -> dict:
        """The ``create_model`` keyword arguments that rebuild this module's shapes."""
        return {
            "n_support": self.support_vectors.shape[0],
            "n_pairs": self.ovo.out_features,
            "stats": list(self.pool.stats),
        }

    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        """One-vs-one decision values of the SVM [shape=(B, n_pairs)] (``SVC.decision_function``)."""
        z = self.scaler(self.pool(x))  # (B, n_in)
        sv = self.support_vectors
        d2 = (z * z).sum(-1, keepdim=True) - 2.0 * z @ sv.T + (sv * sv).sum(-1)  # (B, n_support)
        kernel = torch.exp(-self.gamma * d2.clamp_min(0.0))
        return self.ovo(kernel)  # (B, n_pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, n_features, T)] -> logits [shape=(B, n_classes)]."""
        return self.calibrator(self.decision_function(x))


MFCC_SVM_SPEC = ModelSpec(
    # hop 256 (11.6 ms): the 9 frames the deltas need fit in clips from 93 ms on
    feature=FeatureConfig(kind="mfcc", sr=22050, n_fft=1024, hop_length=256, n_mfcc=20, deltas=2),
    input="sequence",
    description="MFCC+deltas statistics -> standardise -> RBF SVM (scikit-learn fit, calibrated)",
)

LOGMEL_LOGREG_SPEC = ModelSpec(
    feature=FeatureConfig(kind="logmel", sr=22050, n_fft=2048, hop_length=512, n_mels=128),
    input="sequence",
    description="log-mel mean/std -> standardise -> logistic regression (scikit-learn fit)",
)


@register_model("mfcc-svm", spec=MFCC_SVM_SPEC)
def mfcc_svm(*, n_classes: int, n_features: int = 60, **kwargs) -> StatsSVM:
    return StatsSVM(n_classes=n_classes, n_features=n_features, **kwargs)


@register_model("logmel-logreg", spec=LOGMEL_LOGREG_SPEC)
def logmel_logreg(*, n_classes: int, n_features: int = 128, **kwargs) -> StatsLinear:
    return StatsLinear(n_classes=n_classes, n_features=n_features, **kwargs)
