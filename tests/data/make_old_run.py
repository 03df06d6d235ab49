"""Write ``tests/data/old_run/``: a tiny run folder in the on-disk format of before the checkpoint stage.

``checkpoint/`` (``model.json`` + ``model.safetensors``) and ``last/`` (the
checkpoint plus ``training_state.json`` + ``training_state.safetensors``) of a
small ``cnn`` after one Adam step, as ``soundclass train`` leaves them.  The
committed files were written by this script at commit 120e1a8, when the format
lived in ``soundclass.checkpoint.format`` and ``soundclass.checkpoint.state``
(the imports below are their homes since ``soundclass.checkpoint``; the files
are the same).  ``tests/test_checkpoint_compat.py`` checks that they still
load, predict and resume.  Run ``python tests/data/make_old_run.py`` only to
regenerate them on purpose.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from soundclass.checkpoint.format import save_checkpoint
from soundclass.checkpoint.state import save_training_state
from soundclass.models import create_model, model_spec

OUT = Path(__file__).resolve().parent / "old_run"
CLASSES = ("hum", "hiss")
KWARGS = {"channels": [4, 4, 8, 8]}
CLIP_FRAMES = 40


def main() -> None:
    spec = model_spec("cnn")
    torch.manual_seed(1)
    model = create_model("cnn", n_classes=2, n_features=spec.feature.n_features, **KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(3, spec.feature.n_features, CLIP_FRAMES, generator=torch.Generator().manual_seed(2))
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0])).backward()
    opt.step()
    if OUT.exists():
        shutil.rmtree(OUT)
    mean = np.linspace(-40.0, -20.0, spec.feature.n_features, dtype=np.float32)
    std = np.linspace(5.0, 10.0, spec.feature.n_features, dtype=np.float32)
    for folder in ("checkpoint", "last"):
        save_checkpoint(OUT / folder, model, model_name="cnn", model_kwargs=KWARGS, feature=spec.feature,
                        classes=CLASSES, train_config={"model": "cnn", "epochs": 2, "seed": 0},
                        norm_mean=mean, norm_std=std, clip_frames=CLIP_FRAMES, metrics={"accuracy": 0.5},
                        calibration={"temperature": 1.5, "unknown_threshold": 0.6, "target_precision": 0.9,
                                     "precision_thresholds": {"0.90": 0.6}})
    save_training_state(OUT / "last", epoch=0, model=model, optimizer=opt,
                        extra={"history": [{"epoch": 0, "loss": 0.7}], "best": (0, 0.5)})


if __name__ == "__main__":
    main()
