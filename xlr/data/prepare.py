"""Notebook 01's work: produce the training pool and evaluation sets a params file asks for.

Two paths behind one call, chosen by ``data.source``:

* ``synthetic`` (the embedded default): generate the corpus (cached by the hash of
  ``data.synthetic``); the fine-tuning pool is its ``finetune`` split, the evaluation set its
  held-out ``eval`` split and the validation set (for tuning, so eval stays untouched) its
  held-out ``val`` split, whose compositions are disjoint from eval's and from training's.
* ``laion``: sample a study subset of LAION-5B metadata with DuckDB, download it with
  img2dataset (or, with ``data.laion.shards``, take the shards img2dataset wrote elsewhere),
  with ``data.laion.translate`` machine-translate each image's English caption into the other
  training languages (:mod:`xlr.data.laion.translate`), drop every image that is a copy of an
  image of the evaluation benchmarks (``eval.benchmarks``, read from ``data.benchmark_root``:
  :mod:`xlr.data.laion.near_duplicates`), hold out ``data.laion.val_fraction`` of the rest for
  validation (:mod:`xlr.data.laion.holdout`), drop the validation images that are copies of
  training images and, with ``data.laion.translate.paraphrase_via``, give each fine-tuning
  caption a round-trip paraphrase (:mod:`xlr.data.laion.paraphrase`).

The contract with notebooks 02-04 is ``runs/<run.name>/data/data.json`` (written atomically),
read back through :func:`finetune_pool`, :func:`eval_sets` and :func:`val_sets`, so later
notebooks never re-derive where the data went.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from xlr.config import Params
from xlr.data.benchmarks import BenchmarkNotFoundError, load_benchmark
from xlr.data.imagetext import ImageTextSet
from xlr.data.synthetic import (
    check_held_out,
    corpus_key,
    corpus_overlaps,
    generate_corpus,
    load_pool,
    pretrain_mix,
)
from xlr.io import atomic_write_json, atomic_write_parquet, atomic_write_text
from xlr.langs import laion_mix
from xlr.paths import project_root, resolve_path
from xlr.runtime import resolve_device

if TYPE_CHECKING:
    from xlr.data.laion.near_duplicates import ImageHashes
    from xlr.data.laion.translate import Seq2SeqTranslator

DATA_CONTRACT = "data.json"
HELD_OUT_AUDIT = "held_out_audit.csv"
BENCHMARK_OVERLAP = "benchmark_overlap.csv"
EXCLUDED_IMAGES = "excluded_images.json"
PHASH_DIR = "phash"  # one parquet of pHash codes per set: the pool's and each benchmark's
PARAPHRASES = "paraphrases.parquet"
TRANSLATIONS = "translations.parquet"
VAL_IMAGES = "val_images.json"


def run_dir(params: Params) -> Path:
    """``runs/<run.name>``: every artifact of one run."""
    return resolve_path(params.run.runs_dir) / params.run.name


def corpus_dir(params: Params) -> Path:
    """Where the generated corpus of these params lives (shared across runs with equal config)."""
    return resolve_path(params.run.cache_dir) / "corpus" / corpus_key(params.data.synthetic)


def ensure_corpus(params: Params, progress: bool = True) -> Path:
    """Generate the corpus unless the cache already holds it."""
    return generate_corpus(params.data.synthetic, corpus_dir(params), progress=progress)


def _given_laion_shards(folder: Path, snapshot: str, langs: list[str]) -> dict[str, Any]:
    """The contract of shards downloaded elsewhere (``data.laion.shards``): no sample is drawn
    here, so the rows per language come from the shards' parquet files; ``skipped_languages``
    counts the downloaded images the pool leaves out, by their LANGUAGE as written (null,
    unregistered, or none of the seen ``langs``: ``img2dataset_shards.pool_language``)."""
    from xlr.data import img2dataset_shards as shards_of

    shards = shards_of.check_given_shards(folder)
    totals, _ = shards_of.stats_totals(folder, shards)
    rows = shards_of.status_by_language(folder, shards)
    languages = rows["language"].value_counts()
    downloaded = rows.loc[rows["status"] == "success", "language"]
    left_out = downloaded[[shards_of.pool_language(code, langs) is None for code in downloaded]]
    skipped = left_out.replace(shards_of.UNKNOWN_LANGUAGE, "null").value_counts().sort_index()
    return {
        "source": "laion",
        "snapshot": snapshot,
        "shards": str(folder),
        "given_shards": shards,
        "sampled_counts": {str(lang): int(n) for lang, n in languages.sort_index().items()},
        "skipped_languages": {str(code): int(n) for code, n in skipped.items()},
        "download_failed": sum(totals.values()) - totals["success"],
    }


def _prepare_laion(params: Params, out: Path) -> dict[str, Any]:
    from xlr.data.download import SHARD_DIR, download_images
    from xlr.data.laion import sample_laion

    laion = params.data.laion
    assert laion is not None  # the schema requires it for source 'laion'
    if laion.shards is not None:
        shards = resolve_path(laion.shards)
        return _given_laion_shards(shards, laion.snapshot, params.data.train_langs)
    assert laion.inputs is not None and laion.quotas is not None  # the schema requires them
    sample = sample_laion(
        laion.inputs.resolved(project_root()),
        laion.quotas,
        laion.filters,
        seed=params.run.seeds[0],
        out_dir=out / "laion_sample",
        columns=laion.columns,
        engine=laion.engine,
        overwrite=True,
    )
    report = download_images(sample.parquet, out / "laion_shards", laion.download)
    return {
        "source": "laion",
        "snapshot": laion.snapshot,
        "sample": str(sample.parquet),
        "sample_manifest": str(sample.manifest_path),
        "sample_reused": sample.reused,
        "shards": str(out / "laion_shards" / SHARD_DIR),
        "download_failed": report.failed,
    }


def _split_and_translate(
    params: Params, contract: dict[str, Any], out: Path, progress: bool
) -> dict[str, Any]:
    """Translate the downloaded pool (:func:`_translated_pool`), split it
    (:func:`xlr.data.laion.split.hold_out`), write the split and its audits
    (:func:`xlr.data.laion.split.split_audits`), then check them: after writing, so a failed
    audit can be read. Returns the files written, for the contract."""
    from xlr.data.laion.holdout import check_holdout
    from xlr.data.laion.near_duplicates import check_benchmark_overlap, image_hashes
    from xlr.data.laion.split import excluded_keys, hold_out, split_audits, split_pool

    laion = params.data.laion
    assert laion is not None  # the schema requires it for source 'laion'
    pool, files = _translated_pool(params, contract, out)
    hashes = image_hashes(pool.images, pool.image_keys, out / PHASH_DIR / "laion.parquet",
                          params.run.workers, progress)  # fmt: skip
    benchmarks = _benchmark_hashes(params, contract, out, progress)
    val_keys, excluded = hold_out(laion, params.run.seeds[0], pool, hashes, benchmarks)
    files["excluded_images"] = str(atomic_write_json(excluded, out / EXCLUDED_IMAGES))
    files["val_images"] = str(atomic_write_json(val_keys, out / VAL_IMAGES))
    parts = split_pool(pool, val_keys, excluded_keys(excluded))
    if laion.translate is not None and laion.translate.paraphrase_via is not None:
        files["paraphrases"], parts = _paraphrased(params, parts, out)
    audit, overlap = split_audits(laion, parts, hashes, benchmarks, excluded["benchmark_copies"])
    files["audit"] = str(atomic_write_text(out / HELD_OUT_AUDIT, audit.to_csv(index=False)))
    path = atomic_write_text(out / BENCHMARK_OVERLAP, overlap.to_csv(index=False))
    files["benchmark_overlap"] = str(path)
    check_holdout(audit)
    check_benchmark_overlap(overlap)
    return files


def _translator(params: Params) -> tuple[Seq2SeqTranslator, Path]:
    """``data.laion.translate``'s translator on ``run.device`` and the cache it shares."""
    from xlr.data.laion.translate import Seq2SeqTranslator

    laion = params.data.laion
    assert laion is not None and laion.translate is not None  # callers check
    translator = Seq2SeqTranslator(laion.translate, resolve_device(params.run.device))
    return translator, resolve_path(params.run.cache_dir) / "translations.sqlite"


def _paraphrased(
    params: Params, parts: tuple[ImageTextSet, ImageTextSet], out: Path
) -> tuple[str, tuple[ImageTextSet, ImageTextSet]]:
    """The round trips of the fine-tuning captions (:func:`paraphrase_pool`: none that folds to
    a validation caption), written for the contract, and the split with them, which the audits
    then check (the validation images get none: they are never trained on)."""
    from xlr.data.laion.holdout import folded
    from xlr.data.laion.paraphrase import paraphrase_pool, with_paraphrases

    train, val = parts
    translator, cache = _translator(params)
    held_out = set(folded(val.captions["caption"]))
    table = paraphrase_pool(
        train.captions, train.image_keys, params.data.train_langs, translator, cache, held_out
    )
    path = str(atomic_write_parquet(table, out / PARAPHRASES))
    return path, (with_paraphrases(train, table), val)


def _translated_pool(
    params: Params, contract: dict[str, Any], out: Path
) -> tuple[ImageTextSet, dict[str, Any]]:
    """The downloaded pool with ``data.laion.translate``'s translations (the cache under
    ``run.cache_dir`` keeps every finished batch), and the files written for the contract."""
    laion = params.data.laion
    assert laion is not None  # the schema requires it for source 'laion'
    pool = _laion_pool(contract)
    if not pool.image_keys:
        raise ValueError(
            f"{contract['shards']}: no image in the shards ({contract['download_failed']} sampled "
            "rows failed to download); download_report.json beside them counts the errors (dead "
            "URLs, no network). Fix the cause and run notebook 01 again"
        )
    if laion.translate is None:
        return pool, {}
    from xlr.data.laion.translate import translate_pool, with_translations

    translator, cache = _translator(params)
    table = translate_pool(
        pool.captions, pool.image_keys, params.data.train_langs, translator, cache
    )
    files = {"translations": str(atomic_write_parquet(table, out / TRANSLATIONS))}
    return with_translations(pool, table), files


def _benchmark_hashes(
    params: Params, contract: dict[str, Any], out: Path, progress: bool
) -> dict[str, ImageHashes]:
    """The pHash codes of each benchmark's images (cached beside the pool's). The benchmarks
    must be in place before notebook 01: a missing one is an error saying why it reads them."""
    from xlr.data.laion.near_duplicates import image_hashes

    try:
        sets = _benchmark_sets(params, contract)
    except BenchmarkNotFoundError as err:
        raise BenchmarkNotFoundError(
            f"{err}. Notebook 01 removes copies of the evaluation benchmarks' images from the "
            "LAION pool, so the benchmarks of eval.benchmarks must be in place (under "
            "data.benchmark_root) before it runs"
        ) from err
    return {
        name: image_hashes(
            bench.images,
            bench.image_keys,
            out / PHASH_DIR / f"{name}.parquet",
            params.run.workers,
            progress,
        )  # fmt: skip
        for name, bench in sets.items()
    }


def _laion_pool(contract: dict[str, Any]) -> ImageTextSet:
    """The downloaded pool with ENG TEXT and, if written, the machine translations."""
    from xlr.data.img2dataset_shards import load_downloaded
    from xlr.data.laion.translate import with_translations

    pool = load_downloaded(Path(contract["shards"]), langs=contract["train_langs"], eng_text=True)
    if "translations" in contract:
        pool = with_translations(pool, pd.read_parquet(contract["translations"]))
    return pool


def _laion_parts(contract: dict[str, Any]) -> tuple[ImageTextSet, ImageTextSet]:
    if "excluded_images" not in contract:
        raise ValueError(
            f"{contract['val_images']}: this run's data was prepared before notebook 01 removed "
            "copies of benchmark images and validation images from the LAION pool; run notebook "
            "01_data_sampling again (its downloads and translations are reused)"
        )
    from xlr.data.laion.split import excluded_keys, split_pool

    val_keys = json.loads(Path(contract["val_images"]).read_text(encoding="utf-8"))
    excluded = json.loads(Path(contract["excluded_images"]).read_text(encoding="utf-8"))
    train, val = split_pool(_laion_pool(contract), val_keys, excluded_keys(excluded))
    if "paraphrases" in contract:
        from xlr.data.laion.paraphrase import with_paraphrases

        train = with_paraphrases(train, pd.read_parquet(contract["paraphrases"]))
    return train, val


def prepare_data(params: Params, progress: bool = True) -> dict[str, Any]:
    """Build (or find cached) the data of ``params`` and write the data contract for 02-04."""
    out = run_dir(params) / "data"
    benchmarks = _benchmark_folders(params)
    if params.data.source == "synthetic":
        corpus = ensure_corpus(params, progress)
        audit = corpus_overlaps(corpus)
        check_held_out(audit, corpus)
        atomic_write_text(out / HELD_OUT_AUDIT, audit.to_csv(index=False))
        contract: dict[str, Any] = {
            "source": "synthetic",
            "corpus": str(corpus),
            "audit": str(out / HELD_OUT_AUDIT),
            **benchmarks,
            **_languages(params),
        }
    else:  # the split reads the benchmarks, and the pool keeps the seen languages' images
        contract = _prepare_laion(params, out) | benchmarks | _languages(params)
        contract |= _split_and_translate(params, contract, out, progress)
    atomic_write_json(contract, out / DATA_CONTRACT)
    return contract


def _languages(params: Params) -> dict[str, list[str]]:
    """The contract's seen and held-out languages."""
    return {"train_langs": params.data.train_langs, "heldout_langs": params.data.heldout_langs}


def _benchmark_folders(params: Params) -> dict[str, dict[str, str]]:
    """The contract's ``benchmarks`` (each one's root) and ``benchmark_images`` (the image
    folders ``data.benchmark_images`` moves elsewhere), resolved."""
    roots = {
        name: str(resolve_path(params.data.benchmark_root) / name)
        for name in params.eval.benchmarks
        if name != "synthetic"
    }
    images = {
        name: str(resolve_path(folder))
        for name, folder in params.data.benchmark_images.items()
        if name in roots
    }
    return {"benchmarks": roots, "benchmark_images": images}


def _benchmark_sets(params: Params, contract: dict[str, Any]) -> dict[str, ImageTextSet]:
    """The benchmarks of ``eval.benchmarks`` (not the generated set) in the study's languages,
    from the folders the contract names."""
    langs = params.data.train_langs + params.data.heldout_langs
    images = contract.get("benchmark_images", {})  # data.benchmark_images, resolved
    return {
        name: load_benchmark(
            name, Path(root), langs, image_dir=Path(images[name]) if name in images else None
        )
        for name, root in contract["benchmarks"].items()
    }


def read_contract(params: Params) -> dict[str, Any]:
    """The data contract notebook 01 wrote; a clear error when 01 has not run."""
    path = run_dir(params) / "data" / DATA_CONTRACT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no data prepared for run {params.run.name!r}; run notebook "
            "01_data_sampling (or `xlr reproduce`) first"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def finetune_pool(params: Params) -> ImageTextSet:
    """The fine-tuning pool, restricted to the seen languages (held-out ones stay unseen)."""
    contract = read_contract(params)
    if contract["source"] == "synthetic":
        pool = load_pool(Path(contract["corpus"]), "finetune")
    else:
        pool, _ = _laion_parts(contract)
    seen = pool.captions[pool.captions["lang"].isin(params.data.train_langs)]
    return ImageTextSet(pool.name, pool.image_keys, pool.images, seen.reset_index(drop=True))


def caption_noise(params: Params, pool: str = "finetune") -> pd.DataFrame | None:
    """The generated corpus's noise label of every caption of ``pool`` (``image_id, lang,
    caption_idx, noise``: ``clean``, ``mismatch``, ``truncate`` or ``boilerplate``), from its
    ``metadata.parquet``; None on the LAION path, whose captions carry no such label."""
    contract = read_contract(params)
    if contract["source"] != "synthetic":
        return None
    meta = pd.read_parquet(
        Path(contract["corpus"]) / pool / "metadata.parquet",
        columns=["image_id", "LANGUAGE", "caption_idx", "noise"],
    )
    return meta.rename(columns={"LANGUAGE": "lang"})


def eval_sets(params: Params) -> dict[str, ImageTextSet]:
    """Every evaluation set of ``eval.benchmarks``, in the seen and held-out languages it has
    (:func:`benchmark_coverage` shows which study languages each one lacks)."""
    contract = read_contract(params)
    langs = params.data.train_langs + params.data.heldout_langs
    loaded = _benchmark_sets(params, contract)
    return {
        name: _held_out_pool(contract, "eval", langs, "synthetic")
        if name == "synthetic"
        else loaded[name]
        for name in params.eval.benchmarks
    }


def benchmark_coverage(params: Params, sets: dict[str, ImageTextSet]) -> pd.DataFrame:
    """Which study languages each evaluation set has: one row per study language (its group,
    ``seen`` or ``held-out``), one boolean column per set. A benchmark is evaluated in the
    languages it shares with the study, so a False here is a language its results leave out."""
    groups = {lang: "seen" for lang in params.data.train_langs} | {
        lang: "held-out" for lang in params.data.heldout_langs
    }
    table = pd.DataFrame({"group": groups})
    for name, evaluation in sets.items():
        table[name] = table.index.isin(evaluation.langs)
    table.index.name = "language"
    return table


def _held_out_pool(
    contract: dict[str, Any], pool: str, langs: list[str], name: str
) -> ImageTextSet:
    full = load_pool(Path(contract["corpus"]), pool)
    kept = full.captions[full.captions["lang"].isin(langs)].reset_index(drop=True)
    return replace(full, name=name, captions=kept)  # keeps the parallel declaration


def val_sets(params: Params) -> dict[str, ImageTextSet]:
    """The validation sets, in seen + held-out languages, shaped like :func:`eval_sets`: for
    choosing hyperparameters without looking at the evaluation set.

    The generated corpus has one, under the key ``synthetic`` (the benchmark it stands in for)
    and named ``synthetic-val`` (so its results never pass for evaluation results): its ``val``
    pool, parallel clean captions of its own held-out compositions. The LAION path's is under
    ``laion``, named ``laion-val``: the images :func:`prepare_data` held out of the downloaded
    pool, with their own captions, ENG TEXT and machine translations.
    """
    contract = read_contract(params)
    langs = params.data.train_langs + params.data.heldout_langs
    if contract["source"] != "synthetic":
        _, val = _laion_parts(contract)
        kept = val.captions[val.captions["lang"].isin(langs)].reset_index(drop=True)
        return {"laion": replace(val, captions=kept)}
    return {"synthetic": _held_out_pool(contract, "val", langs, "synthetic-val")}


def pretraining_shares(params: Params) -> dict[str, float]:
    """Each study language's share of the base model's image-text pretraining: the generated
    corpus's pretraining mix (zero for a language left out of it), or LAION-5B's own shares of
    the study languages for the real model."""
    if params.data.source == "synthetic":
        return pretrain_mix(params.data.synthetic)
    return laion_mix(params.data.train_langs + params.data.heldout_langs)
