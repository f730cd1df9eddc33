"""Shards as img2dataset writes them: keys, members, metadata fields, parquet, stats, and
readability with the webdataset library, on hand-made samples and on the generated corpus."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from xlr.config import SyntheticSection
from xlr.data.shards import IMG2DATASET_FIELDS, Sample, read_shards, sample_key, write_shards
from xlr.data.synthetic import generate_corpus

EXTRA = pa.schema([pa.field("LANGUAGE", pa.string()), pa.field("similarity", pa.float64())])
IMG2DATASET_KEYS = [f.name for f in IMG2DATASET_FIELDS]


def _samples(n: int) -> list[Sample]:
    return [
        Sample(
            url=f"http://127.0.0.1:8000/images/pretrain/{i:08d}.jpg",
            caption=f"caption {i} – été",
            jpg=bytes([i % 256]) * (50 + i),
            width=32,
            height=32,
            columns={"LANGUAGE": "fr", "similarity": 0.3},
        )
        for i in range(n)
    ]


def test_sample_key_follows_img2dataset() -> None:
    assert sample_key(0, 42, 10000) == "000000042"  # img2dataset's default shard size
    assert sample_key(12, 7, 10000) == "000120007"
    assert sample_key(3, 7, 1000) == "00003007"
    assert sample_key(1, 0, 100) == "0000100"
    with pytest.raises(ValueError, match="does not fit"):
        sample_key(0, 100, 100)


def test_write_shards_layout_members_and_metadata(tmp_path: Path) -> None:
    assert write_shards(_samples(25), tmp_path, 10, EXTRA) == 3
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{s:05d}{suffix}" for s in range(3) for suffix in
                     (".parquet", ".tar", "_stats.json")]  # fmt: skip
    with tarfile.open(tmp_path / "00001.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["000010.jpg", "000010.json", "000010.txt"]
    assert len(members) == 30
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {
        (0, 0, 0, "bigdata", 0o444)
    }
    table = pq.read_table(tmp_path / "00002.parquet")
    assert table.column_names == ["LANGUAGE", "similarity", *IMG2DATASET_KEYS]
    assert table.num_rows == 5 and table.column("key").to_pylist()[0] == "000020"
    stats = json.loads((tmp_path / "00002_stats.json").read_text())
    assert stats["count"] == stats["successes"] == 5 and stats["status_dict"] == {"success": 5}


def test_read_shards_round_trip_with_webdataset(tmp_path: Path) -> None:
    samples = _samples(25)
    write_shards(samples, tmp_path, 10, EXTRA)
    read = list(read_shards(tmp_path))
    assert [r["txt"] for r in read] == [s.caption for s in samples]
    assert [r["jpg"] for r in read] == [s.jpg for s in samples]
    meta = read[13]["json"]
    assert list(meta) == ["LANGUAGE", "similarity", *IMG2DATASET_KEYS]
    assert meta["key"] == read[13]["key"] == "000013"
    assert meta["status"] == "success" and meta["exif"] is None and meta["error_message"] is None
    assert meta["sha256"] == hashlib.sha256(samples[13].jpg).hexdigest()
    assert meta["url"] == samples[13].url and meta["caption"] == samples[13].caption


def test_read_shards_names_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no webdataset shards"):
        list(read_shards(tmp_path))


def test_corpus_shards_are_img2dataset_webdatasets(tmp_path: Path) -> None:
    cfg = SyntheticSection(
        pretrain_images=120, finetune_images=12, eval_images=6, image_size=32, shard_size=50
    )
    corpus = generate_corpus(cfg, tmp_path / "c", progress=False)
    shard_dir = corpus / "pretrain" / "shards"
    assert sorted(p.name for p in shard_dir.glob("*.tar")) == [
        "00000.tar",
        "00001.tar",
        "00002.tar",
    ]
    urls = [str(p) for p in sorted(shard_dir.glob("*.tar"))]
    decoded = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert len(decoded) == 120 and decoded[0]["jpg"].shape == (32, 32, 3)
    assert decoded[57]["__key__"] == "0000107"
    meta = decoded[57]["json"]
    for column in (
        "LANGUAGE",
        "ENG TEXT",
        "similarity",
        "punsafe",
        "pwatermark",
        *IMG2DATASET_KEYS,
    ):
        assert column in meta, column
    assert meta["caption"] == decoded[57]["txt"] and meta["width"] == meta["original_width"] == 32
    assert meta["url"].endswith("/pretrain/00000057.jpg") and "translations" not in meta
    image = (corpus / "images" / "pretrain" / "00000057.jpg").read_bytes()
    assert meta["sha256"] == hashlib.sha256(image).hexdigest()
    finetune = next(read_shards(corpus / "finetune" / "shards"))["json"]
    assert set(finetune["translations"]) == set(cfg.langs)
    assert all(len(v) == cfg.captions_per_image for v in finetune["translations"].values())
    assert finetune["caption"] == finetune["translations"]["en"][0]
    parquet = pq.read_table(corpus / "finetune" / "shards" / "00000.parquet")
    assert parquet.column_names[-len(IMG2DATASET_KEYS) :] == IMG2DATASET_KEYS
    assert parquet.num_rows == 12
