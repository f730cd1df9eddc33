"""The optimiser and learning-rate schedules of every training run in the study.

One module so base pretraining, the arms and the adapters make the same choices: AdamW without
decay on gains, biases and the logit scale (open_clip's convention), linear warmup then cosine
decay to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

SCALE = "logit_scale"  # the name of a trained logit scale's parameter group (make_optimizer)


def decay_exempt(name: str, param: nn.Parameter) -> bool:
    """open_clip's rule for parameters without weight decay: gains, biases, the logit scale
    (anything of fewer than two dimensions, or named so)."""
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    no_decay: Callable[[str, nn.Parameter], bool] = decay_exempt,
    scale_lr: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, without decay on gains, biases and the logit scale.

    ``no_decay(name, param)`` picks the parameters without decay; the default goes by name and
    shape (:func:`decay_exempt`), which language adapters cannot use: Bengali's is named ``bn``.
    ``scale_lr`` gives a trained logit scale a rate of its own: the fine-tuning arms pass
    ``train.lr`` whatever rate their weights train at, so one temperature policy holds for all.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    scale = [(n, p) for n, p in named if n == "logit_scale" and scale_lr is not None]
    named = [(n, p) for n, p in named if (n, p) not in scale]
    groups = [
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
    ]
    if scale:
        groups.append(
            {"params": [p for _, p in scale], "weight_decay": 0.0, "lr": scale_lr, "name": SCALE}
        )
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero at ``total`` steps."""
    if total <= 0:
        raise ValueError(f"the number of training steps must be positive, got {total}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup, total)
    )


def clocked_warmup_cosine(
    optimizer: torch.optim.Optimizer, clock: Sequence[tuple[int, int]], warmup_share: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` read off clocks of their own: global step ``s`` runs at the rate of
    step ``clock[s][0]`` of a ``clock[s][1]``-step schedule whose warmup is ``warmup_share`` of
    its steps; a trained logit scale (the :data:`SCALE` group) runs on the whole run's clock.

    Why: each language adapter of the ``adapters`` arm warms up and decays over its own share of
    the budget, whatever order the languages' steps interleave in, with the shape of the shared
    arms' schedule. The logit scale is one parameter every adapter trains, so it keeps the
    shared arms' schedule over all ``len(clock)`` steps (one temperature policy: on per-language
    clocks it would warm up again with every language). The scheduler looks one step past the
    last: it reads the end of the last clock there.
    """
    if not clock:
        raise ValueError("the number of training steps must be positive, got 0")
    ticks = [*clock, (clock[-1][1], clock[-1][1])]
    total = len(clock)

    def per_clock(step: int) -> float:
        local, length = ticks[step]
        return warmup_cosine_factor(local, round(warmup_share * length), length)

    def whole_run(step: int) -> float:
        return warmup_cosine_factor(step, round(warmup_share * total), total)

    lambdas = [
        whole_run if group.get("name") == SCALE else per_clock for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def warmup_cosine_factor(step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of :func:`warmup_cosine` at ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
