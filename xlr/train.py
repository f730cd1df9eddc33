"""Pieces of the training loop shared by base pretraining, the hybrid arms and the adapters.

Kept here so every loop in the study makes the same choices: AdamW without decay on gains,
biases and the logit scale (open_clip's convention), linear warmup then cosine decay, bf16
autocast on GPU only, one seed for every random draw.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so the same seed gives the same numbers on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(setting: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but torch sees no GPU; use 'auto' or 'cpu'")
    return torch.device(setting)


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (``auto`` or ``bf16``); plain fp32 on CPU, where bf16 is slower."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, without decay on gains, biases and the logit scale."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for n, p in named if _no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not _no_decay(n, p)], "weight_decay": weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero at ``total`` steps."""
    if total <= 0:
        raise ValueError(f"the number of training steps must be positive, got {total}")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batch_indices(n_items: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The example indices of one step, drawn without replacement from a per-step seed.

    Why per step: a run resumed at step ``s`` draws exactly the batches an uninterrupted run
    draws, with no sampler state to save.
    """
    if batch_size > n_items:
        raise ValueError(f"batch size {batch_size} exceeds the {n_items} examples available")
    return np.random.default_rng([seed, step]).choice(n_items, size=batch_size, replace=False)


def normalise_pixels(pixels: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` images to the float ``[B, 3, H, W]`` input a CLIP tower expects."""
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def chunks(n_items: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n_items)``."""
    for start in range(0, n_items, size):
        yield slice(start, min(start + size, n_items))
