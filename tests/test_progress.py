"""Progress bars: live on a terminal, a few plain lines on a log or captured stream."""

from __future__ import annotations

import io
import re

import pytest

from soundclass.util.progress import LINE_INTERVAL, LineBar, NoBar, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_a_log_gets_a_line_every_interval_and_one_at_the_end():
    out = io.StringIO()
    # 10,000 updates over about 100 s
    bar = LineBar(10_000, desc="features (logmel)", file=out, clock=_Clock(0.01))
    for _ in range(10_000):
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 10 <= len(lines) <= 12  # one per LINE_INTERVAL seconds, plus the last
    assert LINE_INTERVAL == 10.0
    assert all(line.startswith("features (logmel): ") for line in lines)
    assert re.match(r"features \(logmel\): 10\d\d/10000 files \(10%\), 10 s, about 1 min \d\d s left$",
                    lines[0])
    assert lines[-1].startswith("features (logmel): 10000/10000 files (100%)") and "left" not in lines[-1]


def test_progress_bar_on_a_captured_stream_writes_lines_not_redraws():
    out = io.StringIO()
    bar = progress_bar(500, desc="predict (cnn)", file=out)
    assert isinstance(bar, LineBar)
    for _ in range(500):
        bar.update(1)
    bar.close()
    assert out.getvalue().count("\n") == 1  # a fast step: just its last line
    assert out.getvalue().startswith("predict (cnn): 500/500 files (100%)")


def test_a_short_transient_bar_writes_nothing_and_postfix_and_initial_show():
    out = io.StringIO()
    bar = progress_bar(40, desc="epoch 1 (cnn)", unit="batch", leave=False, file=out)
    for _ in range(40):
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""
    bar = progress_bar(10, desc="train cnn", unit="epoch", initial=4, file=out)
    bar.set_postfix(loss="0.412")
    bar.update(1)
    bar.close()
    assert out.getvalue() == "train cnn: 5/10 epochs (50%), 0 s; loss=0.412\n"


def test_a_line_per_update_with_no_interval_and_no_repeated_last_line():
    out = io.StringIO()
    bar = progress_bar(3, desc="train cnn", unit="epoch", file=out, interval=0.0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" epochs")[0] for line in lines] == [f"train cnn: {i}/3" for i in (1, 2, 3)]


def test_a_terminal_gets_the_live_bar():
    term = _Terminal()
    bar = progress_bar(200, desc="features (aisfx-probe)", file=term)
    assert not isinstance(bar, LineBar | NoBar)
    for _ in range(200):
        bar.update(1)
    bar.close()
    text = term.getvalue()
    assert "\r" in text and "features (aisfx-probe)" in text and "200/200" in text


def test_disabled_is_silent():
    bar = progress_bar(3, desc="scan", enabled=False)
    assert isinstance(bar, NoBar)
    bar.update(1)
    bar.set_postfix(loss=1)
    bar.close()


@pytest.mark.parametrize("total", [None, 0])
def test_unknown_or_empty_totals(total):
    out = io.StringIO()
    bar = progress_bar(total, desc="epoch 2 (cnn)", unit="batch", file=out)
    bar.update(3)
    bar.close()
    assert out.getvalue().startswith(f"epoch 2 (cnn): 3{'/0' if total == 0 else ''} batches")
