"""``soundclass export MODEL -o model.onnx``: one ONNX graph from waveform to probabilities."""

from __future__ import annotations

import argparse

from soundclass.cli._args import add_model_argument


def _opset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"opset={text!r} must be an integer") from None
    if value < 13:
        raise argparse.ArgumentTypeError(f"opset={value} must be >= 13")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained model (feature frontend + model + softmax) to ONNX",
        description=(
            "Write one ONNX graph: mono float32 waveform (batch, samples) at the model's sample "
            "rate -> class probabilities (batch, n_classes). Every registered model exports, "
            "with its feature front end inside the graph: the CNNs, seed-*, logmel-logreg, "
            "mfcc-svm, ensembles, aisfx-probe (the aiSFX front end and the pretrained network "
            "too) and aisfx. The graph scores what predict scores: a model with a training window "
            "averages the same windows, short clips are padded as predict pads them. A model torch cannot "
            "trace fails with an error naming it and why. Class names and the sample rate are "
            "stored in the metadata. By default onnxruntime is compared with torch on probe "
            "signals before the file is kept."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--opset", type=_opset, default=17, metavar="N", help="ONNX opset (default: 17)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the onnxruntime-vs-torch comparison")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soundclass.inference.export import export_onnx, read_metadata

    out = export_onnx(args.model, args.output, opset=args.opset, check=args.check)
    meta = read_metadata(out)
    size = out.stat().st_size / 1e6
    checked = "checked against torch" if args.check else "not checked"
    print(f"wrote {out} ({size:.1f} MB, opset {args.opset}, {checked})")
    print(f"input: waveform (batch, samples) float32 at {meta['sr']} Hz; "
          f"output: probabilities (batch, {len(meta['classes'])})")
    print(f"classes: {', '.join(meta['classes'])}")
    if meta["window_frames"]:
        print(f"windows: the logits of windows of {meta['window_frames']} frames are averaged, as predict does")
    return 0
