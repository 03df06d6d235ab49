"""Calibration: temperature scaling and the "unknown" answer (inference.calibration), ECE and reliability (evaluation.calibration_report)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from soundclass.errors import ParameterError
from soundclass.evaluation.calibration_report import expected_calibration_error, reliability_curve
from soundclass.evaluation.metrics import log_loss
from soundclass.inference.calibration import (
    UNKNOWN,
    apply_temperature,
    apply_unknown,
    fit_temperature,
    threshold_for_precision,
)
from soundclass.plots import new_figure
from soundclass.plots.calibration import plot_reliability


def _generative(n: int, *, seed: int, n_classes: int = 4, dim: int = 3):
    """Gaussian classes with unit covariance: the true posterior logits are linear."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).normal(0, 1.2, size=(n_classes, dim))
    y = rng.integers(0, n_classes, size=n)
    x = means[y] + rng.standard_normal((n, dim))
    logits = x @ means.T - 0.5 * (means**2).sum(axis=1)  # log p(x|c) + const
    return logits, y


def test_temperature_fixes_an_overconfident_model_on_held_out_data():
    logits, y = _generative(4000, seed=0)
    over = 3.0 * logits  # over-confident: logits scaled x3
    fit_part, test_part = slice(0, 2000), slice(2000, None)
    t = fit_temperature(over[fit_part], y[fit_part])
    assert 2.6 < t < 3.4  # recovers the scale of the generative model
    raw = softmax(over[test_part], axis=1)
    cal = apply_temperature(over[test_part], t)
    assert log_loss(cal, y[test_part]) < log_loss(raw, y[test_part]) - 0.1
    assert expected_calibration_error(cal, y[test_part]) < 0.5 * expected_calibration_error(raw, y[test_part])
    # decisions unchanged
    assert (cal.argmax(1) == raw.argmax(1)).all()


def test_temperature_of_a_calibrated_model_is_near_one_and_sharpens_underconfidence():
    logits, y = _generative(3000, seed=1)
    assert 0.85 < fit_temperature(logits, y) < 1.15
    assert fit_temperature(0.5 * logits, y) < 0.6


def test_ece_hand_computed_example():
    proba = np.array([[0.85, 0.15], [0.75, 0.25], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    # 5 bins: 0.85 -> (0.8, 1], 0.75 and 0.7 -> (0.6, 0.8], 0.55 -> (0.4, 0.6]
    # gaps: |1 - 0.85| * 1 + |0.5 - 0.725| * 2 + |1 - 0.55| * 1 = 1.05, over 4 clips
    assert expected_calibration_error(proba, y, n_bins=5) == pytest.approx(0.2625)
    curve = reliability_curve(proba, y, n_bins=5)
    assert curve.count.tolist() == [0, 0, 1, 2, 1]
    np.testing.assert_allclose(curve.confidence[2:], [0.55, 0.725, 0.85])
    np.testing.assert_allclose(curve.accuracy[2:], [1.0, 0.5, 1.0])
    assert np.isnan(curve.accuracy[:2]).all()
    assert expected_calibration_error(proba, y, n_bins=1) == pytest.approx(abs(0.75 - 0.7125))


def test_threshold_for_precision_is_the_lowest_that_reaches_the_target():
    proba = np.array([[0.95, 0.05], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45]])
    y = np.array([0, 0, 1, 0, 1, 0])  # correct: yes yes no yes no yes
    # accepted precision by threshold: .95:1, .9:1, .8:2/3, .7:3/4, .6:3/5, .55:4/6
    assert threshold_for_precision(proba, y, target_precision=1.0) == pytest.approx(0.9)
    assert threshold_for_precision(proba, y, target_precision=0.75) == pytest.approx(0.7)
    assert threshold_for_precision(proba, y, target_precision=0.6) == 0.0  # accept all
    wrong = np.array([1, 1, 0, 1, 0, 1])
    assert threshold_for_precision(proba, wrong, target_precision=0.9) > 1.0  # reject all
    with pytest.raises(ParameterError, match="target_precision"):
        threshold_for_precision(proba, y, target_precision=0.0)


def test_threshold_ties_accept_every_clip_at_the_value():
    proba = np.array([[0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    y = np.array([0, 1, 0])  # at 0.8 precision is 1/2, never 1
    assert threshold_for_precision(proba, y, target_precision=1.0) > 1.0


def test_apply_unknown_labels_and_errors():
    proba = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    assert apply_unknown(proba, ["a", "b", "c"], threshold=0.5) == ["a", UNKNOWN, "c"]
    assert apply_unknown(proba, ["a", "b", "c"], threshold=0.0) == ["a", "a", "c"]
    with pytest.raises(ParameterError, match="class names"):
        apply_unknown(proba, ["a", "b"], threshold=0.5)
    with pytest.raises(ParameterError, match="unknown"):
        apply_unknown(proba, ["a", "unknown", "c"], threshold=0.5)


def test_input_validation():
    with pytest.raises(ParameterError, match="logits"):
        fit_temperature(np.zeros((3,)), np.zeros(3, dtype=int))
    with pytest.raises(ParameterError, match="y_true"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ParameterError, match="temperature"):
        apply_temperature(np.zeros((2, 2)), 0.0)
    with pytest.raises(ParameterError, match="n_bins"):
        expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 1]), n_bins=0)


def test_out_of_distribution_inputs_are_rejected_more_often():
    """A synthetic logit model (stated): in-distribution inputs come from the Gaussian
    classes, out-of-distribution inputs from a broad blob around the classes' centre,
    i.e. sounds that look a little like every class.  The model is over-confident
    (x3); temperature and threshold are fitted on validation data only."""
    logits_va, y_va = _generative(1500, seed=3)
    logits_te, _ = _generative(1500, seed=4)
    means = np.random.default_rng(123).normal(0, 1.2, size=(4, 3))  # as in _generative
    x_ood = means.mean(axis=0) + 0.7 * np.random.default_rng(5).standard_normal((500, 3))
    logits_ood = x_ood @ means.T - 0.5 * (means**2).sum(axis=1)
    t = fit_temperature(3.0 * logits_va, y_va)
    threshold = threshold_for_precision(
        apply_temperature(3.0 * logits_va, t), y_va, target_precision=0.9
    )
    assert 0.3 < threshold < 1.0
    classes = ["a", "b", "c", "d"]
    rejected_in = np.mean(np.array(apply_unknown(apply_temperature(3.0 * logits_te, t), classes,
                                                 threshold=threshold)) == UNKNOWN)
    rejected_ood = np.mean(np.array(apply_unknown(apply_temperature(3.0 * logits_ood, t), classes,
                                                  threshold=threshold)) == UNKNOWN)
    assert rejected_ood > rejected_in + 0.3, (threshold, rejected_in, rejected_ood)
    accepted = apply_temperature(3.0 * logits_va, t).max(axis=1) >= threshold
    assert accepted.mean() > 0.3


def test_plot_reliability_draws_non_empty_bins():
    logits, y = _generative(500, seed=2)
    curve = reliability_curve(softmax(3 * logits, axis=1), y, n_bins=10)
    fig, ax = new_figure()
    out = plot_reliability(curve, ax=ax, ece=0.123)
    assert out is ax
    assert len(ax.patches) == int((curve.count > 0).sum())
    assert "0.123" in ax.get_title()
    with pytest.raises(ParameterError, match="curve"):
        plot_reliability(object(), ax=ax)
