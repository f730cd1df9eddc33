"""torchrun worker: each rank computes ContrastiveLoss on its shard of one seeded global batch.

Usage: ``python -m torch.distributed.run --nproc_per_node=W --standalone dist_loss_worker.py OUT``.
Every rank rebuilds the same global features from a fixed seed, keeps its contiguous shard, runs
the gathered loss and its backward, and saves the loss and its local gradients to
``OUT/rank{r}.pt`` for the test to compare with one process on the whole batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from xlr.train.losses import ContrastiveLoss

GLOBAL_BATCH = 8
DIM = 5
LAMBDA_TT = 0.7


def global_inputs() -> dict[str, torch.Tensor]:
    """The seeded global batch every rank (and the single-process reference) starts from."""
    generator = torch.Generator().manual_seed(0)

    def unit(n: int) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=-1)

    return {
        "image": unit(GLOBAL_BATCH),
        "query": unit(GLOBAL_BATCH),
        "target": unit(GLOBAL_BATCH),
        # one row without a target in each shard of two
        "mask": torch.tensor([True, False, True, True, True, True, False, True]),
        "log_scale": torch.tensor(2.0),
    }


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    inputs = global_inputs()
    per = GLOBAL_BATCH // world_size
    part = slice(rank * per, (rank + 1) * per)
    local = {
        name: inputs[name][part].clone().requires_grad_(True)
        for name in ("image", "query", "target")
    }
    log_scale = inputs["log_scale"].clone().requires_grad_(True)
    loss_fn = ContrastiveLoss(lambda_tt=LAMBDA_TT, world_size=world_size)
    total, parts = loss_fn(
        local["image"], local["query"], local["target"], inputs["mask"][part], log_scale.exp()
    )
    total.backward()
    result = {"loss": total.detach(), **parts, "log_scale_grad": log_scale.grad}
    result |= {f"{name}_grad": tensor.grad for name, tensor in local.items()}
    torch.save(result, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
