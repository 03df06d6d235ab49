"""``soundclass serve MODEL``: the local web demo (upload or record, see the top-5 classes)."""

from __future__ import annotations

import argparse

from soundclass.apps.serve import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_QUEUE,
    DEFAULT_WORKERS,
)
from soundclass.cli._args import add_model_argument

_MB = 2**20


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="local web page: upload or record a clip, see waveform, mel and top-5 classes",
        description=(
            "Serve a web page where a clip can be uploaded or recorded from the microphone; "
            "it shows the waveform, the mel spectrogram and the model's five most probable "
            "classes. Audio is analysed in memory and never stored. Clips longer than "
            "--max-seconds are analysed on their first --max-seconds."
        ),
    )
    add_model_argument(parser)
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to bind (default: %(default)s, this machine only; the page has no authentication)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port, 0 for any free one (default: %(default)s)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / _MB,
        help="largest upload accepted, in MB (default: %(default)g)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
        help="seconds of each clip analysed at most (default: %(default)g)",
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS,
        help="threads analysing uploads in parallel (default: %(default)s)",
    )
    parser.add_argument(
        "--queue", type=int, default=DEFAULT_QUEUE,
        help="uploads that may wait for a worker; beyond them the answer is 503 with Retry-After "
             "(default: %(default)s; memory for uploads is at most (workers + queue) x --max-upload-mb)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soundclass.apps.serve import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * _MB),
        max_seconds=args.max_seconds,
        quiet=args.quiet,
        workers=args.workers,
        queue=args.queue,
    )
    return 0
