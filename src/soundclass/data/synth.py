"""A small built-in eating-sound-like dataset, generated in code.

``make_demo_dataset`` writes ``root/<class>/<class>_s<source>_<n>.wav`` for
four classes of distinct acoustic character:

* ``crunch``: sharp broadband bursts (a few micro-cracks each) with a fast
  decay, at irregular (Poisson) times;
* ``slurp``: band-passed noise whose centre frequency sweeps slowly up and
  down, under slow swelling envelopes;
* ``fizz``: dense high-frequency crackle (hundreds of tiny clicks a second)
  over high-passed hiss, slowly fading;
* ``chew``: low-frequency muffled thumps at a steady 1-2 Hz rhythm.

A *source* stands for one recording: its clips share the filter settings,
tempo, background-noise colour and level (and sometimes a mains hum), so clips
of one source are more alike than clips of one class; split by group
(:data:`DEMO_GROUP_PATTERN`) to measure generalisation honestly.  Every clip
is 1-3 s long with a random gain.  The content of a clip depends only on
``(seed, class, source, n)``, through ``numpy.random.default_rng``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.fft
import soundfile as sf

from soundclass.data.dataset import Dataset, Item
from soundclass.errors import ParameterError, check_int

__all__ = [
    "DEMO_CLASSES", "DEMO_GROUP_PATTERN", "FOOD_CLASSES", "FOOD_GROUP_PATTERN", "make_demo_dataset",
    "food_clip", "make_food_dataset", "synthesize_clip",
]

DEMO_CLASSES = ("chew", "crunch", "fizz", "slurp")
#: ``--group-pattern`` that recovers the source of a demo clip from its name.
DEMO_GROUP_PATTERN = r"^(?P<group>.+)_\d+\.wav$"

_CORRUPT_KINDS = ("empty", "garbage", "truncated")

#: The 20 foods of the Eating Sound Collection, the classes of :func:`make_food_dataset`.
FOOD_CLASSES = ("aloe", "burger", "cabbage", "candied_fruits", "carrots", "chips", "chocolate",
                "drinks", "fries", "grapes", "gummies", "ice-cream", "jelly", "noodles", "pickles",
                "pizza", "ribs", "salmon", "soup", "wings")
#: ``--group-pattern`` that recovers the recording of a :func:`make_food_dataset` clip.
FOOD_GROUP_PATTERN = r"^(?P<group>.+_\d+)_\d+\.wav$"


# ----------------------------------------------------------------------------
# small signal helpers


def _spectral_shape(x: np.ndarray, sr: int, gain) -> np.ndarray:
    """Filter ``x`` by a zero-phase gain curve ``gain(freqs_hz)`` (FFT domain)."""
    n_fft = scipy.fft.next_fast_len(x.size, real=True)
    X = scipy.fft.rfft(x, n=n_fft)
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    return scipy.fft.irfft(X * gain(f), n=n_fft)[: x.size]


def _lowpass(fc: float):
    return lambda f: 1.0 / np.sqrt(1.0 + (f / fc) ** 4)


def _highpass(fc: float):
    return lambda f: (f / fc) ** 2 / np.sqrt(1.0 + (f / fc) ** 4)


def _coloured_noise(n: int, sr: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power ~ 1/f**alpha (0 white, 1 pink, 2 brown), unit RMS."""
    n_fft = scipy.fft.next_fast_len(n, real=True)
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    spec = rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)
    y = scipy.fft.irfft(spec * np.maximum(f, 20.0) ** (-alpha / 2.0), n=n_fft)[:n]
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def _fade(y: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    """Short linear fade-in and fade-out, so no clip starts or ends with a click."""
    k = min(int(seconds * sr), y.size // 2)
    ramp = np.linspace(0.0, 1.0, k, endpoint=False)
    y = y.copy()
    y[:k] *= ramp
    y[y.size - k :] *= ramp[::-1]
    return y


def _normalize(y: np.ndarray) -> np.ndarray:
    return y / (np.max(np.abs(y)) + 1e-12)


# ----------------------------------------------------------------------------
# per-source settings and per-class generators


def _source_params(label: str, rng: np.random.Generator, sr: int) -> dict:
    nyq = sr / 2.0
    p = {
        "bg_alpha": rng.uniform(0.0, 2.0),
        "bg_db": rng.uniform(-35.0, -20.0),
        "hum_hz": float(rng.choice([50.0, 60.0])) if rng.random() < 0.3 else None,
    }
    if label == "crunch":
        p.update(rate=rng.uniform(2.0, 6.0), tau=rng.uniform(0.004, 0.012),
                 tilt=nyq * rng.uniform(0.3, 0.8), cracks=int(rng.integers(1, 5)))
    elif label == "slurp":
        f_lo = rng.uniform(300.0, 700.0)
        p.update(f_lo=f_lo, f_hi=min(f_lo * rng.uniform(2.0, 4.0), 0.6 * nyq),
                 bw_oct=rng.uniform(0.2, 0.45), sweep_hz=rng.uniform(0.4, 1.2),
                 n_slurps=int(rng.integers(1, 4)))
    elif label == "fizz":
        p.update(cutoff=nyq * rng.uniform(0.35, 0.55), click_rate=rng.uniform(300.0, 900.0),
                 hiss=rng.uniform(0.1, 0.3), fade=rng.uniform(1.0, 4.0))
    elif label == "chew":
        p.update(tempo=rng.uniform(1.0, 2.0), f0=rng.uniform(60.0, 160.0),
                 cutoff=rng.uniform(250.0, 600.0), decay=rng.uniform(0.06, 0.15),
                 jitter=rng.uniform(0.01, 0.06))
    else:  # pragma: no cover - guarded by make_demo_dataset
        raise ParameterError(f"unknown demo class {label!r}")
    return p


def _crunch(n: int, sr: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(n)
    burst_len = int(0.08 * sr)
    t = np.arange(burst_len) / sr
    n_events = 1 + rng.poisson(p["rate"] * n / sr)
    for start in rng.integers(0, max(n - burst_len, 1), size=n_events):
        amp = rng.uniform(0.3, 1.0)
        for k in range(rng.integers(1, p["cracks"] + 1)):
            s = int(start + rng.uniform(0.0, 0.02) * sr * k)
            tau = p["tau"] * rng.uniform(0.7, 1.3)
            seg = amp * rng.uniform(0.5, 1.0) * rng.standard_normal(burst_len) * np.exp(-t / tau)
            seg = seg[: max(0, n - s)]
            y[s : s + seg.size] += seg
    return _spectral_shape(y, sr, _lowpass(p["tilt"]))


def _slurp(n: int, sr: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    frame, hop = 1024, 512
    n_frames = n // hop + 2
    centres = (np.arange(n_frames) * hop) / sr
    phase = rng.uniform(0, 2 * np.pi)
    sweep = 0.5 + 0.5 * np.sin(2 * np.pi * p["sweep_hz"] * centres + phase)
    fc = p["f_lo"] * (p["f_hi"] / p["f_lo"]) ** sweep  # (n_frames,)
    f = np.fft.rfftfreq(frame, 1.0 / sr)
    octs = np.log2(np.maximum(f, 1.0)[None, :] / fc[:, None])
    gain = np.exp(-0.5 * (octs / p["bw_oct"]) ** 2)  # (n_frames, frame // 2 + 1)
    spec = (rng.standard_normal(gain.shape) + 1j * rng.standard_normal(gain.shape)) * gain
    frames = np.fft.irfft(spec, n=frame) * np.hanning(frame + 1)[:-1]  # periodic hann
    out = np.zeros((n_frames + 1) * hop)
    for i in range(n_frames):  # overlap-add; hann at 50 % overlap sums to 1
        out[i * hop : i * hop + frame] += frames[i]
    out = out[hop : hop + n]
    # slow envelope: a few raised-cosine swells of 0.4-1.2 s
    env = np.zeros(n)
    for _ in range(p["n_slurps"] + int(rng.integers(0, 2))):
        length = int(rng.uniform(0.4, 1.2) * sr)
        start = int(rng.integers(0, max(n - length // 2, 1)))
        w = np.hanning(length)[: max(0, n - start)]
        env[start : start + w.size] = np.maximum(env[start : start + w.size], w * rng.uniform(0.5, 1.0))
    return out * (0.05 + env)


def _fizz(n: int, sr: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    clicks = np.zeros(n)
    n_clicks = rng.poisson(p["click_rate"] * n / sr)
    pos = rng.integers(0, n, size=n_clicks)
    np.add.at(clicks, pos, rng.choice([-1.0, 1.0], size=n_clicks) * np.minimum(rng.pareto(3.0, size=n_clicks), 3.0))
    hiss = rng.standard_normal(n) * p["hiss"] * np.std(clicks) * 3.0
    y = _spectral_shape(clicks + hiss, sr, _highpass(p["cutoff"]))
    t = np.arange(n) / sr
    return y * np.exp(-t / p["fade"] * rng.uniform(0.5, 1.5))


def _chew(n: int, sr: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(n)
    thump_len = int(min(0.4, 5 * p["decay"]) * sr)
    t = np.arange(thump_len) / sr
    env = (1.0 - np.exp(-t / 0.01)) * np.exp(-t / p["decay"])
    period = 1.0 / (p["tempo"] * rng.uniform(0.95, 1.05))
    times = np.arange(rng.uniform(0.0, period), n / sr, period)
    times = times + rng.normal(0.0, p["jitter"], size=times.size)
    for start in (times * sr).astype(np.int64):
        if not 0 <= start < n:
            continue
        f0 = p["f0"] * rng.uniform(0.9, 1.1)
        tone = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
        seg = rng.uniform(0.5, 1.0) * env * (0.6 * tone + 0.4 * rng.standard_normal(thump_len))
        seg = seg[: n - start]
        y[start : start + seg.size] += seg
    return _spectral_shape(y, sr, _lowpass(p["cutoff"]))


_GENERATORS = {"crunch": _crunch, "slurp": _slurp, "fizz": _fizz, "chew": _chew}


def synthesize_clip(
    label: str, *, source: int = 0, n: int = 0, sr: int = 16000, seed: int = 0
) -> np.ndarray:
    """One demo clip of class ``label`` from recording ``source``.

    Parameters
    ----------
    label : {'chew', 'crunch', 'fizz', 'slurp'}
    source : int
        Recording index; clips with the same ``(seed, label, source)`` share
        their filters, tempo and background noise.
    n : int
        Clip index within the source.
    sr : int
        Sample rate in Hz (>= 4000).
    seed : int

    Returns
    -------
    y : np.ndarray of float32 [shape=(n_samples,)]
        1-3 s, peak in [0.2, 0.7].
    """
    if label not in _GENERATORS:
        raise ParameterError(f"label={label!r} must be one of {DEMO_CLASSES}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr < 4000:
        raise ParameterError(f"sr={sr!r} must be an integer >= 4000")
    cls = DEMO_CLASSES.index(label)
    p = _source_params(label, np.random.default_rng([seed, cls, source]), int(sr))
    rng = np.random.default_rng([seed, cls, source, n, 1])
    n_samples = int(rng.uniform(1.0, 3.0) * sr)
    y = _normalize(_GENERATORS[label](n_samples, int(sr), p, rng))
    level = np.sqrt(np.mean(y**2)) * 10 ** (p["bg_db"] / 20)  # SNR set by the source
    bg = _coloured_noise(n_samples, int(sr), p["bg_alpha"], rng) * level
    if p["hum_hz"] is not None:
        t = np.arange(n_samples) / sr
        bg = bg + level * np.sin(2 * np.pi * p["hum_hz"] * t)
    y = _normalize(_fade(y + bg, int(sr))) * 10 ** (rng.uniform(-14.0, -3.0) / 20)
    return y.astype(np.float32)


def _write_corrupt(path: Path, kind: str, rng: np.random.Generator, sr: int) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(rng.integers(0, 256, size=2048, dtype=np.uint8).tobytes())
    else:  # a valid header cut off after 40 bytes
        tmp = path.with_suffix(".tmp.wav")
        sf.write(tmp, np.zeros(sr // 10, dtype=np.float32), sr, subtype="PCM_16")
        path.write_bytes(tmp.read_bytes()[:40])
        tmp.unlink()


def make_demo_dataset(
    root: str | os.PathLike,
    *,
    n_per_class: int = 40,
    sr: int = 16000,
    seed: int = 0,
    n_sources: int = 8,
    n_corrupt: int = 0,
) -> Dataset:
    """Write the built-in demo dataset and return it.

    Parameters
    ----------
    root : path
        Output folder (created); existing files with the same names are
        overwritten, other files are left alone.
    n_per_class : int
        Clips per class; clip ``i`` belongs to source ``i % n_sources``.
    sr : int
        Sample rate of the 16-bit PCM wav files (>= 4000).
    seed : int
        Same seed, same files.
    n_sources : int
        Recordings per class.
    n_corrupt : int
        Extra broken files (empty, random bytes, truncated header) named
        ``<class>_corrupt_<k>.wav``, spread over the classes, in group
        ``<class>_corrupt``: a loader must report them and carry on.

    Returns
    -------
    Dataset
        Items sorted by path, labelled, with ``group`` = ``<class>_s<source>``.
    """
    for name, value, low in (("n_per_class", n_per_class, 1), ("n_sources", n_sources, 1),
                             ("n_corrupt", n_corrupt, 0), ("seed", seed, 0)):
        check_int(name, value, low=low)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ParameterError(f"{root}: exists and is not a directory")
    items = []
    for label in DEMO_CLASSES:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            source, n = i % n_sources, i // n_sources
            y = synthesize_clip(label, source=source, n=n, sr=sr, seed=seed)
            path = folder / f"{label}_s{source:02d}_{n:03d}.wav"
            sf.write(path, y, sr, subtype="PCM_16")
            items.append(Item(str(path), label, f"{label}_s{source:02d}"))
    rng = np.random.default_rng([seed, 99])
    for k in range(n_corrupt):
        label = DEMO_CLASSES[k % len(DEMO_CLASSES)]
        path = root / label / f"{label}_corrupt_{k}.wav"
        _write_corrupt(path, _CORRUPT_KINDS[k % len(_CORRUPT_KINDS)], rng, sr)
        items.append(Item(str(path), label, f"{label}_corrupt"))
    items.sort(key=lambda it: it.path)
    return Dataset(tuple(items), DEMO_CLASSES, str(root))


def food_clip(c: int, *, source: int, n: int, sr: int, seconds: tuple[float, float],
               seed: int) -> np.ndarray:
    """Clip ``n`` of recording ``source`` of food class ``c`` [shape=(n_samples, 2)], float32."""
    kind = DEMO_CLASSES[c % len(DEMO_CLASSES)]
    p = _source_params(kind, np.random.default_rng([seed, 7, c]), sr)  # the class's own recipe
    src = np.random.default_rng([seed, 7, c, source])
    p.update(bg_alpha=src.uniform(0.0, 2.0), bg_db=src.uniform(-35.0, -20.0))
    rng = np.random.default_rng([seed, 7, c, source, n])
    n_samples = int(rng.uniform(*seconds) * sr)
    y = _normalize(_GENERATORS[kind](n_samples, sr, p, rng))
    t = np.arange(n_samples) / sr
    tone_hz = 150.0 * 1.25 ** (c // len(DEMO_CLASSES)) * (1 + 0.1 * (c % len(DEMO_CLASSES)))
    y = y + 0.15 * np.sin(2 * np.pi * tone_hz * t) * np.abs(y).mean() * 4  # a faint class timbre
    level = np.sqrt(np.mean(y**2)) * 10 ** (p["bg_db"] / 20)
    left = y + _coloured_noise(n_samples, sr, p["bg_alpha"], rng) * level
    right = 0.9 * y + _coloured_noise(n_samples, sr, p["bg_alpha"], rng) * level
    out = np.stack([_fade(left, sr), _fade(right, sr)], axis=1)
    out = out / (np.max(np.abs(out)) + 1e-12) * 10 ** (rng.uniform(-14.0, -3.0) / 20)
    return out.astype(np.float32)


def make_food_dataset(
    root: str | os.PathLike,
    *,
    n_classes: int = 20,
    n_per_class: int = 40,
    sr: int = 44100,
    seconds: tuple[float, float] = (2.0, 7.0),
    n_sources: int = 8,
    seed: int = 0,
) -> Dataset:
    """Write an eating-sound-like dataset shaped like the Eating Sound Collection and return it.

    ``root/<food>/<food>_<source>_<n>.wav``: stereo 16-bit WAV at ``sr``, clips
    of ``seconds`` (uniform), ``n_classes`` of :data:`FOOD_CLASSES`.  Each class
    has its own recipe (one of the demo's four sound kinds with class-drawn
    settings, plus a faint class tone); each recording (source) its own
    background noise.  Meant for timing and end-to-end runs at realistic
    shape: separable, but not a benchmark of accuracy.

    Parameters
    ----------
    root : path
    n_classes : int
        1 to 20.
    n_per_class : int
        Clip ``i`` belongs to source ``i % n_sources``.
    sr : int
        Sample rate (>= 4000).
    seconds : (float, float)
        Shortest and longest clip.
    n_sources : int
    seed : int
        Same seed, same files.

    Returns
    -------
    Dataset
        Items sorted by path, labelled, with ``group`` = ``<food>_<source>``.
    """
    for name, value, low in (("n_classes", n_classes, 1), ("n_per_class", n_per_class, 1),
                             ("n_sources", n_sources, 1), ("seed", seed, 0), ("sr", sr, 4000)):
        check_int(name, value, low=low)
    if n_classes > len(FOOD_CLASSES):
        raise ParameterError(f"n_classes={n_classes} must be at most {len(FOOD_CLASSES)}")
    lo, hi = (float(v) for v in seconds)
    if not 0.1 <= lo <= hi:
        raise ParameterError(f"seconds={seconds!r} must be (shortest, longest) with 0.1 <= shortest <= longest")
    root = Path(root)
    items = []
    for c, label in enumerate(FOOD_CLASSES[:n_classes]):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            source, n = i % n_sources, i // n_sources
            y = food_clip(c, source=source, n=n, sr=int(sr), seconds=(lo, hi), seed=seed)
            path = folder / f"{label}_{source:02d}_{n:03d}.wav"
            sf.write(path, y, int(sr), subtype="PCM_16")
            items.append(Item(str(path), label, f"{label}_{source:02d}"))
    items.sort(key=lambda it: it.path)
    return Dataset(tuple(items), FOOD_CLASSES[:n_classes], str(root))
