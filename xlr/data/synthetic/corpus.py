"""Pools of captioned images written to disk in LAION's formats, and read back.

Layout written by :func:`generate_corpus` (LAION's formats, so the real-data path reads it too)::

    manifest.json                     config, images per pool, compositions per split, captions
                                      per pool and language, sha256 and size of every file
    images/{pool}/{image_id:08d}.jpg  the images, for a loopback HTTP server and img2dataset
    {pool}/metadata.parquet           LAION columns (URL, TEXT, LANGUAGE, similarity, punsafe,
                                      pwatermark, WIDTH, HEIGHT, ENG TEXT) + image_id,
                                      caption_idx, noise: one row per caption
    {pool}/scenes.parquet             image_id, shape, colour, size, count, relation, ref_shape,
                                      ref_colour, ref_size (the group, where it stands, and the
                                      reference object)
    {pool}/shards/                    webdataset shards exactly as img2dataset writes them
    {val,eval}/captions.parquet       image_id, lang, caption_idx, caption (the clean sets)

Pools: ``pretrain`` (LAION-like: one noisy caption per image in one language drawn from the
LAION-5B mix of ``pretrain_langs``), ``finetune`` (``captions_per_image`` parallel noisy captions
per image in every language), ``val`` and ``eval`` (the same, clean). ``image_id`` counts from 0
within each pool and is the image's position in :func:`load_pool`'s set.

The held-out world: ``val`` and ``eval`` show compositions that no training image shows
(:func:`~xlr.data.synthetic.scenes.split_world`), each image its own composition (drawn without
replacement, the two pools disjoint), and since every caption states its whole composition, no
val or eval caption occurs in any training text, noisy or clean, in any language (mismatched
training captions describe training compositions too); what each pool holds is drawn in
:mod:`~xlr.data.synthetic.pools`, and :func:`~xlr.data.synthetic.audit.corpus_overlaps` checks
a corpus on disk. The pools never share an image either: every image is rendered with its own
background, jitter and pixel noise (the tests check the JPEG hashes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm.auto import tqdm

from xlr.config import SyntheticSection, config_hash
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.shards import Sample, read_shards, write_shards
from xlr.data.synthetic.lexicon import lexicon_digest
from xlr.data.synthetic.pools import (
    HELD_OUT_POOLS,
    POOLS,
    CaptionRow,
    pool_captions,
    pool_rng,
    pool_scenes,
    pool_size,
    world_split,
)
from xlr.data.synthetic.render import encode_jpeg, render_scene
from xlr.data.synthetic.scenes import Scene, Thing, all_scenes

DEFAULT_BASE_URL = "http://127.0.0.1:8000/images"
FORMAT_VERSION = 2  # 2: two objects and a relation, held-out val and eval compositions


# --- Writing pools --------------------------------------------------------------------------
def _metadata_table(rows: Sequence[CaptionRow], pool: str, size: int, base_url: str) -> pa.Table:
    """LAION's metadata columns (and the translated release's ``ENG TEXT``), one row a caption."""
    return pa.table(
        {
            "URL": [f"{base_url}/{pool}/{r.image_id:08d}.jpg" for r in rows],
            "TEXT": [r.caption.text for r in rows],
            "LANGUAGE": [r.lang for r in rows],
            "similarity": pa.array([r.similarity for r in rows], pa.float64()),
            "punsafe": pa.array([r.punsafe for r in rows], pa.float64()),
            "pwatermark": pa.array([r.pwatermark for r in rows], pa.float64()),
            "WIDTH": pa.array([size] * len(rows), pa.int64()),
            "HEIGHT": pa.array([size] * len(rows), pa.int64()),
            "ENG TEXT": [r.caption.eng_text for r in rows],
            "image_id": pa.array([r.image_id for r in rows], pa.int64()),
            "caption_idx": pa.array([r.caption_idx for r in rows], pa.int64()),
            "noise": [r.caption.noise for r in rows],
        }
    )


def _scenes_table(scenes: Sequence[Scene]) -> pa.Table:
    return pa.table(
        {
            "image_id": pa.array(range(len(scenes)), pa.int64()),
            "shape": [s.group.shape for s in scenes],
            "colour": [s.group.colour for s in scenes],
            "size": [s.group.size for s in scenes],
            "count": pa.array([s.count for s in scenes], pa.int64()),
            "relation": [s.relation for s in scenes],
            "ref_shape": [s.reference.shape for s in scenes],
            "ref_colour": [s.reference.colour for s in scenes],
            "ref_size": [s.reference.size for s in scenes],
        }
    )


def scene_of(row: Mapping[str, Any]) -> Scene:
    """The :class:`Scene` of one row of a ``scenes.parquet`` table (a dict or a pandas row)."""
    return Scene(
        Thing(row["shape"], row["colour"], row["size"]),
        int(row["count"]),
        row["relation"],
        Thing(row["ref_shape"], row["ref_colour"], row["ref_size"]),
    )


def _shard_columns(parallel: bool) -> pa.Schema:
    """Additional columns img2dataset would carry over (``save_additional_columns``)."""
    fields = [
        pa.field("image_id", pa.int64()),
        pa.field("caption_idx", pa.int64()),
        pa.field("LANGUAGE", pa.string()),
        pa.field("ENG TEXT", pa.string()),
        pa.field("similarity", pa.float64()),
        pa.field("punsafe", pa.float64()),
        pa.field("pwatermark", pa.float64()),
    ]
    if parallel:
        fields.append(pa.field("translations", pa.map_(pa.string(), pa.list_(pa.string()))))
    return pa.schema(fields)


def _samples(
    cfg: SyntheticSection,
    pool: str,
    scenes: Sequence[Scene],
    rows: Sequence[CaptionRow],
    image_dir: Path,
    base_url: str,
    progress: bool,
) -> Iterator[Sample]:
    """Render each image, write its file, and yield its shard sample.

    The sample's ``.txt`` is the pretrain caption, or for the parallel pools caption 0 in the
    first configured language; ``translations`` then holds every language's captions.
    """
    by_image: list[list[CaptionRow]] = [[] for _ in scenes]
    for row in rows:
        by_image[row.image_id].append(row)
    render_rng = pool_rng(cfg, pool, "render")
    for image_id in tqdm(range(len(scenes)), desc=f"render {pool}", disable=not progress):
        jpg = encode_jpeg(render_scene(scenes[image_id], cfg.image_size, render_rng))
        (image_dir / f"{image_id:08d}.jpg").write_bytes(jpg)
        first = by_image[image_id][0]
        columns: dict[str, Any] = {
            "image_id": image_id,
            "caption_idx": first.caption_idx,
            "LANGUAGE": first.lang,
            "ENG TEXT": first.caption.eng_text,
            "similarity": first.similarity,
            "punsafe": first.punsafe,
            "pwatermark": first.pwatermark,
        }
        if pool != "pretrain":
            translations: dict[str, list[str]] = {}
            for row in by_image[image_id]:
                translations.setdefault(row.lang, []).append(row.caption.text)
            columns["translations"] = translations
        url = f"{base_url}/{pool}/{image_id:08d}.jpg"
        yield Sample(url, first.caption.text, jpg, cfg.image_size, cfg.image_size, columns)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _write_pool(
    cfg: SyntheticSection, pool: str, root: Path, base_url: str, progress: bool
) -> dict[str, int]:
    """Write one pool's files under ``root``; returns its caption count per language."""
    scenes = pool_scenes(cfg, pool)
    rows = pool_captions(cfg, pool, scenes)
    _write_parquet(
        _metadata_table(rows, pool, cfg.image_size, base_url), root / pool / "metadata.parquet"
    )
    _write_parquet(_scenes_table(scenes), root / pool / "scenes.parquet")
    if pool in HELD_OUT_POOLS:
        captions = pa.table(
            {
                "image_id": pa.array([r.image_id for r in rows], pa.int64()),
                "lang": [r.lang for r in rows],
                "caption_idx": pa.array([r.caption_idx for r in rows], pa.int64()),
                "caption": [r.caption.text for r in rows],
            }
        )
        _write_parquet(captions, root / pool / "captions.parquet")
    image_dir = root / "images" / pool
    image_dir.mkdir(parents=True, exist_ok=True)
    samples = _samples(cfg, pool, scenes, rows, image_dir, base_url, progress)
    write_shards(
        samples, root / pool / "shards", cfg.shard_size, _shard_columns(pool != "pretrain")
    )
    counts: dict[str, int] = {lang: 0 for lang in cfg.langs}
    for row in rows:
        counts[row.lang] += 1
    return counts


# --- The corpus on disk ------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_config(cfg: SyntheticSection, base_url: str) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "base_url": base_url, **cfg.model_dump(mode="json")}


def corpus_key(cfg: SyntheticSection) -> str:
    """The generated corpus's cache key: its config, the generator's :data:`FORMAT_VERSION` and
    the lexicons' bytes (:func:`lexicon_digest`), the three things that decide what it holds."""
    return config_hash(cfg, FORMAT_VERSION, lexicon_digest())


class CorpusError(ValueError):
    """A corpus directory that is missing, incomplete or not a corpus; the message says the fix."""


def read_manifest(corpus_dir: Path) -> dict[str, Any]:
    """The corpus manifest, or a :class:`CorpusError` naming the path and the fix."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        raise CorpusError(
            f"{path}: no corpus manifest; generate the corpus with "
            f"xlr.data.synthetic.generate_corpus(cfg, {str(corpus_dir)!r}) first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not {"config", "counts", "files"} <= set(manifest):
            raise ValueError("missing config, counts or files")
    except (ValueError, TypeError) as err:
        raise CorpusError(
            f"{path}: corrupt corpus manifest ({err}); delete {corpus_dir} and generate it again"
        ) from None
    return manifest


def _is_complete(corpus_dir: Path, manifest: dict[str, Any]) -> bool:
    """Every listed file present with its recorded size (hashing 100k images per call is not
    worth it; a size mismatch catches truncation, the usual way a copy goes wrong)."""
    return all(
        (corpus_dir / rel).is_file() and (corpus_dir / rel).stat().st_size == entry["bytes"]
        for rel, entry in manifest["files"].items()
    )


def _cached(out_dir: Path, config: dict[str, Any]) -> bool:
    """Whether ``out_dir`` already holds a complete corpus of this exact config."""
    if not out_dir.exists():
        return False
    if not (out_dir / "manifest.json").is_file():
        if any(out_dir.iterdir()):
            raise CorpusError(
                f"{out_dir}: exists, is not empty and holds no corpus manifest; refusing to "
                "overwrite it. Choose another output directory or delete this one"
            )
        return False
    manifest = read_manifest(out_dir)
    return manifest["config"] == config and _is_complete(out_dir, manifest)


def _build(cfg: SyntheticSection, root: Path, config: dict[str, Any], progress: bool) -> None:
    """Write every pool and the manifest into ``root`` (a fresh temporary directory)."""
    counts = {pool: _write_pool(cfg, pool, root, config["base_url"], progress) for pool in POOLS}
    split = world_split(cfg)
    images = {pool: pool_size(cfg, pool) for pool in POOLS}
    compositions = {
        "world": len(all_scenes()),
        "train": len(split.train),
        "val": len(split.val),
        "eval": len(split.eval),
    }
    files = {
        path.relative_to(root).as_posix(): {"sha256": _sha256(path), "bytes": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    manifest = {
        "config": config,
        "images": images,
        "compositions": compositions,
        "counts": counts,
        "files": files,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
    (root / "manifest.json").write_text(text + "\n", encoding="utf-8")


def _replace_dir(built: Path, out_dir: Path) -> None:
    """Move ``built`` to ``out_dir``; an older corpus there is moved aside first, then removed."""
    if not out_dir.exists():
        os.replace(built, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(built, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def generate_corpus(
    cfg: SyntheticSection,
    out_dir: Path,
    progress: bool = True,
    base_url: str = DEFAULT_BASE_URL,
) -> Path:
    """Generate the corpus of ``cfg`` into ``out_dir`` and return ``out_dir``.

    Deterministic: the same config gives byte-identical files. Atomic: the corpus is built in a
    hidden temporary directory next to ``out_dir`` and renamed into place, so a crash never
    leaves half a corpus. Cached: when ``out_dir`` already holds a complete corpus of the same
    config (``manifest.json``), nothing is written. ``base_url`` is the prefix of every URL
    (serve ``out_dir/images`` there to run the img2dataset path offline).
    """
    out_dir = Path(out_dir)
    config = _manifest_config(cfg, base_url.rstrip("/"))
    if _cached(out_dir, config):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _build(cfg, tmp, config, progress)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _decode(jpg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpg)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_pool(corpus_dir: Path, pool: str) -> ImageTextSet:
    """One pool as an :class:`ImageTextSet`, read from its webdataset shards.

    ``pretrain`` has one caption row per image (its language, index 0); ``finetune``, ``val``
    and ``eval`` have every language x caption index. Images are decoded into memory
    (:class:`ArrayImages`), ordered by ``image_id``.
    """
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    if pool not in manifest["counts"]:
        raise CorpusError(
            f"{corpus_dir}: unknown pool {pool!r}; this corpus has {', '.join(manifest['counts'])}"
        )
    if manifest["config"].get("format_version") != FORMAT_VERSION:
        raise CorpusError(
            f"{corpus_dir}: written in corpus format {manifest['config'].get('format_version')}, "
            f"this xlr reads format {FORMAT_VERSION}; delete it and generate it again"
        )
    shard_dir = corpus_dir / pool / "shards"
    size, count = manifest["config"]["image_size"], manifest["images"][pool]
    pixels = np.zeros((count, size, size, 3), dtype=np.uint8)  # filled in place: one copy
    seen = np.zeros(count, dtype=bool)
    records = []
    for sample in read_shards(shard_dir):
        meta = sample["json"]
        image_id = meta["image_id"]
        if not 0 <= image_id < count or seen[image_id]:
            raise CorpusError(
                f"{shard_dir}: unexpected image_id {image_id} in sample {sample['key']}; "
                f"delete {corpus_dir} and generate it again"
            )
        pixels[image_id], seen[image_id] = _decode(sample["jpg"]), True
        if pool == "pretrain":
            records.append((image_id, meta["LANGUAGE"], 0, sample["txt"]))
        else:
            for lang, captions in meta["translations"].items():
                records.extend((image_id, lang, k, text) for k, text in enumerate(captions))
    expected = sum(manifest["counts"][pool].values())
    if not seen.all() or len(records) != expected:
        raise CorpusError(
            f"{shard_dir}: {seen.sum()} images and {len(records)} captions in the shards, the "
            f"manifest says {count} and {expected}; delete {corpus_dir} and generate it again"
        )
    captions = pd.DataFrame(records, columns=["image_id", "lang", "caption_idx", "caption"])
    captions = captions.sort_values("image_id", kind="stable").reset_index(drop=True)
    keys = [f"{image_id:08d}.jpg" for image_id in range(count)]
    parallel = pool != "pretrain"  # caption k is one template rendered in every language
    return ImageTextSet(f"synthetic-{pool}", keys, ArrayImages(pixels), captions, parallel=parallel)
