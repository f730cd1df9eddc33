"""Per-step training logs: one ``log.csv`` row and TensorBoard scalars per optimisation step.

The csv is the record the notebooks read (loss curves, which languages each step drew, speed);
TensorBoard is for watching a run live. Both survive a resume: the rows of the steps a resumed
run replays are dropped first, so every step appears once.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from xlr.arms import LOG_CSV
from xlr.io import atomic_file
from xlr.train.batching import Batch

TENSORBOARD_DIR = "tb"
LOG_COLUMNS: tuple[str, ...] = (
    "step", "kind", "query_langs", "target_langs", "loss", "loss_image_text", "loss_text_text",
    "text_pairs", "logit_scale", "lr", "grad_norm", "examples_per_s", "data_s",
)  # fmt: skip


class StepLog:
    """Per-step rows in ``log.csv`` and TensorBoard scalars in ``tb/``.

    Resuming at step ``start`` keeps the complete rows of steps before it (a killed run may have
    logged past its last checkpoint, or died mid-line) and has TensorBoard purge the rest.
    """

    def __init__(self, out_dir: Path, start: int) -> None:
        path, tb_dir = out_dir / LOG_CSV, out_dir / TENSORBOARD_DIR
        if start == 0:
            path.unlink(missing_ok=True)
            shutil.rmtree(tb_dir, ignore_errors=True)
        elif path.is_file():
            _truncate_log(path, start)
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.DictWriter(self._file, LOG_COLUMNS)
        if self._file.tell() == 0:
            self._csv.writeheader()
        self._tb = SummaryWriter(str(tb_dir), purge_step=start or None)

    def write(self, batch: Batch, metrics: dict[str, float], seconds: float, waited: float) -> None:
        """Append the row of one step on the global ``batch`` that took ``seconds`` since the
        step before ended, ``waited`` of them before the loader handed over its batch (the step
        before's log and checkpoint writes included, as open_clip's ``Data (t)`` includes its
        logging; :func:`xlr.train.loop.fit`'s clock). Flushed: a killed run keeps every
        finished step."""
        row = _row(batch, metrics, seconds, waited)
        self._csv.writerow(row)
        self._file.flush()
        for key, value in row.items():
            if isinstance(value, float):
                self._tb.add_scalar(f"train/{key}", value, row["step"])
        described = f"{row['kind']}: {row['query_langs']} -> {row['target_langs']}"
        self._tb.add_text("train/batch", described, row["step"])

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def _languages(langs: Sequence[str]) -> str:
    return "+".join(sorted(set(langs)))


def _row(batch: Batch, metrics: dict[str, float], seconds: float, waited: float) -> dict[str, Any]:
    """One ``log.csv`` row: the global batch's kind and languages, loss parts, speed, and the
    seconds the step waited for its batch (as open_clip's ``Data (t)``: near the step's whole
    time, the input is the bound)."""
    return {
        "step": batch.step,
        "kind": batch.kind,
        "query_langs": _languages(batch.query_langs),
        "target_langs": _languages(batch.target_langs),
        **metrics,
        "text_pairs": int(metrics["text_pairs"]),
        "examples_per_s": len(batch) / seconds,
        "data_s": waited,
    }


def _truncate_log(path: Path, start: int) -> None:
    """Rewrite ``path`` atomically with its complete rows of steps before ``start``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [
            row
            for row in csv.DictReader(handle)
            if None not in row.values() and row["step"].isdigit() and int(row["step"]) < start
        ]
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
