"""The results schema of notebook 04: the two long tables every later notebook reads.

``results/retrieval.parquet`` holds one row per metric (:data:`RESULT_COLUMNS`) of every model
notebook 04 evaluated; ``results/ranks/<arm>-b<base>-s<seed>-<benchmark>.parquet`` holds the
whole-gallery rank of every relevant item of every query (:data:`RANK_COLUMNS`);
``results/clip_benchmark/`` the same recall as CLIP_benchmark's JSON records, so the two tools'
outputs merge. The controls' models
on the validation split are written the same way under ``val/`` (:func:`val_results_dir`), with
``val/results/planted.csv``. Writers and readers take the column lists, file names and loaders
from here and nowhere else.

``task`` is one of :data:`TASK_NAMES`. The ``multilingual`` retrieval setting writes two tasks,
one per pool, each ranked against its own pool (never sliced from the other's ranks):
``multilingual`` (every study language; ``target_lang`` :data:`POOL`, ``all``) and
``multilingual_seen`` (the seen languages only; ``target_lang`` :data:`SEEN_POOL`, ``seen``);
:data:`POOL_OF_TASK` maps one to the other. Every other task's ``target_lang`` is a language, or
:data:`IMAGE` for ``t2i``.

In ranks, ``query_idx`` and ``relevant_idx`` are positions in the task's query list and gallery
(:mod:`xlr.eval.tasks` says which); image queries and items have the language :data:`IMAGE`;
``rank`` is 1-based in the gallery the query was ranked against: for ``xt2t`` on a parallel set
the target language's captions with the query's caption index, for the multilingual tasks the
query's pool.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from xlr.config import Params
from xlr.data.prepare import run_dir
from xlr.io import atomic_write_json, atomic_write_parquet

IMAGE = "image"  # the "language" of image queries and image gallery items
MACRO = "macro"  # query_lang of macro means over query languages
MULTILINGUAL = "multilingual"  # task: the pool of every study language
MULTILINGUAL_SEEN = "multilingual_seen"  # task: the pool of the seen languages only
POOL = "all"  # target_lang of the multilingual task (every evaluated language)
SEEN_POOL = "seen"  # target_lang of the multilingual_seen task
POOL_OF_TASK: dict[str, str] = {MULTILINGUAL: POOL, MULTILINGUAL_SEEN: SEEN_POOL}
TASK_NAMES: tuple[str, ...] = (
    "t2i", "i2t", "xt2t", "paraphrase", MULTILINGUAL, MULTILINGUAL_SEEN,
)  # fmt: skip
IDENTITY_COLUMNS: tuple[str, ...] = ("arm", "seed", "base_seed", "benchmark")
RESULT_COLUMNS: tuple[str, ...] = IDENTITY_COLUMNS + (
    "task", "query_lang", "target_lang", "lang_group", "metric", "value", "captions", "n_queries",
)  # fmt: skip
RANK_COLUMNS: tuple[str, ...] = IDENTITY_COLUMNS + (
    "task", "query_idx", "query_lang", "query_image_id", "relevant_idx", "relevant_lang",
    "relevant_image_id", "rank",
)  # fmt: skip
RETRIEVAL_FILE = Path("results") / "retrieval.parquet"
RANKS_DIR = Path("results") / "ranks"
CLIP_BENCHMARK_DIR = Path("results") / "clip_benchmark"
# Our records' names (clip_benchmark_records: pretrained is "b<base>-s<seed>"), told apart from
# CLIP_benchmark's own (pretrained tags such as "laion5b_s13b_b90k"), which are never removed.
OUR_RECORD = re.compile(r"[^_]+_b\d+-s(\d+|none)_.+_zeroshot_retrieval\.json")
VAL_DIR = "val"  # runs/<run>/val/: the validation results of notebook 05's controls
PLANTED_FILE = Path("results") / "planted.csv"  # under VAL_DIR: the positive control's biases


def _file_stem(arm: str, base_seed: int, seed: object, benchmark: str) -> str:
    seed_part = "none" if pd.isna(seed) else int(seed)
    return f"{arm}-b{int(base_seed)}-s{seed_part}-{benchmark}"


# CLIP_benchmark's (1.6.2) names of the benchmarks it also evaluates, and its spelling of the
# languages whose codes differ from the registry's (its datasets' SUPPORTED_LANGUAGES), so that
# our records join its own on dataset and language; Multi30K and the generated sets keep ours.
# Per dataset, not the registry's aliases: Japanese is jp in XTD10 but ja in Crossmodal-3600
CLIP_BENCHMARK_DATASETS = {"xm3600": "crossmodal3600"}
CLIP_BENCHMARK_LANGS = {"crossmodal3600": {"tl": "fil", "qu": "quz"}, "xtd10": {"ja": "jp"}}


def clip_benchmark_records(results: pd.DataFrame) -> list[dict]:
    """CLIP_benchmark-style records, one per run and caption language with t2i or i2t rows.

    ``image_retrieval_recall@k`` is text-to-image and ``text_retrieval_recall@k`` image-to-text
    (CLIP_benchmark's names); ``model`` is the arm and ``pretrained`` the base and seed;
    ``dataset`` and ``language`` are spelled as CLIP_benchmark spells them
    (:data:`CLIP_BENCHMARK_DATASETS`, :data:`CLIP_BENCHMARK_LANGS`).
    """
    part = results[results["task"].isin(["t2i", "i2t"]) & results["metric"].str.startswith("R@")]
    part = part.assign(lang=part["query_lang"].where(part["task"] == "t2i", part["target_lang"]))
    records = []
    for (arm, seed, base_seed, benchmark, lang), rows in part.groupby(
        [*IDENTITY_COLUMNS, "lang"], dropna=False, sort=False
    ):
        prefix = rows["task"].map({"t2i": "image_retrieval_", "i2t": "text_retrieval_"})
        names = prefix + rows["metric"].str.replace("R@", "recall@", regex=False)
        seed_part = "none" if pd.isna(seed) else int(seed)
        dataset = CLIP_BENCHMARK_DATASETS.get(benchmark, benchmark)
        records.append(
            {
                "dataset": dataset,
                "model": arm,
                "pretrained": f"b{int(base_seed)}-s{seed_part}",
                "task": "zeroshot_retrieval",
                "metrics": dict(zip(names, rows["value"].astype(float), strict=True)),
                "language": CLIP_BENCHMARK_LANGS.get(dataset, {}).get(lang, lang),
                "captions": rows["captions"].iat[0],
            }
        )
    return records


def write_ranks(ranks: pd.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``results/ranks/{arm}-b{base}-s{seed}-{benchmark}.parquet``, one file per run in
    ``ranks``, atomically; return the paths. Every run has a file of its own, so processes may
    write theirs at once, each as soon as its model is ranked (unlike the one table of
    :func:`write_results`)."""
    return [
        atomic_write_parquet(
            part,
            Path(out_dir) / RANKS_DIR / f"{_file_stem(arm, base_seed, seed, benchmark)}.parquet",
        )
        for (arm, seed, base_seed, benchmark), part in ranks.groupby(
            list(IDENTITY_COLUMNS), dropna=False, sort=False
        )
    ]


def write_results(
    results: pd.DataFrame, ranks: pd.DataFrame | None, out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write ``results`` as ``results/retrieval.parquet`` (replacing the table: it holds one
    whole evaluation), the ranks (:func:`write_ranks`; ``None`` where they were written
    already) and CLIP_benchmark JSON records under ``results/clip_benchmark/``, all atomically.
    Returns the paths written."""
    out_dir = Path(out_dir)
    written = [atomic_write_parquet(results, out_dir / RETRIEVAL_FILE)]
    if ranks is not None:
        written += write_ranks(ranks, out_dir)
    for record in clip_benchmark_records(results):
        name = "_".join(
            [record["dataset"], record["pretrained"], record["model"], record["language"]]
        )
        target = out_dir / CLIP_BENCHMARK_DIR / f"{name}_zeroshot_retrieval.json"
        written.append(atomic_write_json(record, target))
    return written


def remove_stale(out_dir: str | os.PathLike[str], written: Sequence[Path]) -> list[Path]:
    """Remove the ranks files and our CLIP_benchmark records (:data:`OUR_RECORD`: not
    CLIP_benchmark's own, which may share the folder) under ``out_dir`` that are not among
    ``written`` (those of a whole evaluation): a model the params no longer name (an arm, seed,
    base or benchmark dropped) would otherwise stay in every later notebook's reading. Returns
    the paths removed."""
    keep = {Path(path) for path in written}
    ranks = sorted((Path(out_dir) / RANKS_DIR).glob("*.parquet"))
    records = sorted((Path(out_dir) / CLIP_BENCHMARK_DIR).glob("*.json"))
    ours = [*ranks, *(path for path in records if OUR_RECORD.fullmatch(path.name))]
    stale = [path for path in ours if path not in keep]
    for path in stale:
        path.unlink()
    return stale


def results_dir(params: Params) -> Path:
    """``runs/<run.name>``: ``results/retrieval.parquet`` and ``results/ranks/`` live below it."""
    return run_dir(params)


def check_table(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Refuse a table without the columns a consumer needs (naming them) or without rows."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} table lacks columns {missing}; it needs {list(columns)} "
            "(see xlr.eval.results.RANK_COLUMNS and RESULT_COLUMNS)"
        )
    if frame.empty:
        raise ValueError(f"{name} table is empty: there is nothing to measure")


def val_results_dir(params: Params) -> Path:
    """``runs/<run.name>/val``: the controls' results on the validation split, laid out as
    :func:`results_dir`'s (``results/retrieval.parquet``, ``results/ranks/``), apart from the
    evaluation results so that nothing reads one for the other."""
    return results_dir(params) / VAL_DIR


def read_ranks(
    paths: Sequence[Path],
    tasks: Sequence[str] | None = None,
    arms: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The ranks in ``paths`` (files :func:`write_ranks` wrote), in that order. With ``tasks``
    or ``arms``, only their rows, filtered while reading, so the other rows are never loaded:
    the study's ranks (about 150 million rows) do not fit in memory at once beside the
    analyses' copies."""
    filters = []
    for column, names in (("task", tasks), ("arm", arms)):
        if isinstance(names, str):
            raise TypeError(f"{column}s is a list of names, got the string {names!r}: [{names!r}]")
        if names is not None and not names:
            raise ValueError(f"no {column}s to read: give their names, or None for every {column}")
        filters += [(column, "in", list(names))] if names is not None else []
    frames = [pd.read_parquet(path, filters=filters or None) for path in paths]
    return pd.concat(frames, ignore_index=True)


def read_runs(
    paths: Sequence[Path], tasks: Sequence[str] | None = None, progress: bool = True
) -> Iterator[pd.DataFrame]:
    """Each file's ranks (:func:`read_ranks`: one run on one benchmark), one at a time, for an
    analysis that measures each run on its own (:func:`xlr.analysis.measures.query_measures`)
    and so holds one run's ranks at a time, never the study's; with a progress bar."""
    for path in tqdm(paths, desc="ranks files", unit="file", disable=not progress):
        yield read_ranks([path], tasks)


def _read_results(root: Path, missing: str) -> tuple[pd.DataFrame, list[Path]]:
    path = root / RETRIEVAL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    return pd.read_parquet(path), sorted((root / RANKS_DIR).glob("*.parquet"))


def load_results(params: Params) -> tuple[pd.DataFrame, list[Path]]:
    """The results table and the ranks files notebook 04 wrote (05 and 06 start here; they read
    the ranks they need with :func:`read_ranks` or :func:`read_runs`)."""
    return _read_results(
        results_dir(params),
        f"no retrieval results for run {params.run.name!r}; run notebook 04_retrieval_eval first",
    )


def load_val_results(params: Params) -> tuple[pd.DataFrame, list[Path]]:
    """The validation results and ranks files of the controls' models
    (:func:`xlr.eval.runner.evaluate_controls`, notebook 04), the planted model's included."""
    return _read_results(
        val_results_dir(params),
        f"no validation results for run {params.run.name!r}; run notebook 04_retrieval_eval "
        "(it evaluates the controls' models on the validation split) first",
    )


def load_planted(params: Params) -> pd.DataFrame:
    """What the positive control planted in each base's zero-shot model (one row per base and
    validation set: language, fraction, translation distance, size, seed)."""
    path = val_results_dir(params) / PLANTED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing planted yet; run notebook 04_retrieval_eval")
    return pd.read_csv(path)
