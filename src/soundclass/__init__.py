"""soundclass: clip-level audio classification.

Robust audio loading, librosa-exact fast features, pictures, dataset scans,
faithful seed baselines and a strong default model, honest evaluation and
submission CSVs.
"""

from soundclass.errors import (
    AudioDecodeError,
    CheckpointError,
    DatasetError,
    ParameterError,
    SoundclassError,
)

__version__ = "0.1.0"

__all__ = [
    "AudioDecodeError",
    "CheckpointError",
    "DatasetError",
    "ParameterError",
    "SoundclassError",
    "__version__",
]
