"""Fitting the classical small-data models with scikit-learn, into torch modules.

:func:`fit_classical` fits ``mfcc-svm``, ``logmel-logreg``, ``aisfx-probe``,
``whisper-probe`` or ``fusion-probe``
on cached per-clip features and returns the registered module
(:mod:`soundclass.models.classical`) carrying the fitted arrays; save it with
:func:`soundclass.checkpoint.format.save_checkpoint` and
``model_kwargs=module.model_kwargs`` (no pickle anywhere).  The fitted
scikit-learn estimators are returned too by :func:`fit_sklearn`, the reference
the module is tested against.

Probabilities of the SVM: libsvm's ``probability=True`` (Platt scaling plus
iterative pairwise coupling) is not a matrix product; instead a multinomial
:class:`~sklearn.linear_model.LogisticRegression` is fitted on the one-vs-one
decision values of held-out folds (stratified ``k``-fold, ``k = min(5,
smallest class)``; the training decisions themselves when a class has a single
clip), and the SVM used at prediction is fitted on all clips.  The module's
logits are that calibrator's decision function, so ``softmax(logits)`` is its
``predict_proba``.

Every estimator weighs the classes inversely to their frequency
(``class_weight='balanced'``): small, imbalanced datasets are the point of
these models, and their model selection is by macro-F1.

The fits run with one BLAS/OpenMP thread (:data:`FIT_THREADS`): the matrices
are small (clips x a few hundred statistics), and a second BLAS thread only
waits.  On a busy 2-core machine after torch had run (its OpenMP team spinning),
a 60-class ``logmel-logreg`` fit on 320 FSDD clips took 2.2 s with the default
two threads and 0.23 s with one (the same 112 lbfgs iterations); ``mfcc-svm``
3.3 s and 1.2 s.  ``--model auto`` once spent 419 s on ``logmel-logreg`` folds
of a 50-class set that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from soundclass.dsp.stats import stack_stats
from soundclass.errors import ParameterError
from soundclass.models.classical import StatsLinear, StatsSVM

__all__ = ["CLASSICAL_SETTINGS", "SklearnFit", "fit_sklearn", "fit_classical", "to_module"]

#: Statistics and estimator settings per model (the defaults of :func:`fit_classical`).
CLASSICAL_SETTINGS: dict[str, dict[str, Any]] = {
    "mfcc-svm": {"stats": ("mean", "std", "min", "max"), "estimator": "svm", "C": 10.0},
    "logmel-logreg": {"stats": ("mean", "std"), "estimator": "logreg", "C": 1.0},
    "aisfx-probe": {"stats": ("mean", "max"), "estimator": "logreg", "C": 0.1},
    # clip embeddings (n_features, 1): the mean is the vector; C as in issue #17's comparison
    "whisper-probe": {"stats": ("mean",), "estimator": "logreg", "C": 0.5},
    "fusion-probe": {"stats": ("mean",), "estimator": "logreg", "C": 0.5},
}
_LOGREG_ITER = 5000
#: BLAS/OpenMP threads of the scikit-learn fits (see the module text).
FIT_THREADS = 1
_ABSENT_LOGIT = -30.0  # bias of a class without training clips: probability ~1e-13


@dataclass(frozen=True)
class SklearnFit:
    """The fitted scikit-learn pieces of one model.

    Attributes
    ----------
    name : str
    n_classes : int
    n_features : int
        Rows of the per-clip feature.
    stats : tuple of str
    scaler : sklearn.preprocessing.StandardScaler
    estimator : LogisticRegression or SVC
    calibrator : LogisticRegression or None
        SVM only: on the one-vs-one decision values.
    """

    name: str
    n_classes: int
    n_features: int
    stats: tuple[str, ...]
    scaler: Any
    estimator: Any
    calibrator: Any = None

    def predict_proba(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities [shape=(n_clips, n_classes)] by scikit-learn (absent classes 0)."""
        X = self.scaler.transform(stack_stats(features, stats=self.stats))
        head = self.estimator if self.calibrator is None else self.calibrator
        Z = X if self.calibrator is None else _ovo(self.estimator, X)
        out = np.zeros((len(X), self.n_classes))
        out[:, head.classes_] = head.predict_proba(Z)
        return out


def _ovo(svc, X: np.ndarray) -> np.ndarray:
    d = svc.decision_function(X)
    return d[:, None] if d.ndim == 1 else d  # (n, n_pairs)


def _check(features, labels, n_classes) -> tuple[np.ndarray, int]:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(features) or not len(labels):
        raise ParameterError(f"labels must be 1-D with one entry per clip ({len(features)}), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ParameterError("labels must be non-negative integer class indices")
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if labels.max() >= n_classes:
        raise ParameterError(f"label {labels.max()} out of range for n_classes={n_classes}")
    if len(np.unique(labels)) < 2:
        raise ParameterError("need clips of at least two classes to fit a classifier")
    return labels.astype(np.int64), n_classes


def _svc(C: float):
    from sklearn.svm import SVC

    return SVC(C=C, kernel="rbf", gamma="scale", decision_function_shape="ovo",
               class_weight="balanced")


def _logreg(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=_LOGREG_ITER, class_weight="balanced", random_state=seed)


def _calibration_inputs(X, y, *, C, seed) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    k = min(5, int(np.bincount(y)[np.unique(y)].min()))
    if k < 2:
        return _ovo(_svc(C).fit(X, y), X)
    out = np.zeros((len(X), len(np.unique(y)) * (len(np.unique(y)) - 1) // 2))
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in folds.split(X, y):
        if len(np.unique(y[train])) < len(np.unique(y)):  # a fold lost a class: use training fit
            return _ovo(_svc(C).fit(X, y), X)
        svc = _svc(C).fit(X[train], y[train])
        out[test] = _ovo(svc, X[test])
    return out


def fit_sklearn(
    name: str,
    features: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    seed: int = 0,
    n_classes: int | None = None,
    C: float | None = None,
) -> SklearnFit:
    """Fit the scikit-learn pipeline of a classical model.

    Parameters
    ----------
    name : {'mfcc-svm', 'logmel-logreg', 'aisfx-probe', 'whisper-probe', 'fusion-probe'}
    features : sequence of np.ndarray [shape=(n_features, t_i)], or StoredFeatures
        The cached per-clip features (the model spec's feature), each read
        once and reduced to its statistics.
    labels : np.ndarray [shape=(n_clips,)], int
        Class indices.
    seed : int
        Seed of the calibration folds and of the solvers.
    n_classes : int or None
        Number of classes (``None``: ``labels.max() + 1``).
    C : float or None
        Inverse regularisation strength (``None``: :data:`CLASSICAL_SETTINGS`).

    Returns
    -------
    SklearnFit
    """

    with threadpool_limits(limits=FIT_THREADS):  # small matrices: more threads only wait
        return _fit_sklearn(name, features, labels, seed=seed, n_classes=n_classes, C=C)


def _fit_sklearn(name, features, labels, *, seed, n_classes, C) -> SklearnFit:
    from sklearn.preprocessing import StandardScaler

    if name not in CLASSICAL_SETTINGS:
        raise ParameterError(f"unknown classical model {name!r}; choose from {sorted(CLASSICAL_SETTINGS)}")
    settings = CLASSICAL_SETTINGS[name]
    C = float(settings["C"] if C is None else C)
    if not C > 0:
        raise ParameterError(f"C={C!r} must be positive")
    y, n_classes = _check(features, labels, n_classes)
    stats = tuple(settings["stats"])
    X = stack_stats(features, stats=stats)  # (n_clips, n_stats * n_features)
    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    n_features = X.shape[1] // len(stats)  # features[0] is not read again
    if settings["estimator"] == "logreg":
        est = _logreg(C, seed).fit(Xs, y)
        return SklearnFit(name, n_classes, n_features, stats, scaler, est)
    calib_in = _calibration_inputs(Xs, y, C=C, seed=seed)
    svc = _svc(C).fit(Xs, y)
    calibrator = _logreg(1.0, seed).fit(calib_in, y)
    return SklearnFit(name, n_classes, n_features, stats, scaler, svc, calibrator)


def _linear_rows(lr, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted LogisticRegression as (n_classes, d) weights and biases: softmax = predict_proba."""
    coef, bias = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: p(classes_[1]) = sigmoid(z) = softmax([0, z])[1]
        coef = np.vstack([np.zeros_like(coef), coef])
        bias = np.concatenate([[0.0], bias])
    W = np.zeros((n_classes, coef.shape[1]))
    b = np.full(n_classes, _ABSENT_LOGIT)
    W[lr.classes_], b[lr.classes_] = coef, bias
    return W, b


def _ovo_matrix(svc) -> np.ndarray:
    """libsvm's one-vs-one decisions as one (n_pairs, n_support) matrix over the kernel row.

    For classes ``i < j`` (pair order of ``decision_function_shape='ovo'``) the
    decision sums ``dual_coef_[j - 1]`` over the support vectors of class ``i``
    and ``dual_coef_[i]`` over those of class ``j``.
    """
    k = len(svc.classes_)
    starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
    dual = svc.dual_coef_
    rows = []
    for i in range(k):
        for j in range(i + 1, k):
            row = np.zeros(dual.shape[1])
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            row[si] = dual[j - 1, si]
            row[sj] = dual[i, sj]
            rows.append(row)
    return np.stack(rows)


def _set(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(np.asarray(value, dtype=np.float32)))


def to_module(fit: SklearnFit) -> nn.Module:
    """The torch module with the fitted arrays of ``fit``, in eval mode.

    The class the registered builder of ``fit.name`` makes (:class:`StatsSVM` or
    :class:`StatsLinear`), so ``create_model(fit.name, n_classes=..., n_features=...,
    **module.model_kwargs)`` rebuilds it from a checkpoint.
    """
    if fit.calibrator is None:
        model = StatsLinear(n_classes=fit.n_classes, n_features=fit.n_features, stats=fit.stats)
        W, b = _linear_rows(fit.estimator, fit.n_classes)
        _set(model.linear.weight, W)
        _set(model.linear.bias, b)
    else:
        svc = fit.estimator
        ovo = _ovo_matrix(svc)
        model = StatsSVM(n_classes=fit.n_classes, n_features=fit.n_features,
                         n_support=ovo.shape[1], n_pairs=ovo.shape[0], stats=fit.stats)
        _set(model.support_vectors, svc.support_vectors_)
        _set(model.gamma, np.float32(svc._gamma))
        _set(model.ovo.weight, ovo)
        _set(model.ovo.bias, svc.intercept_)
        W, b = _linear_rows(fit.calibrator, fit.n_classes)
        _set(model.calibrator.weight, W)
        _set(model.calibrator.bias, b)
    _set(model.scaler.mean, fit.scaler.mean_)
    _set(model.scaler.scale, fit.scaler.scale_)
    return model.eval()


def fit_classical(
    name: str,
    features: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    seed: int = 0,
    n_classes: int | None = None,
    C: float | None = None,
) -> nn.Module:
    """Fit a classical model and return it as its registered torch module.

    Parameters are those of :func:`fit_sklearn`.

    Returns
    -------
    torch.nn.Module
        Eval mode; maps ``(B, n_features, T)`` to logits ``(B, n_classes)`` with
        ``softmax(logits)`` equal to the scikit-learn probabilities.  Its
        ``model_kwargs`` attribute rebuilds it with ``create_model``.
    """
    return to_module(fit_sklearn(name, features, labels, seed=seed, n_classes=n_classes, C=C))
