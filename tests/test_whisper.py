"""Whisper-base: the CTranslate2 reader, the verified weights, the front end against librosa,
the encoder against CTranslate2's own, the clip embedding and its graph, the fusion feature."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from conftest import make_signal
from soundclass.audio import load
from soundclass.errors import CheckpointError, ParameterError
from soundclass.models import whisper as W
from soundclass.models import whisper_weights as WW
from soundclass.models.ctranslate2_file import read_model

ctranslate2 = pytest.importorskip("ctranslate2")  # the dev extra's test oracle

# float32 STFTs summed in another order; log10 magnifies the rounding of the quietest bins
FRONT_TOL = {"atol": 2e-5, "rtol": 1e-5}
# our float32 encoder against CTranslate2's float32 one (other GEMM and softmax kernels):
# measured 4e-5 on 2.8 s of speech, 6e-4 on 30 s (outputs up to ~25 in magnitude)
ENCODER_TOL = {"atol": 2e-3, "rtol": 1e-4}
SENTENCE = "Good morning, how are you today?"
PROMPT = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]


def _librosa_logmel(y: np.ndarray) -> np.ndarray:
    """The Whisper recipe written with librosa (issue #17), for a 16 kHz clip."""
    S = np.abs(librosa.stft(y, n_fft=400, hop_length=160, window="hann", center=True,
                            pad_mode="reflect")) ** 2
    S = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ S[:, :-1]
    x = np.log10(np.maximum(S, 1e-10))
    x = np.maximum(x, x.max() - 8.0)
    return (x + 4.0) / 4.0


@pytest.fixture(scope="module")
def encoder():
    return W.pretrained_encoder()  # verified and loaded once per process


@pytest.fixture(scope="module")
def ct2_model(tmp_path_factory):
    """``ctranslate2.models.Whisper`` on the joined weights, float32, one thread."""
    folder = tmp_path_factory.mktemp("faster-whisper-base")
    with open(folder / "model.bin", "wb") as out:
        for part in WW.weight_files():
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out)
    for name, path in WW.companion_files().items():
        os.symlink(path, folder / name)
    return ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32",
                                      intra_threads=1)


def _espeak(tmp_path: Path, text: str) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/test.sh installs it)")
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True, timeout=60)
    return load(wav, sr=W.WHISPER_SR)[0]


def _encode_ct2(model, x: np.ndarray) -> np.ndarray:
    return np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(x[None])),
                                 to_cpu=True))[0]


# --------------------------------------------------------------------------- the file format


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def _ct2_bytes(variables: dict[str, np.ndarray], aliases=()) -> bytes:
    """A CTranslate2 model.bin as ``ctranslate2.specs.model_spec._serialize`` writes it."""
    codes = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2,
             np.dtype("int32"): 3, np.dtype("float16"): 4}
    out = [struct.pack("<I", 6), _string("TestSpec"), struct.pack("<II", 1, len(variables))]
    for name, value in variables.items():
        out += [_string(name), struct.pack("<B", value.ndim),
                struct.pack("<" + "I" * value.ndim, *value.shape),
                struct.pack("<BI", codes[value.dtype], value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases:
        out += [_string(alias), _string(target)]
    return b"".join(out)


def test_reader_round_trip_across_parts(tmp_path):
    rng = np.random.default_rng(0)
    variables = {"enc/w": rng.standard_normal((3, 4)).astype(np.float16),
                 "enc/b": rng.standard_normal(5).astype(np.float32),
                 "heads": np.array(8, dtype=np.int16), "dec/w": np.ones((2, 2), np.float16)}
    blob = _ct2_bytes(variables, aliases=[("dec/proj", "dec/w")])
    cut = len(blob) // 2 + 3  # inside a variable
    (tmp_path / "a").write_bytes(blob[:cut])
    (tmp_path / "b").write_bytes(blob[cut:])
    model = read_model([tmp_path / "a", tmp_path / "b"], keep=lambda n: not n.startswith("dec/"))
    assert (model.version, model.spec, model.revision) == (6, "TestSpec", 1)
    assert model.aliases == {"dec/proj": "dec/w"} and model.shapes["dec/w"] == (2, 2)
    assert set(model.variables) == {"enc/w", "enc/b", "heads"}
    assert model.variables["enc/w"].dtype == np.float32
    np.testing.assert_array_equal(model.variables["enc/w"], variables["enc/w"].astype(np.float32))
    np.testing.assert_array_equal(model.variables["enc/b"], variables["enc/b"])
    assert int(model.variables["heads"]) == 8


@pytest.mark.parametrize("damage", ["truncated", "trailing", "dtype", "nbytes", "count", "name"])
def test_reader_refuses_malformed_files(tmp_path, damage):
    blob = bytearray(_ct2_bytes({"w": np.ones((2, 3), np.float16)}))
    head = 4 + 2 + len("TestSpec") + 1 + 4  # up to the variable count
    name_end = head + 4 + 2 + 2  # count, the name "w" (uint16 length, 'w', NUL)
    dtype_at = name_end + 1 + 8  # rank, two dims
    if damage == "truncated":
        blob = blob[:-3]
    elif damage == "trailing":
        blob += b"\0"
    elif damage == "dtype":
        blob[dtype_at] = 9
    elif damage == "nbytes":
        blob[dtype_at + 1 : dtype_at + 5] = struct.pack("<I", 2**31)
    elif damage == "count":
        blob[head : head + 4] = struct.pack("<I", 2**32 - 1)
    else:
        blob[head + 4 : head + 6] = struct.pack("<H", 60000)  # a name longer than the file
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="model.bin"):
        read_model(path)


def test_a_file_with_one_byte_changed_is_refused(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    parts[0].write_bytes(data[:2500])
    parts[1].write_bytes(data[2500:])
    digest = hashlib.sha256(data).hexdigest()
    WW.verify_files(parts, sizes=(2500, 2500), sha256=digest)  # the right bytes pass
    changed = bytearray(data[2500:])
    changed[1234] ^= 0x01
    parts[1].write_bytes(bytes(changed))
    with pytest.raises(CheckpointError, match="model.bin.part1 \\+ .*model.bin.part2: sha256"):
        WW.verify_files(parts, sizes=(2500, 2500), sha256=digest)
    parts[1].write_bytes(data[2500:] + b"x")
    with pytest.raises(CheckpointError, match="model.bin.part2: 2501 bytes, expected 2500"):
        WW.verify_files(parts, sizes=(2500, 2500), sha256=digest)


def test_installed_weights_are_the_published_file(encoder):
    p1, p2 = WW.weight_files()
    assert (p1.stat().st_size, p2.stat().st_size) == WW.PART_BYTES
    assert sum(WW.PART_BYTES) == WW.MODEL_BYTES
    n = sum(p.numel() for p in encoder.parameters())
    assert encoder.position_encodings.shape == (W.N_CTX, W.D_MODEL)  # a buffer (fixed in Whisper)
    assert n + encoder.position_encodings.numel() == 20_593_664  # the file's encoder/ floats


# --------------------------------------------------------------------------- front end


@pytest.mark.parametrize("seconds", [0.05, 0.5, 2.0])
def test_front_end_equals_the_librosa_recipe(seconds):
    y = make_signal(sr=16000, seconds=seconds, seed=2)
    got = W.whisper_logmel(y)
    padded = np.concatenate([y, np.zeros(max(W.MIN_SAMPLES - y.size, 0), np.float32)])
    want = _librosa_logmel(padded)
    assert got.shape == (80, max(y.size, W.MIN_SAMPLES) // 160) == want.shape
    np.testing.assert_allclose(got, want, **FRONT_TOL)


def test_front_end_resamples_and_torch_twin_is_batch_consistent():
    y8 = make_signal(sr=8000, seconds=1.0, seed=3)
    np.testing.assert_allclose(W.whisper_logmel(y8, sr=8000),
                               W.whisper_logmel(librosa.resample(y8, orig_sr=8000, target_sr=16000,
                                                                 res_type="soxr_hq")), **FRONT_TOL)
    clips = [make_signal(sr=16000, seconds=1.3, seed=s) * g for s, g in ((4, 1.0), (5, 0.01))]
    with torch.inference_mode():
        batch = W.WhisperLogmel()(torch.from_numpy(np.stack(clips))).numpy()
    for row, y in zip(batch, clips, strict=True):  # each row clamped by its own maximum
        np.testing.assert_allclose(row, W.whisper_logmel(y), **FRONT_TOL)
    with torch.inference_mode():
        short = W.WhisperLogmel()(torch.from_numpy(clips[0][:300])[None])[0].numpy()
    np.testing.assert_allclose(short, W.whisper_logmel(clips[0][:300]), **FRONT_TOL)


# --------------------------------------------------------------------------- encoder


def _fsdd_clips(fsdd_dir: Path, n: int) -> list[np.ndarray]:
    files = sorted(fsdd_dir.glob("*/*.wav"))[:: max(1, 3000 // n)][:n]
    return [load(f, sr=W.WHISPER_SR)[0] for f in files]


def test_encoder_equals_ctranslate2_on_fsdd(encoder, ct2_model, fsdd_dir):
    for y in _fsdd_clips(fsdd_dir, 3):
        x = W.whisper_logmel(y)
        with torch.inference_mode():
            got = encoder(torch.from_numpy(x)[None])[0].numpy()
        want = _encode_ct2(ct2_model, x)
        assert got.shape == want.shape == ((x.shape[1] + 1) // 2, 512)
        np.testing.assert_allclose(got, want, **ENCODER_TOL)


def test_encoder_equals_ctranslate2_on_speech_and_30_seconds(encoder, ct2_model, tmp_path):
    y = _espeak(tmp_path, SENTENCE)
    padded = np.zeros(30 * W.WHISPER_SR, np.float32)
    padded[: y.size] = y
    for clip in (y, padded):  # the clip's own frames, and the full 3000-frame window
        x = W.whisper_logmel(clip)
        with torch.inference_mode():
            got = encoder(torch.from_numpy(x)[None])[0].numpy()
        np.testing.assert_allclose(got, _encode_ct2(ct2_model, x), **ENCODER_TOL)


def test_joined_weights_transcribe_speech(ct2_model, tmp_path):
    y = _espeak(tmp_path, SENTENCE)
    padded = np.zeros(30 * W.WHISPER_SR, np.float32)
    padded[: y.size] = y  # Whisper decodes 30 s windows
    x = ctranslate2.StorageView.from_array(W.whisper_logmel(padded)[None])
    tokens = ct2_model.generate(x, [PROMPT], max_length=48)[0].sequences[0]
    text = "".join(tokens).replace("\u0120", " ").strip()
    assert text == SENTENCE


# --------------------------------------------------------------------------- clip embedding


@pytest.mark.parametrize("frames, count, length", [(1, 1, 1), (3000, 1, 3000), (3001, 2, 1501),
                                                   (7000, 3, 2334)])
def test_window_starts(frames, count, length):
    starts, got_length = W.window_starts(frames)
    assert int(got_length) == length and len(starts) == count
    np.testing.assert_array_equal(starts.numpy(), np.rint(np.linspace(0, frames - length, count)))


def test_embedding_is_the_frame_mean_of_seven_outputs(encoder):
    y = make_signal(sr=16000, seconds=1.0, seed=6)
    x = torch.from_numpy(W.whisper_logmel(y))[None]
    with torch.inference_mode():
        outs = encoder.layer_outputs(x)
    assert len(outs) == 7
    want = torch.cat([h.mean(dim=1) for h in outs], dim=-1)[0].numpy()
    got = W.whisper_embedding(y, W.WHISPER_SR)
    assert got.shape == (W.EMBEDDING_DIM, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5, atol=1e-5)


def test_long_clip_averages_equal_windows(encoder):
    y = make_signal(sr=16000, seconds=30.5, seed=7)  # 3050 frames: 2 windows of 1525
    x = torch.from_numpy(W.whisper_logmel(y))[None]
    with torch.inference_mode():
        parts = [torch.cat([h.mean(dim=1) for h in encoder.layer_outputs(x[:, :, s : s + 1525])], -1)
                 for s in (0, 1525)]
    want = torch.stack(parts).mean(dim=0)[0].numpy()
    np.testing.assert_allclose(W.whisper_vector(y, sr=16000), want, rtol=1e-5, atol=1e-5)


def test_embedding_graph_equals_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from soundclass.models.onnx_trace import trace_to_onnx

    module = W.WhisperEmbedding().eval()
    example = torch.from_numpy(make_signal(sr=16000, seconds=1.3, seed=8))[None]
    graph = trace_to_onnx(module, example, input_name="waveform", output_name="embedding",
                          input_axes={0: "batch", 1: "samples"}, opset=17, what="whisper")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    for seconds in (0.05, 2.0, 45.0):  # padded to 0.1 s; one window; two overlapping windows
        y = make_signal(sr=16000, seconds=seconds, seed=9)[None]
        got = sess.run(["embedding"], {"waveform": y})[0]
        with torch.inference_mode():
            want = module(torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{seconds} s")
        np.testing.assert_allclose(want[0], W.whisper_embedding(y[0], 16000), rtol=1e-4, atol=1e-4)


def test_classifier_lower_encoder_rate_and_shapes():
    from soundclass.models import create_model
    from soundclass.training.config import TrainConfig, resolve_config
    from soundclass.training.optim import make_optimizer

    model = create_model("whisper", n_classes=3, n_features=80)
    opt = make_optimizer(model, resolve_config(TrainConfig(model="whisper", lr=1e-3)))
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([1e-4, 1e-3])
    with torch.inference_mode():
        assert model.eval()(torch.zeros(2, 80, 37)).shape == (2, 3)
    with pytest.raises(ParameterError, match="must be 80"):
        create_model("whisper", n_classes=3, n_features=64)


# --------------------------------------------------------------------------- fusion


def test_polyphase_resampler_keeps_a_tone():
    from soundclass.dsp.polyphase import PolyphaseResample

    t = np.arange(44100) / 44100
    y = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    with torch.inference_mode():
        out = PolyphaseResample(orig_sr=44100, target_sr=16000)(torch.from_numpy(y)[None])[0].numpy()
    assert out.size == 16000
    want = np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000)
    np.testing.assert_allclose(out[200:-200], want[200:-200], atol=1e-3)


def test_fusion_feature_is_both_embeddings():
    from soundclass.dsp.polyphase import PolyphaseResample
    from soundclass.models.aisfx import clip_embedding
    from soundclass.models.fusion import FUSION_DIM, fusion_embedding

    y = make_signal(sr=44100, seconds=1.5, seed=10)
    got = fusion_embedding(y, 44100)
    assert got.shape == (FUSION_DIM, 1) == (4608, 1)
    with torch.inference_mode():
        y16 = PolyphaseResample(orig_sr=44100, target_sr=16000)(torch.from_numpy(y)[None])[0].numpy()
    np.testing.assert_allclose(got[:1024, 0], clip_embedding(y, sr=44100), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1024:, 0], W.whisper_vector(y16, sr=16000), rtol=1e-5, atol=1e-5)
