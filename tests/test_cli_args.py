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


# ------------------------------------------------------------------ train flags from TrainConfig settings


def _train_parser():
    from soundclass.cli import build_parser

    return build_parser()


def _config(argv):
    from soundclass.cli.train import resolve_config

    return resolve_config(_train_parser().parse_args(["train", "data", *argv]))


def test_every_train_setting_has_a_flag():
    from soundclass.cli._args import setting_dest
    from soundclass.training import settings

    parser = _train_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions}
    missing = [name for name, s in settings().items() if setting_dest(name, s) not in dests]
    assert not missing


def test_new_flags_reach_the_config():
    c = _config(["--optimizer", "sgd", "--scheduler", "cosine", "--warmup", "0.2", "--monitor", "loss",
                 "--freq-warp", "0.1", "--time-stretch", "0.15", "--grad-clip", "1.5", "--device", "cpu",
                 "--patience", "0", "--spec-augment", "--val-size", "8", "--model-kwarg", "dropout=0.3",
                 "--feature", "n_mels=32", "--feature", "fmax=null", "--feature", "window=hamming"])
    assert (c.optimizer, c.scheduler, c.warmup, c.monitor) == ("sgd", "cosine", 0.2, "loss")
    assert (c.freq_warp, c.time_stretch, c.grad_clip, c.device) == (0.1, 0.15, 1.5, "cpu")
    assert c.patience == 0 and c.spec_augment is True and c.val_size == 8.0
    assert c.model_kwargs == {"dropout": 0.3}
    assert c.feature == {"n_mels": 32, "fmax": None, "window": "hamming"}
    assert _config(["--no-spec-augment"]).spec_augment is False
    untouched = _config([])
    assert (untouched.patience, untouched.optimizer, untouched.spec_augment, untouched.feature) == (
        None, None, None, {})


def test_flags_override_and_merge_the_config_file(tmp_path):
    import json

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"feature": {"n_mfcc": 13, "n_mels": 40}, "grad_clip": 2.0, "monitor": "loss"}))
    c = _config(["--config", str(cfg), "--feature", "n_mels=20", "--monitor", "macro_f1"])
    assert c.feature == {"n_mfcc": 13, "n_mels": 20} and c.grad_clip == 2.0 and c.monitor == "macro_f1"


@pytest.mark.parametrize(("argv", "message"), [
    (["--warmup", "1"], "argument --warmup: 1.0 must be in [0, 1)"),
    (["--patience", "-1"], "argument --patience: -1 must be a non-negative integer (0 disables)"),
    (["--epochs", "2.5"], "argument --epochs: '2.5' is not an integer"),
    (["--grad-clip", "0"], "argument --grad-clip: 0.0 must be a positive number or None"),
    (["--optimizer", "lion"], "argument --optimizer: invalid choice: 'lion'"),
    (["--feature", "n_mels"], "argument --feature: 'n_mels' is not KEY=VALUE"),
])
def test_bad_train_flags_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit):
        _train_parser().parse_args(["train", "data", *argv])
    err = capsys.readouterr().err
    assert message in err


def test_key_value():
    from soundclass.cli._args import key_value

    assert key_value("a=1") == ("a", 1) and key_value("b=x=y") == ("b", "x=y")
    assert key_value("c=[1, 2]") == ("c", [1, 2]) and key_value("d=") == ("d", "")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        key_value("=3")
