"""Frozen configuration dataclasses.

A config is resolved once (defaults, then a JSON file, then CLI overrides),
validated in ``__post_init__`` and written into every run folder and
checkpoint, so that a checkpoint alone says how its inputs were computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from soundclass.errors import ParameterError, check_positive_int

__all__ = ["FeatureConfig", "config_from_dict", "config_to_dict"]

T = TypeVar("T")

FEATURE_KINDS = ("melspectrogram", "logmel", "mfcc", "aisfx-logmel", "aisfx", "whisper-logmel",
                 "whisper", "fusion")
#: Kinds whose recipe is fixed by a pretrained network (soundclass.dsp.aisfx):
#: 44.1 kHz, n_fft 2048, hop 1024, 96 HTK mels 0-22050 Hz, no deltas, no pooling.
#: ``aisfx-logmel`` is the network's log-mel input (96, t); ``aisfx`` its block
#: embeddings (512, n_blocks).
AISFX_KINDS = ("aisfx-logmel", "aisfx")
_AISFX_FIXED = {"sr": 44100, "n_fft": 2048, "hop_length": 1024, "n_mels": 96, "fmin": 0.0,
                "htk": True, "deltas": 0, "pooling": "none"}
#: Kinds of the Whisper-base encoder (soundclass.models.whisper): 16 kHz, n_fft 400,
#: hop 160, 80 Slaney mels, reflect padding.  ``whisper-logmel`` is its log-mel
#: input (80, t); ``whisper`` its clip embedding (3584, 1).
WHISPER_KINDS = ("whisper-logmel", "whisper")
_WHISPER_FIXED = {"sr": 16000, "n_fft": 400, "hop_length": 160, "n_mels": 80, "fmin": 0.0,
                  "htk": False, "norm": "slaney", "pad_mode": "reflect", "deltas": 0,
                  "pooling": "none"}
#: ``fusion`` (soundclass.models.fusion): the aiSFX clip vector (1024) and the Whisper
#: clip embedding (3584) of one 44.1 kHz waveform, (4608, 1); it records the aiSFX recipe.
FUSION_KINDS = ("fusion",)
#: Kinds computed by a pretrained network's own front end (not FeatureFrontend).
PRETRAINED_KINDS = AISFX_KINDS + WHISPER_KINDS + FUSION_KINDS
_N_FEATURES = {"aisfx": 512, "whisper": 3584, "fusion": 4608}
POOLINGS = ("none", "mean")


@dataclass(frozen=True)
class FeatureConfig:
    """What feature to compute from a clip, with librosa's names and defaults.

    Parameters
    ----------
    kind : {'melspectrogram', 'logmel', 'mfcc', 'aisfx-logmel', 'aisfx', 'whisper-logmel', 'whisper', 'fusion'}
        ``melspectrogram``: mel power spectrogram (``librosa.feature.melspectrogram``);
        ``logmel``: ``power_to_db`` of it (``ref=1.0, amin=1e-10, top_db``);
        ``mfcc``: ``librosa.feature.mfcc`` (DCT-II, ortho) of the log-mel;
        the others are the fixed recipes of the pretrained networks
        (:data:`PRETRAINED_KINDS`: their front ends and embeddings).
    sr : int
        Target sample rate in Hz; every clip is resampled to it (soxr HQ).
    n_fft, hop_length, win_length, window, center, pad_mode, power
        STFT settings, as in ``librosa.stft`` (``pad_mode='constant'``, the
        librosa >= 0.10 default).
    n_mels, fmin, fmax, htk, norm
        Mel filterbank, as in ``librosa.filters.mel`` (``norm`` is ``'slaney'`` or ``None``).
    top_db : float or None
        Dynamic range kept by ``power_to_db``; ``None`` keeps everything.
    n_mfcc : int
        Number of MFCCs when ``kind='mfcc'``.
    deltas : {0, 1, 2}
        Append first (and second) order deltas (``librosa.feature.delta``,
        ``width=9``) along the feature axis.
    pooling : {'none', 'mean'}
        ``'none'`` keeps time: shape ``(n_features, t)``; ``'mean'`` averages
        over time: shape ``(n_features,)`` (the seed CNN's input).
    max_duration : float or None
        Seconds read from each clip at most (``None``: the whole clip).
    """

    kind: str = "logmel"
    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | None = "slaney"
    top_db: float | None = 80.0
    n_mfcc: int = 20
    deltas: int = 0
    pooling: str = "none"
    max_duration: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ParameterError(f"kind={self.kind!r} must be one of {FEATURE_KINDS}")
        for name in ("sr", "n_fft", "hop_length", "n_mels", "n_mfcc", "win_length"):
            # numpy integers are accepted and stored as int (the key is JSON)
            value = check_positive_int(name, getattr(self, name), allow_none=name == "win_length")
            object.__setattr__(self, name, value)
        if self.win_length is not None:
            if self.win_length > self.n_fft:
                raise ParameterError(
                    f"win_length={self.win_length} must be <= n_fft={self.n_fft}"
                )
        if self.power <= 0:
            raise ParameterError(f"power={self.power!r} must be positive")
        nyquist = self.sr / 2.0
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0.0 <= self.fmin < fmax:
            raise ParameterError(f"fmin={self.fmin!r} must be >= 0 and < fmax={fmax!r}")
        if fmax > nyquist + 1e-9:
            raise ParameterError(f"fmax={self.fmax!r} must be <= sr/2={nyquist!r}")
        if self.norm not in (None, "slaney"):
            raise ParameterError(f"norm={self.norm!r} must be 'slaney' or None")
        if self.top_db is not None and self.top_db < 0:
            raise ParameterError(f"top_db={self.top_db!r} must be non-negative or None")
        if self.deltas not in (0, 1, 2):
            raise ParameterError(f"deltas={self.deltas!r} must be 0, 1 or 2")
        if self.pooling not in POOLINGS:
            raise ParameterError(f"pooling={self.pooling!r} must be one of {POOLINGS}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ParameterError(f"n_mfcc={self.n_mfcc} must be <= n_mels={self.n_mels}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ParameterError(f"max_duration={self.max_duration!r} must be positive")
        if self.kind in PRETRAINED_KINDS:
            fixed = _WHISPER_FIXED if self.kind in WHISPER_KINDS else _AISFX_FIXED
            wrong = [f"{k}={getattr(self, k)!r} (must be {v!r})" for k, v in fixed.items()
                     if getattr(self, k) != v]
            if self.fmax not in (None, fixed["sr"] / 2):
                wrong.append(f"fmax={self.fmax!r} (must be {fixed['sr'] / 2:g} or None)")
            if wrong:
                raise ParameterError(f"kind={self.kind!r} has a fixed recipe: " + ", ".join(wrong))

    @property
    def n_features(self) -> int:
        """Rows of the feature matrix: ``n_mels`` or ``n_mfcc``, times ``1 + deltas``; 512 for
        ``aisfx``, 3584 for ``whisper``, 4608 for ``fusion``."""
        if self.kind in _N_FEATURES:
            return _N_FEATURES[self.kind]
        base = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        return base * (1 + self.deltas)

    @property
    def frame_rate(self) -> float:
        """Frames per second of audio."""
        return self.sr / self.hop_length

    def key(self) -> str:
        """A short stable hash of every field, for cache keys."""
        blob = json.dumps(config_to_dict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> FeatureConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, rejecting unknown keys with a clear error."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ParameterError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)
