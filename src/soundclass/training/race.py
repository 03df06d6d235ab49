"""The race of ``--model auto``: candidates scored fold by fold, the hopeless ones dropped early.

:func:`race` is the scheduler under :func:`soundclass.training.auto.train_auto`,
written against a small contender interface so its decisions can be tested with
fake candidates and a fake clock:

1. round 1 scores fold 1 of every contender, in the order given (cheapest
   first); each later round gives the contenders still in the race their next
   fold, the leader first (its score on the fold is what the others must reach);
2. after every round, a contender whose mean macro-F1 over the folds done is
   more than :func:`score_margin` below the leader's on the same folds is
   dropped (successive halving); when at most one contender can still run
   folds, the others are not run (they cannot change the choice);
3. a neural fold is stopped after an epoch when its validation curve cannot
   reach the leader's score on that fold (:func:`cannot_reach`), and the
   contender is dropped with its score so far;
4. the time budget holds the features, the folds and the winner's final fit
   (estimated from the fold times): a contender whose prior cost does not fit
   is skipped, a fold that does not fit is not run, a neural fold whose
   remaining epochs do not fit stops there (its contender leaves the race
   unless it is ahead even so).  The first contender always gets one fold.

Every decision is appended to the contender's leaderboard ``note`` and said
as a progress line (``auto: cnn fold 2/3 epoch 7/30 val macro-F1 0.412
(budget left 412 s)``).  The winner is the best mean macro-F1 on the folds
that every contender left completed, the earlier (cheaper) one on ties.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundclass.errors import SoundclassError, SplitError

__all__ = ["MARGIN_Z", "MIN_EPOCHS", "MIN_MARGIN", "EpochHook", "FoldScore", "cannot_reach", "race",
           "score_margin"]

#: Epochs a neural fold always runs before :func:`cannot_reach` may stop it.
MIN_EPOCHS = 3
#: Standard errors between a candidate and the leader for a drop (:func:`score_margin`).
MARGIN_Z = 2.0
#: The smallest margin of a drop, whatever the number of clips.
MIN_MARGIN = 0.05
def score_margin(score: float, n_val: int) -> float:
    """How far below the leader's macro-F1 ``score`` (on ``n_val`` held-out clips) is too far.

    ``max(MIN_MARGIN, MARGIN_Z * sqrt(2 p (1 - p) / n_val))`` with ``p = score``:
    :data:`MARGIN_Z` standard errors of the difference of two scores measured on
    the same ``n_val`` clips, counting them as accuracies with independent errors
    (correlated errors make the real spread smaller, so this errs towards keeping
    a candidate).  E.g. 0.11 for ``p = 0.5`` on 160 clips, 0.05 on 800.
    """
    p = min(max(float(score), 0.0), 1.0)
    return max(MIN_MARGIN, MARGIN_Z * math.sqrt(2.0 * p * (1.0 - p) / max(int(n_val), 1)))


def cannot_reach(curve: Sequence[float], *, epochs: int, target: float, margin: float,
                 min_epochs: int = MIN_EPOCHS) -> str | None:
    """Why a validation curve cannot reach ``target - margin`` in ``epochs`` epochs, or ``None``.

    Parameters
    ----------
    curve : sequence of float [shape=(e,)]
        Validation macro-F1 after each epoch so far.
    epochs : int
        Epochs of the whole fit.
    target, margin : float
        The leader's score on the same fold and :func:`score_margin`.
    min_epochs : int
        Never stopped before this many epochs.

    Returns
    -------
    str or None
        The reason (for the leaderboard) when even the best slope of the running
        best so far (over all epochs, or over the last 3) kept up for every
        epoch left ends below ``target - margin``.
    """
    e = len(curve)
    if e < max(min_epochs, 2) or e >= epochs:
        return None
    best = np.maximum.accumulate(np.nan_to_num(np.asarray(curve, dtype=np.float64), nan=0.0))
    goal = target - margin
    if best[-1] >= goal:
        return None
    w = min(3, e - 1)
    slope = max((best[-1] - best[0]) / (e - 1), (best[-1] - best[-1 - w]) / w, 0.0)
    reach = best[-1] + slope * (epochs - e)
    if reach >= goal:
        return None
    return (f"best validation macro-F1 {best[-1]:.3f} after {e}/{epochs} epochs, at its best slope "
            f"{slope:.3f} per epoch at most {reach:.3f} by the end, below the leader's {target:.3f} "
            f"minus the margin {margin:.3f}")


@dataclass(frozen=True)
class FoldScore:
    """One candidate's score on one fold.

    ``epochs`` are the epochs run (``None`` for a classical fit); ``halted``
    says why a neural fit stopped before its epochs: ``'behind'`` (it could not
    reach the leader) or ``'budget'``; ``why`` is the reason in words.
    """

    macro_f1: float
    accuracy: float
    n_val: int
    seconds: float
    epochs: int | None = None
    halted: str | None = None
    why: str = ""


#: ``on_epoch(row) -> bool``: one history row of :func:`soundclass.training.fitting.fit`; True stops.
EpochHook = Callable[[Mapping[str, Any]], bool]


def _row(name: str, n_folds: int) -> dict[str, Any]:
    return {"model": name, "status": "pending", "folds": 0, "of_folds": n_folds, "fold_macro_f1": [],
            "fold_accuracy": [], "fold_n_val": [], "fold_seconds": [], "seconds": 0.0,
            "feature_seconds": 0.0, "dropped": False, "note": ""}


def _add_note(row: dict[str, Any], text: str) -> None:
    row["note"] = f"{row['note']}; {text}" if row["note"] else text


class _Race:
    """The state of :func:`race`: rows, who is still in, the clock."""

    def __init__(self, contenders, *, n_folds: int, time_budget: float, eliminate: bool,
                 say: Callable[[str], None], clock: Callable[[], float]):
        self.contenders = list(contenders)
        self.k, self.budget, self.eliminate, self.say, self.clock = n_folds, time_budget, eliminate, say, clock
        self.start = clock()
        self.rows = {c.name: _row(c.name, n_folds) for c in self.contenders}
        self.alive = list(self.contenders)  # still in the race (may get more folds, may be chosen)
        self.done: set[str] = set()  # in the race, but no more folds (the budget, a fold stopped for time)
        self.fold_epochs: dict[str, list[int | None]] = {}

    # -- the clock and the budget
    def left(self) -> float:
        return self.budget - (self.clock() - self.start)

    def _budget(self) -> str:
        return f"budget left {max(self.left(), 0):.0f} s"

    def fold_seconds(self, c) -> float | None:
        """Measured mean seconds of a fold of ``c`` (a stopped fold counts as a full one), or the prior."""
        took = self.rows[c.name]["fold_seconds"]
        if not took:
            return c.fold_prior()
        ran = self.fold_epochs.get(c.name, [None] * len(took))  # epochs of a stopped fold, else None
        return float(np.mean([s * (c.epochs / e if e and c.epochs else 1.0) for s, e in zip(took, ran, strict=True)]))

    def final_seconds(self, c) -> float:
        """Estimated seconds of the final fit of ``c`` on the whole training part."""
        fold = self.fold_seconds(c)
        return 0.0 if fold is None else fold * c.final_ratio()

    def reserve(self, c) -> float:
        """What the budget must keep for the final fit: the leader's, or ``c``'s if it wins."""
        lead = self.leader(len(self.rows[c.name]["fold_macro_f1"]) or 1)
        other = 0.0 if lead is None or lead is c else self.final_seconds(lead)
        return max(other, self.final_seconds(c))

    # -- the standings
    def scores(self, c, m: int) -> list[float]:
        return self.rows[c.name]["fold_macro_f1"][:m]

    def leader(self, m: int, *, among=None):
        """The candidate with the best mean over the first ``m`` folds (all done), cheapest on ties."""
        pool = [c for c in (self.alive if among is None else among) if len(self.scores(c, m)) >= m]
        return max(pool, key=lambda c: np.mean(self.scores(c, m)), default=None) if pool else None

    def on_fold_target(self, c, i: int):
        """The best score on fold ``i`` of another candidate still in the race, and its held-out size."""
        others = [o for o in self.alive if o is not c and len(self.rows[o.name]["fold_macro_f1"]) > i]
        if not others:
            return None
        best = max(others, key=lambda o: self.rows[o.name]["fold_macro_f1"][i])
        return best, self.rows[best.name]["fold_macro_f1"][i], self.rows[best.name]["fold_n_val"][i]

    def drop(self, c, why: str) -> None:
        row = self.rows[c.name]
        row["dropped"] = True
        _add_note(row, why)
        self.alive.remove(c)
        c.release()
        self.say(f"auto: {c.name} {why}")

    # -- one candidate's step
    def prepare(self, c) -> bool:
        row, left = self.rows[c.name], self.left()
        fold, extract = c.fold_prior(), c.extract_prior()
        has_leader = any(r["fold_macro_f1"] for r in self.rows.values())
        if fold is not None and has_leader:
            lead = self.leader(1)
            need = extract + fold + max(fold * c.final_ratio(), 0.0 if lead is None else self.final_seconds(lead))
            if need > left:
                row["status"] = "skipped"
                _add_note(row, f"skipped: estimated {extract:.0f} s of features, {fold:.0f} s per fold and "
                               f"the final fit do not fit in the {max(left, 0):.0f} s left of the time budget")
                self.alive.remove(c)
                c.release()
                self.say(f"auto: {c.name} {row['note']}")
                return False
        self.say(f"auto: {c.name} features ({self._budget()})")
        t0 = self.clock()
        try:
            c.prepare()
        except SplitError:
            raise  # the dataset's groups, not this candidate: no other candidate could do better
        except SoundclassError as exc:
            self.fail(c, exc)
            return False
        row["feature_seconds"] = self.clock() - t0
        row["of_folds"] = c.n_folds
        return True

    def fail(self, c, exc: Exception) -> None:
        row = self.rows[c.name]
        row["status"] = "failed" if not row["fold_macro_f1"] else row["status"]
        _add_note(row, f"failed: {exc}")
        if c in self.alive:
            self.alive.remove(c)
        c.release()
        self.say(f"auto: {c.name} failed: {exc}")

    def epoch_hook(self, c, i: int, state: dict[str, Any]) -> EpochHook:
        """The per-epoch message and decisions of fold ``i`` of the neural candidate ``c``."""
        target = self.on_fold_target(c, i) if self.eliminate else None
        first = self.leader(1) is None  # nobody scored yet: nothing to compare with, one fold guaranteed
        curve: list[float] = []
        last = [self.clock()]  # when the previous epoch ended (the first one also pays the setup)

        def hook(hist: Mapping[str, Any]) -> bool:
            curve.append(float(hist.get("val_macro_f1", float("nan"))))
            e, n = len(curve), c.epochs
            self.say(f"auto: {c.name} fold {i + 1}/{c.n_folds} epoch {e}/{n} val macro-F1 {curve[-1]:.3f} "
                     f"({self._budget()})")
            if target is not None:
                lead, score, n_val = target
                why = cannot_reach(curve, epochs=n, target=score, margin=score_margin(score, n_val))
                if why:
                    state.update(halted="behind", why=f"{why} ({lead.name}) on fold {i + 1}")
                    return True
            # an epoch's cost from the second on: the first also pays one-time costs (model, optimizer
            # and torch imports: 3 s and more on a busy machine, as long as the epoch itself)
            per_epoch, last[0] = self.clock() - last[0], self.clock()
            if e < 2 or first or e >= n:
                return False
            lead = self.leader(1)
            final = per_epoch * n * c.final_ratio()
            reserve = max(final, 0.0 if lead is None or lead is c else self.final_seconds(lead))
            if per_epoch * (n - e) + reserve > self.left():
                state.update(halted="budget", why=(
                    f"fold {i + 1} stopped after epoch {e}/{n} by the time budget ({per_epoch:.1f} s an "
                    f"epoch; its score is of that shorter training)"))
                return True
            return False

        return hook

    def run_fold(self, c, i: int) -> None:
        row = self.rows[c.name]
        if i > 0:  # measured: this fold and the final fit must fit in what is left
            fold = self.fold_seconds(c) or 0.0
            if fold + self.reserve(c) > self.left():
                _add_note(row, f"time budget: {i} of {c.n_folds} folds (a fold takes {fold:.0f} s, "
                               f"{max(self.left(), 0):.0f} s left, the final fit needs "
                               f"{self.reserve(c):.0f} s)")
                self.done.add(c.name)
                self.say(f"auto: {c.name} {row['note']}")
                return
        state: dict[str, Any] = {}
        hook = self.epoch_hook(c, i, state) if c.epochs else None
        self.say(f"auto: {c.name} fold {i + 1}/{c.n_folds} ({self._budget()})")
        t0 = self.clock()
        try:
            s = c.run_fold(i, hook)
        except SoundclassError as exc:
            self.fail(c, exc)
            return
        if state and s.halted is None:
            s = dataclasses.replace(s, halted=state["halted"], why=state["why"])
        took = self.clock() - t0
        row["fold_macro_f1"].append(s.macro_f1)
        row["fold_accuracy"].append(s.accuracy)
        row["fold_n_val"].append(s.n_val)
        row["fold_seconds"].append(took)
        self.fold_epochs.setdefault(c.name, []).append(s.epochs if s.halted else None)
        row["status"] = "scored"
        stop = f", stopped at epoch {s.epochs}/{c.epochs}" if s.halted else ""
        self.say(f"auto: {c.name} fold {i + 1}/{c.n_folds} macro-F1 {s.macro_f1:.3f} in {took:.1f} s{stop} "
                 f"({self._budget()})")
        if s.halted == "behind":
            self.drop(c, f"dropped in fold {i + 1}: {s.why}")
        elif s.halted == "budget":  # no more folds; still a contender only if ahead even so
            _add_note(row, s.why)
            self.done.add(c.name)
            target = self.on_fold_target(c, i)
            if target is not None and s.macro_f1 < target[1]:
                self.drop(c, f"out of the race: behind {target[0].name} ({target[1]:.3f}) on fold {i + 1} "
                             "when the budget stopped it")

    def halve(self, m: int) -> None:
        """After ``m`` folds: drop who is more than the margin below the leader on those folds."""
        lead = self.leader(m)
        if lead is None:
            return
        best = float(np.mean(self.scores(lead, m)))
        n_val = int(sum(self.rows[lead.name]["fold_n_val"][:m]))
        margin = score_margin(best, n_val)
        for c in list(self.alive):
            mine = self.scores(c, m)
            if c is lead or len(mine) < m or c.name in self.done:  # a stopped fold is not a fair score
                continue
            if float(np.mean(mine)) < best - margin:
                self.drop(c, f"dropped after {m} fold(s): mean macro-F1 {np.mean(mine):.3f}, more than the "
                             f"margin {margin:.3f} below the leader {lead.name}'s {best:.3f} on the same folds")

    # -- the whole race
    def run(self) -> None:
        self.say(f"auto: {len(self.contenders)} candidates, cheapest first: "
                 f"{', '.join(c.name for c in self.contenders)}; {self.k}-fold cross-validation; "
                 f"time budget {self.budget:.0f} s")
        for i in range(self.k):
            runnable = [c for c in self.alive if c.name not in self.done and (not c.prepared or i < c.n_folds)]
            if i > 0 and self.eliminate and len(runnable) <= 1:  # more folds of one cannot change the choice
                for c in runnable:
                    if len(self.rows[c.name]["fold_macro_f1"]) < c.n_folds:
                        _add_note(self.rows[c.name], f"folds {i + 1}-{c.n_folds} not run: no other candidate "
                                                     "left to compare with")
                break
            if i > 0:  # the leader first: its score on the fold is what the others must reach
                lead = self.leader(i, among=runnable)
                runnable.sort(key=lambda c: (c is not lead, self.fold_seconds(c) or math.inf))
            for c in runnable:
                if c not in self.alive:
                    continue
                if not c.prepared and not self.prepare(c):
                    continue
                if i < c.n_folds:
                    self.run_fold(c, i)
            if self.eliminate:
                self.halve(i + 1)

    def chosen(self):
        """The best mean over the folds every candidate still in the race completed; cheaper on ties."""
        pool = [c for c in self.alive if self.rows[c.name]["fold_macro_f1"]]
        if not pool:
            return None, 0
        m = min(len(self.rows[c.name]["fold_macro_f1"]) for c in pool)
        return self.leader(m, among=pool), m

    def finish_rows(self) -> list[dict[str, Any]]:
        out = []
        for c in self.contenders:
            row = self.rows[c.name]
            f1, acc = np.asarray(row["fold_macro_f1"]), np.asarray(row["fold_accuracy"])
            row["folds"] = len(f1)
            row["seconds"] = float(row["feature_seconds"] + sum(row["fold_seconds"]))
            if len(f1):
                row.update(status="scored", macro_f1_mean=float(f1.mean()), macro_f1_std=float(f1.std()),
                           accuracy_mean=float(acc.mean()), accuracy_std=float(acc.std()))
            elif row["status"] == "pending":
                row["status"] = "skipped"
                _add_note(row, "not run")
            out.append(row)
        return out


def race(contenders: Sequence[Any], *, n_folds: int, time_budget: float, eliminate: bool = True,
         say: Callable[[str], None] | None = None,
         clock: Callable[[], float] = time.perf_counter) -> tuple[list[dict[str, Any]], str | None, str]:
    """Score ``contenders`` by folds within a time budget (the race of the module text).

    Parameters
    ----------
    contenders : sequence
        Cheapest first.  Each has ``name``, ``epochs`` (``None``: fitted in
        one step), ``prepared`` and ``n_folds`` (valid once prepared), and the
        methods ``extract_prior()``, ``fold_prior()`` (seconds or ``None``),
        ``final_ratio()`` (final fit / fold fit), ``prepare()`` (the features;
        may raise :class:`~soundclass.errors.SoundclassError`),
        ``run_fold(i, on_epoch) -> FoldScore`` and ``release()``.
    n_folds : int
    time_budget : float
        Seconds for features, folds and the winner's final fit.
    eliminate : bool
        Drop candidates that cannot win (halving, epoch-level stop) and skip
        the folds that cannot change the choice; ``False`` scores every
        candidate on every fold the budget allows (the full evaluation).
    say : callable or None
        Receives the progress lines.
    clock : callable
        Seconds (a fake clock in tests).

    Returns
    -------
    rows : list of dict
        Leaderboard rows in ``contenders`` order (see :func:`train_auto`).
    chosen : str or None
        ``None`` when no candidate could be scored.
    basis : str
        On which folds the choice was made.
    """
    r = _Race(contenders, n_folds=n_folds, time_budget=time_budget, eliminate=eliminate,
              say=say or (lambda s: None), clock=clock)
    r.run()
    best, m = r.chosen()
    rows = r.finish_rows()
    basis = f"mean macro-F1 on the first {m} fold(s), which every candidate left completed" if best else ""
    return rows, (best.name if best else None), basis
