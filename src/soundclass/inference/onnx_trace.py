"""The one torch -> ONNX trace: the waveform graph of ``export`` and the logits graph of ``backends``."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from soundclass.errors import SoundclassError

__all__ = ["trace_to_onnx"]


def trace_to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    *,
    input_name: str,
    output_name: str,
    input_axes: Mapping[int, str],
    opset: int,
    what: str,
) -> bytes:
    """The one torch -> ONNX trace of soundclass (waveform graphs here, logits graphs in ``backends``).

    TorchScript-based exporter (``dynamo=False``), constant folding, a dynamic
    ``batch`` axis on the output and ``input_axes`` on the input; the
    exporter's tracer chatter is silenced.

    Returns
    -------
    bytes
        The serialised ``ModelProto``.

    Raises
    ------
    SoundclassError
        ``what: ONNX export failed (...)`` when torch cannot export the module.
    """
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer/deprecation chatter of the exporter
            torch.onnx.export(
                module, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[input_name], output_names=[output_name],
                dynamic_axes={input_name: dict(input_axes), output_name: {0: "batch"}},
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many types for unsupported ops
        raise SoundclassError(f"{what}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
    return buffer.getvalue()
