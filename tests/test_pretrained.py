"""models.pretrained: loading PANNs-layout checkpoints written by the test itself."""

from __future__ import annotations

import os

import pytest
import torch

from soundclass.errors import CheckpointError, ParameterError
from soundclass.models import create_model, load_pretrained
from soundclass.models.panns import PANNS_FEATURE
from soundclass.models.pretrained import check_pretrained_fit

CHANNELS = (64, 128, 256, 512)  # PANNs Cnn10 / Cnn6


def _bn(prefix: str, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.rand(n, generator=gen) + 0.5,
        f"{prefix}.bias": torch.randn(n, generator=gen),
        f"{prefix}.running_mean": torch.randn(n, generator=gen),
        f"{prefix}.running_var": torch.rand(n, generator=gen) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(1234),
    }


def panns_state_dict(*, kernel: int = 3, n_convs: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Cnn10 (or Cnn6 with ``kernel=5, n_convs=1``) checkpoint as PANNs writes it.

    Written out from the published layout (torchlibrosa front end, AudioSet
    head with 527 classes), not from soundclass's model.
    """
    gen = torch.Generator().manual_seed(seed)
    n_fft, n_mels = 1024, 64
    sd = {
        "spectrogram_extractor.stft.conv_real.weight": torch.randn(n_fft // 2 + 1, 1, n_fft, generator=gen),
        "spectrogram_extractor.stft.conv_imag.weight": torch.randn(n_fft // 2 + 1, 1, n_fft, generator=gen),
        "logmel_extractor.melW": torch.rand(n_fft // 2 + 1, n_mels, generator=gen),
    }
    sd.update(_bn("bn0", n_mels, gen))
    in_ch = 1
    for i, out_ch in enumerate(CHANNELS, start=1):
        sd[f"conv_block{i}.conv1.weight"] = torch.randn(out_ch, in_ch, kernel, kernel, generator=gen)
        sd.update(_bn(f"conv_block{i}.bn1", out_ch, gen))
        if n_convs == 2:
            sd[f"conv_block{i}.conv2.weight"] = torch.randn(out_ch, out_ch, kernel, kernel, generator=gen)
            sd.update(_bn(f"conv_block{i}.bn2", out_ch, gen))
        in_ch = out_ch
    sd["fc1.weight"] = torch.randn(512, 512, generator=gen)
    sd["fc1.bias"] = torch.randn(512, generator=gen)
    sd["fc_audioset.weight"] = torch.randn(527, 512, generator=gen)
    sd["fc_audioset.bias"] = torch.randn(527, generator=gen)
    return sd


@pytest.fixture(scope="module")
def cnn10_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("panns") / "Cnn10_mAP=0.380.pth"
    sd = panns_state_dict()
    torch.save({"model": sd, "iteration": 660000}, path)
    return path, sd


def test_loads_backbone_and_keeps_our_head(cnn10_file):
    path, sd = cnn10_file
    torch.manual_seed(0)
    model = create_model("cnn10", n_classes=7, n_features=64)
    head_before = model.fc.weight.detach().clone()
    report = load_pretrained(model, path)
    state = model.state_dict()
    backbone = [k for k in sd if not k.startswith(("spectrogram_", "logmel_", "fc_audioset"))]
    assert sorted(report.loaded) == sorted(backbone)
    for key in backbone:
        assert torch.equal(state[key], sd[key]), key
    assert torch.equal(model.fc.weight, head_before)  # our head stays as initialised
    assert set(report.missing) == {"fc.weight", "fc.bias"}
    assert {"fc_audioset.weight", "logmel_extractor.melW"} <= set(report.skipped)
    assert report.path == os.fspath(path)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 64, 50))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_bare_state_dict_and_cnn6_layout(tmp_path):
    sd = panns_state_dict(kernel=5, n_convs=1, seed=1)
    path = tmp_path / "cnn6.pth"
    torch.save(sd, path)
    model = create_model("cnn6", n_classes=3, n_features=64)
    report = load_pretrained(model, path)
    assert torch.equal(model.conv_block4.conv1.weight, sd["conv_block4.conv1.weight"])
    assert "conv_block1.conv2.weight" not in report.loaded


def test_wrong_architecture_names_mismatching_keys(cnn10_file):
    path, _ = cnn10_file
    model = create_model("cnn6", n_classes=3, n_features=64)  # 5x5 single convs
    with pytest.raises(CheckpointError, match=r"Cnn10_mAP=0\.380\.pth.*conv_block1\.conv1\.weight"):
        load_pretrained(model, path)


def test_wrong_shape_file(tmp_path):
    sd = panns_state_dict()
    sd["fc1.weight"] = torch.zeros(256, 512)
    path = tmp_path / "wrong_shape.pth"
    torch.save({"model": sd}, path)
    model = create_model("cnn10", n_classes=3, n_features=64)
    before = model.conv_block1.conv1.weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"wrong_shape\.pth.*fc1\.weight \(256, 512\) != \(512, 512\)"):
        load_pretrained(model, path)
    assert torch.equal(model.conv_block1.conv1.weight, before)  # nothing half-loaded
    report = load_pretrained(model, path, strict_backbone=False)
    assert "fc1.weight" in report.skipped and "fc1.weight" in report.missing
    assert torch.equal(model.conv_block1.conv1.weight, sd["conv_block1.conv1.weight"])


def test_missing_backbone_keys_are_an_error(tmp_path):
    sd = panns_state_dict()
    del sd["conv_block3.bn2.running_var"]
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="missing from file: conv_block3.bn2.running_var"):
        load_pretrained(create_model("cnn10", n_classes=3, n_features=64), path)


def test_corrupt_and_absent_files(tmp_path, cnn10_file):
    src, _ = cnn10_file
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(src.read_bytes()[: 5000])
    model = create_model("cnn10", n_classes=3, n_features=64)
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        load_pretrained(model, corrupt)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_pretrained(model, tmp_path / "absent.pth")


class Payload:
    """An arbitrary object: unpickling it could run code, so it must be refused."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    model = create_model("cnn10", n_classes=3, n_features=64)
    with pytest.raises(CheckpointError, match="evil.pth.*weights-only"):
        load_pretrained(model, path)


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"model": {"fc1.weight": [1, 2, 3]}}, path)
    with pytest.raises(CheckpointError, match="odd.pth.*not named tensors"):
        load_pretrained(create_model("cnn10", n_classes=3, n_features=64), path)


def test_check_pretrained_fit_refuses_models_and_inputs_the_weights_cannot_fit():
    check_pretrained_fit("cnn10", PANNS_FEATURE.replace(fmax=8000.0), pretrained="w.pth")  # front end only
    check_pretrained_fit("cnn", PANNS_FEATURE.replace(n_mels=128), pretrained=None)  # nothing to check
    with pytest.raises(ParameterError, match=r"^pretrained='w.pth' needs a PANNs-layout model; model='cnn'"):
        check_pretrained_fit("cnn", PANNS_FEATURE, pretrained="w.pth")
    with pytest.raises(ParameterError, match=r"^feature deltas=2 makes .*'w.pth'.*deltas=0"):
        check_pretrained_fit("cnn6", PANNS_FEATURE.replace(deltas=2), pretrained="w.pth")
