"""Jobs side by side in spawned workers (xlr.workers): order, thread share, failures."""

from __future__ import annotations

import functools
import operator

import pytest
import torch

from xlr.workers import run_jobs, threads_per_worker


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
