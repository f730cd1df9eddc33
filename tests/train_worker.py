"""Subprocess and torchrun worker: trains one arm from a JSON job file, as a notebook would.

Usage: ``python train_worker.py JOB.json`` (or under ``python -m torch.distributed.run``). The
job names the params mapping, the model folder, the corpus, the output folder and the arm (its
name, base seed and seed); ``step_delay`` (seconds) slows every step so a test can kill the run
between checkpoints.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch.distributed as dist

from xlr.arms import Arm
from xlr.config import parse_params
from xlr.data.synthetic import load_pool
from xlr.models.factory import load_model
from xlr.train.finetune import train_arm
from xlr.train.loop import Trainer


def slowed(step, delay: float):
    """``Trainer.step`` followed by a pause: a kill then lands between two steps' writes."""

    def step_then_sleep(self, batch, loaded=None):
        metrics = step(self, batch, loaded)
        time.sleep(delay)
        return metrics

    return step_then_sleep


def main(job_file: Path) -> None:
    job = json.loads(job_file.read_text())
    if job.get("step_delay"):
        Trainer.step = slowed(Trainer.step, job["step_delay"])
    arm = job["arm"]
    train_arm(
        load_model(job["model_dir"]),
        load_pool(Path(job["corpus_dir"]), "finetune"),
        parse_params(job["params"]),
        Arm.parse(arm["name"]).at(arm["base_seed"], arm["seed"]),
        job["out_dir"],
        resume=job.get("resume", True),
        progress=False,
    )
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
