"""LAION-5B subset sampling on tiny parquet files laid out like the real releases.

Fixtures mirror the published files: laion2B-multi parts with ``LANGUAGE``, laion2B-en parts
without it, and the translated release with ``ENG TEXT``; column types follow the release
(float32 scores, int32 sizes, large strings).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from laion_files import laion_row, write_rows
from pydantic import ValidationError

from xlr.data.laion import (
    SAMPLE_FORMAT,
    EmptySelectionError,
    LaionColumns,
    LaionEngine,
    LaionFilters,
    LaionInputs,
    LaionQuotas,
    LaionSamplingError,
    SampleResult,
    quota_counts,
    sample_laion,
    select_reference,
)
from xlr.data.laion.selection import initial_fraction, key_bound, widened
from xlr.data.laion.sql import WHITE, WHITE_SPACE, _not_blank, caption_key

FILTERS = LaionFilters(
    min_similarity=0.2,
    max_punsafe=0.5,
    max_pwatermark=0.8,
    min_width=64,
    min_height=64,
    max_caption_chars=200,
)


@pytest.fixture
def laion(tmp_path: Path) -> LaionInputs:
    """Two laion2B-multi parts, one laion2B-en part and one translated-release part."""
    multi = tmp_path / "laion2B-multi"
    part0 = [
        laion_row("u1", "Ein Hund"),
        laion_row("u2", "Eine Katze"),
        laion_row("u2", "Eine Katze im Garten", similarity=0.31),  # same URL: dedup
        laion_row("u3", "ein   HUND "),  # same caption as u1 once case and spaces fold
        laion_row("u4", "Kaum passend", similarity=0.1),
        laion_row("u5", "Unsicher", punsafe=0.9),
        laion_row("u6", "Wasserzeichen", pwatermark=0.9),
        laion_row("u7", "Winzig", WIDTH=32, HEIGHT=32),
        laion_row("u8", "   "),
        laion_row("u9", "x" * 300),
        laion_row("u10", "Un chien", "fr"),
        laion_row("u11", "כלב", "iw"),
        laion_row("u12", "Canis", "la"),
        laion_row("u13", "Sine lingua", None),
        laion_row("u14", "Lingua vacua", ""),
        laion_row("u15", "犬", "ja"),
    ]
    part1 = [laion_row(f"u2{i}", f"Bild Nummer {i}") for i in range(10)]
    english = [
        laion_row("e1", "A dog on grass"),
        laion_row("e2", "A red bus"),
        laion_row("e3", "Tiny", WIDTH=8),
    ]
    translated = [
        {**laion_row("u1", "Ein Hund"), "ENG TEXT": "A dog"},
        {**laion_row("u10", "Un chien", "fr"), "ENG TEXT": "A dog (fr)"},
        {**laion_row("u10", "Un chien", "fr"), "ENG TEXT": "A hound"},  # repeated pair: min() wins
        {**laion_row("u2", "Other text", "de"), "ENG TEXT": "never joined"},
    ]
    return LaionInputs(
        metadata=[
            write_rows(multi / "part-00000.snappy.parquet", part0),
            write_rows(multi / "part-00001.snappy.parquet", part1),
        ],
        english=[
            write_rows(tmp_path / "laion2B-en" / "part-00000.parquet", english, ("LANGUAGE",))
        ],
        translations=[write_rows(tmp_path / "translated" / "part-00000.parquet", translated)],
    )


QUOTAS = LaionQuotas(counts={"de": 5, "fr": 3, "iw": 1, "en": 2})


def test_quota_counts_known_answers() -> None:
    assert quota_counts(10, {"de": 0.5, "fr": 0.3, "ja": 0.2}) == {"de": 5, "fr": 3, "ja": 2}
    assert quota_counts(10, {"fr": 1 / 3, "de": 1 / 3, "ja": 1 / 3}) == {"de": 4, "fr": 3, "ja": 3}
    assert quota_counts(100, {"de": 0.29, "fr": 0.71}) == {"de": 29, "fr": 71}
    assert quota_counts(7, {"fr": 0.5, "de": 0.5}) == {"de": 4, "fr": 3}
    assert quota_counts(3, {"en": 0.9, "de": 0.05, "fr": 0.05}) == {"en": 3, "de": 0, "fr": 0}


def test_quota_counts_always_sum_to_total() -> None:
    shares = {"en": 0.397, "de": 0.0255, "ja": 0.0228, "sw": 0.00008}
    norm = sum(shares.values())
    for total in (1, 2, 17, 1000, 123457):
        counts = quota_counts(total, {k: v / norm for k, v in shares.items()})
        assert sum(counts.values()) == total


def test_quotas_validate_codes_and_forms() -> None:
    assert LaionQuotas(counts={"jp": 3, "iw": 1}).per_language() == {"ja": 3, "he": 1}
    quotas = LaionQuotas(shares={"en": 0.75, "fil": 0.25}, total=8)
    assert quotas.per_language() == {"en": 6, "tl": 2}
    bad = [
        ({"counts": {"xx": 1}}, "unknown language code 'xx'"),
        ({"counts": {"ja": 1, "jp": 2}}, "listed twice"),
        ({"counts": {"de": 1}, "shares": {"de": 1.0}, "total": 1}, "either as counts or as shares"),
        ({"shares": {"de": 0.5, "fr": 0.4}, "total": 10}, "sum to 0.900000"),
        ({"shares": {"de": 1.0}}, "need a total"),
        ({"counts": {"de": 0}}, "greater than 0"),
        ({"counts": {}}, "name no language"),
        ({"counts": {"de": 1}, "total": 5}, "total goes with shares"),
    ]
    for spec, message in bad:
        with pytest.raises(ValidationError, match=message):
            LaionQuotas(**spec)


def test_counts_before_and_after_each_stage(laion: LaionInputs, tmp_path: Path) -> None:
    result = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=tmp_path / "out")
    counts = result.manifest["counts"]
    assert counts["de"] == {
        "rows": 20, "non_empty": 19, "similarity": 18, "punsafe": 17, "pwatermark": 16,
        "size": 15, "caption_length": 14, "url_dedup": 13, "caption_dedup": 12, "selected": 5,
    }  # fmt: skip
    assert counts["en"]["size"] == 2 and counts["en"]["selected"] == 2
    assert counts["he"]["selected"] == 1
    assert counts["ja"] == {
        "rows": 1, "non_empty": 1, "similarity": 1, "punsafe": 1, "pwatermark": 1, "size": 1,
        "caption_length": 1,
    }  # fmt: skip
    assert result.manifest["skipped"] == {"null_language": 2, "unregistered_language": {"la": 1}}
    assert result.shortfalls == {"fr": {"quota": 3, "available": 1, "missing": 2}}


def test_a_nan_score_fails_its_filter_as_a_null_does(tmp_path: Path) -> None:
    """DuckDB orders NaN above every number, so ``similarity >= min`` would keep a NaN score."""
    nan = float("nan")
    rows = [laion_row("u1", "Ein Hund"), laion_row("u2", "Zwei", similarity=nan),
            laion_row("u3", "Drei", punsafe=nan), laion_row("u4", "Vier", pwatermark=nan),
            laion_row("u5", "Fünf", similarity=None)]  # fmt: skip
    path = write_rows(tmp_path / "m.parquet", rows)  # pandas' NaN is written as a null
    table = pq.read_table(path)
    for column in ("similarity", "punsafe", "pwatermark"):
        values = [nan if isinstance(v, float) and np.isnan(v) else v for v in
                  (row[column] for row in rows)]  # fmt: skip
        index = table.column_names.index(column)
        table = table.set_column(index, column, pa.array(values, pa.float64(), from_pandas=False))
    assert pa.compute.is_nan(table["similarity"]).to_pylist()[1]  # a real NaN, not a null
    pq.write_table(table, path)
    result = sample_laion([path], LaionQuotas(counts={"de": 1}), FILTERS, out_dir=tmp_path / "o")
    counts = result.manifest["counts"]["de"]
    assert [counts[s] for s in ("rows", "similarity", "punsafe", "pwatermark")] == [5, 3, 2, 1]
    assert pd.read_parquet(result.parquet)["URL"].tolist() == ["u1"]


def test_sample_contents_dedup_and_translations(laion: LaionInputs, tmp_path: Path) -> None:
    result = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=tmp_path / "out")
    sample = pd.read_parquet(result.parquet)
    assert list(sample.columns) == [
        "URL", "TEXT", "LANGUAGE", "similarity", "punsafe", "pwatermark", "WIDTH", "HEIGHT",
        "ENG TEXT",
    ]  # fmt: skip
    assert sample["LANGUAGE"].value_counts().to_dict() == {"de": 5, "en": 2, "fr": 1, "he": 1}
    assert sample["URL"].is_unique
    folded = sample["TEXT"].str.lower().str.split().str.join(" ")
    assert folded.is_unique
    assert sample["LANGUAGE"].tolist() == sorted(sample["LANGUAGE"])
    eng = dict(zip(sample["URL"], sample["ENG TEXT"], strict=True))
    assert eng["u10"] == "A dog (fr)"
    assert eng.get("u2") is None
    assert sample.loc[sample["LANGUAGE"] == "en", "ENG TEXT"].isna().all()
    assert result.manifest["output"]["rows"] == len(sample)


def test_manifest_records_inputs_filters_and_output(laion: LaionInputs, tmp_path: Path) -> None:
    result = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=tmp_path / "out")
    on_disk = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    assert on_disk == result.manifest
    inputs = {Path(entry["path"]).parent.name: entry for entry in on_disk["inputs"]}
    assert sorted(e["role"] for e in on_disk["inputs"]) == [
        "english", "metadata", "metadata", "translations",
    ]  # fmt: skip
    english = Path(inputs["laion2B-en"]["path"])
    assert inputs["laion2B-en"]["bytes"] == english.stat().st_size
    assert inputs["laion2B-en"]["sha256"] == hashlib.sha256(english.read_bytes()).hexdigest()
    assert on_disk["filters"]["min_similarity"] == 0.2
    assert on_disk["quotas"]["per_language"] == {"de": 5, "fr": 3, "he": 1, "en": 2}
    assert on_disk["output"]["sha256"] == hashlib.sha256(result.parquet.read_bytes()).hexdigest()
    assert sorted(p.name for p in result.parquet.parent.iterdir()) == [
        "manifest.json", "sample.parquet",
    ]  # fmt: skip
    skipped = sample_laion(laion, QUOTAS, FILTERS, out_dir=tmp_path / "o2", hash_inputs=False)
    assert all("sha256" not in entry for entry in skipped.manifest["inputs"])


@pytest.fixture
def many(tmp_path: Path) -> list[Path]:
    """300 rows in two parts, enough for seeds to pick visibly different subsets."""
    rows = [
        laion_row(f"https://x/{i}", f"caption {i}", "de" if i % 3 else "fr") for i in range(300)
    ]
    rows += [
        laion_row("https://x/7", "dup url", "de"),
        laion_row("https://x/y", "CAPTION  8", "de"),
    ]
    return [
        write_rows(tmp_path / "in" / "a.parquet", rows[:150]),
        write_rows(tmp_path / "in" / "b.parquet", rows[150:]),
    ]


def test_same_seed_same_subset_bytes_any_file_order(many: list[Path], tmp_path: Path) -> None:
    quotas = LaionQuotas(shares={"de": 0.6, "fr": 0.4}, total=50)
    first = sample_laion(many, quotas, seed=7, out_dir=tmp_path / "a")
    again = sample_laion(many[::-1], quotas, seed=7, out_dir=tmp_path / "b")
    assert first.parquet.read_bytes() == again.parquet.read_bytes()
    assert first.manifest["counts"] == again.manifest["counts"]
    other = sample_laion(many, quotas, seed=8, out_dir=tmp_path / "c")
    urls = set(pd.read_parquet(first.parquet)["URL"])
    assert urls != set(pd.read_parquet(other.parquet)["URL"])
    assert pd.read_parquet(first.parquet)["LANGUAGE"].value_counts().to_dict() == {
        "de": 30, "fr": 20,
    }  # fmt: skip


def test_directory_input_expands_to_its_parquet_files(many: list[Path], tmp_path: Path) -> None:
    quotas = LaionQuotas(counts={"de": 10})
    from_dir = sample_laion([many[0].parent], quotas, seed=3, out_dir=tmp_path / "d")
    from_files = sample_laion(many, quotas, seed=3, out_dir=tmp_path / "f")
    assert from_dir.parquet.read_bytes() == from_files.parquet.read_bytes()
    assert from_dir.manifest["counts"]["de"]["url_dedup"] == 201
    assert from_dir.manifest["counts"]["de"]["caption_dedup"] == 200
    # overlapping entries (the folder and a glob in it) read each file once
    detour = str(many[0].parent / ".." / "in" / "a.parquet")  # the same file, another spelling
    twice = sample_laion([many[0].parent, str(many[0].parent / "*.parquet"), detour], quotas,
                         seed=3, out_dir=tmp_path / "t")  # fmt: skip
    assert twice.manifest["counts"] == from_dir.manifest["counts"]
    assert [i["path"] for i in twice.manifest["inputs"]] == [str(path) for path in many]
    both = LaionInputs(metadata=[str(many[0])], english=[str(many[0])])
    with pytest.raises(LaionSamplingError, match=r"a\.parquet .* both .*metadata and english"):
        sample_laion(both, quotas, out_dir=tmp_path / "b")


def test_url_shared_across_languages_keeps_onelaion_row(tmp_path: Path) -> None:
    rows = [laion_row("same", "Ein Hund", "de"), laion_row("same", "Un chien", "fr")]
    path = write_rows(tmp_path / "m.parquet", rows)
    result = sample_laion([path], LaionQuotas(counts={"de": 1, "fr": 1}), out_dir=tmp_path / "o")
    assert len(pd.read_parquet(result.parquet)) == 1
    assert len(result.shortfalls) == 1


def test_empty_selection_is_an_error_and_writes_nothing(laion: LaionInputs, tmp_path: Path) -> None:
    strict = LaionFilters(min_similarity=0.99)
    out = tmp_path / "out"
    with pytest.raises(EmptySelectionError, match=r"no rows selected .*'similarity': 0"):
        sample_laion(laion, QUOTAS, strict, out_dir=out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_columns_name_the_file(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "m.parquet", [laion_row("u", "t")], drop=("TEXT",))
    with pytest.raises(LaionSamplingError, match=r"m\.parquet: missing columns \['TEXT'\]"):
        sample_laion([path], QUOTAS, out_dir=tmp_path / "o")
    path = write_rows(tmp_path / "n.parquet", [laion_row("u", "t")], drop=("LANGUAGE",))
    with pytest.raises(LaionSamplingError, match=r"n\.parquet: no 'LANGUAGE' column, as in laion"
                       r"2B-en .* under data\.laion\.inputs\.english"):  # fmt: skip
        sample_laion([path], QUOTAS, out_dir=tmp_path / "o")


def test_filter_columns_are_required_only_when_the_filter_is_on(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "m.parquet", [laion_row("u", "t")], drop=("punsafe", "pwatermark"))
    with pytest.raises(LaionSamplingError, match=r"missing columns \['punsafe'\]"):
        sample_laion([path], QUOTAS, out_dir=tmp_path / "o")
    result = sample_laion([path], QUOTAS, LaionFilters(max_punsafe=None), out_dir=tmp_path / "o")
    assert pd.read_parquet(result.parquet)["punsafe"].isna().all()


def test_translation_coverage_is_counted_and_a_join_that_matched_nothing_refused(
    laion: LaionInputs, tmp_path: Path
) -> None:
    result = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=tmp_path / "out")
    sample = pd.read_parquet(result.parquet)
    foreign = sample[sample["LANGUAGE"] != "en"]
    expected = {
        lang: {"rows": len(part), "with_eng_text": int(part["ENG TEXT"].notna().sum())}
        for lang, part in foreign.groupby("LANGUAGE")
    }
    assert result.manifest["eng_text"] == expected
    assert (
        expected["fr"] == {"rows": 1, "with_eng_text": 1} and expected["he"]["with_eng_text"] == 0
    )
    # a translated release of other metadata: the exact (URL, TEXT) join matches nothing
    other = [{**laion_row("u1", "Ein Hund!"), "ENG TEXT": "A dog"}]
    elsewhere = write_rows(tmp_path / "other" / "part-00000.parquet", other)
    mismatched = laion.model_copy(update={"translations": [elsewhere]})
    with pytest.raises(LaionSamplingError, match=r"none of the \d+ non-English rows .* ENG TEXT"):
        sample_laion(mismatched, QUOTAS, FILTERS, seed=1, out_dir=tmp_path / "mismatched")
    assert not (tmp_path / "mismatched").exists()


def test_non_string_captions_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"URL": ["u"], "TEXT": [12], "LANGUAGE": ["de"]}), path)
    with pytest.raises(LaionSamplingError, match=r"m\.parquet: column 'TEXT' holds BIGINT"):
        sample_laion([path], QUOTAS, LaionFilters(max_punsafe=None), out_dir=tmp_path / "o")
    scores = tmp_path / "s.parquet"
    table = {"URL": ["u"], "TEXT": ["t"], "LANGUAGE": ["de"], "similarity": ["0.3"]}
    pq.write_table(pa.table(table), scores)
    with pytest.raises(LaionSamplingError, match="column 'similarity' holds VARCHAR, not numbers"):
        sample_laion([str(scores)], QUOTAS, LaionFilters(max_punsafe=None), out_dir=tmp_path / "o")


def test_invalid_utf8_in_captions_names_the_file(tmp_path: Path) -> None:
    text = pa.array([b"ok", b"bad\xff"], pa.binary()).view(pa.string())  # bypass validation
    path = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"URL": ["a", "b"], "TEXT": text, "LANGUAGE": ["de", "de"]}), path)
    with pytest.raises(LaionSamplingError, match=r"broken\.parquet.*not valid UTF8.*re-download"):
        sample_laion([path], QUOTAS, LaionFilters(max_punsafe=None), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_bad_translation_file_and_missing_inputs(laion: LaionInputs, tmp_path: Path) -> None:
    bad = write_rows(tmp_path / "t.parquet", [laion_row("u1", "Ein Hund")])
    inputs = laion.model_copy(update={"translations": [bad]})
    with pytest.raises(LaionSamplingError, match=r"t\.parquet: missing columns \['ENG TEXT'\]"):
        sample_laion(inputs, QUOTAS, FILTERS, out_dir=tmp_path / "o")
    with pytest.raises(FileNotFoundError, match=r"nope\.parquet: LAION metadata file not found"):
        sample_laion([tmp_path / "nope.parquet"], QUOTAS, out_dir=tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LaionSamplingError, match="holds no \\*.parquet"):
        sample_laion([tmp_path / "empty"], QUOTAS, out_dir=tmp_path / "o")
    not_parquet = tmp_path / "junk.parquet"
    not_parquet.write_bytes(b"not parquet")
    with pytest.raises(LaionSamplingError, match=r"junk\.parquet: not a readable parquet"):
        sample_laion([not_parquet], QUOTAS, out_dir=tmp_path / "o")
    with pytest.raises(ValidationError, match="no LAION metadata given"):
        LaionInputs(translations=[bad])


def test_existing_output_is_kept_unless_overwrite(laion: LaionInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=out)
    with pytest.raises(FileExistsError):
        sample_laion(laion, QUOTAS, FILTERS, seed=2, out_dir=out)
    assert first.parquet.exists()
    again = sample_laion(laion, QUOTAS, FILTERS, seed=2, out_dir=out, overwrite=True)
    assert again.manifest["seed"] == 2


def test_filter_spec_validation() -> None:
    with pytest.raises(ValidationError, match="max_caption_chars 3 < min_caption_chars 5"):
        LaionFilters(min_caption_chars=5, max_caption_chars=3)
    with pytest.raises(ValidationError):
        LaionFilters(max_punsafe=1.5)
    with pytest.raises(ValidationError):
        LaionFilters(unknown=1)


def test_sample_is_reused_until_what_it_was_made_from_changes(
    laion: LaionInputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=out)
    assert not first.reused
    stamp = first.parquet.stat().st_mtime_ns
    again = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=out)
    assert again.reused and again.manifest == first.manifest
    assert again.parquet.stat().st_mtime_ns == stamp  # not rewritten
    tuned = sample_laion(laion, QUOTAS, FILTERS, seed=1, out_dir=out,
                         engine=LaionEngine(threads=1, min_examined=1))  # fmt: skip
    assert tuned.reused  # how DuckDB runs is not what the sample is made from
    changes = {
        "seed": {"seed": 2},
        "filters": {"filters": FILTERS.model_copy(update={"max_caption_chars": 199})},
        "quotas": {"quotas": LaionQuotas(counts={"de": 4, "fr": 3, "iw": 1, "en": 2})},
        "columns": {"columns": LaionColumns(english={"similarity": "hash"})},
    }
    base = {"inputs": laion, "quotas": QUOTAS, "filters": FILTERS, "seed": 1, "out_dir": out}
    for what, change in changes.items():
        with pytest.raises(FileExistsError):
            sample_laion(**{**base, **change})
        assert not sample_laion(**{**base, **change}, overwrite=True).reused, what
        assert not sample_laion(**base, overwrite=True).reused, what  # back to the original


def test_a_changed_input_file_invalidates_the_sample(many: list[Path], tmp_path: Path) -> None:
    quotas = LaionQuotas(counts={"de": 10, "fr": 5})
    out = tmp_path / "out"
    first = sample_laion([many[0].parent], quotas, out_dir=out)
    assert sample_laion([many[0].parent], quotas, out_dir=out).reused
    extra = write_rows(many[0].parent / "c.parquet", [laion_row("https://x/new", "neu", "fr")])
    assert not sample_laion([many[0].parent], quotas, out_dir=out, overwrite=True).reused
    extra.unlink()
    assert not sample_laion([many[0].parent], quotas, out_dir=out, overwrite=True).reused
    # Same size, new bytes: hashing (on for small local inputs) sees it even in the same second.
    table = pq.read_table(many[1])
    text = pa.array([t.replace("caption", "Caption") for t in table["TEXT"].to_pylist()])
    pq.write_table(table.set_column(1, "TEXT", text.cast(pa.large_string())), many[1])
    assert not sample_laion([many[0].parent], quotas, out_dir=out, overwrite=True).reused
    # Unhashed, a file is known by size and modification time.
    unhashed = sample_laion(
        [many[0].parent], quotas, out_dir=out, overwrite=True, hash_inputs=False
    )
    assert not unhashed.reused and "sha256" not in unhashed.manifest["inputs"][0]
    assert sample_laion([many[0].parent], quotas, out_dir=out, hash_inputs=False).reused
    os.utime(many[0], ns=(0, 0))
    assert not sample_laion([many[0].parent], quotas, out_dir=out, overwrite=True,
                            hash_inputs=False).reused  # fmt: skip
    # A damaged sample is never handed back.
    result = sample_laion([many[0].parent], quotas, out_dir=out, hash_inputs=False)
    assert result.reused
    result.parquet.write_bytes(b"damaged")
    assert not sample_laion([many[0].parent], quotas, out_dir=out, overwrite=True,
                            hash_inputs=False).reused  # fmt: skip
    assert first.manifest["format"] == SAMPLE_FORMAT


def _same_selection(inputs: LaionInputs | list[Path], quotas: LaionQuotas, root: Path,
                    filters: LaionFilters | None = None, seed: int = 0,
                    engine: LaionEngine | None = None) -> SampleResult:  # fmt: skip
    """Sample with the scalable selection and the reference; assert identical samples. Each
    engine writes its own folder: a sample of the same recipe would be reused, not redone."""
    ref = sample_laion(inputs, quotas, filters, seed, root / "ref", select=select_reference,
                       overwrite=True)  # fmt: skip
    engine = engine or LaionEngine()
    out = root / f"new-{engine.min_examined}-{engine.oversample}"
    new = sample_laion(inputs, quotas, filters, seed, out, engine=engine, overwrite=True)
    assert not new.reused
    assert new.parquet.read_bytes() == ref.parquet.read_bytes()
    assert new.shortfalls == ref.shortfalls
    examined_in_full = all(
        e["fraction"] == 1 for e in new.manifest["selection"]["examined"].values()
    )
    if examined_in_full:
        assert new.manifest["counts"] == ref.manifest["counts"]
    return new


def test_scalable_selection_equals_the_reference_on_the_fixtures(
    laion: LaionInputs, many: list[Path], tmp_path: Path
) -> None:
    narrow = LaionEngine(min_examined=1, oversample=1.0)  # thresholds below 1, widening
    for engine in (None, narrow):
        _same_selection(laion, QUOTAS, tmp_path, FILTERS, seed=1, engine=engine)
        shares = LaionQuotas(shares={"de": 0.6, "fr": 0.4}, total=50)
        for seed in (7, 8):
            new = _same_selection(many, shares, tmp_path, seed=seed, engine=engine)
    assert new.manifest["selection"]["rounds"] >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scalable_selection_equals_the_reference_on_random_data(seed: int, tmp_path: Path) -> None:
    """Thousands of rows full of URL and caption duplicates (across languages, in case and
    spacing variants), so that the examined slice meets duplicates outside it."""
    rng = np.random.default_rng(seed)
    n = 6000
    variants = ["{}", "{}  ", "  {}", "{}".upper(), "{}\t", "{}\u00a0"]
    stock = [f"stock {i}" for i in range(40)]
    rows = []
    for _ in range(n):
        text = stock[rng.integers(40)] if rng.random() < 0.3 else f"caption {rng.integers(n)}"
        text = variants[rng.integers(len(variants))].format(text)
        text = text.upper() if rng.random() < 0.2 else text
        lang = rng.choice(["de", "fr", "ja", "iw", "he", "en", "la", None])
        url = f"https://x/{rng.integers(int(n * 0.8))}"
        overrides = {"similarity": float(rng.random()), "WIDTH": int(rng.integers(1, 999))}
        rows.append(laion_row(url, text, lang, **overrides))
    paths = [write_rows(tmp_path / "in" / f"{i}.parquet", rows[i::3]) for i in range(3)]
    quotas = LaionQuotas(counts={"de": 300, "fr": 40, "ja": 600, "he": 5, "en": 1})
    filters = LaionFilters(min_similarity=0.2, min_width=50)
    for engine in (LaionEngine(min_examined=1, oversample=1.0), LaionEngine(min_examined=200),
                   None):  # fmt: skip
        new = _same_selection(paths, quotas, tmp_path, filters, seed, engine)
    assert new.manifest["selection"]["rounds"] == 1


CAPTIONS = ["Ein Hund", " Ein  Hund ", "ein\thund", "EIN\nHUND", "a\u00a0b", "\u3000a b\u3000",
            "a \u3000 b", "a\x0bb", "a\rb", "a\x0cb", "  ", "", "ÄÖÜ", "a b\t\tc", "\tein hund\n",
            "\t", "\n \u00a0", "\u2028", "\x85", " \u3000\t", "\x1c", "\x0bdog", "a\x1fb",
            "caf\u00e9 \u2009au lait"]  # fmt: skip


def test_caption_key_folds_white_space_as_python_splits_it() -> None:
    """The key's shortcut gives what folding every caption would, and both what Python's
    ``" ".join(text.split()).lower()`` gives: tabs, newlines and Unicode spaces, inside and at
    the ends, fold like ASCII spaces."""
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (TEXT VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?)", [[t] for t in [*CAPTIONS, None]])
        plain = f"lower(trim(regexp_replace(t.TEXT, '[{WHITE}]+', ' ', 'g')))"
        rows = con.execute(f"SELECT {plain}, {caption_key('t')} FROM t").fetchall()
    assert rows[-1] == (None, None)
    assert [key for _, key in rows[:-1]] == [" ".join(c.split()).lower() for c in CAPTIONS]
    assert all(a == b for a, b in rows)


def test_captions_of_white_space_alone_are_blank() -> None:
    """The non_empty filter keeps a caption where Python's str.strip leaves something: tabs,
    newlines and Unicode spaces alone are blank; the white space is Python's, every character."""
    assert WHITE_SPACE == [code for code in range(0x110000) if chr(code).isspace()]
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (TEXT VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?)", [[t] for t in CAPTIONS])
        kept = [row[0] for row in con.execute(f"SELECT {_not_blank('TEXT')} FROM t").fetchall()]
    assert kept == [bool(text.strip()) for text in CAPTIONS]


def test_key_thresholds_and_widening() -> None:
    assert key_bound(1.0) == "g" and key_bound(0.5) == "8" + "0" * 15
    assert key_bound(1e-30) == "0" * 15 + "1"
    assert key_bound(0.25) < key_bound(0.2500001) < key_bound(0.9999999999)
    engine = LaionEngine(oversample=1.5, min_examined=10)
    assert initial_fraction(100, 1000, engine) == 0.15
    assert initial_fraction(1, 1000, engine) == 0.01  # at least min_examined rows
    assert initial_fraction(100, 0, engine) == 1.0
    assert widened(0.1, 100, 90, engine) == 0.2  # at least doubled
    assert widened(0.1, 100, 10, engine) == pytest.approx(1.0)
    assert widened(0.6, 100, 0, engine) == 1.0
