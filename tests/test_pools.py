"""The pools' bias measures gathered run by run equal those of all ranks in one table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlr.analysis.bias import (
    english_first,
    language_preference,
    pool_run_measures,
    rank_distance_per_query,
    top_languages,
)
from xlr.analysis.intervals import preference_intervals
from xlr.analysis.pools import pool_measures
from xlr.eval.results import read_runs, write_ranks

LANGS = ["en", "de", "fr", "ja"]
RUNS = [("zeroshot", pd.NA, 0), ("zeroshot", pd.NA, 1), ("mono", 0, 0), ("mono", 1, 0),
        ("mono", 0, 1), ("hybrid", 0, 0), ("hybrid", 0, 1)]  # fmt: skip


def pool_ranks(
    rng: np.random.Generator, benchmark: str, langs: list[str], n_images: int
) -> pd.DataFrame:
    """A pool task's ranks for every run in :data:`RUNS`: per image, a caption in each of
    ``langs`` (each caption query's relevant items are the others) and an image query relevant
    to all; ranks distinct within a query, drawn at random with English favoured."""
    rows = []
    for arm, seed, base in RUNS:
        run = {"arm": arm, "seed": seed, "base_seed": base, "benchmark": benchmark,
               "task": "multilingual"}  # fmt: skip
        for image in range(n_images):
            for query_lang in [*langs, "image"]:
                relevant = [lang for lang in langs if lang != query_lang]
                weights = np.array([3.0 if lang == "en" else 1.0 for lang in relevant])
                order = rng.choice(
                    len(relevant), len(relevant), replace=False, p=weights / weights.sum()
                )
                ranks = np.sort(rng.choice(np.arange(1, 60), len(relevant), replace=False))
                query = image * (len(langs) + 1) + [*langs, "image"].index(query_lang)
                for position, item in enumerate(order):
                    rows.append({**run, "query_idx": query, "query_lang": query_lang,
                                 "query_image_id": image, "relevant_idx": image,
                                 "relevant_lang": relevant[item], "relevant_image_id": image,
                                 "rank": int(ranks[position])})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


@pytest.fixture(scope="module")
def two_benchmarks() -> pd.DataFrame:
    """Ranks of the runs on a four-language benchmark and on one with three of the languages
    (as Multi30K beside XTD10)."""
    rng = np.random.default_rng(3)
    return pd.concat(
        [pool_ranks(rng, "xtd10", LANGS, 12), pool_ranks(rng, "multi30k", LANGS[:3], 9)],
        ignore_index=True,
    )


def test_measures_read_file_by_file_equal_those_of_the_whole_table(tmp_path, two_benchmarks):
    """Notebook 05 reads the pools one ranks file at a time: every measure it shows is the
    one read from all runs' ranks at once."""
    files = write_ranks(two_benchmarks, tmp_path)
    assert len(files) == 2 * len(RUNS)
    streamed = pool_measures(read_runs(files, ["multilingual"], progress=False), LANGS)
    whole_rd = rank_distance_per_query(two_benchmarks, pool=LANGS)
    whole = top_languages(two_benchmarks, pool=LANGS)
    keys = ["benchmark", "arm", "base_seed", "seed", "query_idx"]
    pd.testing.assert_frame_equal(
        streamed.rank_distance.sort_values(keys, ignore_index=True),
        whole_rd.sort_values(keys, ignore_index=True),
    )
    assert len(streamed.rank_distance) == len(RUNS) * (12 * 5 + 9 * 4)
    pd.testing.assert_frame_equal(streamed.tops.queries, whole.queries)
    pd.testing.assert_frame_equal(
        streamed.tops.langs.sort_values(["benchmark", "lang"], ignore_index=True),
        whole.langs.sort_values(["benchmark", "lang"], ignore_index=True),
    )
    uniform = streamed.tops.langs.groupby("benchmark")["uniform"].first().to_dict()
    assert uniform == pytest.approx({"multi30k": 1 / 3, "xtd10": 1 / 4})
    pd.testing.assert_frame_equal(language_preference(streamed.tops), language_preference(whole))
    pd.testing.assert_frame_equal(english_first(streamed.tops), english_first(whole))
    pd.testing.assert_frame_equal(preference_intervals(streamed.tops), preference_intervals(whole))
    english = english_first(whole)["value"].mean()
    assert 0.4 < english < 0.8  # favoured three to one: the measures see a bias, not noise


def test_one_frame_of_several_runs_and_benchmarks_gives_the_same(two_benchmarks):
    """A frame is measured over the pool languages it has, whichever runs it holds."""
    whole = top_languages(two_benchmarks, pool=LANGS)
    streamed = pool_measures([two_benchmarks.iloc[:0], two_benchmarks], LANGS)  # an empty file
    pd.testing.assert_frame_equal(streamed.tops.queries, whole.queries)
    pd.testing.assert_frame_equal(
        streamed.rank_distance, rank_distance_per_query(two_benchmarks, pool=LANGS)
    )


def test_one_frames_measures_are_the_two_measures_validated_once(two_benchmarks):
    """One benchmark's ranks (a file) numbered once, or several benchmarks', a one-language
    benchmark among them (whole-table top languages keep its queries), give the same tables."""
    xtd = two_benchmarks[two_benchmarks["benchmark"] == "xtd10"]
    multi30k = two_benchmarks[two_benchmarks["benchmark"] == "multi30k"]
    with_one_language = pd.concat([xtd, multi30k[multi30k["relevant_lang"] == "en"]])
    for frame in (xtd, two_benchmarks, with_one_language):
        distance, tops = pool_run_measures(frame, LANGS)
        whole = top_languages(frame, pool=LANGS)
        pd.testing.assert_frame_equal(distance, rank_distance_per_query(frame, pool=LANGS))
        pd.testing.assert_frame_equal(tops.queries, whole.queries)
        pd.testing.assert_frame_equal(tops.langs, whole.langs)
        streamed = pool_measures([frame], LANGS).tops
        pd.testing.assert_frame_equal(streamed.queries, whole.queries)
    assert set(tops.queries["benchmark"]) == {"xtd10", "multi30k"}
    with pytest.raises(ValueError, match=r"relevant items in \['ja'\], outside the pool"):
        pool_run_measures(xtd, LANGS[:3])
    zero = with_one_language.assign(rank=with_one_language["rank"].where(
        with_one_language["benchmark"] == "xtd10", 0))  # fmt: skip
    with pytest.raises(ValueError, match="ranks are 1-based"):
        pool_measures([zero], LANGS)  # a bad row of the one-language benchmark is still checked


def by_run(ranks: pd.DataFrame) -> list[pd.DataFrame]:
    """``ranks`` split as read_runs yields them, a run on a benchmark at a time."""
    keys = ["benchmark", "arm", "base_seed", "seed"]
    return [part for _, part in ranks.groupby(keys, dropna=False)]


def test_a_pool_is_checked_across_all_runs(two_benchmarks):
    """A pool language no run has is a typo; one benchmark lacking it is not (Multi30K)."""
    runs = by_run(two_benchmarks)
    with pytest.raises(ValueError, match=r"pool languages \['nl'\] have no relevant item in any"):
        pool_measures(runs, [*LANGS, "nl"])
    with pytest.raises(
        ValueError, match=r"relevant items in \['ja'\], outside the pool \['de', 'en', 'fr'\]"
    ):
        pool_measures(runs, LANGS[:3])
    one_language = [part[part["relevant_lang"] == "en"] for part in runs]
    with pytest.raises(ValueError, match="no run has at least two languages"):
        pool_measures(one_language, ["en"])
    en_nl = one_language[0].assign(
        relevant_lang=np.where(one_language[0]["query_idx"] % 2, "en", "nl")
    )
    with pytest.raises(ValueError, match=r"relevant items in \['nl'\], outside the pool"):
        pool_measures([*runs, en_nl], LANGS)  # one pool language and one outside: not skipped
    with pytest.raises(ValueError, match=r"missing values in key columns \['benchmark'\]"):
        pool_measures([runs[0].assign(benchmark=None)], LANGS)


def test_every_run_of_a_benchmark_must_share_its_pool(two_benchmarks):
    """Runs of one benchmark ranked against pools of other languages, even as many, would give
    it two uniform shares; a run with one pool language has no rows, whole-table measures aside."""
    xtd = two_benchmarks[two_benchmarks["benchmark"] == "xtd10"]
    mono = xtd["arm"] == "mono"
    without_ja = xtd[mono & (xtd["relevant_lang"] != "ja") & (xtd["query_lang"] != "ja")]
    with pytest.raises(ValueError, match=r"runs of \['xtd10'\] were ranked against pools of"):
        pool_measures([xtd[~mono], without_ja], LANGS)
    swapped = xtd[mono].assign(  # as many languages, one of them another
        relevant_lang=xtd.loc[mono, "relevant_lang"].replace("ja", "nl"),
        query_lang=xtd.loc[mono, "query_lang"].replace("ja", "nl"),
    )
    with pytest.raises(ValueError, match=r"runs of \['xtd10'\] were ranked against pools of"):
        pool_measures([xtd[~mono], swapped], [*LANGS, "nl"])
    english_only = two_benchmarks[two_benchmarks["relevant_lang"] == "en"]
    skipped = pool_measures([xtd, *by_run(english_only)], LANGS)
    assert set(skipped.rank_distance["benchmark"]) == {"xtd10"}  # one language: no rows
    assert (
        set(skipped.tops.queries["benchmark"]) == set(skipped.tops.langs["benchmark"]) == {"xtd10"}
    )
