"""Webdataset shards laid out exactly as img2dataset writes them, and read back with webdataset.

Why mimic img2dataset byte for byte: the real path downloads LAION with img2dataset
(``--output_format webdataset --save_additional_columns ...``) and the embedded default must be
readable by the same loaders. For each shard ``{shard_id:05d}`` img2dataset writes:

- ``00000.tar``: per sample ``{key}.jpg``, ``{key}.txt`` (the caption) and ``{key}.json`` (the
  metadata dict, ``json.dumps(meta, indent=4)``), written by webdataset's ``TarWriter``;
- ``00000.parquet``: the same metadata, one row per sample, in row groups of 100;
- ``00000_stats.json``: counts of successes and failures.

The key is img2dataset's ``compute_key``: shard id times ``10**ceil(log10(shard_size))`` plus the
index in the shard, zero-padded to 5 + that many digits (``000000042`` is shard 0, sample 42
with img2dataset's default 10,000 samples a shard). The metadata dict is the additional columns,
then ``caption``, ``url``, ``key``, ``status``, ``error_message``, ``width``, ``height``,
``original_width``, ``original_height``, ``exif`` and ``sha256`` (of the JPEG bytes).

Two deliberate differences make the output reproducible: tar members carry mtime 0 (webdataset's
default is the wall clock) and the stats carry zero times and durations. The tars are written in
the ustar format, which for ASCII member names is byte-identical to the default pax format and
about twice as fast to write.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

from xlr.data.imagetext import ArrayImages, FileImages, ImageStore

SHARD_DIGITS = 5  # img2dataset's oom_shard_count
PARQUET_ROW_GROUP = 100  # img2dataset's BufferedParquetWriter buffer size
TAR_MTIME = 0  # an int: a float mtime makes tarfile add a pax header per member

IMG2DATASET_FIELDS: tuple[pa.Field, ...] = (
    pa.field("caption", pa.string()),
    pa.field("url", pa.string()),
    pa.field("key", pa.string()),
    pa.field("status", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("original_width", pa.int32()),
    pa.field("original_height", pa.int32()),
    pa.field("exif", pa.string()),
    pa.field("sha256", pa.string()),
)


@dataclass(frozen=True)
class Sample:
    """One downloaded pair: what img2dataset gets from the URL list and the image server."""

    url: str
    caption: str
    jpg: bytes
    width: int
    height: int
    columns: dict[str, Any]  # the additional columns (``save_additional_columns``)


def sample_key(shard_id: int, index: int, shard_size: int) -> str:
    """img2dataset's sample key for sample ``index`` of shard ``shard_id``."""
    digits = math.ceil(math.log10(shard_size))
    if not 0 <= index < 10**digits:
        raise ValueError(f"sample index {index} does not fit a shard of {shard_size} samples")
    return f"{shard_id * 10**digits + index:0{SHARD_DIGITS + digits}d}"


def shard_schema(additional: pa.Schema) -> pa.Schema:
    """The per-shard parquet schema: the additional columns, then img2dataset's own."""
    return pa.schema([*additional, *IMG2DATASET_FIELDS])


def _metadata(sample: Sample, key: str) -> dict[str, Any]:
    return {
        **sample.columns,
        "caption": sample.caption,
        "url": sample.url,
        "key": key,
        "status": "success",
        "error_message": None,
        "width": sample.width,
        "height": sample.height,
        "original_width": sample.width,
        "original_height": sample.height,
        "exif": None,
        "sha256": hashlib.sha256(sample.jpg).hexdigest(),
    }


def _write_shard(
    samples: list[Sample], shard_dir: Path, shard_id: int, shard_size: int, schema: pa.Schema
) -> None:
    """Write one shard's tar, parquet and stats file."""
    name = f"{shard_id:0{SHARD_DIGITS}d}"
    metas = []
    with open(shard_dir / f"{name}.tar", "wb") as stream:
        writer = wds.TarWriter(stream, mtime=TAR_MTIME, format=tarfile.USTAR_FORMAT)
        for index, sample in enumerate(samples):
            meta = _metadata(sample, sample_key(shard_id, index, shard_size))
            metas.append(meta)
            writer.write(
                {
                    "__key__": meta["key"],
                    "jpg": sample.jpg,
                    "txt": sample.caption,
                    "json": json.dumps(meta, indent=4),
                }
            )
        writer.close()
    columns = {field.name: [meta[field.name] for meta in metas] for field in schema}
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, shard_dir / f"{name}.parquet", row_group_size=PARQUET_ROW_GROUP)
    stats = {
        "count": len(samples),
        "successes": len(samples),
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "duration": 0.0,
        "start_time": 0.0,
        "end_time": 0.0,
        "status_dict": {"success": len(samples)},
    }
    (shard_dir / f"{name}_stats.json").write_text(json.dumps(stats, indent=4), encoding="utf-8")


def write_shards(
    samples: Iterable[Sample], shard_dir: Path, shard_size: int, additional: pa.Schema
) -> int:
    """Write ``samples`` as consecutive shards of ``shard_size``; returns the number of shards.

    ``additional`` is the schema of ``Sample.columns`` (the parquet needs types up front, as
    img2dataset takes them from the input parquet). Memory holds one shard at a time.
    """
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    schema = shard_schema(additional)
    iterator = iter(samples)
    shard_id = 0
    while batch := list(itertools.islice(iterator, shard_size)):
        _write_shard(batch, shard_dir, shard_id, shard_size, schema)
        shard_id += 1
    return shard_id


def _tars(shard_dir: Path) -> list[Path]:
    tars = sorted(Path(shard_dir).glob("*.tar"))
    if not tars:
        raise FileNotFoundError(
            f"{shard_dir}: no webdataset shards (*.tar); point at a folder img2dataset or "
            "xlr.data.synthetic.generate_corpus wrote"
        )
    return tars


IMAGE_SUFFIXES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")  # img2dataset's encode formats


@dataclass(frozen=True)
class ShardImages:
    """Images left in their webdataset tars, read and decoded on access.

    Why: holding a pool as JPEG bytes costs every rank 20-35 GB at 900k images; this holds where
    each image lies (tar, byte offset, size: 20 bytes an image) and reads it with one seek, so a
    DataLoader worker (:mod:`xlr.train.inputs`) reads only the images of its batch. Picklable and
    safe to share across forked workers: no file handle is kept open.
    """

    tars: tuple[str, ...]
    tar_ids: np.ndarray  # int32 [N]: which tar holds image i
    offsets: np.ndarray  # int64 [N]: byte offset of its data in that tar
    sizes: np.ndarray  # int64 [N]: its size in bytes

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, index: int) -> bytes:
        """The encoded bytes of image ``index``, as stored in its tar."""
        path = self.tars[int(self.tar_ids[index])]
        with open(path, "rb") as stream:
            stream.seek(int(self.offsets[index]))
            data = stream.read(int(self.sizes[index]))
        if len(data) != self.sizes[index]:
            raise ValueError(f"{path}: truncated at image {index}; download the shard again")
        return data

    def __getitem__(self, index: int) -> Image.Image:
        try:
            with Image.open(io.BytesIO(self.read(index))) as img:
                return img.convert("RGB")
        except OSError as err:  # PIL's own message names a BytesIO, not the image
            path = self.tars[int(self.tar_ids[index])]
            raise ValueError(
                f"{path}: image {index} (at byte {int(self.offsets[index])}) cannot be decoded "
                f"({err}); download the shard again or drop the sample"
            ) from err


def _tar_images(path: Path) -> list[tuple[str, int, int]]:
    """(key, data offset, size) of each image member of the tar ``path``, from its headers; a
    tar cut short (an interrupted copy of shards downloaded elsewhere, which its stats and
    parquet cannot show) is an error naming it."""
    damaged = (
        f"{path}: the tar is cut short or damaged; copy or download that shard again (with its "
        ".parquet and _stats.json)"
    )
    images = []
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                key, _, suffix = member.name.partition(".")
                if member.isfile() and suffix.lower() in IMAGE_SUFFIXES:
                    images.append((key, member.offset_data, member.size))
    except (tarfile.TarError, EOFError) as err:
        raise ValueError(f"{damaged} ({err})") from None
    end = max((offset + size for _, offset, size in images), default=0)
    if end > path.stat().st_size:
        raise ValueError(f"{damaged} (its last image ends past the file's {path.stat().st_size} B)")
    return images


def shard_images(
    shard_dir: Path, keys: Sequence[str] | None = None
) -> tuple[list[str], ShardImages]:
    """Index the images of every ``*.tar`` in ``shard_dir``: (their keys, the store).

    Only the tar headers are read (``tarfile`` seeks over the data of an uncompressed tar). The
    order is shard then member order, as :func:`read_shards` yields samples, or ``keys``' order
    when given (a key without an image is an error). The key of ``000000042.jpg`` is
    ``000000042``, as webdataset splits names. A key with two images (in two tars, or twice in
    one) is an error: which image it names would depend on the order the tars are listed in.
    """
    tars = _tars(shard_dir)
    found: dict[str, tuple[int, int, int]] = {}
    for tar_id, path in enumerate(tars):
        for key, offset, size in _tar_images(path):
            if key in found:
                raise ValueError(
                    f"{shard_dir}: image key {key!r} is in both {tars[found[key][0]].name} "
                    f"and {path.name}; shards written by different runs (or twice) into "
                    "one folder: keep one run's shards per folder"
                )
            found[key] = (tar_id, offset, size)
    order = list(found) if keys is None else list(keys)
    missing = [key for key in order if key not in found]
    if missing:
        raise KeyError(
            f"{shard_dir}: no image for keys {missing[:5]} ({len(missing)} in all) in the shards; "
            "the shards changed since their metadata was read: read them again"
        )
    where = np.array([found[key] for key in order], dtype=np.int64).reshape(-1, 3)
    store = ShardImages(
        tuple(str(path) for path in tars), where[:, 0].astype(np.int32), where[:, 1], where[:, 2]
    )
    return order, store


def read_shards(shard_dir: Path) -> Iterator[dict[str, Any]]:
    """Samples of every ``*.tar`` in ``shard_dir`` in shard and key order, read with webdataset:
    ``key``, ``jpg`` (bytes), ``txt`` (str) and ``json`` (dict)."""
    tars = _tars(shard_dir)
    # nodesplitter=None: every rank of a torchrun job needs the whole pool (batches are drawn
    # globally, then sharded), so webdataset must not split the tars across ranks.
    dataset = wds.WebDataset(
        [str(t) for t in tars], shardshuffle=False, empty_check=False, nodesplitter=None
    )
    for sample in dataset:
        yield {
            "key": sample["__key__"],
            "jpg": sample["jpg"],
            "txt": sample["txt"].decode("utf-8"),
            "json": json.loads(sample["json"]),
        }


def store_subset(images: ImageStore, ids: np.ndarray) -> ImageStore:
    """Images ``ids`` of ``images`` as a store of their own: only they travel when a set is
    pickled to a worker, not the whole download's index."""
    if isinstance(images, ShardImages):
        return ShardImages(images.tars, images.tar_ids[ids], images.offsets[ids], images.sizes[ids])
    if isinstance(images, ArrayImages):
        return ArrayImages(images.pixels[ids])
    if isinstance(images, FileImages):
        return FileImages([images.paths[i] for i in ids])
    raise TypeError(f"cannot take a subset of {type(images).__name__} images")
