"""The one training loop of the study: base pretraining, the arms (02) and the adapters (03).

A run is a :class:`Trainer` (model, objective, optimiser, schedule, precision, clipping, the
distributed context) driven by :func:`fit` through a *step plan*: a function from the global step
to that step's global batch and dropout seed. The drivers (:mod:`xlr.train.pretrain`,
:mod:`xlr.train.finetune`, :mod:`xlr.train.adapters`) differ only in what they hand it: the model
after their surgery, their plan and their objective. Everything else is written here once:
autocast, the AdamW step, gradient averaging over ranks, clipping, the logit-scale clamp, dropout
seeding, the input pipeline (:mod:`xlr.train.inputs`), fp16 loss scaling, checkpoints and resume
(:mod:`xlr.train.checkpoint`) and the per-step log (:mod:`xlr.train.steplog`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from xlr.arms import IDENTITY_KEY, SUMMARY_FILE
from xlr.config import Params
from xlr.io import atomic_write_json, atomic_write_text
from xlr.runtime import (
    DistContext,
    all_reduce_gradients,
    autocast,
    patient_barrier,
    rank0_first,
)
from xlr.train.checkpoint import CHECKPOINT, check_identity, resume_point, save_checkpoint
from xlr.train.inputs import StepPlan, step_inputs, to_device
from xlr.train.steplog import StepLog

PARAMS_FILE = "params.yaml"  # the resolved params of a run, beside its log


class Objective(Protocol):
    """A driver's forward pass, in two parts.

    ``load`` prepares the CPU side of this rank's shard (decoded, transformed images or cached
    image features): it runs in the input pipeline's workers (:mod:`xlr.train.inputs`), so it
    must not touch the model being trained. ``__call__`` is the loss of ``model`` on the shard
    given what ``load`` returned (on ``device``) and the parts to log (``loss`` among them), run
    by :meth:`Trainer.step` under autocast.
    """

    def load(self, batch: Any) -> Any: ...

    def __call__(
        self, model: nn.Module, batch: Any, device: torch.device, loaded: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]: ...


def step_seed(seed: int, step: int, rank: int) -> int:
    """Torch seed of one step on one rank: dropout is a pure function of (seed, step, rank), so
    a resumed run needs no saved RNG state and ranks draw independent masks."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


@dataclass
class Trainer:
    """What one optimisation step needs, built once per run.

    ``trained`` is fixed when the trainer is built, from the parameters that require grad then:
    what checkpoints hold. A step may train fewer (an adapter step marks only its adapters).
    ``grad_clip`` None leaves gradients unclipped (their norm is still logged). ``precision``
    ``fp16`` (for GPUs without bf16) scales the loss with a ``GradScaler``, whose state the
    checkpoints keep; it needs CUDA (:func:`check_train_precision`).
    """

    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ctx: DistContext
    precision: str
    grad_clip: float | None
    trained: tuple[str, ...] = field(init=False)
    scaler: torch.amp.GradScaler | None = field(init=False)

    def __post_init__(self) -> None:
        named = self.model.named_parameters()
        self.trained = tuple(name for name, param in named if param.requires_grad)
        check_train_precision(self.precision, self.ctx.device)
        fp16 = self.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.ctx.device.type) if fp16 else None

    def step(self, batch: Any, loaded: Any = None) -> dict[str, float]:
        """Forward on this rank's shard, loss over the global batch, one AdamW step.

        ``loaded`` is what the objective's ``load`` made of ``batch`` (the input pipeline's
        work); None loads it here.
        """
        model, device = self.model, self.ctx.device
        if loaded is None:
            loaded = self.objective.load(batch)
        with autocast(device, self.precision):
            loss, parts = self.objective(model, batch, device, to_device(loaded, device))
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler
        (loss if scaler is None else scaler.scale(loss)).backward()
        params = [p for p in model.parameters() if p.requires_grad]
        if self.ctx.world_size > 1:
            all_reduce_gradients(params, self.ctx.world_size)
        if scaler is not None:
            scaler.unscale_(self.optimizer)  # clip the true gradients
        grad_norm = nn.utils.clip_grad_norm_(params, self.grad_clip or math.inf)
        lr = self.optimizer.param_groups[0]["lr"]
        if scaler is None:
            self.optimizer.step()
        else:  # skips the step when a gradient overflowed, and adapts the scale
            scaler.step(self.optimizer)
            scaler.update()
        self.scheduler.step()
        with torch.no_grad():  # open_clip clamps the learnable temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        metrics = {name: float(value) for name, value in parts.items()}
        return metrics | {
            "logit_scale": float(model.logit_scale.detach().exp()),
            "lr": lr,
            "grad_norm": float(grad_norm),
        }


def check_train_precision(precision: str, device: torch.device) -> None:
    """Refuse fp16 training off CUDA: fp16 with loss scaling is for GPUs without bf16; torch's
    CPU autocast and ``GradScaler`` run it too (the tests do, this guard lifted), but slowly,
    where bf16 (or fp32) trains instead."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"train.precision is 'fp16', meant for GPUs without bf16, but the device is "
            f"{device.type}; set train.precision to 'bf16' or 'fp32' (or 'auto') off CUDA"
        )


@dataclass(frozen=True)
class RunFolder:
    """Where a resumable run writes: ``params.yaml``, ``log.csv``, ``tb/`` and ``checkpoint.pt``
    (every ``checkpoint_every`` steps and at the end), then its driver's outputs and
    ``summary.json`` (:meth:`finish`). ``identity`` names the run; a checkpoint or summary of
    another run is refused. Without ``resume`` a run starts again from step 0."""

    path: Path
    params: Params
    identity: dict[str, Any]
    checkpoint_every: int
    resume: bool = True

    def finished(self, ctx: DistContext) -> dict[str, Any] | None:
        """The summary of this run (as the driver made it, without the identity) when it has
        finished (with ``resume``), else None; every rank of ``ctx`` has looked before any
        returns, so no rank can see a summary that rank 0 writes later in this same call.

        A summary of another run (other params, base or data in the same folder) is refused
        like its checkpoint would be; one with no identity, from an xlr that kept the final
        checkpoint, is left to that checkpoint's resume.
        """
        path = self.path / SUMMARY_FILE
        summary = None
        if self.resume and path.is_file():
            summary = json.loads(path.read_text(encoding="utf-8"))
            if IDENTITY_KEY not in summary:
                summary = None
            else:
                check_identity(path, summary.pop(IDENTITY_KEY), self.identity)
        patient_barrier(ctx)  # ranks come here as soon as they have loaded the base
        return summary

    def finish(
        self, summary: dict[str, Any], ctx: DistContext, outputs: Callable[[], None]
    ) -> None:
        """On rank 0, write the driver's ``outputs`` (a 1.5 GB model, on a slow disk), then
        ``summary.json`` with this run's identity (it says the run is complete), while the other
        ranks wait: a failure in either stops them too (:func:`xlr.runtime.rank0_first`). Then,
        once every rank is past its resume, drop the checkpoint. Its optimizer state only served
        a resume, and for a full xlm-roberta-base text tower it is 3.3 GB: three times the
        trained weights, which the outputs already hold. Every rank calls this."""

        def write() -> None:
            outputs()
            atomic_write_json({**summary, IDENTITY_KEY: self.identity}, self.path / SUMMARY_FILE)

        rank0_first(ctx, write)
        if ctx.is_main:
            (self.path / CHECKPOINT).unlink(missing_ok=True)


@dataclass(frozen=True)
class Fit:
    """What :func:`fit` did: the step it started at (after a resume, not 0), the training
    seconds of the whole run (the part before a resume included), and the metrics of each step
    it ran, in order."""

    start: int
    wall_s: float
    history: list[dict[str, float]]


def fit(
    trainer: Trainer,
    plan: StepPlan,
    steps: int,
    *,
    folder: RunFolder | None = None,
    desc: str = "train",
    progress: bool = True,
    workers: int = 0,
) -> Fit:
    """Run steps ``0 .. steps - 1`` of ``plan`` (from its checkpoint when ``folder`` has one):
    seed each step's dropout, train this rank's shard, log, checkpoint.

    ``workers`` DataLoader processes draw and load the steps ahead (``train.loader_workers``,
    :func:`xlr.train.inputs.step_inputs`); 0 loads each step here. Either way the weights are
    the same.

    Without ``folder`` nothing is written (base pretraining keeps its losses in memory). Under
    ``torchrun`` only rank 0 writes. A tower with nothing to train runs in eval mode: no dropout
    or norm statistics to update.
    """
    ctx, model = trainer.ctx, trainer.model
    start, elapsed = 0, 0.0
    if folder is not None:
        start, elapsed = resume_point(
            trainer, folder.path / CHECKPOINT, folder.identity, folder.resume, ctx.world_size
        )
    log = _open_folder(folder, start) if folder is not None and ctx.is_main else None
    model.train()
    for tower in model.children():
        if not any(param.requires_grad for param in tower.parameters()):
            tower.eval()
    history: list[dict[str, float]] = []
    loop_start = time.perf_counter()
    inputs = step_inputs(plan, trainer.objective.load, start, steps, ctx, workers)
    bar = tqdm(
        total=steps, desc=desc, initial=start, disable=not (progress and ctx.is_main),
    )  # fmt: skip
    try:
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            tic = time.perf_counter()
            for item in inputs:
                waited = time.perf_counter() - tic  # open_clip's Data (t): for the batch
                step = item.step
                if item.seed is not None:
                    torch.manual_seed(item.seed)
                metrics = trainer.step(item.shard, item.loaded)
                # open_clip's Batch (t): from the end of the last step to the end of this one,
                # so the wait for input and the last step's log and checkpoint count too
                toc = time.perf_counter()
                seconds, tic = toc - tic, toc
                history.append(metrics)
                bar.update()
                if log is None or folder is None:
                    continue
                log.write(item.batch, metrics, seconds, waited)
                if (step + 1) % folder.checkpoint_every == 0 or step + 1 == steps:
                    save_checkpoint(
                        folder.path / CHECKPOINT, trainer, step=step + 1,
                        elapsed_s=elapsed + time.perf_counter() - loop_start,
                        identity=folder.identity, world_size=ctx.world_size,
                    )  # fmt: skip
    finally:
        bar.close()
        if log is not None:
            log.close()
    return Fit(start, elapsed + time.perf_counter() - loop_start, history)


def _open_folder(folder: RunFolder, start: int) -> StepLog:
    """Create the run folder with its resolved params; a fresh start drops stale outputs."""
    folder.path.mkdir(parents=True, exist_ok=True)
    if start == 0:
        for stale in (CHECKPOINT, SUMMARY_FILE):
            (folder.path / stale).unlink(missing_ok=True)
    params = folder.params.model_dump(mode="json")
    resolved = yaml.safe_dump(params, sort_keys=False, allow_unicode=True)
    atomic_write_text(folder.path / PARAMS_FILE, resolved)
    return StepLog(folder.path, start)
