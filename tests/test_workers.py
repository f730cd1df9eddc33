"""Jobs side by side in spawned workers (xlr.workers): order, thread share, failures."""

from __future__ import annotations

import functools
import operator
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from xlr.workers import run_jobs, threads_per_worker


@dataclass(frozen=True)
class Mark:
    """Writes ``path`` when done; fails if its prerequisite's mark is not there yet."""

    path: Path
    needs: Path | None = None
    seconds: float = 0.0

    def __call__(self) -> str:
        if self.needs is not None and not self.needs.exists():
            raise AssertionError(f"{self.path.name} started before {self.needs.name} finished")
        time.sleep(self.seconds)
        self.path.write_text("done")
        return self.path.name


def failing_job() -> None:
    raise ValueError("job 1 broke")


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_job_order(workers: int) -> None:
    jobs = [functools.partial(operator.mul, i, 10) for i in range(5)]
    assert run_jobs(jobs, workers, progress=False) == [0, 10, 20, 30, 40]


def test_workers_share_the_parents_threads() -> None:
    got = run_jobs([torch.get_num_threads] * 2, workers=2, progress=False)
    assert got == [threads_per_worker(2)] * 2
    assert threads_per_worker(2) == max(1, torch.get_num_threads() // 2)
    assert threads_per_worker(10_000) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_fails_the_run(workers: int) -> None:
    jobs = [
        functools.partial(operator.mul, 1, 1),
        failing_job,
        functools.partial(operator.mul, 2, 2),
    ]
    with pytest.raises(ValueError, match="job 1 broke"):
        run_jobs(jobs, workers, progress=False)


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_jobs([], workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_starts_only_after_its_prerequisite(workers: int, tmp_path: Path) -> None:
    base_a, base_b = tmp_path / "base_a", tmp_path / "base_b"
    jobs = [
        Mark(base_a, seconds=1.0),  # slow: a free worker must not start its arms early
        Mark(base_b),
        Mark(tmp_path / "arm_a1", needs=base_a),
        Mark(tmp_path / "arm_b1", needs=base_b),
        Mark(tmp_path / "arm_a2", needs=base_a),
    ]
    got = run_jobs(jobs, workers, progress=False, after=[None, None, 0, 1, 0])
    assert got == ["base_a", "base_b", "arm_a1", "arm_b1", "arm_a2"]


@pytest.mark.parametrize("after", [[None, 1], [0, None], [None]])
def test_prerequisites_must_be_earlier_jobs(after: list[int | None]) -> None:
    jobs = [functools.partial(operator.mul, 1, 1)] * 2
    with pytest.raises(ValueError, match="earlier job"):
        run_jobs(jobs, 2, progress=False, after=after)
