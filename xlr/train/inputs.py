"""The training input pipeline: each step's batch and its images, prepared ahead in workers.

A step's batch is a pure function of (seed, step) (:mod:`xlr.train.batching`), so the items of
the torch ``DataLoader`` are whole steps: a worker is handed a step number, draws that step's
batch, takes this rank's shard and runs the objective's ``load`` on it (decode and transform the
images, or index cached image features) on its own core while the main process trains. The
tensors come back pinned when training on CUDA, and :meth:`xlr.train.loop.Trainer.step` copies
them without blocking.

Exact resume holds with any number of workers: the main process sees the steps in order, and
whatever randomness a ``load`` draws (the train transform's random crop) comes from a torch
generator seeded by the step's own seed (:func:`load_seed`) and forked off the global one, so
the same step loads the same tensors in a worker, in the main process
(``train.loader_workers: 0``) or after a resume, and the dropout stream of the step is
untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xlr.runtime import DistContext


class StepBatch(Protocol):
    """What the pipeline needs of a batch: its step, its size, and this rank's shard of it."""

    @property
    def step(self) -> int: ...

    def __len__(self) -> int: ...

    def shard(self, rank: int, world_size: int) -> Any: ...


# global step -> (global batch, torch seed of its dropout; None continues the current stream)
StepPlan = Callable[[int], tuple[StepBatch, int | None]]
Load = Callable[[Any], Any]  # this rank's shard -> what the objective needs of it, on the CPU
T = TypeVar("T")  # an item of a DataLoader over whole items


def load_seed(seed: int | None, step: int, rank: int) -> int:
    """Torch seed of a step's ``load`` on one rank: a function of the step's own seed alone,
    drawn apart from the dropout seed it is (the plan's seed already tells steps and ranks
    apart, and an adapter's names its language's own step, not the global ``step`` a schedule
    puts it at), or of ``step`` and ``rank`` where the plan gives none."""
    entropy = [step, rank] if seed is None else [seed, 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@dataclass(frozen=True)
class StepInput:
    """One step, ready to train: its global batch (for the log), this rank's shard, the dropout
    seed and what the objective's ``load`` made of the shard."""

    step: int
    batch: StepBatch
    shard: Any
    seed: int | None
    loaded: Any

    def pin_memory(self) -> StepInput:
        """A copy with the loaded tensors in pinned memory (the DataLoader's pin thread calls
        this), so that the copy to the GPU can overlap the step before it."""
        return dataclasses.replace(self, loaded=_pinned(self.loaded))


def _pinned(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.pin_memory()
    if isinstance(value, tuple):
        return tuple(_pinned(part) for part in value)
    return value


class PlannedSteps(Dataset):
    """The steps of a plan as a map-style dataset: item ``step`` is its :class:`StepInput`."""

    def __init__(self, plan: StepPlan, load: Load, ctx: DistContext) -> None:
        self.plan, self.load = plan, load
        self.rank, self.world_size = ctx.rank, ctx.world_size

    def __getitem__(self, step: int) -> StepInput:
        batch, seed = self.plan(step)
        shard = batch.shard(self.rank, self.world_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(load_seed(seed, step, self.rank))
            loaded = self.load(shard)
        return StepInput(step, batch, shard, seed, loaded)


def _as_is(item: T) -> T:
    """The DataLoader's collate function: items are whole already."""
    return item


def step_inputs(
    plan: StepPlan, load: Load, start: int, steps: int, ctx: DistContext, workers: int
) -> Iterable[StepInput]:
    """Steps ``start .. steps - 1`` of ``plan``, in order, loaded by ``workers`` DataLoader
    processes (0: here, one step at a time, with the same function): :func:`ordered_items`.

    The DataLoader draws its workers' seeds from a generator of its own: from torch's global
    one it would shift the dropout stream of a plan that does not reseed (pretraining).
    """
    return ordered_items(PlannedSteps(plan, load, ctx), range(start, steps), ctx.device, workers)


def ordered_items(
    dataset: Dataset[T], indices: range, device: torch.device, workers: int
) -> Iterable[T]:
    """``dataset[i]`` for each ``i`` of ``indices``, in order, made by ``workers`` DataLoader
    processes each holding up to two items ahead (0: here, one at a time, by the same
    ``__getitem__``), pinned when bound for a CUDA ``device`` (copy them with
    :func:`to_device`). Each item is whole already (no collation): a step's input, a batch of
    images for the cache of :mod:`xlr.train.image_cache`.

    Workers are forked, not spawned: a plan is a closure over its sampler and need not pickle.
    They keep one torch thread each (the DataLoader's default). (:mod:`xlr.workers` spawns its
    jobs instead: each trains a whole model on several threads, where a fork of a busy thread
    pool can hang; a loader worker only decodes and transforms, single-threaded, the
    DataLoader's usual set-up, and touches no CUDA.) Their seeds come from a generator of the
    DataLoader's own (why: :func:`step_inputs`).
    """
    if workers < 0:
        raise ValueError(f"train.loader_workers must be >= 0, got {workers}")
    if workers == 0 or len(indices) == 0:
        return _here(dataset, indices)
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=indices,
        num_workers=workers,
        collate_fn=_as_is,
        pin_memory=device.type == "cuda",
        multiprocessing_context="fork",
        generator=torch.Generator(),
    )


def _here(dataset: Dataset[T], indices: range) -> Iterator[T]:
    for index in indices:
        yield dataset[index]


def to_device(loaded: Any, device: torch.device) -> Any:
    """``loaded`` (a tensor, a tuple of them, or None) on ``device``; from pinned memory the
    copy does not block the host."""
    if isinstance(loaded, torch.Tensor):
        return loaded.to(device, non_blocking=True)
    if isinstance(loaded, tuple):
        return tuple(to_device(part, device) for part in loaded)
    return loaded
