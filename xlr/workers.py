"""Independent jobs (bases to pretrain, arms to train) side by side in worker processes.

Why: on CPU one training process leaves cores idle between its small kernels; on this 2-core
machine two one-thread processes trained about 1.55x faster than one two-thread process
(NOTES.md). Each job writes its own folder atomically, so jobs can finish in any order.

Workers are spawned, not forked: a fork of a process whose torch thread pool is running can
hang. Each worker gets ``torch.get_num_threads() // workers`` threads (at least one). CPU
results are bit-reproducible for a given thread count, so the same params file (same
``run.workers``) on the same machine gives the same numbers; changing ``run.workers`` changes
the last digits, as changing the core count does.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TypeVar

import torch
from tqdm.auto import tqdm

R = TypeVar("R")
Job = Callable[[], R]  # a picklable callable: a module-level function or a dataclass instance


def _init_worker(threads: int) -> None:
    """Pin the worker's torch thread pool before any job runs."""
    torch.set_num_threads(threads)


def threads_per_worker(workers: int) -> int:
    """The torch threads each of ``workers`` processes gets: the parent's share, at least one."""
    return max(1, torch.get_num_threads() // workers)


def run_jobs(
    jobs: Sequence[Job[R]], workers: int = 1, desc: str = "jobs", progress: bool = True
) -> list[R]:
    """Run every job and return their results in the order of ``jobs``.

    ``workers == 1`` (or a single job) runs them here, one after another. Otherwise a pool of
    ``workers`` spawned processes runs them; the first job to fail cancels those not started
    and its exception is raised here (jobs already running finish first).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    bar = {"desc": desc, "unit": "job", "disable": not progress, "total": len(jobs)}
    if workers == 1 or len(jobs) <= 1:
        return [job() for job in tqdm(jobs, **bar)]
    results: list[R | None] = [None] * len(jobs)
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads_per_worker(workers),),
    ) as pool:
        futures: dict[Future[R], int] = {pool.submit(job): i for i, job in enumerate(jobs)}
        try:
            for future in tqdm(as_completed(futures), **bar):
                results[futures[future]] = future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results  # type: ignore[return-value]  # every slot was filled above
