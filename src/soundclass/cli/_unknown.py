"""``--unknown-below P`` / ``--unknown-precision Q`` of ``soundclass predict``.

Kept apart from :mod:`soundclass.cli.predict` so the command needs three lines:
``add_unknown_options(parser)``, ``preds = apply_unknown_options(args, ckpt, preds)``
before writing, and nothing else.
"""

from __future__ import annotations

import argparse
from typing import Any

from soundclass.cli._args import non_negative_float

__all__ = ["add_unknown_options", "apply_unknown_options"]


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = non_negative_float(text)
    if not value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be <= 1")
    return value


def add_unknown_options(parser: argparse.ArgumentParser) -> None:
    """Add the mutually exclusive ``--unknown-below P`` and ``--unknown-precision Q``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--unknown-below", type=probability, default=None, metavar="P",
        help="answer 'unknown' for clips whose top calibrated probability is below P "
             "(0: never; default: the threshold stored by train --unknown-precision, if any)")
    group.add_argument(
        "--unknown-precision", type=probability, default=None, metavar="Q",
        help="answer 'unknown' below the threshold chosen on the validation split for precision Q "
             "of the accepted answers (stored in the checkpoint at training time)")


def apply_unknown_options(args: argparse.Namespace, checkpoint: Any, predictions: Any) -> Any:
    """The predictions with rejected clips labelled ``unknown`` (printing how many)."""
    from soundclass.inference.calibration import unknown_mask, unknown_threshold, with_unknown

    threshold = unknown_threshold(checkpoint, below=getattr(args, "unknown_below", None),
                                  precision=getattr(args, "unknown_precision", None))
    if threshold is None:
        return predictions
    n = int(unknown_mask(predictions.proba, threshold=threshold).sum())
    print(f"unknown: {n} of {len(predictions.paths)} file(s) have a top calibrated probability "
          f"below {threshold:.3f}")
    return with_unknown(predictions, threshold=threshold)
