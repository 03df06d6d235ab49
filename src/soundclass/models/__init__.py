"""Models: a registry of builders: the seed baselines, the PANNs CNN family, the classical
small-data models, the aiSFX and Whisper-base pretrained networks (and both fused) and the
k-fold ensemble.

Importing this package registers every model, so ``create_model('cnn', ...)``
works after ``import soundclass.models``.
"""

from soundclass.models import (  # noqa: F401  (registers the models)
    aisfx,
    classical,
    ensemble,
    fusion,
    panns,
    seed,
    whisper,
)
from soundclass.models.ensemble import Ensemble
from soundclass.models.pretrained import PretrainedReport, load_pretrained
from soundclass.models.registry import (
    ModelSpec,
    create_model,
    list_models,
    model_spec,
    register,
    register_model,
)

__all__ = [
    "Ensemble",
    "ModelSpec",
    "PretrainedReport",
    "create_model",
    "load_pretrained",
    "list_models",
    "model_spec",
    "register",
    "register_model",
]
