"""Retrieval tasks on designed embeddings: every rank and metric below is worked out by hand.

Three images (e0, e1, e2), captions in en (seen) and de (held out), two per image, parallel (caption
k is the translation of caption k). A caption of image i, index k, language L is
normalise(e_i + 0.3 u_k + 0.1 w_L): its own image scores 1/sqrt(1.1), a parallel caption (same i
and k) beats the other caption of the image, and the same language adds a little. One planted
confusion: en caption (image 0, index 0) is normalise(e_1 + 0.5 e_0 + 0.3 u_0 + 0.1 w_en), which
prefers image 1 over its own image 0.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from xlr.analysis.intervals import summarize_with_ci
from xlr.config import EvalSection
from xlr.data.imagetext import ArrayImages, ImageStore, ImageTextSet
from xlr.eval.results import (
    RANK_COLUMNS,
    RESULT_COLUMNS,
    _read_results,
    clip_benchmark_records,
    read_ranks,
    write_ranks,
    write_results,
)
from xlr.eval.runner import _write_evaluation
from xlr.eval.tasks import evaluate_arm, xt2t_matrix

pytestmark = pytest.mark.filterwarnings("ignore:designed. multilingual_seen skipped")  # 1 seen

LANGS = ("en", "de")
N_IMAGES, N_CAPTIONS = 3, 2
DIM = 7  # e_0..e_2, u_0..u_1, w_en, w_de


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _basis(i: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = 1.0
    return v


def caption_vector(image: int, lang: str, k: int) -> np.ndarray:
    v = _basis(image) + 0.3 * _basis(3 + k) + 0.1 * _basis(5 + LANGS.index(lang))
    if (image, lang, k) == (0, "en", 0):
        v = v + _basis(1) - 0.5 * _basis(0)  # e_1 + 0.5 e_0: the planted confusion
    return _unit(v)


def designed_set(name: str = "designed", captions_per_image: int = N_CAPTIONS) -> ImageTextSet:
    pixels = np.zeros((N_IMAGES, 2, 2, 3), dtype=np.uint8)
    pixels[:, 0, 0, 0] = np.arange(N_IMAGES)  # the image id, read back by the encoder
    rows = [
        (i, lang, k, f"{lang} {i} {k}")
        for lang in LANGS
        for i in range(N_IMAGES)
        for k in range(captions_per_image)
    ]
    captions = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    keys = [f"{i}.jpg" for i in range(N_IMAGES)]
    return ImageTextSet(name, keys, ArrayImages(pixels), captions, parallel=True)


class DesignedEncoder:
    """Returns the designed vectors; counts calls so caching can be checked."""

    name = "designed"
    checkpoint = "designedckpt"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def describe(self) -> dict[str, Any]:
        return {"encoder": "DesignedEncoder"}

    def encode_images(self, images: ImageStore) -> np.ndarray:
        self.calls["images"] += 1
        return np.stack(
            [_unit(_basis(int(np.asarray(images[i])[0, 0, 0]))) for i in range(len(images))]
        )

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
        self.calls[lang] += 1
        parsed = [text.split() for text in texts]
        assert all(text_lang == lang for text_lang, _, _ in parsed), "one language per call"
        return np.stack([caption_vector(int(i), lang, int(k)) for lang, i, k in parsed])


def run(captions: str = "all", **kwargs: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    kwargs = {"eval_set": designed_set(), "arm": "designed", "seed": 1, "base_seed": 0} | kwargs
    return evaluate_arm(
        DesignedEncoder(), seen_langs=["en"], heldout_langs=["de"],
        eval_cfg=EvalSection(captions=captions), **kwargs,
    )  # fmt: skip


def value(results: pd.DataFrame, task: str, query: str, target: str, metric: str) -> float:
    row = results[
        (results["task"] == task)
        & (results["query_lang"] == query)
        & (results["target_lang"] == target)
        & (results["metric"] == metric)
    ]
    assert len(row) == 1, (task, query, target, metric)
    return float(row["value"].iat[0])


@pytest.fixture(scope="module")
def evaluated() -> tuple[pd.DataFrame, pd.DataFrame]:
    return run("all")


def test_schemas_are_exact(evaluated) -> None:
    results, ranks = evaluated
    assert tuple(results.columns) == RESULT_COLUMNS
    assert tuple(ranks.columns) == RANK_COLUMNS
    assert RESULT_COLUMNS == (
        "arm", "seed", "base_seed", "benchmark", "task", "query_lang", "target_lang",
        "lang_group", "metric", "value", "captions", "n_queries",
    )  # fmt: skip
    assert RANK_COLUMNS == (
        "arm", "seed", "base_seed", "benchmark", "task", "query_idx", "query_lang",
        "query_image_id", "relevant_idx", "relevant_lang", "relevant_image_id", "rank",
    )  # fmt: skip
    assert set(results["captions"]) == {"all"} and set(results["benchmark"]) == {"designed"}
    assert set(results["task"]) == set(ranks["task"]) == {"t2i", "i2t", "xt2t", "multilingual"}
    assert set(results["lang_group"]) <= {"seen", "heldout", "mixed"}
    assert not results.duplicated(
        ["task", "query_lang", "target_lang", "lang_group", "metric"]
    ).any()
    assert (ranks["rank"] >= 1).all()


def test_text_to_image_known_answers(evaluated) -> None:
    results, ranks = evaluated
    t2i = ranks[(ranks["task"] == "t2i") & (ranks["query_lang"] == "en")]
    assert t2i["rank"].tolist() == [2, 1, 1, 1, 1, 1]  # only the planted caption misses
    assert (t2i["relevant_image_id"] == t2i["query_image_id"]).all()
    assert set(t2i["relevant_lang"]) == {"image"}
    assert value(results, "t2i", "en", "image", "R@1") == pytest.approx(5 / 6)
    assert value(results, "t2i", "en", "image", "R@5") == 1.0
    assert value(results, "t2i", "en", "image", "MRR") == pytest.approx(11 / 12)
    assert value(results, "t2i", "en", "image", "mean_recall") == pytest.approx(17 / 18)
    assert value(results, "t2i", "de", "image", "R@1") == 1.0
    groups = results[results["task"] == "t2i"].groupby("query_lang")["lang_group"].first()
    assert groups.to_dict() == {"en": "seen", "de": "heldout"}


def test_image_to_text_uses_every_caption_of_the_image(evaluated) -> None:
    results, ranks = evaluated
    i2t = ranks[(ranks["task"] == "i2t") & (ranks["relevant_lang"] == "en")]
    assert (i2t["query_lang"] == "image").all()
    assert i2t.groupby("query_idx").size().tolist() == [2, 2, 2]
    image0 = i2t[i2t["query_idx"] == 0].set_index("relevant_idx")["rank"]
    assert image0.to_dict() == {0: 2, 1: 1}  # planted caption below the true second caption
    assert value(results, "i2t", "image", "en", "R@1") == 1.0
    assert value(results, "i2t", "image", "en", "mAP") == 1.0
    assert value(results, "i2t", "image", "de", "R@1") == 1.0


def test_first_caption_convention_gives_other_numbers() -> None:
    results, ranks = run("first")
    assert set(results["captions"]) == {"first"}
    assert value(results, "t2i", "en", "image", "R@1") == pytest.approx(2 / 3)
    assert value(results, "t2i", "en", "image", "MRR") == pytest.approx(5 / 6)
    n = results[(results["task"] == "t2i") & (results["query_lang"] == "en")]["n_queries"]
    assert set(n) == {3}
    assert value(results, "xt2t", "en", "de", "R@1") == pytest.approx(2 / 3)
    assert ranks[ranks["task"] == "i2t"].groupby(["relevant_lang", "query_idx"]).size().max() == 1


def test_cross_lingual_pairs_rank_the_translation_among_its_caption_index(evaluated) -> None:
    """en -> de: the gallery is the three de captions of the query's index. The planted en
    caption (0, 0) scores de (1, 0) at 1.09 and its translation de (0, 0) at 0.59 (numerators):
    rank 2. Before the revision the gallery also held de (1, 1) (1.0): rank 3."""
    results, ranks = evaluated
    xt2t = ranks[ranks["task"] == "xt2t"]
    assert xt2t.groupby(["query_lang", "relevant_lang", "query_idx"]).size().max() == 1
    assert (xt2t["query_lang"] != xt2t["relevant_lang"]).all()  # no diagonal
    en_de = xt2t[(xt2t["query_lang"] == "en") & (xt2t["relevant_lang"] == "de")]
    assert (en_de["relevant_idx"] == en_de["query_idx"]).all()  # same (image, caption_idx) row
    assert en_de["rank"].tolist() == [2, 1, 1, 1, 1, 1]
    assert value(results, "xt2t", "en", "de", "R@1") == pytest.approx(5 / 6)
    assert value(results, "xt2t", "en", "de", "MRR") == pytest.approx(11 / 12)
    assert value(results, "xt2t", "en", "de", "mAP") == pytest.approx(11 / 12)
    # de (0, 0) -> en: its translation is the planted caption (0.59 / sqrt(1.35 * 1.1) = 0.48),
    # above en (1, 0) and (2, 0) (0.09 / 1.1); en (0, 1) (1.0 / 1.1) is no longer in its gallery.
    assert value(results, "xt2t", "de", "en", "R@1") == 1.0
    assert value(results, "xt2t", "de", "en", "MRR") == 1.0
    groups = results[results["task"] == "xt2t"].set_index(["query_lang", "target_lang"])
    assert groups["lang_group"].groupby(level=[0, 1]).first().to_dict() == {
        ("en", "de"): "mixed", ("de", "en"): "mixed",
    }  # fmt: skip
    matrix = xt2t_matrix(results, "R@1")
    assert matrix.index.tolist() == matrix.columns.tolist() == ["en", "de"]
    assert matrix.loc["en", "de"] == pytest.approx(5 / 6) and np.isnan(matrix.loc["en", "en"])


def test_paraphrase_ranks_the_other_caption_of_the_image() -> None:
    results, ranks = run("all", tasks=["paraphrase"])
    en_en = ranks[(ranks["task"] == "paraphrase") & (ranks["query_lang"] == "en")]
    assert (en_en["relevant_lang"] == "en").all()
    assert (en_en["relevant_idx"] != en_en["query_idx"]).all()
    assert (en_en["relevant_image_id"] == en_en["query_image_id"]).all()
    assert en_en["relevant_idx"].tolist() == [1, 0, 3, 2, 5, 4]
    assert en_en["rank"].tolist() == [3, 1, 1, 1, 1, 1]  # ranked without the query itself
    assert value(results, "paraphrase", "en", "en", "R@1") == pytest.approx(5 / 6)
    assert value(results, "paraphrase", "de", "de", "R@1") == 1.0
    assert set(results["task"]) == {"paraphrase"}


def test_paraphrase_is_skipped_with_a_warning_when_one_caption_per_image() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results, _ = run("first", tasks=["paraphrase", "xt2t"])
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        f"paraphrase {lang} skipped: with captions='first' the set has one caption per image"
        for lang in LANGS
    ]
    assert set(results["task"]) == {"xt2t"}
    single = designed_set("single", captions_per_image=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results, _ = run("all", eval_set=single, tasks=["paraphrase", "xt2t"])
    assert len(caught) == 2 and "captions='all' the set has one caption" in str(caught[0].message)
    assert len(results) and (results["query_lang"] != results["target_lang"]).all()


def test_multilingual_pool_holds_one_caption_per_image_and_language(evaluated) -> None:
    """Pools per caption index: k = 0 holds en 0, 2, 4 and de 6, 8, 10 (positions in en's list,
    then de's). The planted en (0, 0) meets en (1, 0) (1.10), de (1, 0) (1.09), then its
    translation de (0, 0) (0.59): rank 3, AP 1/3. Every other caption finds its translation
    first."""
    results, ranks = evaluated
    pool = ranks[(ranks["task"] == "multilingual") & (ranks["query_lang"] != "image")]
    assert (pool["query_idx"] != pool["relevant_idx"]).all()
    assert (pool["query_lang"] != pool["relevant_lang"]).all()  # translations only
    assert pool.groupby("query_idx").size().tolist() == [1] * 12  # one other language
    assert (pool["relevant_image_id"] == pool["query_image_id"]).all()
    en10 = pool[pool["query_idx"] == 2].set_index("relevant_idx")["rank"]  # en caption (1, 0)
    assert en10.to_dict() == {8: 1}
    planted = pool[pool["query_idx"] == 0].set_index("relevant_idx")["rank"]
    assert planted.to_dict() == {6: 3}
    en_map = (Fraction(1, 3) + 5) / 6
    assert value(results, "multilingual", "en", "all", "mAP") == pytest.approx(float(en_map))
    assert value(results, "multilingual", "de", "all", "mAP") == 1.0
    macro = results[(results["task"] == "multilingual") & (results["query_lang"] == "macro")]
    macro_map = macro[macro["metric"] == "mAP"].set_index("lang_group")["value"]
    assert macro_map["mixed"] == pytest.approx(float((en_map + 1) / 2))
    assert macro_map["seen"] == pytest.approx(float(en_map)) and macro_map["heldout"] == 1.0
    images = ranks[(ranks["task"] == "multilingual") & (ranks["query_lang"] == "image")]
    assert images.groupby("query_idx")["relevant_lang"].value_counts().tolist() == [1] * 6
    assert set(images["relevant_idx"]) == {0, 2, 4, 6, 8, 10}  # the first-caption pool
    assert value(results, "multilingual", "image", "all", "mAP") == 1.0
    assert "multilingual_seen" not in set(results["task"])  # one seen language: no seen pool


def test_seed_none_is_kept_and_results_are_written_whole(tmp_path: Path) -> None:
    zeroshot = run("all", arm="zeroshot", seed=None)
    trained = run("all", arm="mono-full", seed=3)
    write_results(*trained, tmp_path)
    both = [pd.concat([a, b], ignore_index=True) for a, b in zip(zeroshot, trained, strict=True)]
    write_results(*both, tmp_path)  # the table is replaced by the whole evaluation
    table = pd.read_parquet(tmp_path / "results" / "retrieval.parquet")
    assert len(table) == len(zeroshot[0]) + len(trained[0])
    assert table["seed"].isna().sum() == len(zeroshot[0])
    assert tuple(table.columns) == RESULT_COLUMNS
    ranks_files = sorted(p.name for p in (tmp_path / "results" / "ranks").iterdir())
    assert ranks_files == ["mono-full-b0-s3-designed.parquet", "zeroshot-b0-snone-designed.parquet"]
    saved = pd.read_parquet(tmp_path / "results" / "ranks" / ranks_files[0])
    pd.testing.assert_frame_equal(saved, trained[1].reset_index(drop=True))
    record_path = (
        tmp_path
        / "results"
        / "clip_benchmark"
        / ("designed_b0-s3_mono-full_en_zeroshot_retrieval.json")
    )
    record = json.loads(record_path.read_text())
    assert record["task"] == "zeroshot_retrieval" and record["language"] == "en"
    assert record["dataset"] == "designed" and record["captions"] == "all"
    assert record["metrics"]["image_retrieval_recall@1"] == pytest.approx(5 / 6)
    assert record["metrics"]["text_retrieval_recall@1"] == 1.0


def test_records_spell_datasets_and_languages_as_clip_benchmark_does() -> None:
    """Records join CLIP_benchmark 1.6.2's own (installed by ``make env``) on dataset and
    language: Crossmodal-3600 is its ``crossmodal3600`` with ``fil`` and ``quz``, XTD10's
    Japanese its ``jp``; a benchmark it lacks (Multi30K) keeps our name."""
    from clip_benchmark.datasets import crossmodal3600, xtd10

    rows = [
        ("xm3600", "t2i", lang, "image") for lang in ("tl", "qu", "de")
    ] + [("xtd10", "i2t", "image", "ja"), ("multi30k", "t2i", "cs", "image")]  # fmt: skip
    results = pd.DataFrame(
        [
            ("zeroshot", np.nan, 0, bench, task, q, t, "seen", "R@1", 0.5, "all", 10)
            for bench, task, q, t in rows
        ],
        columns=list(RESULT_COLUMNS),
    )
    records = {(r["dataset"], r["language"]) for r in clip_benchmark_records(results)}
    assert records == {
        ("crossmodal3600", "fil"), ("crossmodal3600", "quz"), ("crossmodal3600", "de"),
        ("xtd10", "jp"), ("multi30k", "cs"),
    }  # fmt: skip
    supported = {"crossmodal3600": crossmodal3600.SUPPORTED_LANGUAGES}
    supported["xtd10"] = xtd10.SUPPORTED_LANGUAGES
    for dataset, language in records - {("multi30k", "cs")}:
        assert language in supported[dataset], (dataset, language)


def test_a_whole_evaluation_leaves_no_model_the_params_dropped(tmp_path: Path) -> None:
    """Notebook 04 after an arm or seed left the params: the table, ranks files and records are
    the new evaluation's alone (05 and 06 read every ranks file there), where merging kept the
    dropped seed's rows as a unit of every interval."""
    zeroshot = run("all", arm="zeroshot", seed=None)
    seeds = [run("all", arm="mono-full", seed=seed) for seed in (3, 4)]
    written = [(results, write_ranks(ranks, tmp_path)) for results, ranks in (zeroshot, *seeds)]
    _write_evaluation(written, tmp_path)
    (tmp_path / "results" / "ranks" / "notes.txt").write_text("no ranks file: left alone")
    theirs = "xtd10_laion5b_s13b_b90k_xlm-roberta-base-ViT-B-32_en_zeroshot_retrieval.json"
    (tmp_path / "results" / "clip_benchmark" / theirs).write_text("{}")  # CLIP_benchmark's
    results, _ = _write_evaluation(written[:2], tmp_path)  # seed 4 dropped
    table, files = _read_results(tmp_path, "missing")
    pd.testing.assert_frame_equal(table, results)
    read = read_ranks(files)
    assert sorted(read["seed"].dropna().unique()) == [3]
    t2i = read_ranks(files, ["t2i"])  # filtered while reading
    assert set(t2i["task"]) == {"t2i"} and len(t2i) == (read["task"] == "t2i").sum() > 0
    pools = read_ranks(files, ["multilingual", "t2i"])
    expected = read[read["task"].isin(["multilingual", "t2i"])]
    pd.testing.assert_frame_equal(pools, expected.reset_index(drop=True))
    with pytest.raises(TypeError, match=r"tasks is a list of names, got the string 't2i'"):
        read_ranks(files, "t2i")  # a string would read the tasks t, 2 and i: none
    with pytest.raises(ValueError, match="no tasks to read"):
        read_ranks(files, [])
    zeroshot = read_ranks(files, ["t2i"], arms=["zeroshot"])
    assert set(zeroshot["arm"]) == {"zeroshot"} and set(read["arm"]) > {"zeroshot"}
    assert len(zeroshot) == ((read["task"] == "t2i") & (read["arm"] == "zeroshot")).sum()
    with pytest.raises(ValueError, match="no arms to read"):
        read_ranks(files, arms=[])
    assert sorted(p.name for p in (tmp_path / "results" / "ranks").iterdir()) == [
        "mono-full-b0-s3-designed.parquet",
        "notes.txt",
        "zeroshot-b0-snone-designed.parquet",
    ]
    records = [p.name for p in (tmp_path / "results" / "clip_benchmark").iterdir()]
    assert theirs in records and not [name for name in records if "-s4_" in name]
    assert any("-s3_" in name for name in records)


def test_summarize_with_ci_matches_the_results(evaluated) -> None:
    results, ranks = evaluated
    table = summarize_with_ci(ranks, "R@1", by=["task", "query_lang", "target_lang"])
    t2i_en = table[(table["task"] == "t2i") & (table["query_lang"] == "en")].iloc[0]
    assert t2i_en["estimate"] == pytest.approx(5 / 6)
    assert t2i_en["low"] <= t2i_en["estimate"] <= t2i_en["high"]
    assert t2i_en["n_images"] == 3  # its 6 caption queries come from 3 images
    pool = table[(table["task"] == "multilingual") & (table["query_lang"] == "en")].iloc[0]
    assert pool["target_lang"] == "all"
    assert len(table) == len(results[results["metric"] == "R@1"]) - 3  # no macro rows in ranks
    macro = summarize_with_ci(
        ranks[(ranks["task"] == "multilingual") & (ranks["query_lang"] != "image")],
        "mAP", by=["task"], strata="query_lang",
    )  # fmt: skip
    macro_rows = results[(results["query_lang"] == "macro") & (results["metric"] == "mAP")]
    expected = macro_rows.set_index("lang_group")["value"]["mixed"]
    assert macro["estimate"].iat[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown metric"):
        summarize_with_ci(ranks, "accuracy")


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"no captions in \['fr'\]"):
        evaluate_arm(DesignedEncoder(), designed_set(), ["en", "fr"], ["de"])
    empty = ImageTextSet(
        "empty", [], ArrayImages(np.zeros((0, 2, 2, 3), np.uint8)),
        pd.DataFrame(columns=["image_id", "lang", "caption_idx", "caption"]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="'empty' is empty"):
        evaluate_arm(DesignedEncoder(), empty, ["en"], [])
    with pytest.raises(ValueError, match="both seen and held out"):
        evaluate_arm(DesignedEncoder(), designed_set(), ["en"], ["en"])
    with pytest.raises(ValueError, match="unknown retrieval tasks"):
        evaluate_arm(DesignedEncoder(), designed_set(), ["en"], [], tasks=["t2t"])

    class Wider(DesignedEncoder):
        def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
            return np.pad(super().encode_texts(texts, lang), ((0, 0), (0, 1)))

    with pytest.raises(ValueError, match="dimension 7 but en caption embeddings have 8"):
        evaluate_arm(Wider(), designed_set(), ["en"], ["de"], arm="wider")


def test_multilingual_without_caption_queries_still_ranks_images() -> None:
    with pytest.warns(UserWarning, match=r"no caption has a translation in the pool of \['en'\]"):
        results, ranks = evaluate_arm(
            DesignedEncoder(), designed_set(), ["en"], [], tasks=["multilingual"],
            eval_cfg=EvalSection(captions="first"),
        )  # fmt: skip
    assert set(results["query_lang"]) == {"image"} and set(ranks["query_lang"]) == {"image"}
    assert value(results, "multilingual", "image", "all", "R@1") == 1.0
