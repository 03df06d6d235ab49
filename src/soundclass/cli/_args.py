"""What the sub-commands share: argparse number types and option blocks.

The leading underscore keeps this module out of the sub-command discovery of
:mod:`soundclass.cli`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from soundclass.util.executors import make_executor

MODEL_HELP = "checkpoint folder or training run folder"
_JOBS_HELP = ("parallel worker processes for feature extraction; predicting with onnxruntime and no cache, "
              "they also score the clips (default: all cores)")


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


# The flags of add_runtime_options that are also config settings (TrainConfig.cache_dir, .n_jobs).
RUNTIME_FLAGS = ("--jobs", "--cache-dir")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--jobs``, ``--cache-dir``, ``--executor`` and ``--quiet`` (train, evaluate, predict)."""
    add_jobs_option(parser)
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="feature cache folder, reused across runs; with it, training reads the "
                        "features from the cache batch by batch instead of holding them all in memory "
                        "(default: no cache)")
    add_executor_option(parser)
    add_quiet_option(parser)


@contextmanager
def executor_from_args(args: argparse.Namespace):
    """The executor of ``--executor``/``--jobs``, shut down on exit (None for the default pool)."""
    if args.executor == "process":
        yield None  # the library makes (and closes) its own process pool
        return

    executor = make_executor(args.executor, n_jobs=args.jobs)
    try:
        yield executor
    finally:
        executor.shutdown()


# --------------------------------------------------------------------------- config settings as flags
#
# A setting is duck-typed: ``help``, ``kind`` (int, float, str, bool, dict),
# ``ok(value) -> bool`` and ``must`` (the error phrase), optional ``choices``,
# ``choices_from()``, ``flag``, ``metavar``, ``const`` and ``off``
# (``(flag, value, help)``); see :class:`soundclass.training.config.Setting`.


def setting_flag(name: str, setting: Any) -> str:
    """The flag of a setting: its own ``flag`` or ``--`` + ``name`` in kebab-case."""
    return setting.flag or "--" + name.replace("_", "-")


def setting_dest(name: str, setting: Any) -> str:
    """The ``argparse`` destination of a setting (a shared runtime flag keeps its own)."""
    flag = setting_flag(name, setting)
    return flag[2:].replace("-", "_") if flag in RUNTIME_FLAGS else name


def setting_type(setting: Any):
    """argparse type of a scalar setting: parse the text with ``setting.kind``, then apply its rule."""
    kind = setting.kind

    def parse(text: str):
        if kind is int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        elif kind is float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        else:
            value = text
        if not setting.ok(value):
            raise argparse.ArgumentTypeError(f"{value!r} must be {setting.must}")
        return value

    return parse


def key_value(text: str) -> tuple[str, Any]:
    """argparse type: ``KEY=VALUE``, the value read as JSON when it is JSON (else kept as text)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def add_setting_flags(parser: argparse.ArgumentParser, settings: Mapping[str, Any]) -> None:
    """One flag per setting (the shared :data:`RUNTIME_FLAGS` excepted: add them with
    :func:`add_runtime_options`); every default is ``None`` ("not given")."""
    for name, s in settings.items():
        flag = setting_flag(name, s)
        if flag in RUNTIME_FLAGS:
            continue
        kw: dict[str, Any] = {"dest": name, "default": None, "help": s.help}
        if s.kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if s.kind is dict:
            parser.add_argument(flag, action="append", type=key_value, metavar=s.metavar or "KEY=VALUE", **kw)
            continue
        choices = s.choices_from() if s.choices_from is not None else s.choices
        if choices is not None:
            kw["choices"] = list(choices)
        else:
            kw["type"] = setting_type(s)
            if s.metavar:
                kw["metavar"] = s.metavar
        if s.const is not None:
            kw.update(nargs="?", const=s.const)
        target = parser
        if s.off is not None:
            target = parser.add_mutually_exclusive_group()
        target.add_argument(flag, **kw)
        if s.off is not None:
            off_flag, off_value, off_help = s.off
            target.add_argument(off_flag, dest=name, action="store_const", const=off_value, help=off_help)


def setting_values(args: argparse.Namespace, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given on the command line (``None``: not given), by setting name.

    Repeated ``KEY=VALUE`` flags become a dict.
    """
    out: dict[str, Any] = {}
    for name, s in settings.items():
        value = getattr(args, setting_dest(name, s), None)
        if value is None:
            continue
        out[name] = dict(value) if s.kind is dict else value
    return out
