"""``xlr.runtime.rank0_first`` on two real gloo ranks: rank 0's work runs once and the others
wait for it; when it fails, every rank stops with its message instead of waiting out the long
timeout."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from xlr import runtime
from xlr.runtime import DistContext, RankZeroFailed, rank0_first

WAIT = timedelta(seconds=60)  # a rank that would wait for a failed rank 0 times out here


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_ranks(rank: int, port: int, folder: str, fail: bool) -> None:
    """One of two gloo ranks: rank 0 writes a file (or fails); each rank records what it saw
    after :func:`rank0_first` in ``folder/<rank>.txt``."""
    runtime.RANK0_WAIT = WAIT
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=WAIT)
    written = Path(folder) / "written.txt"

    def work() -> None:
        if fail:
            raise ValueError("no shards in /data/laion")
        written.write_text("rank 0 was here")

    try:
        rank0_first(DistContext(rank, 2, torch.device("cpu")), work)
        seen = f"ok: {written.read_text()}"
    except Exception as error:  # what each rank raised is the test's finding
        seen = f"{type(error).__name__}: {error}"
    finally:
        dist.destroy_process_group()
    (Path(folder) / f"{rank}.txt").write_text(seen)


@pytest.mark.parametrize("fail", [False, True])
def test_rank0_first_shares_rank_zeros_outcome(tmp_path: Path, fail: bool) -> None:
    mp.spawn(two_ranks, args=(free_port(), str(tmp_path), fail), nprocs=2, join=True)
    seen = [(tmp_path / f"{rank}.txt").read_text() for rank in (0, 1)]
    if not fail:
        assert seen == ["ok: rank 0 was here"] * 2
        return
    assert seen[0] == "ValueError: no shards in /data/laion"  # rank 0's own error, as raised
    assert seen[1].startswith(f"{RankZeroFailed.__name__}: rank 0 failed")
    assert "ValueError: no shards in /data/laion" in seen[1]
    assert not (tmp_path / "written.txt").exists()


def test_one_process_runs_the_work_and_raises_its_error() -> None:
    ran = []
    rank0_first(DistContext(0, 1, torch.device("cpu")), lambda: ran.append(True))
    assert ran == [True]

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        rank0_first(DistContext(0, 1, torch.device("cpu")), broken)
