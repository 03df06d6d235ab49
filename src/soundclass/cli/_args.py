"""What the sub-commands share: argparse number types and option blocks.

The leading underscore keeps this module out of the sub-command discovery of
:mod:`soundclass.cli`.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager

MODEL_HELP = "checkpoint folder or training run folder"
_JOBS_HELP = "parallel feature-extraction workers (default: all cores)"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = non_negative_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be < 1")
    return value


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``MODEL`` (a checkpoint or training run folder)."""
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``DATA_DIR`` (a labelled folder or a CSV manifest)."""
    parser.add_argument("data", metavar="DATA_DIR", help="folder with one sub-folder per class, or a CSV manifest")


def add_batch_size_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--batch-size`` of inference (clips per forward pass, default 64)."""
    parser.add_argument("--batch-size", type=positive_int, default=64, help="clips per forward pass")


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--tta N`` (test-time augmentation, default 1)."""
    parser.add_argument("--tta", type=positive_int, default=1, metavar="N",
                        help="test-time augmentation: N times as many shifted windows per clip (default: 1)")


def add_jobs_option(parser: argparse.ArgumentParser, *, help_text: str = _JOBS_HELP) -> None:
    """Add ``--jobs N`` (worker count, default None: all cores)."""
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N", help=help_text)


def add_executor_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--executor SPEC`` (default ``process``); read it with :func:`executor_from_args`."""
    parser.add_argument("--executor", default="process", metavar="SPEC",
                        help="process (default), serial, dask://local or dask://HOST:PORT")


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` (no progress bars)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--jobs``, ``--cache-dir``, ``--executor`` and ``--quiet`` (train, evaluate, predict)."""
    add_jobs_option(parser)
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="feature cache folder, reused across runs (default: no cache)")
    add_executor_option(parser)
    add_quiet_option(parser)


@contextmanager
def executor_from_args(args: argparse.Namespace):
    """The executor of ``--executor``/``--jobs``, shut down on exit (None for the default pool)."""
    if args.executor == "process":
        yield None  # the library makes (and closes) its own process pool
        return
    from soundclass.util.executors import make_executor

    executor = make_executor(args.executor, n_jobs=args.jobs)
    try:
        yield executor
    finally:
        executor.shutdown()
