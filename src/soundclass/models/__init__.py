"""Models: a registry of builders plus the seed baselines and the PANNs CNN family.

Importing this package registers every model, so ``create_model('cnn', ...)``
works after ``import soundclass.models``.
"""

from soundclass.models import seed  # noqa: F401  (registers seed-cnn, seed-lstm)
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
    "create_model",
    "list_models",
    "model_spec",
    "register",
    "register_model",
]
