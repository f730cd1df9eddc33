"""Atomic writes: outputs appear whole under their final name or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from xlr.io import (
    atomic_dir,
    atomic_file,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_bytes_text_and_json_round_trip_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json({"b": 1, "a": "ü"}, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"a": "ü", "b": 1} and text.index('"a"') < text.index('"b"')
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_parquet_from_pandas_and_arrow(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1, 2]}, index=[5, 6])
    atomic_write_parquet(frame, tmp_path / "f.parquet")
    assert pd.read_parquet(tmp_path / "f.parquet").to_dict("list") == {"x": [1, 2]}
    atomic_write_parquet(pa.table({"y": ["a"]}), tmp_path / "g.parquet")
    assert pd.read_parquet(tmp_path / "g.parquet")["y"].tolist() == ["a"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_file_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_file(tmp_path / "x"):
        pass
    assert not (tmp_path / "x").exists()


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "part.parquet").write_bytes(b"x")
        raise RuntimeError("failed before the manifest")
    assert not out.exists() and _leftovers(tmp_path) == []
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("2")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]


def test_a_directorys_files_reach_the_disk_before_it_is_renamed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut after the rename must not leave a model folder of empty files: every file
    (nested ones too) is fsynced before the directory takes its final name."""
    events: list[str] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                 fsync(fd)))  # fmt: skip
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), replace(a, b)))
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights.safetensors").write_bytes(b"w")
        (tmp / "tokenizer").mkdir()
        (tmp / "tokenizer" / "vocab.json").write_text("{}")
    synced = [Path(name).name for name in events[: events.index("rename")]]
    assert {"weights.safetensors", "vocab.json", "tokenizer"} <= set(synced)


def test_atomic_dir_refuses_to_clobber_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "old").write_text("0")
    with pytest.raises(FileExistsError, match="overwrite=True"), atomic_dir(out):
        pass
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("1")
        raise RuntimeError
    assert [p.name for p in out.iterdir()] == ["old"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("1")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert _leftovers(tmp_path) == []
