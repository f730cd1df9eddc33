"""Where and how code runs: device, precision, seeding, the distributed context, chunking, pixels.

Every stage (base pretraining, the arms, the adapters, evaluation) takes these from here, so a
choice such as "bf16 autocast on CUDA only" or "NCCL on GPU, gloo on CPU" is made once.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
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


AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision a ``precision`` setting means on ``device``: ``auto`` is bf16 on CUDA and
    fp32 on the CPU (where bf16 is slower); an explicit setting is itself."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Autocast for a ``precision`` setting (:func:`resolve_precision`): ``fp32`` is plain fp32;
    ``bf16`` and ``fp16`` (for GPUs without bf16) autocast to that dtype on any device, so an
    explicit setting is always honoured. Training refuses fp16 off CUDA
    (:func:`xlr.train.loop.check_train_precision`); evaluation, forward only, runs it."""
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def normalise_pixels(pixels: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` images to the float ``[B, 3, H, W]`` input a CLIP tower expects,
    on their device: torchvision's ``ToTensor`` then ``Normalize``, operation for operation."""
    x = pixels.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    x = x.div_(255.0)  # contiguous NCHW, as ToTensor's output: a conv picks the same kernels
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def chunks(n_items: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n_items)``."""
    for start in range(0, n_items, size):
        yield slice(start, min(start + size, n_items))


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (possibly one-process) training job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and outputs."""
        return self.rank == 0


def init_distributed(device_setting: str = "auto") -> DistContext:
    """Rank, world size and device; under ``torchrun`` joins the process group (idempotent).

    NCCL with one GPU per rank (``LOCAL_RANK``) on CUDA, gloo on CPU so tests exercise DDP.
    """
    device = resolve_device(device_setting)
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistContext(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


# How long ranks wait for each other where they may arrive far apart: rank 0's own work (a base
# pretraining, a LAION download, the image features of a pool), or every rank loading a 1.4 GB
# base (a cold Hugging Face cache downloads it, once per node). NCCL's watchdog gives up after
# 10 minutes, so such waits run on a gloo group of their own (patient_barrier).
RANK0_WAIT = timedelta(hours=24)


class RankZeroFailed(RuntimeError):
    """Raised on the other ranks when rank 0's work (:func:`rank0_first`) failed: they stop with
    its message instead of going on without what it was to write."""


def _patient_group() -> dist.ProcessGroup:
    """A gloo group of every rank with the :data:`RANK0_WAIT` timeout (not NCCL's watchdog)."""
    return dist.new_group(backend="gloo", timeout=RANK0_WAIT)


def patient_barrier(ctx: DistContext) -> None:
    """Every rank of ``ctx`` waits for all the others, for up to :data:`RANK0_WAIT` (a gloo
    group of its own, not NCCL's 10-minute watchdog); a no-op in a one-process job."""
    if ctx.world_size == 1:
        return
    waiting = _patient_group()
    dist.barrier(group=waiting)
    dist.destroy_process_group(waiting)


def rank0_first(ctx: DistContext, work: Callable[[], None]) -> None:
    """Run ``work`` on rank 0 while the other ranks wait for it (on :func:`patient_barrier`'s
    kind of group). Rank 0 then tells every rank how it went: an error in ``work`` (an interrupt
    too) raises there as itself and on the others as :class:`RankZeroFailed` naming it, so they
    neither wait out the long timeout nor go on without what rank 0 was to write.

    The group is joined before the work and every rank waits on its own connection to rank 0
    (:func:`_tell_every_rank`), so a rank 0 killed outright (the out-of-memory killer, a signal)
    closes them and the others raise :class:`RankZeroFailed` within seconds (as soon as rank 0's
    forked loader workers, which hold the connections too, notice it is gone). A node that loses
    power closes nothing, nor does a network that drops idle connections: their peers wait out
    the timeout."""
    waiting = _patient_group() if ctx.world_size > 1 else None
    failure, message = None, ""
    if ctx.is_main:
        try:
            work()
        except BaseException as error:  # every rank must learn of it before rank 0 raises it
            failure, message = error, f"{type(error).__name__}: {error}"
    if waiting is not None:
        try:
            message = _tell_every_rank(ctx, waiting, message)
        except Exception as error:
            if not ctx.is_main:
                raise RankZeroFailed(
                    f"rank 0 was lost while rank {ctx.rank} waited for it ({error}); "
                    "its own log says why"
                ) from error
            if failure is None:
                raise
            failure.add_note(f"telling the other ranks failed too: {error}")
            raise failure from None
        dist.destroy_process_group(waiting)
    if failure is not None:
        raise failure
    if message:
        raise RankZeroFailed(f"rank 0 failed ({message}); rank {ctx.rank} stops with it")


def _tell_every_rank(ctx: DistContext, group: dist.ProcessGroup, message: str) -> str:
    """Rank 0's ``message`` on every rank, sent by rank 0 to each rank itself: a broadcast
    passes it down a tree, where a rank waiting on another rank would not see rank 0's
    connections close. UTF-8 bytes after their length, no pickle."""
    if ctx.is_main:
        data = torch.tensor(list(message.encode()), dtype=torch.uint8)
        for rank in range(1, ctx.world_size):
            dist.send(torch.tensor([len(data)]), rank, group=group)
            if len(data):
                dist.send(data, rank, group=group)
        return message
    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, 0, group=group)
    data = torch.zeros(int(size.item()), dtype=torch.uint8)
    if len(data):
        dist.recv(data, 0, group=group)
    return bytes(data.tolist()).decode()


def all_reduce_gradients(params: Sequence[nn.Parameter], world_size: int) -> None:
    """Average gradients over ranks in one flat all-reduce (what DDP does, without its hooks,
    which only see ``forward`` and not ``encode_image``/``encode_text``).

    A parameter without a gradient on a rank counts as zero there, and one without a gradient on
    every rank keeps none (a count of ranks that had one travels in the same all-reduce): a zero
    gradient would still move it through AdamW's momentum and weight decay, where one process
    leaves a parameter without a gradient untouched."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    had = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype)
    flat = torch.cat([*(g.reshape(-1) for g in grads), had.to(grads[0].device)])
    dist.all_reduce(flat)
    counts = flat[-len(params) :].tolist()
    flat = flat[: -len(params)] / world_size
    for param, part, count in zip(
        params, flat.split([g.numel() for g in grads]), counts, strict=True
    ):
        param.grad = part.view_as(param).clone() if count > 0 else None
