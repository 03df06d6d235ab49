"""The two Tianchi "Eating Sound Collection" baselines, faithfully in torch.

``seed-cnn`` (baseline 1, Keras)
    Input: the time-mean of ``librosa.feature.melspectrogram(y, sr=22050)``
    (power mel, 128 bands, no log), a vector of 128 values, reshaped row-major
    to a 16 x 8 single-channel image as Keras ``reshape(-1, 16, 8, 1)`` does::

        Conv2D(64, 3, 'same', tanh) -> MaxPool(2) -> Conv2D(128, 3, 'same', tanh)
        -> MaxPool(2) -> Dropout(0.1) -> Flatten -> Dense(1024, tanh) -> Dense(n_classes)

    Keras initialisation (glorot-uniform weights, zero biases).  Training as
    the baseline: Adam, lr 1e-3, batch 15, 20 epochs, constant LR, no early
    stopping, no class balancing, no augmentation and no input standardization (the raw power values span several decades; that is
    part of what the baseline is).  The softmax lives in the loss.  Flatten
    order is torch's (C, H, W) rather than Keras' (H, W, C): the same function
    class, only Keras weights could not be copied over unpermuted.

``seed-lstm`` (baseline 2)
    Input: 20 MFCCs plus deltas and delta-deltas (60 rows) at 22050 Hz.
    An LSTM(60 -> 128) runs over time; a per-frame head Dense(30, relu) ->
    Dense(n_classes) scores every frame, and the clip logits are the mean of
    the frame logits over time.  Scoring frames and averaging (rather than
    taking the last hidden state) makes the model indifferent to clip length
    and to padding position, which is how a frame-wise Keras
    ``TimeDistributed`` head is pooled into one clip decision.  Keras LSTM
    initialisation (glorot-uniform input kernel, orthogonal recurrent kernel,
    zero biases with forget-gate bias 1).  Its spec asks the trainer to
    standardize the 60 rows (MFCC c0 is in the hundreds and would saturate
    the gates); this is our choice, the baseline's preprocessing is not known.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError
from soundclass.models.registry import ModelSpec, register_model

__all__ = ["SeedCNN", "SeedLSTM", "SEED_CNN_SPEC", "SEED_LSTM_SPEC"]


def _keras_init(module: nn.Module) -> None:
    """glorot-uniform weights and zero biases, as Keras Conv2D/Dense."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class SeedCNN(nn.Module):
    """Baseline-1 CNN on a 128-value time-averaged mel vector.

    Parameters
    ----------
    n_classes : int
        Number of logits.
    n_features : int
        Length of the input vector; must equal ``height * width``.
    height, width : int
        The image the vector is reshaped to (row-major), 16 x 8 in the baseline.
    dropout : float
        Dropout after the second pooling.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        n_features: int = 128,
        height: int = 16,
        width: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        if n_features != height * width:
            raise ParameterError(
                f"n_features={n_features} must equal height*width={height}*{width}"
            )
        if height % 4 or width % 4:
            raise ParameterError(f"height={height} and width={width} must be multiples of 4")
        self.height, self.width = height, width
        self.conv1 = nn.Conv2d(1, 64, 3, padding="same")
        self.conv2 = nn.Conv2d(64, 128, 3, padding="same")
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(128 * (height // 4) * (width // 4), 1024)
        self.out = nn.Linear(1024, n_classes)
        _keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, n_features)] -> logits [shape=(B, n_classes)]."""
        if x.ndim != 2:
            raise ParameterError(f"seed-cnn expects (B, n_features), got shape {tuple(x.shape)}")
        x = x.reshape(-1, 1, self.height, self.width)  # (B, 1, 16, 8), row-major as Keras
        x = self.pool(torch.tanh(self.conv1(x)))  # (B, 64, 8, 4)
        x = self.pool(torch.tanh(self.conv2(x)))  # (B, 128, 4, 2)
        x = self.dropout(x).flatten(1)  # (B, 1024)
        x = torch.tanh(self.dense(x))  # (B, 1024)
        return self.out(x)  # (B, n_classes)


class SeedLSTM(nn.Module):
    """Baseline-2 LSTM over MFCC+delta frames, frame logits averaged over time.

    Parameters
    ----------
    n_classes : int
        Number of logits.
    n_features : int
        Rows of the input (60 = 20 MFCC x 3).
    hidden_size : int
        LSTM width.
    head_size : int
        Width of the per-frame ReLU layer.
    """

    def __init__(
        self, *, n_classes: int, n_features: int = 60, hidden_size: int = 128, head_size: int = 30
    ):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, batch_first=True)
        self.fc1 = nn.Linear(hidden_size, head_size)
        self.fc2 = nn.Linear(head_size, n_classes)
        _keras_init(self)
        h = hidden_size
        # Keras kernel (n_features, 4h) glorot == torch (4h, n_features) xavier (same fans);
        # Keras recurrent (h, 4h) orthogonal rows == torch (4h, h) orthogonal columns.
        nn.init.xavier_uniform_(self.lstm.weight_ih_l0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)
        with torch.no_grad():
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_ih_l0[h : 2 * h] = 1.0  # unit forget bias (gate order i, f, g, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, n_features, T)] -> logits [shape=(B, n_classes)]."""
        if x.ndim != 3:
            raise ParameterError(f"seed-lstm expects (B, n_features, T), got shape {tuple(x.shape)}")
        h, _ = self.lstm(x.transpose(1, 2))  # (B, T, hidden)
        frames = self.fc2(F.relu(self.fc1(h)))  # (B, T, n_classes)
        return frames.mean(dim=1)  # (B, n_classes)


#: Training of both Tianchi baselines: Keras ``model.fit(epochs=20, batch_size=15)``
#: with Adam at its default learning rate, no schedule, no augmentation.
SEED_TRAIN = {
    "epochs": 20,
    "batch_size": 15,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "scheduler": "none",
    "warmup": 0.0,
    "patience": 0,
    "balance": "none",
    "mixup_alpha": 0.0,
    "spec_augment": False,
    "label_smoothing": 0.0,
}

SEED_CNN_SPEC = ModelSpec(
    feature=FeatureConfig(
        kind="melspectrogram", sr=22050, n_fft=2048, hop_length=512, n_mels=128, pooling="mean"
    ),
    input="vector",
    clip_seconds=None,
    standardize=False,
    train=SEED_TRAIN,
    description="Tianchi baseline 1: Keras CNN on the time-mean mel vector (128 -> 16x8 image)",
)

SEED_LSTM_SPEC = ModelSpec(
    feature=FeatureConfig(kind="mfcc", sr=22050, n_fft=2048, hop_length=512, n_mfcc=20, deltas=2),
    input="sequence",
    clip_seconds=None,
    standardize=True,
    train=SEED_TRAIN,
    description="Tianchi baseline 2: LSTM over MFCC+deltas, frame scores averaged over time",
)


@register_model("seed-cnn", spec=SEED_CNN_SPEC)
def seed_cnn(*, n_classes: int, n_features: int = 128, **kwargs) -> SeedCNN:
    return SeedCNN(n_classes=n_classes, n_features=n_features, **kwargs)


@register_model("seed-lstm", spec=SEED_LSTM_SPEC)
def seed_lstm(*, n_classes: int, n_features: int = 60, **kwargs) -> SeedLSTM:
    return SeedLSTM(n_classes=n_classes, n_features=n_features, **kwargs)
