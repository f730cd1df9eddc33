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
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from xlr.logs import log_to_inherited_file

R = TypeVar("R")
Job = Callable[[], R]  # a picklable callable: a module-level function or a dataclass instance


def _init_worker(threads: int) -> None:
    """Pin the worker's torch thread pool before any job runs, and send its warnings and log
    records where the parent's go (:func:`xlr.logs.log_to_file`)."""
    torch.set_num_threads(threads)
    log_to_inherited_file()


def threads_per_worker(workers: int) -> int:
    """The torch threads each of ``workers`` processes gets: the parent's share, at least one."""
    return max(1, torch.get_num_threads() // workers)


def run_jobs(
    jobs: Sequence[Job[R]],
    workers: int = 1,
    desc: str = "jobs",
    progress: bool = True,
    after: Sequence[int | None] | None = None,
) -> list[R]:
    """Run every job and return their results in the order of ``jobs``.

    ``after[i]``, when given and not None, is the index of an earlier job that must finish
    before job ``i`` starts (an arm waits for its base, not for every base). ``workers == 1``
    (or a single job) runs them here in list order. Otherwise a pool of ``workers`` spawned
    processes runs each job once its prerequisite is done; the first job to fail cancels those
    not started and its exception is raised here (jobs already running finish first).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    needs = list(after) if after is not None else [None] * len(jobs)
    earlier = all(n is None or 0 <= n < i for i, n in enumerate(needs))
    if len(needs) != len(jobs) or not earlier:
        raise ValueError(f"after must name, for each job, None or an earlier job's index: {needs}")
    bar = tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress)
    if workers == 1 or len(jobs) <= 1:
        with bar:
            return [_run_here(job, bar) for job in jobs]
    results: list[R | None] = [None] * len(jobs)
    with (
        bar,
        ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads_per_worker(workers),),
        ) as pool,
    ):
        running: dict[Future[R], int] = {}

        def submit(ready: list[int]) -> None:
            running.update({pool.submit(jobs[i]): i for i in ready})

        submit([i for i, n in enumerate(needs) if n is None])
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    results[i] = future.result()
                    bar.update()
                    submit([k for k, n in enumerate(needs) if n == i])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results  # type: ignore[return-value]  # every job ran: each waits on an earlier one


def _run_here(job: Job[R], bar: tqdm) -> R:
    result = job()
    bar.update()
    return result
