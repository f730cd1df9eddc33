"""Language-bias measures on hand-built rankings with known answers."""

import numpy as np
import pandas as pd
import pytest

from xlr.analysis.bias import (
    best_rank_per_language,
    english_first,
    language_fairness,
    language_preference,
    macro_mean,
    per_language_metric,
    preference_divergence,
    preference_per_query,
    rank_distance_per_query,
    top_languages,
)
from xlr.analysis.intervals import compare_arms, interval_by_arm, preference_intervals
from xlr.analysis.negative_control import seed_negative_control
from xlr.eval.results import RESULT_COLUMNS

RUN = {"arm": "mono", "seed": 0, "base_seed": 0, "benchmark": "synthetic", "task": "multilingual"}


def ranks_table(queries, **run) -> pd.DataFrame:
    """Long ranks table from ``[(query_idx, query_lang, {relevant_lang: [ranks]})]``."""
    rows = []
    for query_idx, query_lang, relevant in queries:
        for lang, lang_ranks in relevant.items():
            for rank in lang_ranks:
                rows.append(
                    {
                        **RUN,
                        **run,
                        "query_idx": query_idx,
                        "query_lang": query_lang,
                        "query_image_id": query_idx,
                        "relevant_idx": len(rows),
                        "relevant_lang": lang,
                        "relevant_image_id": query_idx,
                        "rank": rank,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def hand_ranks() -> pd.DataFrame:
    """Two English and one German caption query; de has two captions per image."""
    return ranks_table(
        [
            (0, "en", {"en": [1], "de": [4], "fr": [2]}),  # RD 4 - 1 = 3
            (1, "de", {"en": [6], "de": [2, 9], "fr": [3]}),  # best de is 2: RD 6 - 2 = 4
            (2, "en", {"en": [1], "de": [2], "fr": [3]}),  # RD 2
        ]
    )


def test_rank_distance_by_hand(hand_ranks):
    per_query = rank_distance_per_query(hand_ranks).sort_values("query_idx")
    np.testing.assert_array_equal(per_query["value"], [3, 4, 2])
    np.testing.assert_array_equal(per_query["n_langs"], [3, 3, 3])
    best = best_rank_per_language(hand_ranks)
    assert best.query("query_idx == 1 and relevant_lang == 'de'")["rank"].item() == 2


def test_macro_mean_weighs_query_languages_equally(hand_ranks):
    summary = macro_mean(rank_distance_per_query(hand_ranks))
    assert len(summary) == 1
    # en: (3 + 2) / 2 = 2.5, de: 4 -> macro 3.25 (the micro mean would be 3).
    assert summary["value"].item() == pytest.approx(3.25)
    assert summary["n_queries"].item() == 3
    assert summary["n_query_langs"].item() == 2


def test_a_pool_is_checked_not_sliced(hand_ranks):
    """``pool`` must hold every relevant language: a sub-pool's rank distance is ranked against
    the sub-pool (task multilingual_seen), never cut out of a larger pool's ranks."""
    with pytest.raises(ValueError, match=r"relevant items in \['de'\], outside the pool"):
        rank_distance_per_query(hand_ranks, pool=["en", "fr"])
    per_query = rank_distance_per_query(hand_ranks, pool=["en", "de", "fr"])
    np.testing.assert_array_equal(per_query.sort_values("query_idx")["value"], [3, 4, 2])


def test_each_task_is_measured_over_its_own_pool():
    """Seen-pool queries lack the held-out languages by design; they are complete in their pool."""
    every = ranks_table([(0, "en", {"de": [3], "ja": [1]})], task="multilingual")
    seen = ranks_table([(0, "en", {"de": [1], "es": [4]})], task="multilingual_seen")
    per_query = rank_distance_per_query(pd.concat([every, seen])).set_index("task")
    assert per_query["value"].to_dict() == {"multilingual": 2, "multilingual_seen": 3}
    assert per_query["n_langs"].to_dict() == {"multilingual": 2, "multilingual_seen": 2}


def test_each_benchmark_is_measured_over_the_pool_languages_it_has():
    """Multi30K lacks es; Crossmodal-3600 (as a one-study-language fixture) has en alone: the
    first is measured over en, de, the second has no rank distance, and neither raises."""
    pool = ["en", "de", "es"]
    xtd10 = ranks_table([(0, "en", {"de": [3], "es": [1]})], benchmark="xtd10")
    multi30k = ranks_table([(0, "en", {"en": [2], "de": [5]})], benchmark="multi30k")
    xm3600 = ranks_table([(0, "en", {"en": [1]})], benchmark="xm3600")
    per_query = rank_distance_per_query(pd.concat([xtd10, multi30k, xm3600]), pool=pool)
    assert per_query.set_index("benchmark")["value"].to_dict() == {"xtd10": 2, "multi30k": 3}
    with pytest.raises(ValueError, match=r"pool languages \['es'\] have no relevant item"):
        rank_distance_per_query(multi30k, pool=pool)  # es in no benchmark: a typo, or not loaded
    german = ranks_table([(0, "en", {"de": [1]})], benchmark="other")
    with pytest.raises(ValueError, match="no benchmark has at least two languages"):
        rank_distance_per_query(pd.concat([xm3600, german]), pool=["en", "de"])


def test_slicing_a_larger_pool_overstates_the_sub_pool_distance():
    """Why the seen pool is ranked on its own: RD read off whole-pool ranks of the sub-pool's
    items is >= RD with the other languages' items removed from the gallery, and often larger."""
    rng = np.random.default_rng(0)
    langs = np.array(["en", "de", "fr", "ja"])
    pool = ["en", "de", "fr"]
    queries_whole, queries_pool = [], []
    for query_idx in range(40):
        gallery_lang = np.repeat(langs, 10)  # item 10 * l is the relevant one of language l
        order = rng.permutation(len(gallery_lang))
        whole = np.empty_like(order)
        whole[order] = np.arange(1, len(order) + 1)
        in_pool = np.isin(gallery_lang[order], pool)
        pool_rank = np.empty_like(order)
        pool_rank[order[in_pool]] = np.arange(1, in_pool.sum() + 1)
        queries_whole.append(
            (query_idx, "image", {lang: [whole[10 * i]] for i, lang in enumerate(pool)})
        )
        queries_pool.append(
            (query_idx, "image", {lang: [pool_rank[10 * i]] for i, lang in enumerate(pool)})
        )
    sliced_rd = rank_distance_per_query(ranks_table(queries_whole), pool)["value"].to_numpy()
    pool_rd = rank_distance_per_query(ranks_table(queries_pool), pool)["value"].to_numpy()
    assert (sliced_rd >= pool_rd).all()
    assert (sliced_rd > pool_rd).any()


def test_own_language_may_be_missing_but_no_other(hand_ranks):
    """With one caption per language the query's own caption is excluded from its gallery."""
    xtd_like = ranks_table([(0, "de", {"en": [5], "fr": [2]}), (1, "en", {"de": [1], "fr": [4]})])
    np.testing.assert_array_equal(
        rank_distance_per_query(xtd_like, pool=["en", "de", "fr"])["value"], [3, 3]
    )
    missing_fr = ranks_table([(0, "en", {"en": [1], "de": [2]}), (1, "en", {"de": [1], "fr": [4]})])
    with pytest.raises(
        ValueError, match=r"1 queries lack a relevant item .*query_idx 0, query_lang 'en'"
    ):
        rank_distance_per_query(missing_fr)
    laion_like = ranks_table(
        [(0, "image", {"de": [7], "en": [2]}), (1, "de", {"en": [3]}), (2, "image", {"fr": [1]})]
    )  # an image with a de caption and ENG TEXT; a caption with one other; a lone caption
    partial = rank_distance_per_query(laion_like, partial=True)  # over the languages it has
    assert partial["query_idx"].tolist() == [0] and partial["value"].tolist() == [5.0]
    assert partial["n_langs"].tolist() == [2]


def test_preference_shares_and_kl_against_uniform():
    balanced = ranks_table(
        [
            (0, "image", {"en": [1], "de": [2], "fr": [3]}),
            (1, "image", {"en": [3], "de": [1], "fr": [2]}),
            (2, "image", {"en": [2], "de": [3], "fr": [1]}),
        ]
    )
    shares = language_preference(top_languages(balanced))
    np.testing.assert_allclose(shares["share"], 1 / 3)
    np.testing.assert_allclose(shares["uniform"], 1 / 3)
    assert preference_divergence(shares)["value"].item() == pytest.approx(0.0)

    english = ranks_table([(q, "image", {"en": [1], "de": [2], "fr": [3]}) for q in range(3)])
    shares = language_preference(top_languages(english)).set_index("top_lang")["share"]
    assert shares.to_dict() == {"de": 0.0, "en": 1.0, "fr": 0.0}
    divergence = preference_divergence(language_preference(top_languages(english)))["value"].item()
    assert divergence == pytest.approx(np.log(3))


def test_preference_counts_the_languages_each_benchmark_has():
    """An unbiased model on a benchmark with two of the pool's three languages (Multi30K in a
    wider study): uniform 1/2 and KL 0 there, not 1/3 with an 'avoided' third language."""
    langs = ["en", "de", "fr"]
    three = ranks_table([(q, "image", {lang: [1 + (q + i) % 3] for i, lang in enumerate(langs)})
                         for q in range(3)], benchmark="xtd10")  # fmt: skip
    two = ranks_table([(q, "image", {"en": [1 + q % 2], "de": [2 - q % 2]}) for q in range(2)],
                      benchmark="multi30k")  # fmt: skip
    shares = language_preference(top_languages(pd.concat([three, two]), pool=["en", "de", "fr"]))
    by_benchmark = shares.groupby("benchmark")
    assert by_benchmark["uniform"].first().to_dict() == pytest.approx(
        {"multi30k": 1 / 2, "xtd10": 1 / 3}
    )
    assert by_benchmark["top_lang"].apply(sorted).to_dict() == {
        "multi30k": ["de", "en"], "xtd10": ["de", "en", "fr"],
    }  # fmt: skip
    np.testing.assert_allclose(preference_divergence(shares)["value"], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"\['nl'\] have none"):
        english_first(top_languages(pd.concat(
            [three, ranks_table([(0, "image", {"de": [1], "fr": [2]})], benchmark="nl")]
        )))  # fmt: skip


def test_preference_is_macro_over_query_languages():
    """Three en queries all prefer en, one de query prefers de: shares 1/2 each, not 3/4."""
    table = ranks_table(
        [(q, "en", {"en": [1], "de": [2]}) for q in range(3)] + [(3, "de", {"en": [2], "de": [1]})]
    )
    shares = language_preference(top_languages(table)).set_index("top_lang")["share"]
    assert shares.to_dict() == pytest.approx({"de": 0.5, "en": 0.5})


def test_preference_per_query_is_one_hot_and_its_macro_mean_is_the_share():
    """Per pool language one table with a row per query, 1 where its best item is; the macro
    mean over query languages is language_preference's share (one computation, two forms), and
    preference_intervals gives it its interval."""
    table = ranks_table(
        [(q, "en", {"en": [1], "de": [2]}) for q in range(3)]
        + [(3, "de", {"en": [2], "de": [1]}), (4, "image", {"en": [2], "de": [1]})]
        + [(5, "image", {"en": [1], "de": [2]})]
    )
    tables = list(preference_per_query(top_languages(table)))
    assert [part["lang"].unique().tolist() for part in tables] == [["en"], ["de"]]
    assert all(len(part) == 6 for part in tables)  # a row per query, one language each
    per_query = pd.concat(tables)
    assert (per_query.groupby("query_idx")["value"].sum() == 1).all()
    hits = per_query[per_query["value"] == 1].set_index("query_idx")["lang"].to_dict()
    assert hits == {0: "en", 1: "en", 2: "en", 3: "de", 4: "de", 5: "en"}
    np.testing.assert_allclose(per_query["uniform"], 1 / 2)
    captions = per_query[per_query["query_kind"] == "caption"]
    by_lang = captions.groupby(["lang", "query_lang"])["value"].mean().groupby("lang").mean()
    shares = language_preference(top_languages(table))
    caption_shares = shares[shares["query_kind"] == "caption"].set_index("top_lang")["share"]
    pd.testing.assert_series_equal(by_lang, caption_shares, check_names=False)
    share = preference_intervals(top_languages(table))
    pd.testing.assert_frame_equal(
        share, interval_by_arm(per_query, by=("lang", "uniform")), check_like=True
    )
    caption = share[share["query_kind"] == "caption"].set_index("lang")
    assert caption["estimate"].to_dict() == pytest.approx({"de": 0.5, "en": 0.5})
    assert (caption["uniform"] == 0.5).all() and set(share["query_kind"]) == {"caption", "image"}
    with pytest.raises(ValueError, match="rank"):
        top_languages(table.drop(columns="rank"))


def test_english_first_rate():
    table = ranks_table(
        [
            (0, "de", {"en": [1], "fr": [3]}),
            (1, "image", {"en": [1], "de": [2], "fr": [3]}),
            (2, "image", {"en": [3], "de": [2], "fr": [1]}),
        ]
    )
    english = english_first(top_languages(table)).sort_values("query_idx")
    np.testing.assert_array_equal(english["value"], [1, 0])  # image queries only
    assert macro_mean(english)["value"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="needs English"):
        english_first(top_languages(table, pool=["de", "fr"]))


def results_table() -> pd.DataFrame:
    """R@1 of one run: seen en 0.8, de 0.6; held-out fr 0.4 (t2i) and the i2t twin rows."""
    rows = []
    for lang, group, value in [("en", "seen", 0.8), ("de", "seen", 0.6), ("fr", "heldout", 0.4)]:
        rows.append(
            {
                **RUN,
                "task": "t2i",
                "query_lang": lang,
                "target_lang": "image",
                "lang_group": group,
                "metric": "R@1",
                "value": value,
            }
        )
        rows.append(
            {
                **RUN,
                "task": "t2i",
                "query_lang": lang,
                "target_lang": "image",
                "lang_group": group,
                "metric": "R@5",
                "value": 1.0,
            }
        )
        rows.append(
            {
                **RUN,
                "task": "i2t",
                "query_lang": "image",
                "target_lang": lang,
                "lang_group": group,
                "metric": "R@1",
                "value": value / 2,
            }
        )
    rows.append(
        {
            **RUN,
            "task": "multilingual",
            "query_lang": "image",
            "target_lang": "all",
            "lang_group": "mixed",
            "metric": "R@1",
            "value": 0.9,
        }
    )
    return pd.DataFrame(rows).assign(captions="all", n_queries=100)


def test_fairness_spread_and_seen_heldout_gap():
    fairness = language_fairness(results_table(), seen_langs=["en", "de"]).set_index("task")
    assert set(fairness.index) == {"t2i", "i2t"}  # the pooled multilingual row is no language
    t2i = fairness.loc["t2i"]
    assert t2i["n_langs"] == 3
    assert t2i["std"] == pytest.approx(np.std([0.8, 0.6, 0.4]))
    assert t2i["range"] == pytest.approx(0.4)
    assert t2i["gap"] == pytest.approx(0.7 - 0.4)
    assert fairness.loc["i2t", "gap"] == pytest.approx(0.35 - 0.2)
    per_lang = per_language_metric(results_table()).query("task == 'i2t'")
    assert per_lang.set_index("lang")["value"].to_dict() == pytest.approx(
        {"de": 0.3, "en": 0.4, "fr": 0.2}
    )


def test_xt2t_language_is_the_mean_of_its_matrix_row():
    pairs = [("en", "en", 0.9), ("en", "de", 0.5), ("de", "en", 0.4), ("de", "de", 0.8)]
    rows = [
        {
            **RUN,
            "task": "xt2t",
            "query_lang": a,
            "target_lang": b,
            "lang_group": "seen",
            "metric": "R@1",
            "value": v,
            "captions": "all",
            "n_queries": 10,
        }
        for a, b, v in pairs
    ]
    per_lang = per_language_metric(pd.DataFrame(rows)).set_index("lang")["value"]
    assert per_lang.to_dict() == pytest.approx({"de": 0.6, "en": 0.7})
    assert np.isnan(language_fairness(pd.DataFrame(rows), ["en", "de"])["gap"].item())


def simulated_ranks(rng: np.random.Generator, n_per_lang: int = 20, **run) -> pd.DataFrame:
    """Caption queries in en/de/fr/ja whose translations (one in each other language) rank 1..30
    at random, as in the multilingual pool (the query's own language holds only the query)."""
    langs = ["en", "de", "fr", "ja"]
    queries = []
    for query_idx in range(n_per_lang * len(langs)):
        query_lang = langs[query_idx % len(langs)]
        others = [lang for lang in langs if lang != query_lang]
        picks = rng.choice(np.arange(1, 31), size=len(others), replace=False)
        relevant = {other: [pick] for other, pick in zip(others, picks, strict=True)}
        queries.append((query_idx, query_lang, relevant))
    return ranks_table(queries, **run)


def shift_language(ranks: pd.DataFrame, lang: str, penalty: int) -> pd.DataFrame:
    """``ranks`` with every ``lang`` item moved down ``penalty`` ranks, the others kept."""
    return ranks.assign(rank=ranks["rank"] + np.where(ranks["relevant_lang"] == lang, penalty, 0))


def test_a_language_moved_down_raises_rank_distance_and_is_detected():
    base = simulated_ranks(np.random.default_rng(0))
    planted = shift_language(base, "en", penalty=30).assign(arm="planted")
    moved = planted["rank"] != base["rank"]
    assert moved.any() and (base.loc[moved, "relevant_lang"] == "en").all()
    assert (planted.loc[moved, "rank"] - base.loc[moved, "rank"] == 30).all()
    top = top_languages(planted).queries
    assert not (top["top_lang"] == "en").any()  # English (ranks 31..60) is never found first
    both = pd.concat([rank_distance_per_query(base), rank_distance_per_query(planted)])
    summary = macro_mean(both).set_index("arm")["value"]
    assert summary["planted"] > summary["mono"]
    comparison = compare_arms(both, "planted", "mono")
    assert comparison["estimate"].item() == pytest.approx(summary["planted"] - summary["mono"])
    assert comparison["low"].item() > 0
    assert comparison["p_value"].item() < 0.01
    untouched = ranks_table([(0, "image", {"ja": [5], "de": [9]})])
    assert shift_language(untouched, "en", 3)["rank"].tolist() == [5, 9]


def test_seed_negative_control_is_rarely_significant():
    """Two seeds drawn from one distribution, on three bases (with one the control does not run:
    tests/test_controls.py): p > 0.05 in about 95% of 50 simulated cases."""
    rng = np.random.default_rng(1)
    not_significant = []
    for _ in range(50):
        seeds = [
            rank_distance_per_query(simulated_ranks(rng, seed=s, base_seed=b))
            for s in (0, 1)
            for b in (0, 1, 2)
        ]
        p_value = seed_negative_control(pd.concat(seeds), "mono", 0, 1)
        not_significant.append(p_value > 0.05)
    # Three binomial standard errors below the nominal 95%.
    assert np.mean(not_significant) >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 50)


def test_interval_by_arm():
    rng = np.random.default_rng(2)
    runs = [
        rank_distance_per_query(simulated_ranks(rng, seed=seed, base_seed=base))
        for seed in (0, 1)
        for base in (0, 1)
    ]
    per_query = pd.concat(runs)
    interval = interval_by_arm(per_query).iloc[0]
    per_run = macro_mean(per_query)
    assert interval["estimate"] == pytest.approx(per_run["value"].mean())
    assert interval["low"] < interval["estimate"] < interval["high"]
    assert (interval["n_images"], interval["n_bases"], interval["n_runs"]) == (80, 2, 4)
    assert interval["training_unit"] == "base"


def test_compare_against_a_reference_scored_once_per_base():
    rng = np.random.default_rng(3)
    arm = pd.concat([rank_distance_per_query(simulated_ranks(rng, seed=s)) for s in (0, 1)])
    zero_shot = simulated_ranks(rng, arm="base").assign(seed=pd.NA).astype({"seed": "Int64"})
    base = rank_distance_per_query(zero_shot)
    both = pd.concat([arm, base])
    on = ["benchmark", "task", "query_idx", "base_seed"]
    result = compare_arms(both, "mono", "base", on=on)
    assert (result["n_images"].item(), result["n_runs"].item()) == (80, 2)  # seeds paired to base
    with pytest.raises(ValueError, match="several rows per"):
        compare_arms(both, "base", "mono", on=on)
    with pytest.raises(ValueError, match="share no query"):
        compare_arms(both, "mono", "base")
    with pytest.raises(ValueError, match="arm 'hybrid' is not in the table"):
        compare_arms(both, "mono", "hybrid")


def test_a_comparison_refuses_sides_that_do_not_hold_the_same_runs_and_queries():
    """A run or queries missing on one side (a training or evaluation that failed part way)
    would shrink the design unseen: the pairing names them instead."""
    rng = np.random.default_rng(4)
    runs = [(arm, b, s) for arm in ("mono", "hybrid") for b in (0, 1) for s in (0, 1)]
    table = pd.concat(
        rank_distance_per_query(simulated_ranks(rng, arm=arm, seed=s, base_seed=b))
        for arm, b, s in runs
    )
    assert compare_arms(table, "mono", "hybrid")["n_runs"].item() == 4
    lost_run = table[
        ~((table["arm"] == "hybrid") & (table["base_seed"] == 1) & (table["seed"] == 1))
    ]
    with pytest.raises(ValueError, match=r"units of the first side have no partner .*base_seed 1"):
        compare_arms(lost_run, "mono", "hybrid")
    lost_queries = table[~((table["arm"] == "mono") & (table["query_idx"] < 3))]
    with pytest.raises(ValueError, match=r"units of the second side have no partner"):
        compare_arms(lost_queries, "mono", "hybrid")


def test_top_language_ties_go_to_the_own_language():
    table = ranks_table([(0, "de", {"en": [3], "de": [3]})])
    assert top_languages(table).queries["top_lang"].item() == "de"


def test_clear_errors(hand_ranks):
    with pytest.raises(ValueError, match=r"lacks columns \['relevant_lang'\]"):
        rank_distance_per_query(hand_ranks.drop(columns="relevant_lang"))
    with pytest.raises(ValueError, match="ranks table is empty"):
        rank_distance_per_query(hand_ranks.iloc[:0])
    with pytest.raises(ValueError, match="at least two languages"):
        rank_distance_per_query(hand_ranks[hand_ranks["relevant_lang"] == "en"], pool=["en"])
    with pytest.raises(ValueError, match=r"pool languages \['ja'\] have no relevant item"):
        top_languages(hand_ranks, pool=["en", "ja"])
    with pytest.raises(ValueError, match="1-based"):
        rank_distance_per_query(hand_ranks.assign(rank=0))
    with pytest.raises(ValueError, match=r"missing values in key columns \['base_seed'\]"):
        rank_distance_per_query(hand_ranks.assign(base_seed=np.nan))
    with pytest.raises(ValueError, match="results table lacks columns"):
        language_fairness(results_table().drop(columns="lang_group"), ["en"])
    with pytest.raises(ValueError, match="no per-language rows of metric 'mAP'"):
        per_language_metric(results_table(), "mAP")
    with pytest.raises(ValueError, match="one benchmark, task and query kind"):
        seed_negative_control(
            pd.concat(
                [
                    rank_distance_per_query(hand_ranks),
                    rank_distance_per_query(hand_ranks.assign(task="other")),
                ]
            ),
            "mono",
            0,
            1,
        )
    assert set(RESULT_COLUMNS) <= set(results_table().columns)


def test_zero_shot_rows_without_seed_are_kept(hand_ranks):
    """The zero-shot arm stores a missing seed (nullable Int64); no summary may drop its rows."""
    zero_shot = hand_ranks.assign(seed=pd.NA).astype({"seed": "Int64"})
    summary = macro_mean(rank_distance_per_query(zero_shot))
    assert summary["value"].item() == pytest.approx(3.25)
    assert summary["seed"].isna().all()
    shares = language_preference(top_languages(zero_shot))
    assert shares.groupby("query_kind")["share"].sum().tolist() == pytest.approx([1.0])
    results = results_table().assign(seed=pd.NA).astype({"seed": "Int64"})
    assert len(language_fairness(results, ["en", "de"])) == 2


def test_image_and_caption_queries_sharing_an_index_stay_apart():
    """The multilingual task numbers caption queries by pool row and image queries by image."""
    table = ranks_table([(0, "de", {"en": [1], "de": [3]}), (0, "image", {"en": [2], "de": [1]})])
    top = top_languages(table).queries.set_index("query_kind")["top_lang"]
    assert top.to_dict() == {"caption": "en", "image": "de"}
    assert rank_distance_per_query(table)["value"].tolist() == [2, 1]


def random_runs(rng: np.random.Generator) -> pd.DataFrame:
    """Several runs (a zero-shot one without seed) of caption and image queries, each with one
    or two relevant captions per language at distinct random ranks, rows shuffled."""
    langs = ["en", "de", "fr"]
    parts = []
    for arm, seed in [("zeroshot", pd.NA), ("mono", 0), ("mono", 1)]:
        queries = []
        for query_idx in range(12):
            query_lang = ["en", "de", "image"][query_idx % 3]
            counts = rng.integers(1, 3, len(langs))
            ranks = rng.permutation(np.arange(1, 40))[: counts.sum()].tolist()
            relevant = {
                lang: [ranks.pop() for _ in range(n)] for lang, n in zip(langs, counts, strict=True)
            }
            queries.append((query_idx, query_lang, relevant))
        parts.append(ranks_table(queries, arm=arm, seed=seed))
    table = pd.concat(parts, ignore_index=True)
    table["seed"] = table["seed"].astype("Int64")
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_best_and_top_language_match_a_plain_pandas_reference() -> None:
    """The numbered-query implementation against straightforward groupby / sort code (what
    it replaced), rows and order included."""
    table = random_runs(np.random.default_rng(7))
    keys = ["arm", "seed", "base_seed", "benchmark", "task", "query_idx", "query_lang"]
    keys.append("query_image_id")  # per-query tables carry the image intervals resample
    frame = table.assign(query_kind=np.where(table["query_lang"] == "image", "image", "caption"))
    keys.append("query_kind")
    best = frame.groupby([*keys, "relevant_lang"], sort=False, dropna=False)["rank"].min()
    pd.testing.assert_frame_equal(best_rank_per_language(table), best.reset_index())
    ordered = frame.assign(other=frame["relevant_lang"] != frame["query_lang"])
    top = ordered.sort_values([*keys, "rank", "other"]).drop_duplicates(keys)
    top = top.rename(columns={"relevant_lang": "top_lang", "rank": "top_rank"})
    expected = top[[*keys, "top_lang", "top_rank"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(top_languages(table).queries, expected)
