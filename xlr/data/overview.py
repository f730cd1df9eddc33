"""What notebook 01 shows of the prepared data: counts per language at each stage, who wrote the
fine-tuning captions, and the audits :func:`xlr.data.prepare.prepare_data` wrote.

Read from the data contract (:func:`xlr.data.prepare.read_contract`) and the pools, never
re-derived: the tables show what later notebooks will read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from xlr.data.imagetext import ImageTextSet, target_only
from xlr.data.synthetic import read_manifest


def held_out_overlaps(contract: dict[str, Any]) -> pd.DataFrame | None:
    """What the generated corpus's val and eval pools share with training and with each other
    (:func:`xlr.data.synthetic.corpus_overlaps`), or what the LAION validation images share with
    training (keys, captions, near-duplicate photos), beside the split's size and the size asked
    for (:func:`xlr.data.laion.holdout.holdout_audit`): zero shares throughout, since
    :func:`~xlr.data.prepare.prepare_data` refuses any other audit. None for a contract written
    before LAION had a validation split."""
    if "audit" not in contract:
        return None
    return pd.read_csv(Path(contract["audit"]), dtype={"texts_inside": "Int64"})


def benchmark_copies(contract: dict[str, Any]) -> pd.DataFrame | None:
    """Per benchmark, its images, the LAION pool images removed as copies of them and the copies
    left in training and validation (zero, since :func:`~xlr.data.prepare.prepare_data` refuses
    any other table: :func:`xlr.data.laion.near_duplicates.benchmark_overlap`). None for the
    generated corpus, whose images are rendered, not collected from the web."""
    if "benchmark_overlap" not in contract:
        return None
    return pd.read_csv(Path(contract["benchmark_overlap"]))


def sampled_language_counts(contract: dict[str, Any]) -> dict[str, int]:
    """Pairs per language in the pretraining-like sample: the generated corpus's LAION-like pool,
    the LAION subset DuckDB selected, or the rows of shards downloaded elsewhere."""
    if contract["source"] == "synthetic":
        return dict(read_manifest(Path(contract["corpus"]))["counts"]["pretrain"])
    if "sampled_counts" in contract:
        return dict(contract["sampled_counts"])
    manifest = json.loads(Path(contract["sample_manifest"]).read_text(encoding="utf-8"))
    counts = manifest["counts"].items()
    return {lang: stages["selected"] for lang, stages in counts if "selected" in stages}


def input_language_counts(contract: dict[str, Any]) -> dict[str, int] | None:
    """Rows per language in the LAION metadata before any filter (None for the generated corpus,
    which is generated at its mix rather than sampled from a larger pool, and for shards
    downloaded elsewhere, whose metadata this run never read)."""
    if "sample_manifest" not in contract:
        return None
    manifest = json.loads(Path(contract["sample_manifest"]).read_text(encoding="utf-8"))
    return {lang: stages.get("rows", 0) for lang, stages in manifest["counts"].items()}


def language_counts(pools: dict[str, ImageTextSet]) -> pd.DataFrame:
    """Captions per language (rows) in each pool (columns), zero where a pool lacks one; a
    fine-tuning pool's round trips (``target_only``) are left out (:func:`caption_sources`
    counts them)."""
    counts = {
        name: pool.captions.loc[~target_only(pool.captions), "lang"].value_counts()
        for name, pool in pools.items()
    }
    return pd.DataFrame(counts).fillna(0).astype(int)


def caption_sources(pool: ImageTextSet) -> pd.DataFrame:
    """Captions per language (rows) by who wrote them (columns): ``written`` (the web page's
    own), ``ENG TEXT`` (LAION's English translation), ``machine-translated``
    (``data.laion.translate``) and ``round trip`` (its ``paraphrase_via``: mono's text-text
    targets, never queries), zero where none."""
    captions = pool.captions
    source = captions["translated_by"].map(
        lambda who: {"": "written", "ENG TEXT": "ENG TEXT"}.get(who, "machine-translated")
    )
    source = source.where(~target_only(captions), "round trip")
    table = pd.crosstab(captions["lang"], source)
    columns = ["written", "ENG TEXT", "machine-translated", "round trip"]
    return table.reindex(columns=columns, fill_value=0).rename_axis(index="language", columns=None)


def identical_across_languages(sets: dict[str, ImageTextSet], langs: Sequence[str]) -> pd.DataFrame:
    """Per set: its captions in ``langs``, how many of them are the exact text of a caption of
    the same image in another of ``langs`` (``identical``, with its ``share``), on how many
    images, and the first such text with its languages (``example``).

    Why: an identical text embeds identically, so its first place in a multilingual pool says
    nothing of the model's languages. An image query's two identical captions tie, and a tie
    goes to the lower gallery index (:mod:`xlr.eval.search`), the language earlier in the pool;
    a caption query's identical twin in another language matches it exactly and comes first.
    The language preference and English-first rate count such first places. The count is an
    upper bound on them (a pool holds one caption per image and language); the generated
    corpus has none, and a real benchmark's count says how much of its preference they could
    be."""
    rows = []
    for name, evaluation in sets.items():
        captions = evaluation.captions[evaluation.captions["lang"].isin(langs)]
        twins = captions.groupby(["image_id", "caption"], sort=False)["lang"].transform("nunique")
        shared = captions[twins.to_numpy() > 1]
        example = None
        if len(shared):
            first = shared.iloc[0]
            same = shared[(shared["image_id"] == first["image_id"])
                          & (shared["caption"] == first["caption"])]  # fmt: skip
            example = f"{'/'.join(sorted(set(same['lang'])))}: {first['caption']!r}"
        rows.append({
            "set": name, "captions": len(captions), "identical": len(shared),
            "share": len(shared) / len(captions) if len(captions) else float("nan"),
            "images": shared["image_id"].nunique(), "example": example,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("set")
