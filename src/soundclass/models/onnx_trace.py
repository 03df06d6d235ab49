"""The one torch -> ONNX trace.

It makes the waveform graph of ``inference.export``, the logits graph of
``inference.backends`` and the frozen backbone graphs of ``models.backbone_runtime``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from soundclass.errors import ExportError

__all__ = ["trace_to_onnx", "short_reason"]

_REASON_CHARS = 300


def short_reason(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters.

    The exporter's messages can carry a dump of the whole traced graph
    (thousands of lines); the first line says what is unsupported.
    """
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > _REASON_CHARS:
        first = first[: _REASON_CHARS - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@contextlib.contextmanager
def _held_output() -> Iterator[list[bool]]:
    """Hold what is written to file descriptors 1 and 2 inside the block; replay it unless the block fails.

    Torch's TorchScript exporter always logs a dump of the whole traced graph
    (to C++ ``std::cout``) when it fails: its ``setup_onnx_logging`` tests a
    function object for truth, so logging is always on.  The dump is dropped,
    the :class:`ExportError` says what failed.  Set ``state[0] = True`` on
    success to replay the held text.
    """
    state = [False]
    with contextlib.ExitStack() as stack:
        held = []
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            try:
                saved = os.dup(fd)
            except OSError:  # no such descriptor (a detached process): nothing to hold
                continue
            tmp = stack.enter_context(tempfile.TemporaryFile())
            stream.flush()
            os.dup2(tmp.fileno(), fd)
            held.append((fd, stream, saved, tmp))
        try:
            yield state
        finally:
            for fd, stream, saved, tmp in held:
                stream.flush()
                os.dup2(saved, fd)
                os.close(saved)
                if state[0]:
                    tmp.seek(0)
                    text = tmp.read()
                    if text:
                        os.write(fd, text)


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
    """The one torch -> ONNX trace of soundclass (waveform, logits and backbone graphs).

    TorchScript-based exporter (``dynamo=False``), constant folding, a dynamic
    ``batch`` axis on the output and ``input_axes`` on the input; the
    exporter's tracer chatter is silenced, and so is its graph dump on failure.

    Returns
    -------
    bytes
        The serialised ``ModelProto``.

    Raises
    ------
    ExportError
        ``what: ONNX export failed (...)`` when torch cannot export the module.
    """
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), _held_output() as done:
            warnings.simplefilter("ignore")  # tracer/deprecation chatter of the exporter
            torch.onnx.export(
                module, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[input_name], output_names=[output_name],
                dynamic_axes={input_name: dict(input_axes), output_name: {0: "batch"}},
                do_constant_folding=True,
            )
            done[0] = True
    except Exception as exc:  # the exporter raises many types for unsupported ops
        raise ExportError(f"{what}: ONNX export failed ({short_reason(exc)})") from exc
    return buffer.getvalue()
