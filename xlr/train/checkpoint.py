"""Checkpoints of a training run: save, load, restore, and where a run resumes.

A checkpoint holds what an uninterrupted run would still have in memory: the trained weights,
the optimizer, the schedule, the fp16 loss scale (when there is one), the next step and the
training seconds so far. No RNG state: batches are a pure function of (seed, step), dropout is
reseeded per step (:func:`xlr.train.loop.step_seed`) and the input pipeline's transforms per step
(:func:`xlr.train.inputs.load_seed`), so a run resumed at step ``s`` ends, on CPU, with the
weights of one that never stopped, when it resumes on as many ranks as wrote the checkpoint
(each rank's dropout and crops are its own streams).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from xlr.io import atomic_file

CHECKPOINT = "checkpoint.pt"  # in a run's folder, rewritten every train.checkpoint_every steps


class Resumable(Protocol):
    """What a checkpoint saves and restores (:class:`xlr.train.loop.Trainer` is one)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    trained: Sequence[str]  # names of the parameters the run trains
    scaler: torch.amp.GradScaler | None  # fp16 loss scaling, None otherwise


def trainable_state(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters ``names``: what a checkpoint must hold to resume."""
    params = dict(model.named_parameters())
    return {name: params[name].detach().cpu().clone() for name in names}


def save_checkpoint(
    path: Path,
    run: Resumable,
    *,
    step: int,
    elapsed_s: float,
    identity: dict[str, Any],
    world_size: int,
) -> None:
    """Trained weights, optimizer, schedule, the next step and the ranks that trained them,
    written atomically.

    Only plain containers, numbers, strings and tensors, so ``torch.load(weights_only=True)``
    reads it back without unpickling code. ``identity`` says which run wrote it: a resume
    refuses a checkpoint of another.
    """
    state = {
        "step": step,
        "elapsed_s": elapsed_s,
        "identity": identity,
        "world_size": world_size,
        "model": trainable_state(run.model, run.trained),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": None if run.scaler is None else run.scaler.state_dict(),
    }
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, tensors on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_checkpoint(state: dict[str, Any], run: Resumable, path: Path) -> None:
    """Put a loaded checkpoint's weights, optimizer and schedule back (``path`` for errors)."""
    if set(run.trained) != set(state["model"]):
        raise ValueError(f"{path}: holds other trainable parameters than this arm trains")
    params = dict(run.model.named_parameters())
    with torch.no_grad():
        for name, value in state["model"].items():
            params[name].copy_(value)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])


def resume_point(
    run: Resumable, path: Path, identity: dict[str, Any], resume: bool, world_size: int
) -> tuple[int, float]:
    """(next step, training seconds so far): restored from ``path`` when ``resume`` and it
    exists, else (0, 0). A checkpoint of another run (``identity``) is an error, not a restart;
    one written by another number of ranks resumes with a warning (the same batches, but not the
    weights an uninterrupted run would reach: the number of ranks is no part of the identity, so
    that a finished arm reads back whatever machine evaluates it)."""
    if not (resume and path.is_file()):
        return 0, 0.0
    state = load_checkpoint(path)
    check_identity(path, state["identity"], identity)
    written_by = int(state.get("world_size", world_size))  # older checkpoints did not say
    if written_by != world_size:
        warnings.warn(
            f"{path}: written by {written_by} rank(s), resumed on {world_size}: the batches "
            "stay the same, but each rank's dropout and crops are its own streams, so this run "
            "will not end with the weights of one that never stopped; resume on "
            f"{written_by} rank(s) for that",
            stacklevel=2,
        )
    restore_checkpoint(state, run, path)
    return int(state["step"]), float(state["elapsed_s"])


def check_identity(path: Path, written: dict[str, Any], identity: dict[str, Any]) -> None:
    """Refuse ``path`` (a checkpoint or a finished run's summary) when another run wrote it: a
    resume that quietly started over would overwrite that run's outputs."""
    if written == identity:
        return
    differ = sorted(key for key in {*written, *identity} if written.get(key) != identity.get(key))
    why = f"written by another run (its {', '.join(differ)} differ from this one's)"
    if "stream_seed" in identity and "stream_seed" not in written:
        why = "written before seeds were nested in bases (xlr.arms.Arm.stream_seed)"
    raise ValueError(
        f"{path}: {why}; delete {path.parent} to train this arm again (or give the run another "
        "run.name; from Python, resume=False or another out_dir)"
    )
