"""Fine-tuning from a PANNs checkpoint: ``TrainConfig.pretrained`` and ``soundclass train --pretrained``.

The ``.pth`` is written by the test in the layout of the public PANNs Cnn6
checkpoint (torchlibrosa front end, AudioSet head), its backbone filled with a
recognisable pattern.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import pytest
import torch

from soundclass.checkpoint.format import load_checkpoint
from soundclass.cli import main
from soundclass.data import synth
from soundclass.errors import CheckpointError, ParameterError
from soundclass.models import create_model
from soundclass.training import (
    PRETRAINED_MODELS,
    TrainConfig,
    derive_seed,
    load_pretrained_weights,
    resolve_config,
    train,
)

CNN6_CHANNELS = (64, 128, 256, 512)
N_BATCHES = 1_234_567  # num_batches_tracked of every BatchNorm in the file
DROPPED = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")
FAST = {"epochs": 1, "batch_size": 4, "clip_seconds": 1.0, "n_jobs": 1, "seed": 3}


def _pattern(*shape: int, scale: float, offset: float = 0.0, phase: float = 0.0) -> torch.Tensor:
    """``offset + scale * sin(0.37 k + phase)`` over the flat index ``k``: easy to recognise."""
    n = math.prod(shape)
    k = torch.arange(n, dtype=torch.float64)
    return (offset + scale * torch.sin(0.37 * k + phase)).float().reshape(shape)


def _bn(prefix: str, n: int, phase: float) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": _pattern(n, scale=0.1, offset=1.0, phase=phase),
        f"{prefix}.bias": _pattern(n, scale=0.05, phase=phase + 1),
        f"{prefix}.running_mean": _pattern(n, scale=0.5, offset=2.0, phase=phase + 2),
        f"{prefix}.running_var": _pattern(n, scale=0.5, offset=3.0, phase=phase + 3),
        f"{prefix}.num_batches_tracked": torch.tensor(N_BATCHES),
    }


def cnn6_panns_state_dict() -> dict[str, torch.Tensor]:
    """Every tensor of ``Cnn6_mAP=0.343.pth``'s ``'model'`` entry, by the published names and shapes."""
    n_fft, n_mels = 1024, 64
    sd = {
        "spectrogram_extractor.stft.conv_real.weight": _pattern(n_fft // 2 + 1, 1, n_fft, scale=1.0),
        "spectrogram_extractor.stft.conv_imag.weight": _pattern(n_fft // 2 + 1, 1, n_fft, scale=1.0, phase=1),
        "logmel_extractor.melW": _pattern(n_fft // 2 + 1, n_mels, scale=0.01, offset=0.01),
    }
    sd.update(_bn("bn0", n_mels, phase=0.0))
    in_ch = 1
    for i, out_ch in enumerate(CNN6_CHANNELS, start=1):
        fan = in_ch * 25
        sd[f"conv_block{i}.conv1.weight"] = _pattern(out_ch, in_ch, 5, 5, scale=1.0 / math.sqrt(fan), phase=i)
        sd.update(_bn(f"conv_block{i}.bn1", out_ch, phase=float(i)))
        in_ch = out_ch
    sd["fc1.weight"] = _pattern(512, 512, scale=0.04, phase=7)
    sd["fc1.bias"] = _pattern(512, scale=0.01, phase=8)
    sd["fc_audioset.weight"] = _pattern(527, 512, scale=0.04, phase=9)
    sd["fc_audioset.bias"] = _pattern(527, scale=0.01, phase=10)
    return sd


@pytest.fixture(scope="module")
def cnn6_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("panns") / "Cnn6_mAP=0.343.pth"
    sd = cnn6_panns_state_dict()
    torch.save({"model": sd}, path)
    return path, sd


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return synth.make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=4, sr=8000, seed=0)


def _backbone_keys(sd) -> list[str]:
    return sorted(k for k in sd if not k.startswith(DROPPED))


# --------------------------------------------------------------------------- loading


def test_loads_the_file_as_the_trainer_does(cnn6_file):
    path, sd = cnn6_file
    config = resolve_config(TrainConfig(model="cnn6", pretrained=path))
    assert config.pretrained == os.fspath(path)  # a PathLike is stored as str (JSON-able)
    torch.manual_seed(0)
    model = create_model("cnn6", n_classes=4, n_features=64)
    head = model.fc.weight.detach().clone()
    record = load_pretrained_weights(model, config)
    state = model.state_dict()
    for key in _backbone_keys(sd):
        assert torch.equal(state[key], sd[key]), key
    assert torch.equal(model.fc.weight, head)  # head as built
    assert record["n_loaded"] == len(_backbone_keys(sd))
    assert sorted(record["reinitialised"]) == ["fc.bias", "fc.weight"]
    assert set(record["skipped"]) == {k for k in sd if k.startswith(DROPPED)}
    assert record["path"] == os.path.abspath(path)
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_pretrained_weights(model, TrainConfig(model="cnn6")) is None


def test_front_end_changes_are_loaded_with_a_warning(cnn6_file, caplog):
    path, _ = cnn6_file
    model = create_model("cnn6", n_classes=2, n_features=64)
    config = resolve_config(TrainConfig(model="cnn6", pretrained=str(path), feature={"fmax": 8000.0}))
    with caplog.at_level("INFO", logger="soundclass.training"):
        record = load_pretrained_weights(model, config)
    assert record["n_loaded"] > 0
    text = caplog.text
    assert f"{path}: loaded {record['n_loaded']} backbone tensors into cnn6" in text
    assert "fmax=8000.0 (PANNs: 14000.0)" in text and "sr=" not in text


def test_other_models_and_inputs_are_refused(cnn6_file):
    path, _ = cnn6_file
    for model in ("seed-cnn", "cnn"):
        with pytest.raises(ParameterError, match=rf"model='{model}'.*cnn6, cnn10, cnn14"):
            resolve_config(TrainConfig(model=model, pretrained=path))
    with pytest.raises(ParameterError, match=r"n_mels=128.*n_mels=64"):
        resolve_config(TrainConfig(model="cnn6", pretrained=path, feature={"n_mels": 128}))
    with pytest.raises(ParameterError, match=r"kind='mfcc'"):
        resolve_config(TrainConfig(model="cnn10", pretrained=path, feature={"kind": "mfcc", "n_mfcc": 64}))
    with pytest.raises(ParameterError, match="pretrained=''"):
        TrainConfig(model="cnn6", pretrained="")
    # without pretrained the same overrides stay allowed
    assert resolve_config(TrainConfig(model="cnn6", feature={"n_mels": 128})).pretrained is None
    assert PRETRAINED_MODELS == ("cnn6", "cnn10", "cnn14")


class _Payload:
    """Unpickling this would create ``marker``: a weights-only load must never do it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_bad_files_give_checkpoint_errors(tmp_path, cnn6_file):
    _, sd = cnn6_file
    model = create_model("cnn6", n_classes=3, n_features=64)

    def load(path):
        return load_pretrained_weights(model, TrainConfig(model="cnn6", pretrained=str(path)))

    with pytest.raises(CheckpointError, match=r"missing\.pth: no such checkpoint file"):
        load(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"corrupt\.pth: cannot be read"):
        load(corrupt)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pth: cannot be read as a weights-only"):
        load(evil)
    assert not marker.exists()
    wrong = tmp_path / "cnn10_layout.pth"  # a Cnn10 backbone for a Cnn6 model
    torch.save({"model": create_model("cnn10", n_classes=527, n_features=64).state_dict()}, wrong)
    with pytest.raises(CheckpointError, match=r"cnn10_layout\.pth: does not fit.*conv_block1\.conv1\.weight"):
        load(wrong)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    partial = tmp_path / "partial.pth"
    torch.save({"model": {k: v for k, v in sd.items() if k != "conv_block4.conv1.weight"}}, partial)
    with pytest.raises(CheckpointError, match=r"partial\.pth: .*missing from file: conv_block4\.conv1\.weight"):
        load(partial)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded


def test_train_refuses_a_missing_file_before_extracting(tmp_path, demo, monkeypatch):
    import soundclass.training.trainer

    def no_extraction(*args, **kwargs):
        raise AssertionError("features extracted before the pretrained file was checked")

    monkeypatch.setattr(soundclass.training.trainer, "get_features", no_extraction)
    cfg = TrainConfig(model="cnn6", pretrained=str(tmp_path / "nope.pth"), **FAST)
    with pytest.raises(CheckpointError, match=r"nope\.pth: no such checkpoint file"):
        train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(ParameterError, match="seed-cnn"):
        train(demo, cfg.replace(model="seed-cnn", clip_seconds=None), out_dir=tmp_path / "run", progress=False)


# --------------------------------------------------------------------------- training


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm())


def test_fine_tunes_from_the_file_and_the_checkpoint_stands_alone(tmp_path, demo, cnn6_file):
    path, sd = cnn6_file
    copy = tmp_path / "Cnn6.pth"  # deleted after training
    copy.write_bytes(path.read_bytes())
    cfg = TrainConfig(model="cnn6", pretrained=str(copy), val_size=0.25, **FAST)
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    copy.unlink()

    assert len(res.history) == 1 and math.isfinite(res.history[0]["train_loss"])
    src = res.pretrained_from
    assert src["n_loaded"] == len(_backbone_keys(sd)) and src["path"] == os.path.abspath(copy)
    config_json = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config_json["pretrained"] == str(copy)
    assert config_json["pretrained_from"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert TrainConfig.from_dict(config_json).pretrained == str(copy)

    ckpt = load_checkpoint(res.checkpoint_dir)  # the .pth is gone: everything is in the checkpoint
    assert ckpt.train_config["pretrained_from"]["n_loaded"] == src["n_loaded"]
    state = ckpt.model.state_dict()
    n_train = len(json.loads((tmp_path / "run" / "split.json").read_text())["train"])
    steps = n_train // FAST["batch_size"]
    assert steps >= 2
    # BatchNorm counters went on from the file's count
    for key in ("bn0.num_batches_tracked", "conv_block4.bn1.num_batches_tracked"):
        assert int(state[key]) == N_BATCHES + steps, key
    # the weights started from the file, not from the trainer's random init
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    scratch = create_model("cnn6", n_classes=len(demo.classes), n_features=64).state_dict()
    for key in ("conv_block1.conv1.weight", "conv_block4.conv1.weight", "fc1.weight",
                "conv_block2.bn1.bias", "bn0.bias"):
        moved, from_init = _distance(state[key], sd[key]), _distance(state[key], scratch[key])
        assert moved < 0.2 * from_init, (key, moved, from_init)
    assert not torch.equal(state["conv_block4.conv1.weight"], sd["conv_block4.conv1.weight"])  # it trained
    assert ckpt.model.fc.weight.shape == (len(demo.classes), 512)

    # resuming the (finished) run reads last/, not the deleted .pth, and keeps the record
    again = train(demo, cfg, out_dir=tmp_path / "run", progress=False, resume=True)
    assert again.pretrained_from == src
    assert json.loads((tmp_path / "run" / "config.json").read_text())["pretrained_from"] == src


def test_cli_flag_end_to_end(tmp_path, demo, cnn6_file, capsys):
    path, sd = cnn6_file
    data = demo.root
    out = tmp_path / "run"
    common = ["train", data, "-o", str(out), "--epochs", "1", "--batch-size", "4", "--clip-seconds", "1",
              "--jobs", "1", "--executor", "serial", "--quiet"]
    rc = main([*common, "--model", "cnn6", "--pretrained", str(path), "--val-size", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"loaded {len(_backbone_keys(sd))} tensors from {path}" in captured.out
    assert "re-initialised fc.bias, fc.weight" in captured.out
    assert json.loads((out / "config.json").read_text())["pretrained"] == str(path)
    ckpt = load_checkpoint(out / "checkpoint")
    assert int(ckpt.model.state_dict()["conv_block1.bn1.num_batches_tracked"]) > N_BATCHES

    rc = main([*common, "--model", "seed-cnn", "--pretrained", str(path)])
    err = capsys.readouterr().err
    assert rc == 1 and "model='seed-cnn'" in err and "cnn6, cnn10, cnn14" in err
    cfg = tmp_path / "mels.json"
    cfg.write_text(json.dumps({"feature": {"n_mels": 128}}))
    rc = main(["train", str(tmp_path / "no-data-here"), "--model", "cnn6", "--pretrained", str(path),
               "--config", str(cfg)])  # refused before the data folder is looked at
    err = capsys.readouterr().err
    assert rc == 1 and "n_mels=128 makes the pretrained weights" in err
    missing = tmp_path / "Cnn14_mAP=0.431.pth"
    rc = main([*common, "--model", "cnn14", "--pretrained", str(missing)])
    err = capsys.readouterr().err
    assert rc == 1 and f"{missing}: no such checkpoint file" in err


def test_cli_help_names_models_and_weights_only(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--pretrained PATH" in text
    assert "cnn6, cnn10, cnn14" in text and "weights_only=True" in text
