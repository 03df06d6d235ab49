"""Unusual audio files generated in code (no binary blobs), for the reliability tests.

Every builder returns the whole file's bytes.  Compressed formats are encoded
with soundfile (libsndfile) or PyAV (FFmpeg) at test time.
"""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import soundfile as sf


def tone(sr: int, seconds: float, *, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A 440 Hz tone plus a little noise, float32 (n,) or (n, channels), in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.4 * np.sin(2 * np.pi * 440.0 * t) + 0.02 * rng.standard_normal(t.size)
    y = y.astype(np.float32)
    if channels == 1:
        return y
    return np.stack([y * (1.0 - 0.3 * c) for c in range(channels)], axis=1)


def sf_bytes(y: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    """``y`` (n,) or (n, channels) written by libsndfile in ``fmt``/``subtype``."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def av_bytes(y: np.ndarray, sr: int, fmt: str, codec: str, *, bit_rate: int | None = None,
             video: bool = False) -> bytes:
    """``y`` (n,) or (n, channels) encoded by FFmpeg with ``codec`` into container ``fmt``.

    ``video=True`` adds a short video track first (an MP4 "video with sound").
    """
    x = y[None, :] if y.ndim == 1 else np.ascontiguousarray(y.T)
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[x.shape[0]]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        if video:
            vs = out.add_stream("mpeg4", rate=10)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        stream = out.add_stream(codec, rate=sr)
        stream.layout = layout
        if bit_rate:
            stream.bit_rate = bit_rate
        fmts = [f.name for f in (stream.codec_context.codec.audio_formats or [])]
        if "fltp" in fmts:
            frame = av.AudioFrame.from_ndarray(x.astype(np.float32), format="fltp", layout=layout)
        else:  # s16 (packed) encoders: libopus, AMR
            pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
        frame.sample_rate, frame.pts = sr, 0
        if video:
            img = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for i in range(int(10 * y.shape[0] / sr)):
                img.pts = i
                for packet in vs.encode(img):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def ffmpeg_reference(data: bytes) -> tuple[np.ndarray, int]:
    """FFmpeg's own decode of the first audio track to 16-bit PCM, as librosa's
    audioread+ffmpeg path gets it: float32 (channels, n) = int16 / 32768, and sr.
    (Interleaved s16, so PyAV reads a single plane whatever the channel count.)"""
    chunks, sr, channels = [], None, None
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = None
        for frame in container.decode(stream):
            if resampler is None:
                sr, channels = frame.sample_rate, len(frame.layout.channels)
                resampler = av.AudioResampler(format="s16", layout=frame.layout, rate=sr)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, channels))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1, channels))
    return np.concatenate(chunks).T.astype(np.float32) / 32768.0, sr


def riff(chunks: list[tuple[bytes, bytes]], *, form: bytes = b"WAVE", riff_size: int | None = None) -> bytes:
    """A RIFF file from ``(id, payload)`` chunks (payloads padded to even length)."""
    body = b"".join(cid + struct.pack("<I", len(p)) + p + (b"\0" if len(p) % 2 else b"") for cid, p in chunks)
    size = 4 + len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size) + form + body


def pcm_wav(y: np.ndarray, sr: int, *, header_sr: int | None = None, channels_field: int | None = None,
            data_size: int | None = None, float32: bool = False) -> bytes:
    """A PCM_16 (or FLOAT) WAV written by hand, with optional lies in its header."""
    x = y.reshape(len(y), -1)
    ch = x.shape[1]
    if float32:
        tag, width, payload = 3, 4, x.astype("<f4").tobytes()
    else:
        tag, width = 1, 2
        payload = np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    rate = sr if header_sr is None else header_sr
    nch = ch if channels_field is None else channels_field
    fmt = struct.pack("<HHIIHH", tag, nch, rate, rate * nch * width, nch * width, 8 * width)
    wav = riff([(b"fmt ", fmt), (b"data", payload)])
    if data_size is not None:  # patch the data chunk's size field
        pos = wav.index(b"data") + 4
        wav = wav[:pos] + struct.pack("<I", data_size) + wav[pos + 4 :]
    return wav


def mp3_in_wav(mp3: bytes, sr: int, channels: int, fact_frames: int) -> bytes:
    """MPEG Layer III data in a WAV (``WAVE_FORMAT_MPEGLAYER3``, tag 0x0055) with a
    ``fact`` chunk claiming ``fact_frames`` (encoders count the decoder's padding)."""
    fmt = struct.pack("<HHIIHHH", 0x0055, channels, sr, 4000, 1, 0, 12)
    fmt += struct.pack("<HIHHH", 1, 2, 417, 1, 1393)  # MPEGLAYER3WAVEFORMAT extension
    return riff([(b"fmt ", fmt), (b"fact", struct.pack("<I", fact_frames)), (b"data", mp3)])


def mp3_without_xing(y: np.ndarray, sr: int) -> bytes:
    """MP3 from LAME through FFmpeg without a Xing/Info header (length unknown in advance)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3", options={"write_xing": "0"}) as out:
        stream = out.add_stream("libmp3lame", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sr, 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decoded_length(data: bytes) -> int:
    """Frames libsndfile decodes from ``data`` (read to the end)."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        return f.read(dtype="float32", frames=f.frames, always_2d=True).shape[0]
