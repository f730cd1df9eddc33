"""``xlr.runtime.rank0_first`` on two real gloo ranks: rank 0's work runs once and the others
wait for it; when it fails (an interrupt too) or rank 0 is killed outright, every rank stops
with its message instead of waiting out the long timeout; a run whose outputs fail to write is
not finished; gradients average over ranks as in one process."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from xlr import runtime
from xlr.arms import SUMMARY_FILE
from xlr.runtime import DistContext, RankZeroFailed, rank0_first
from xlr.train.loop import RunFolder

WAIT = timedelta(seconds=60)  # a rank that would wait for a lost rank 0 times out here
PROMPT = 30  # seconds from every rank's start: a rank told of rank 0's fate stops well before WAIT
READY = 120  # seconds the ranks may take to import torch and join, on a loaded machine
LINGER = 20  # seconds a rank that learnt of rank 0's death stays before it exits
SOON = 10  # seconds within which every rank learns of it

FAILURES = {"error": ValueError("no shards in /data/laion"), "interrupt": KeyboardInterrupt("^C")}
KILLED = "killed"  # rank 0's process ends in its work without raising (the OOM killer, SIGKILL)


def one_rank(rank: int, world: int, port: int, folder: str, fail: str) -> None:
    """One of ``world`` gloo ranks: rank 0 writes a file (or raises ``FAILURES[fail]``, or its
    process ends); each rank records what it saw after :func:`rank0_first` in
    ``folder/<rank>.txt``, having said it joined in ``folder/<rank>.ready``.

    The store is the test's, not rank 0's, as under torchrun (its agent holds it): a rank 0
    that dies takes no store with it."""
    runtime.RANK0_WAIT = WAIT
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=WAIT)
    dist.init_process_group("gloo", rank=rank, world_size=world, store=store, timeout=WAIT)
    written = Path(folder) / "written.txt"
    (Path(folder) / f"{rank}.ready").touch()

    def work() -> None:
        while len(list(Path(folder).glob("*.ready"))) < world:  # all joined: the clock runs
            time.sleep(0.05)
        if fail == KILLED:
            time.sleep(2)  # the others are waiting by now
            (Path(folder) / "killed.at").write_text(repr(time.monotonic()))
            os._exit(3)
        if fail:
            raise FAILURES[fail]
        written.write_text("rank 0 was here")

    try:
        rank0_first(DistContext(rank, world, torch.device("cpu")), work)
        seen = f"ok: {written.read_text()}"
    except BaseException as error:  # what each rank raised is the test's finding
        seen = f"{type(error).__name__}: {error}"
    (Path(folder) / f"{rank}.at").write_text(repr(time.monotonic()))
    (Path(folder) / f"{rank}.txt").write_text(seen)
    if fail == KILLED:
        time.sleep(LINGER)  # a slow teardown: a rank must not need a peer's groups to close
    dist.destroy_process_group()  # every group, the one rank0_first waited on too


def run_ranks(folder: Path, fail: str, world: int) -> list[str | None]:
    """What each rank recorded (None: nothing), once all ended or :data:`PROMPT` passed after
    they all joined."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=WAIT, wait_for_workers=False)
    spawn = mp.get_context("spawn")
    ranks = [
        spawn.Process(target=one_rank, args=(r, world, store.port, str(folder), fail))
        for r in range(world)
    ]
    for process in ranks:
        process.start()
    joined = time.monotonic() + READY
    while len(list(folder.glob("*.ready"))) < world and time.monotonic() < joined:
        time.sleep(0.05)
    deadline = time.monotonic() + PROMPT
    for process in ranks:
        process.join(max(deadline - time.monotonic(), 0.1))
    for process in ranks:
        if process.is_alive():
            process.kill()
            process.join()
    return [(folder / f"{r}.txt").read_text() if (folder / f"{r}.txt").exists() else None
            for r in range(world)]  # fmt: skip


@pytest.mark.parametrize(
    ("fail", "world"), [("", 2), *((f, 2) for f in FAILURES), (KILLED, 2), (KILLED, 4)]
)
def test_rank0_first_shares_rank_zeros_outcome(tmp_path: Path, fail: str, world: int) -> None:
    """Four ranks: rank 0 tells each itself, so none waits on a peer that waits on rank 0 (a
    broadcast's tree left rank 3 waiting until its parent rank exited, here :data:`LINGER`
    seconds later)."""
    seen = run_ranks(tmp_path, fail, world)
    if not fail:
        assert seen == ["ok: rank 0 was here"] * world
        return
    for rank in range(1, world):
        assert seen[rank] is not None, f"rank {rank} still waited {PROMPT} s after rank 0 {fail}"
        assert seen[rank].startswith(f"{RankZeroFailed.__name__}: rank 0 ")
    if fail == KILLED:
        assert seen[0] is None and all("was lost" in text for text in seen[1:])  # type: ignore[operator]
        killed = float((tmp_path / "killed.at").read_text())
        late = [float((tmp_path / f"{r}.at").read_text()) - killed for r in range(1, world)]
        assert max(late) < SOON, f"seconds each rank took to learn of it: {late}"
    else:
        raised = f"{type(FAILURES[fail]).__name__}: {FAILURES[fail]}"
        assert seen[0] == raised  # rank 0's own error, as raised
        assert seen[1].startswith(f"{RankZeroFailed.__name__}: rank 0 failed") and raised in seen[1]  # type: ignore[union-attr]
    assert not (tmp_path / "written.txt").exists()


def test_a_run_whose_outputs_fail_is_not_finished(tmp_path: Path) -> None:
    """RunFolder.finish writes the driver's outputs and then the summary on rank 0, inside
    rank0_first: outputs that fail leave no summary (the run is not complete), and the error
    is the outputs'."""
    folder = RunFolder(tmp_path, None, {"arm": "a"}, checkpoint_every=1)  # type: ignore[arg-type]
    one = DistContext(0, 1, torch.device("cpu"))

    def full_disk() -> None:
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        folder.finish({"steps": 1}, one, full_disk)
    assert not (tmp_path / SUMMARY_FILE).exists() and folder.finished(one) is None
    folder.finish({"steps": 1}, one, lambda: (tmp_path / "model").mkdir())
    assert folder.finished(one) == {"steps": 1} and (tmp_path / "model").is_dir()


def test_one_process_runs_the_work_and_raises_its_error() -> None:
    ran = []
    rank0_first(DistContext(0, 1, torch.device("cpu")), lambda: ran.append(True))
    assert ran == [True]

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        rank0_first(DistContext(0, 1, torch.device("cpu")), broken)


def reduce_rank(rank: int, port: int, folder: str) -> None:
    """Rank ``rank`` of two: parameter ``a`` has a gradient on both ranks, ``b`` on rank 1 only,
    ``c`` on neither; the averaged gradients are saved to ``folder/<rank>.pt``."""
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=WAIT)
    dist.init_process_group("gloo", rank=rank, world_size=2, store=store, timeout=WAIT)
    a, b, c = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    a.grad = torch.full((3,), 2.0 + rank)
    b.grad = torch.full((3,), 4.0) if rank == 1 else None
    runtime.all_reduce_gradients([a, b, c], 2)
    torch.save({"a": a.grad, "b": b.grad, "c": c.grad}, Path(folder) / f"{rank}.pt")
    dist.destroy_process_group()


def test_gradients_average_over_ranks_and_one_no_rank_has_stays_none(tmp_path: Path) -> None:
    """A parameter no rank computed a gradient for keeps none, as in one process (AdamW then
    leaves it alone); one that some rank lacks counts zero there."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=WAIT, wait_for_workers=False)
    spawn = mp.get_context("spawn")
    ranks = [spawn.Process(target=reduce_rank, args=(r, store.port, str(tmp_path))) for r in (0, 1)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(READY)
    assert [process.exitcode for process in ranks] == [0, 0]
    for rank in (0, 1):
        grads = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert torch.equal(grads["a"], torch.full((3,), 2.5))
        assert torch.equal(grads["b"], torch.full((3,), 2.0))
        assert grads["c"] is None
