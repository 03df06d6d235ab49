"""The loop's pieces: early stopping, the loss, the augmentation chain, one epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from soundclass.errors import ParameterError
from soundclass.training import BatchAugment, EarlyStopping, loop


def test_early_stopping():
    es = EarlyStopping(2, mode="max")
    assert es.step(0.5, 0) and not es.step(0.5, 1) and not es.should_stop
    assert not es.step(0.4, 2) and es.should_stop and es.best_epoch == 0
    es2 = EarlyStopping(2, mode="max")
    es2.load_state_dict(es.state_dict())
    assert es2.should_stop and es2.best == 0.5
    lo = EarlyStopping(0, mode="min")
    assert lo.step(1.0, 0) and lo.step(0.5, 1) and not lo.step(float("nan"), 2)
    assert not lo.should_stop  # patience 0 never stops
    assert EarlyStopping(np.int64(3)).patience == 3 and type(EarlyStopping(np.int64(3)).patience) is int


@pytest.mark.parametrize("patience", [-1, 1.0, 2.5, True, "3", None])
def test_early_stopping_refuses_non_integer_patience(patience):
    with pytest.raises(ParameterError, match=rf"^patience={patience!r} must be a non-negative integer$"):
        EarlyStopping(patience)



def test_class_weighted_loss_uses_weights():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([1.0, 3.0])
    hard = loop._loss(logits, y, weight=w, label_smoothing=0.0)
    soft = loop._loss(logits, nn.functional.one_hot(y, 2).float(), weight=w, label_smoothing=0.0)
    per = nn.functional.cross_entropy(logits, y, reduction="none")
    ref = (per * w[y]).sum() / w[y].sum()
    assert torch.allclose(hard, ref) and torch.allclose(soft, ref)




def test_disabled_chain_is_the_identity():
    x, y = torch.randn(4, 3, 10), torch.tensor([0, 1, 2, 0])
    out, target, smoothing = BatchAugment(n_classes=3, label_smoothing=0.1).for_epoch(0)(x, y)
    assert torch.equal(out, x) and torch.equal(target, y) and smoothing == 0.1


def test_chain_is_reproducible_per_epoch_and_mixup_gives_soft_targets():
    chain = BatchAugment(n_classes=3, seed=4, freq_warp=0.1, time_stretch=0.1, spec_augment=True,
                         mixup_alpha=0.4, label_smoothing=0.1)
    x, y = torch.randn(6, 8, 20), torch.tensor([0, 1, 2, 0, 1, 2])
    a = chain.for_epoch(3)(x, y)
    b = chain.for_epoch(3)(x, y)
    c = chain.for_epoch(4)(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert a[0].shape == x.shape and a[1].shape == (6, 3) and a[2] == 0.0
    torch.testing.assert_close(a[1].sum(dim=1), torch.ones(6))


def test_vector_batches_skip_the_window_transforms():
    chain = BatchAugment(n_classes=2, freq_warp=0.5, time_stretch=0.5, spec_augment=True)
    x = torch.randn(4, 5)
    assert torch.equal(chain.for_epoch(0)(x, torch.tensor([0, 1, 0, 1]))[0], x)


def test_from_config_reads_the_settings():
    from soundclass.training import TrainConfig

    chain = BatchAugment.from_config(TrainConfig(seed=9, mixup_alpha=0.2, spec_augment=True), n_classes=5)
    assert (chain.n_classes, chain.seed, chain.mixup_alpha, chain.spec_augment, chain.freq_warp) == (
        5, 9, 0.2, True, 0.0)


def test_train_one_epoch_clips_gradients():
    from soundclass.training import TrainConfig

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4) * 100, torch.tensor([0, 1] * 4))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    loader.dataset.set_epoch = lambda epoch: None  # the loop reseeds the dataset's crops
    seen = []
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def record():
        seen.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())

    opt.register_step_pre_hook(lambda *_: record())
    cfg = TrainConfig(grad_clip=0.5)
    out = loop.train_one_epoch(model, loader, opt, None, epoch=0, config=cfg,
                               augment=BatchAugment.from_config(cfg, n_classes=2))
    assert out["n"] == 8 and seen and seen[0] == pytest.approx(0.5, rel=1e-4)


