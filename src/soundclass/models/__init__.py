"""Models: a registry of builders plus the seed baselines and the PANNs CNN family.

Importing this package registers every model, so ``create_model('cnn', ...)``
works after ``import soundclass.models``.
"""

from soundclass.models import panns, seed  # noqa: F401  (registers the models)
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
    "ModelSpec",
    "PretrainedReport",
    "create_model",
    "load_pretrained",
    "list_models",
    "model_spec",
    "register",
    "register_model",
]
