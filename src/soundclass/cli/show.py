"""``soundclass show``: the 4-panel picture of one audio file, or (``--timeline RUN``) a long
recording's mel spectrogram with the model's class probabilities over time."""

from __future__ import annotations

import argparse
from pathlib import Path

from soundclass.cli._args import non_negative_float, positive_float, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "show",
        help="draw waveform, spectrogram, mel spectrogram and MFCC of one audio file (PNG)",
        description=(
            "Draw one audio file as a 4-panel PNG: waveform (every channel), log-frequency "
            "power spectrogram in dB with a colour bar, mel spectrogram on a mel-spaced axis "
            "labelled in Hz, and MFCCs. The title gives the file name, native sample rate, "
            "duration, channels and encoding. Spectrograms are in dB relative to the clip's "
            "maximum; silent clips are marked in the title. With --timeline RUN: the mel "
            "spectrogram with RUN's class probabilities over time under it (the windows of "
            "'soundclass predict --windows')."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="audio file (any format soundfile reads)")
    parser.add_argument("-o", "--output", default=None, metavar="PNG",
                        help="output picture (default: <file stem>.png in the current folder)")
    parser.add_argument("--sr", type=positive_float, default=None, metavar="HZ",
                        help="resample to this rate before analysis (default: the file's rate)")
    parser.add_argument("--n-fft", type=positive_int, default=2048, metavar="N",
                        help="FFT size in samples (default: 2048)")
    parser.add_argument("--hop-length", type=positive_int, default=512, metavar="N",
                        help="samples between frames (default: 512)")
    parser.add_argument("--n-mels", type=positive_int, default=128, metavar="N",
                        help="mel bands (default: 128)")
    parser.add_argument("--n-mfcc", type=positive_int, default=20, metavar="N",
                        help="MFCCs drawn (default: 20; at most --n-mels)")
    parser.add_argument("--offset", type=non_negative_float, default=0.0, metavar="SECONDS",
                        help="start this many seconds into the file (default: 0)")
    parser.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                        help="show at most this many seconds (default: to the end)")
    parser.add_argument("--timeline", default=None, metavar="RUN",
                        help="draw the class probabilities over time of this model (checkpoint or "
                             "training run folder) under the mel spectrogram")
    parser.add_argument("--windows", default="auto", metavar="SECONDS[:HOP]",
                        help="with --timeline: window length and hop (default: the model's training "
                             "window, no overlap)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soundclass.apps.show import show_file

    out = args.output or f"{Path(args.file).stem}{'.timeline' if args.timeline else ''}.png"
    if args.timeline:
        from soundclass.apps.show import show_timeline
        from soundclass.inference.windows import parse_windows

        window, hop = parse_windows(args.windows)
        written = show_timeline(args.timeline, args.file, out, window_seconds=window, hop_seconds=hop,
                                n_fft=args.n_fft, hop_length=args.hop_length, n_mels=args.n_mels,
                                **({"max_seconds": args.duration} if args.duration else {}))
        print(f"wrote {written}")
        return 0
    written = show_file(args.file, out, sr=args.sr, n_fft=args.n_fft, hop_length=args.hop_length,
                        n_mels=args.n_mels, n_mfcc=args.n_mfcc, offset=args.offset,
                        duration=args.duration)
    print(f"wrote {written}")
    return 0
