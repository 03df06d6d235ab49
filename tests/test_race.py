"""The race of ``--model auto`` (soundclass.training.race): its decisions with fake candidates and a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from soundclass.training.race import (
    MIN_EPOCHS,
    MIN_MARGIN,
    FoldScore,
    cannot_reach,
    race,
    score_margin,
)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Fake:
    """A candidate with given fold scores (classical) or validation curves (neural) and costs."""

    def __init__(self, name, scores=None, *, clock, fold_s=1.0, extract_s=0.0, prior=1.0, curves=None,
                 n_val=100, n_folds=3, ratio=1.5):
        self.name, self.scores, self.clock, self.fold_s, self.extract_s = name, scores, clock, fold_s, extract_s
        self.prior, self.curves, self.n_val, self.n_folds, self.ratio = prior, curves, n_val, n_folds, ratio
        self.epochs = None if curves is None else len(curves[0])
        self.prepared = self.released = False
        self.folds_run, self.epochs_run = [], []

    def extract_prior(self):
        return 0.0 if self.prepared else self.extract_s

    def fold_prior(self):
        return self.prior

    def final_ratio(self):
        return self.ratio

    def prepare(self):
        self.clock.t += self.extract_s
        self.prepared = True

    def run_fold(self, i, on_epoch):
        self.folds_run.append(i)
        if self.curves is None:
            self.clock.t += self.fold_s
            return FoldScore(self.scores[i], self.scores[i], self.n_val, self.fold_s)
        for e, v in enumerate(self.curves[i], 1):
            self.clock.t += self.fold_s / self.epochs
            if on_epoch({"epoch": e - 1, "val_macro_f1": v}):
                break
        self.epochs_run.append(e)
        best = max(self.curves[i][:e])
        return FoldScore(best, best, self.n_val, self.fold_s * e / self.epochs, epochs=e)

    def release(self):
        self.released = True


def _race(fakes, clock, **kw):
    said = []
    rows, chosen, basis = race(fakes, n_folds=3, time_budget=kw.pop("time_budget", 1000.0),
                                           say=said.append, clock=clock, **kw)
    return {r["model"]: r for r in rows}, chosen, said


def test_score_margin_and_cannot_reach_known_values():
    assert score_margin(0.5, 160) == pytest.approx(2 * np.sqrt(0.5 / 160))  # 0.112
    assert score_margin(0.5, 800) == pytest.approx(0.05)
    assert score_margin(1.0, 10) == MIN_MARGIN == score_margin(0.5, 10**6)
    flat = [0.2, 0.2, 0.2]
    assert cannot_reach(flat, epochs=30, target=0.8, margin=0.1)  # no slope: 0.2 for ever
    assert cannot_reach(flat[:2], epochs=30, target=0.8, margin=0.1) is None  # too early to tell
    assert cannot_reach([0.1, 0.3, 0.5], epochs=30, target=0.8, margin=0.1) is None  # 0.2 an epoch
    # slow: best slope 0.01 an epoch, 0.2 + 0.01 * 20 = 0.4 < 0.7
    why = cannot_reach([0.18, 0.19, 0.2] + [0.2] * 7, epochs=30, target=0.8, margin=0.1)
    assert "0.200 after 10/30" in why and "below the leader's 0.800" in why
    assert cannot_reach([0.75] * 5, epochs=30, target=0.8, margin=0.1) is None  # within the margin
    assert cannot_reach([0.1] * 30, epochs=30, target=0.8, margin=0.1) is None  # finished anyway


def test_race_drops_who_is_far_behind_after_a_fold_and_picks_as_the_full_evaluation():
    scores = {"a": [0.80, 0.82, 0.78], "b": [0.30, 0.90, 0.90], "c": [0.76, 0.85, 0.84]}
    clock = FakeClock()
    fakes = [Fake(n, s, clock=clock) for n, s in scores.items()]
    rows, chosen, said = _race(fakes, clock)
    a, b, c = fakes
    assert b.folds_run == [0] and b.released and rows["b"]["dropped"] and rows["b"]["folds"] == 1
    assert "dropped after 1 fold(s): mean macro-F1 0.300" in rows["b"]["note"] and "leader a" in rows["b"]["note"]
    assert a.folds_run == [0, 1, 2] == c.folds_run and not rows["c"]["dropped"]
    assert chosen == "c" and rows["c"]["macro_f1_mean"] == pytest.approx(np.mean(scores["c"]))
    assert any(s.startswith("auto: b dropped") for s in said)
    # the full evaluation: every fold of every candidate, b included (mean 0.70): the same choice
    clock = FakeClock()
    full = [Fake(n, s, clock=clock) for n, s in scores.items()]
    rows_full, chosen_full, _ = _race(full, clock, eliminate=False)
    assert all(f.folds_run == [0, 1, 2] for f in full) and chosen_full == chosen
    assert clock.t == 9.0 and rows_full["b"]["macro_f1_mean"] == pytest.approx(0.7)


def test_race_stops_a_neural_fold_that_cannot_reach_the_leader():
    clock = FakeClock()
    lead = Fake("lead", [0.8, 0.8, 0.8], clock=clock)
    flat = Fake("flat", clock=clock, fold_s=30.0, prior=None, curves=[[0.2] * 30] * 3)
    rows, chosen, said = _race([lead, flat], clock)
    assert flat.epochs_run == [MIN_EPOCHS] and flat.folds_run == [0]
    assert rows["flat"]["dropped"] and "dropped in fold 1" in rows["flat"]["note"]
    assert "(lead) on fold 1" in rows["flat"]["note"] and rows["flat"]["fold_seconds"] == [3.0]
    assert chosen == "lead" and "folds 2-3 not run" in rows["lead"]["note"] and lead.folds_run == [0]
    assert "auto: flat fold 1/3 epoch 2/30 val macro-F1 0.200 (budget left 997 s)" in said


def test_race_lets_a_rising_curve_finish_and_win():
    clock = FakeClock()
    rising = [0.1, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9]
    lead = Fake("lead", [0.85, 0.85, 0.85], clock=clock)  # within the margin of 0.9 (0.085)
    net = Fake("net", clock=clock, fold_s=10.0, prior=None, curves=[rising] * 3)
    rows, chosen, _ = _race([lead, net], clock)
    assert net.epochs_run == [10, 10, 10] and chosen == "net" and not rows["net"]["dropped"]


def test_race_time_budget_skips_cuts_folds_and_stops_epochs():
    # skipped on its prior: 0 s features + 500 s a fold + the final fit do not fit in 100 s
    clock = FakeClock()
    cheap, costly = Fake("cheap", [0.6] * 3, clock=clock), Fake("costly", [0.9] * 3, clock=clock, prior=500.0)
    rows, chosen, _ = _race([cheap, costly], clock, time_budget=100.0)
    assert rows["costly"]["status"] == "skipped" and "skipped: estimated" in rows["costly"]["note"]
    assert not costly.prepared and costly.released and chosen == "cheap"
    # fewer folds: after its first 20 s fold, another fold and the final fit (30 s) do not fit
    clock = FakeClock()
    cheap, slow = Fake("cheap", [0.6] * 3, clock=clock), Fake("slow", [0.62] * 3, clock=clock, fold_s=20.0, prior=1.0)
    rows, chosen, _ = _race([cheap, slow], clock, time_budget=60.0)
    assert slow.folds_run == [0] and "time budget: 1 of 3 folds" in rows["slow"]["note"]
    assert chosen == "slow"  # compared on the fold both completed
    # a neural fold stops at the epoch whose remaining epochs and final fit would not fit
    clock = FakeClock()
    cheap = Fake("cheap", [0.6] * 3, clock=clock)
    net = Fake("net", clock=clock, fold_s=100.0, prior=None, curves=[[0.55] * 10] * 3)
    rows, chosen, _ = _race([cheap, net], clock, time_budget=50.0)
    # decided on the second epoch's time (the first also pays one-time costs)
    assert net.epochs_run == [2] and "stopped after epoch 2/10 by the time budget" in rows["net"]["note"]
    assert rows["net"]["dropped"] and "out of the race: behind cheap (0.600)" in rows["net"]["note"]
    assert chosen == "cheap"
    # ... and stays a contender (with no more folds) when it is ahead even so
    clock = FakeClock()
    cheap = Fake("cheap", [0.6] * 3, clock=clock)
    net = Fake("net", clock=clock, fold_s=100.0, prior=None, curves=[[0.7] * 10] * 3)
    rows, chosen, _ = _race([cheap, net], clock, time_budget=50.0)
    assert net.folds_run == [0] and not rows["net"]["dropped"] and chosen == "net"


def test_race_first_candidate_is_always_scored_and_failures_are_recorded():
    from soundclass.errors import DatasetError

    clock = FakeClock()
    first = Fake("first", [0.5] * 3, clock=clock, prior=1e6)

    class Broken(Fake):
        def prepare(self):
            raise DatasetError("no usable clips")

    broken = Broken("broken", [0.9] * 3, clock=clock, prior=None)  # no prior: run
    rows, chosen, _ = _race([first, broken], clock, time_budget=1.0)
    assert rows["first"]["folds"] == 1 and chosen == "first"
    assert rows["broken"]["status"] == "failed" and "no usable clips" in rows["broken"]["note"]
