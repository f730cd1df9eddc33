"""Shared training-loop pieces: schedule shape, resumable batch draws, pixel normalisation."""

import numpy as np
import pytest
import torch

from xlr.runtime import chunks, normalise_pixels
from xlr.train.finetune import batch_indices, make_optimizer, warmup_cosine


def test_warmup_then_cosine_to_zero() -> None:
    param = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = warmup_cosine(opt, warmup=4, total=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[8] == pytest.approx(0.5)  # half-way through the decay
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="must be positive"):
        warmup_cosine(opt, warmup=1, total=0)


def test_batch_indices_depend_only_on_seed_and_step() -> None:
    a = batch_indices(100, 10, seed=3, step=7)
    assert np.array_equal(a, batch_indices(100, 10, seed=3, step=7))
    assert not np.array_equal(a, batch_indices(100, 10, seed=3, step=8))
    assert len(set(a.tolist())) == 10
    with pytest.raises(ValueError, match="exceeds"):
        batch_indices(5, 10, seed=0, step=0)


def test_no_weight_decay_on_gains_biases_and_temperature() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    model.logit_scale = torch.nn.Parameter(torch.ones([]))
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.2)
    no_decay, decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 3])]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        make_optimizer(model, lr=1e-3, weight_decay=0.2)


def test_normalise_pixels_layout_and_values() -> None:
    pixels = torch.tensor([[[[255, 0, 51]]]], dtype=torch.uint8)  # one 1x1 image
    out = normalise_pixels(pixels, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.1))
    assert out.shape == (1, 3, 1, 1)
    assert out.flatten().tolist() == pytest.approx([1.0, -2.0, -3.0])


def test_chunks_cover_range() -> None:
    assert [(s.start, s.stop) for s in chunks(7, 3)] == [(0, 3), (3, 6), (6, 7)]
