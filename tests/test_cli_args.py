"""The shared argparse types and option blocks of ``soundclass.cli._args``."""

from __future__ import annotations

import argparse

import pytest

from soundclass.cli._args import (
    add_runtime_options,
    executor_from_args,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)


@pytest.mark.parametrize(("func", "text", "expected"), [
    (positive_int, "3", 3), (non_negative_float, "0", 0.0), (positive_float, "0.5", 0.5),
    (fraction, "0", 0.0), (fraction, "0.25", 0.25),
])
def test_types_accept(func, text, expected):
    assert func(text) == expected


@pytest.mark.parametrize(("func", "text", "message"), [
    (positive_int, "0", "0 must be >= 1"), (positive_int, "1.5", "'1.5' is not an integer"),
    (non_negative_float, "-1", "-1.0 must be >= 0"), (non_negative_float, "nan", "nan must be >= 0"),
    (non_negative_float, "x", "'x' is not a number"), (positive_float, "0", "0.0 must be > 0"),
    (fraction, "1", "1.0 must be < 1"), (fraction, "-0.1", "-0.1 must be >= 0"),
])
def test_types_reject_with_the_value(func, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        func(text)


def test_runtime_options_defaults_and_serial_executor():
    parser = argparse.ArgumentParser()
    add_runtime_options(parser)
    args = parser.parse_args([])
    assert (args.jobs, args.cache_dir, args.executor, args.quiet) == (None, None, "process", False)
    with executor_from_args(args) as executor:
        assert executor is None  # the library's own process pool
    args = parser.parse_args(["--executor", "serial", "--jobs", "2", "--quiet"])
    with executor_from_args(args) as executor:
        assert list(executor.map(abs, [-1, 2])) == [1, 2]
