"""A LAION subset end to end: inputs found and described, reused when nothing it was made from
changed, otherwise counted, selected, written with its manifest, all or nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from xlr.data.laion.files import (
    check_translations,
    describe_inputs,
    enable_remote,
    file_groups,
    list_inputs,
)
from xlr.data.laion.inputs import (
    ENG_TEXT,
    ROLES,
    EmptySelectionError,
    LaionColumns,
    LaionEngine,
    LaionFilters,
    LaionInputs,
    LaionQuotas,
    LaionSamplingError,
)
from xlr.data.laion.selection import select_scalable
from xlr.data.laion.sql import (
    DEDUP_STAGES,
    Selection,
    Selector,
    filter_counts,
    filtered_rows,
    quote,
)
from xlr.io import atomic_dir, atomic_write_json, file_sha256
from xlr.langs import UnknownLanguageError, canonical_code

SAMPLE_FILE = "sample.parquet"
MANIFEST_FILE = "manifest.json"
# Bumped whenever the same recipe would select other rows, so older samples are not reused.
SAMPLE_FORMAT = 3
FILTER_STAGES: tuple[str, ...] = (
    "rows", "non_empty", "similarity", "punsafe", "pwatermark", "size", "caption_length",
)  # fmt: skip
RECIPE_KEYS: tuple[str, ...] = ("format", "seed", "inputs", "columns", "filters", "quotas")


@dataclass(frozen=True)
class SampleResult:
    """Where the subset is, what the manifest says about it, and whether an existing sample
    made from the same recipe was reused instead of sampling again."""

    parquet: Path
    manifest_path: Path
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def shortfalls(self) -> dict[str, dict[str, int]]:
        """Languages whose quota could not be met: ``{lang: {quota, available, missing}}``."""
        return self.manifest["shortfalls"]


def _language_counts(
    by_raw: dict[str | None, list[int]],
) -> tuple[dict[str, dict[str, int]], int, dict[str, int], dict[str, str]]:
    """Fold raw codes (``iw``, ``nb``) into canonical ones; count null and unregistered codes.

    Returns per-language stage counts, rows with a null language, rows per unregistered code, and
    the raw-to-canonical map the sampling query joins on.
    """
    per_lang: dict[str, dict[str, int]] = {}
    null_rows = 0
    unregistered: dict[str, int] = {}
    raw_map: dict[str, str] = {}
    for raw, values in sorted(by_raw.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        if raw is None:
            null_rows += values[0]
            continue
        try:
            lang = canonical_code(raw)
        except UnknownLanguageError:
            unregistered[raw] = values[0]
            continue
        raw_map[raw] = lang
        stages = per_lang.setdefault(lang, dict.fromkeys(FILTER_STAGES, 0))
        for stage, value in zip(FILTER_STAGES, values, strict=True):
            stages[stage] += value
    return per_lang, null_rows, unregistered, raw_map


def _write_sample(
    con: duckdb.DuckDBPyConnection,
    translations: Sequence[str],
    names: dict[str, str],
    out: Path,
) -> int:
    """Stream ``selected`` (plus ``ENG TEXT`` where translations are given) to parquet."""
    columns = "s.URL, s.TEXT, s.LANGUAGE, s.similarity, s.punsafe, s.pwatermark, s.WIDTH, s.HEIGHT"
    if translations:
        url, text, eng = (quote(names[c]) for c in ("URL", "TEXT", ENG_TEXT))
        # min() makes the pick deterministic where the release repeats a (URL, TEXT) pair.
        sql = f"""SELECT {columns}, t.eng AS "{ENG_TEXT}" FROM selected s LEFT JOIN (
                SELECT {url} AS URL, {text} AS TEXT, min({eng}) AS eng FROM read_parquet($files)
                WHERE {url} IN (SELECT URL FROM selected) GROUP BY ALL
            ) t ON s.URL = t.URL AND s.TEXT = t.TEXT
            ORDER BY s.LANGUAGE, s.sample_key"""
        reader = con.sql(sql, params={"files": list(translations)}).to_arrow_reader()
    else:
        sql = f"SELECT {columns} FROM selected s ORDER BY s.LANGUAGE, s.sample_key"
        reader = con.sql(sql).to_arrow_reader()
    rows = 0
    with pq.ParquetWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _shortfalls(quotas: dict[str, int], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        lang: {"quota": quota, "available": counts[lang]["selected"],
               "missing": quota - counts[lang]["selected"]}
        for lang, quota in sorted(quotas.items())
        if counts[lang]["selected"] < quota
    }  # fmt: skip


def _merge_counts(
    filtered: dict[str, dict[str, int]], deduped: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Stage counts per language; languages outside the quotas stop after the filters."""
    merged = {lang: dict(stages) for lang, stages in filtered.items()}
    for lang, stages in deduped.items():
        merged.setdefault(lang, dict.fromkeys(FILTER_STAGES, 0)).update(stages)
    return dict(sorted(merged.items()))


def _reusable(out_dir: Path, recipe: dict[str, Any]) -> SampleResult | None:
    """The sample already in ``out_dir`` if it was made from ``recipe`` and is intact."""
    manifest_path, parquet = out_dir / MANIFEST_FILE, out_dir / SAMPLE_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        made_from = {key: manifest[key] for key in RECIPE_KEYS}
        made_from["quotas"] = manifest["quotas"]["per_language"]
        intact = file_sha256(parquet) == manifest["output"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if made_from != recipe or not intact:
        return None
    return SampleResult(parquet, manifest_path, manifest, reused=True)


@dataclass(frozen=True)
class _Spec:
    """Everything a sample is made from and how, validated and defaulted."""

    columns: LaionColumns
    filters: LaionFilters
    engine: LaionEngine
    wanted: dict[str, int]
    seed: int


def _select(
    con: duckdb.DuckDBPyConnection,
    listed: dict[str, list[str]],
    spec: _Spec,
    select: Selector,
    build: Path,
) -> tuple[dict[str, Any], int]:
    """Count, select and write into ``build``; returns the manifest's findings and the rows."""
    columns, filters, wanted = spec.columns, spec.filters, spec.wanted
    groups = file_groups(con, listed, columns, filters)
    translation_names = check_translations(con, listed["translations"], columns)
    filtered, null_rows, unregistered, raw_map = _language_counts(
        filter_counts(con, groups, filters)
    )
    available = {lang: stages["caption_length"] for lang, stages in filtered.items()}
    rows = filtered_rows(con, groups, filters, raw_map, wanted, available, spec.seed)
    selection: Selection = select(con, rows, wanted, spec.engine)
    counts = _merge_counts(filtered, selection.counts)
    if sum(stages["selected"] for stages in selection.counts.values()) == 0:
        wanted_counts = {lang: counts[lang] for lang in sorted(wanted)}
        raise EmptySelectionError(
            f"no rows selected for {sorted(wanted)}; rows per language after each stage: "
            f"{wanted_counts}; {null_rows} rows had no language, "
            f"{sum(unregistered.values())} an unregistered code. Loosen the filters or check "
            "the inputs."
        )
    n = _write_sample(con, listed["translations"], translation_names, build / SAMPLE_FILE)
    findings = {
        "stages": [*FILTER_STAGES, *DEDUP_STAGES],
        "counts": counts,
        "skipped": {"null_language": null_rows, "unregistered_language": unregistered},
        "shortfalls": _shortfalls(wanted, selection.counts),
        "selection": selection.details,
    }
    if listed["translations"]:
        findings["eng_text"] = _translation_coverage(con, build / SAMPLE_FILE, listed)
    return findings, n


def _translation_coverage(
    con: duckdb.DuckDBPyConnection, sample: Path, listed: dict[str, list[str]]
) -> dict[str, dict[str, int]]:
    """Per non-English language, the selected rows and those the translated release gave an
    ENG TEXT. The join is on exact (URL, TEXT): metadata of another release (Re-LAION's) that
    differs in either would leave every ENG TEXT null, and the cross arms without their English
    side, so a join that matched no row at all is an error."""
    rows = con.execute(
        f'SELECT LANGUAGE, count(*), count("{ENG_TEXT}") FROM read_parquet(?) '
        "WHERE LANGUAGE <> 'en' GROUP BY LANGUAGE ORDER BY LANGUAGE",
        [str(sample)],
    ).fetchall()
    coverage = {lang: {"rows": n, "with_eng_text": m} for lang, n, m in rows}
    if coverage and not any(c["with_eng_text"] for c in coverage.values()):
        raise LaionSamplingError(
            f"none of the {sum(c['rows'] for c in coverage.values())} non-English rows selected "
            f"has an ENG TEXT in {listed['translations'][:3]}: the translations are joined on "
            "exact URL and TEXT, so they must come from the release the metadata comes from "
            "(data.laion.inputs.translations; LAION's laion2B-multi-joined-translated-to-en "
            "matches laion2B-multi)"
        )
    return coverage


def sample_laion(
    inputs: LaionInputs | Sequence[str | Path],
    quotas: LaionQuotas,
    filters: LaionFilters | None = None,
    seed: int = 0,
    out_dir: Path = Path("laion_sample"),
    *,
    columns: LaionColumns | None = None,
    engine: LaionEngine | None = None,
    overwrite: bool = False,
    hash_inputs: bool | None = None,
    select: Selector = select_scalable,
) -> SampleResult:
    """Select a seeded, filtered, deduplicated, per-language-quota subset of LAION metadata.

    ``inputs`` may be bare paths or strings, read as files with a ``LANGUAGE`` column; relative
    local ones are read from the working directory (:meth:`LaionInputs.resolved` anchors them
    elsewhere). ``out_dir`` receives ``sample.parquet`` (LAION's columns under our names, with
    ``LANGUAGE`` as the registry's canonical code, plus ``ENG TEXT`` when translations are given;
    ordered by language, then the seeded order) and ``manifest.json``; both appear together or
    not at all. When ``out_dir`` already holds an intact sample made from the same recipe (the
    inputs as described, columns, filters, quotas and seed), it is returned as it is
    (``reused=True``) without sampling; ``engine`` settings do not change the rows selected, so
    they are not part of the recipe. A sample of another recipe is replaced only with
    ``overwrite``. ``hash_inputs``: see :func:`xlr.data.laion.files.describe_inputs`.
    ``select`` is the selection algorithm; :func:`xlr.data.laion.select_reference` is the plain
    definition it must equal, for tests and the benchmark.

    Raises :class:`EmptySelectionError` when nothing survives, with the stage counts, and
    :class:`LaionSamplingError` for unreadable inputs, missing columns or non-string captions.
    """
    if not isinstance(inputs, LaionInputs):
        inputs = LaionInputs(metadata=[str(p) for p in inputs])
    spec = _Spec(
        columns or LaionColumns(),
        filters or LaionFilters(),
        engine or LaionEngine(),
        quotas.per_language(),
        seed,
    )
    out_dir = Path(out_dir)
    with duckdb.connect() as con:
        for name, value in spec.engine.settings().items():
            con.execute(f"SET {name} = ?", [value])
        enable_remote(con, inputs)
        listed = list_inputs(con, inputs)
        recipe = {
            "format": SAMPLE_FORMAT,
            "seed": seed,
            "inputs": describe_inputs(con, listed, hash_inputs),
            "columns": {role: spec.columns.names(role) for role in ROLES},
            "filters": spec.filters.model_dump(),
            "quotas": spec.wanted,
        }
        reused = _reusable(out_dir, recipe)
        if reused is not None:
            return reused
        with atomic_dir(out_dir, overwrite=overwrite) as build:
            spill = spec.engine.temp_directory or str(build / ".duckdb_spill")
            con.execute("SET temp_directory = ?", [spill])
            findings, rows = _select(con, listed, spec, select, build)
            manifest = {
                "created_by": "xlr.data.laion.sample_laion",
                "duckdb_version": duckdb.__version__,
                "order": "md5(seed || 0x1f || URL || 0x1f || TEXT), ascending",
                **recipe,
                "quotas": {
                    "spec": quotas.model_dump(exclude_none=True),
                    "per_language": spec.wanted,
                },
                **findings,
                "engine": spec.engine.model_dump(),
                "output": {
                    "file": SAMPLE_FILE,
                    "rows": rows,
                    "sha256": file_sha256(build / SAMPLE_FILE),
                    "translated": bool(listed["translations"]),
                },
            }
            atomic_write_json(manifest, build / MANIFEST_FILE)
            con.close()
            shutil.rmtree(build / ".duckdb_spill", ignore_errors=True)
    return SampleResult(out_dir / SAMPLE_FILE, out_dir / MANIFEST_FILE, manifest)
