"""Atomic writes: an output either appears whole under its final name or not at all.

A run killed mid-write (out of memory, a pre-empted node, Ctrl-C) must not leave a truncated
parquet or half a manifest that a later step reads as finished. Every writer here builds the
output under a hidden temporary name in the *same* directory (so the final ``os.replace`` is a
rename within one filesystem, which POSIX makes atomic) and renames it only on success; on
failure the temporary is removed and the error propagates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _sibling(path: Path, tag: str) -> Path:
    """A hidden, unique name next to ``path``: same filesystem, so renaming it is atomic."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def _fsync_dir(directory: Path) -> None:
    """Persist a rename itself (not just the file's bytes) across a power cut, where possible."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """Flush every file under ``directory``, and the folders that name them, to disk."""
    for folder, _, files in os.walk(directory):
        for name in files:
            fd = os.open(Path(folder) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; it becomes ``path`` only if the block succeeds.

    For writers that insist on a file name (pyarrow, DuckDB ``COPY``, PIL). An existing ``path``
    is replaced.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write to {final}: nothing was written to {tmp}")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the final path."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; returns the final path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented, key-sorted UTF-8 JSON (stable diffs between runs) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_parquet(df: pd.DataFrame | pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write a pandas DataFrame (index dropped) or an Arrow table to parquet atomically."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def replace_dir(built: Path, final: Path) -> None:
    """Move the complete directory ``built`` to ``final`` (a sibling), replacing any old one.

    The old one is renamed aside before the new one is renamed in and only then deleted, so at
    every instant ``final`` is either the old directory or the new one, never a mix: its files'
    bytes are flushed to disk before the rename, which after a power cut could otherwise name a
    directory of empty files.
    """
    _fsync_tree(built)
    if final.exists():
        old = _sibling(final, "old")
        os.replace(final, old)
        os.replace(built, final)
        shutil.rmtree(old)
    else:
        os.replace(built, final)
    _fsync_dir(final.parent)


@contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; it becomes ``path`` only if the block succeeds.

    For outputs made of several files that must appear together (a sample and its manifest).
    An existing ``path`` is an error unless ``overwrite``, in which case it is swapped out only
    after the new directory is complete, so a failure leaves the old one intact.
    """
    final = Path(path)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; remove it or pass overwrite=True")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks so a large file never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# Files that hold a model's weights: too large to read for a key, named by size and time instead
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")


def model_files_digest(path: str | os.PathLike[str]) -> str:
    """A digest of a model folder or checkpoint file, for keys of what was computed with it.

    Hidden files (such as ``.git``) are left out. Every file except the weights (config,
    generation config, tokenizer and vocabulary) counts by its sha256; each weights file
    (:data:`WEIGHT_SUFFIXES`), which may be gigabytes, by its name, size and modification time.
    Weights replaced by others of the same size and time stamp (``cp -p`` of a model of the
    same shape) would go unseen; a copy, a re-save or a download changes the time.
    """
    root = Path(path)
    files = [root] if root.is_file() else sorted(root.rglob("*"))
    digest = hashlib.sha256()
    for file in files:
        part = Path(file.name) if file == root else file.relative_to(root)
        if not file.is_file() or any(name.startswith(".") for name in part.parts):
            continue
        if file.suffix in WEIGHT_SUFFIXES:
            stat = file.stat()
            digest.update(f"{part}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        else:
            digest.update(f"{part}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()[:16]
