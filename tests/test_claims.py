"""The claims table follows the numbers: planted effects get verdicts, flipped ones flip them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlr.analysis import claims as claims_module
from xlr.analysis.claims import (
    FAMILIES,
    MIN_IMAGES,
    claim_evidence,
    claim_units,
    claims_by_run,
    default_claims,
    evaluate_claims,
    family_levels,
    run_differences,
)
from xlr.analysis.intervals import compare_arms, interval_by_arm, summarize_with_ci
from xlr.analysis.measures import (
    STUDY_MEASURES,
    measure_rows,
    measure_task,
    measure_tasks,
    per_query_measure,
    query_measures,
)
from xlr.analysis.stats import holm
from xlr.analysis.tables import claims_markdown
from xlr.analysis.verdicts import verdict
from xlr.arms import Arm, HeadlineArms
from xlr.config import MinEffectSection
from xlr.eval.results import read_runs, write_ranks

SEEN, HELDOUT = ["en", "de", "es"], ["nl"]
LANGS = SEEN + HELDOUT
POOLS = {"multilingual": LANGS, "multilingual_seen": SEEN}


def fake_ranks(quality: dict[str, float], bases=(0, 1), n_images: int = 60) -> pd.DataFrame:
    """Ranks of t2i caption queries and of caption queries in both multilingual pools (their
    translations, one per other pool language); higher quality = better ranks for an arm."""
    rng = np.random.default_rng(0)
    rows = []
    for arm, q in quality.items():
        seed = pd.NA if arm == "zeroshot" else 0
        for base in bases:
            for lang_i, lang in enumerate(LANGS):
                for image in range(n_images):
                    query = lang_i * n_images + image
                    key = dict(arm=arm, seed=seed, base_seed=base, benchmark="synthetic")
                    t2i_rank = 1 if rng.random() < q else int(rng.integers(2, 20))
                    rows.append({**key, "task": "t2i", "query_idx": query, "query_lang": lang,
                                 "query_image_id": image, "relevant_idx": image,
                                 "relevant_lang": "image", "relevant_image_id": image,
                                 "rank": t2i_rank})  # fmt: skip
                    spread = 1 + int((1 - q) * 40)  # worse arms scatter the other languages
                    for task, pool in POOLS.items():
                        others = [o for o in pool if o != lang] if lang in pool else []
                        for j, other in enumerate(others):
                            rank = 1 + j * spread + int(rng.integers(0, max(1, spread - 1)))
                            rows.append({**key, "task": task, "query_idx": query,
                                         "query_lang": lang, "query_image_id": image,
                                         "relevant_idx": LANGS.index(other) * n_images + image,
                                         "relevant_lang": other, "relevant_image_id": image,
                                         "rank": rank})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def measures_of(ranks: pd.DataFrame) -> pd.DataFrame:
    """The study's per-query measures of ``ranks`` (what notebooks 05 and 06 give the claims)."""
    return query_measures([ranks], STUDY_MEASURES, SEEN, HELDOUT)


ARMS = ["zeroshot", "mono-full", "cross-full", "multi-full", "hybrid-a0.5-full"]


PLANTED = {"bases": (0, 1, 2), "n_images": 120}  # two bases leave the training part 1 df: its
# t quantile at the family's level 1 - 0.05/8 is 102, and no planted effect could be supported


def table_for(quality: dict[str, float]) -> pd.DataFrame:
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
    return evaluate_claims(measures_of(fake_ranks(quality, **PLANTED)), claims, SEEN, HELDOUT)


def test_planted_effects_are_supported_and_flipping_flips_them() -> None:
    good = table_for({"zeroshot": 0.2, "mono-full": 0.35, "cross-full": 0.4, "multi-full": 0.4,
                      "hybrid-a0.5-full": 0.8})  # fmt: skip
    assert set(good["verdict"]) == {"supported"}
    assert (good["effect"][good["key"] == "hybrid<mono:bias"] < 0).all()
    bad = table_for({"zeroshot": 0.8, "mono-full": 0.8, "cross-full": 0.8, "multi-full": 0.8,
                     "hybrid-a0.5-full": 0.2})  # fmt: skip
    assert set(bad["verdict"]) == {"contradicted"}
    same = table_for({arm: 0.5 for arm in ARMS})
    assert "supported" not in set(same["verdict"])


def test_two_training_units_leave_even_large_effects_inconclusive() -> None:
    """The README's cost of two bases (or two seeds of one base): the training part's 1 degree of
    freedom puts its t quantile at 102 at the family's level, so of the 8 planted effects that
    three bases support (above) at most the 2 whose two bases happen to agree closely are."""
    quality = {"zeroshot": 0.2, "mono-full": 0.35, "cross-full": 0.4, "multi-full": 0.4,
               "hybrid-a0.5-full": 0.8}  # fmt: skip
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
    two = evaluate_claims(
        measures_of(fake_ranks(quality, bases=(0, 1), n_images=120)), claims, SEEN, HELDOUT
    )
    assert set(two["verdict"]) == {"inconclusive", "supported"}
    assert (two["verdict"] == "inconclusive").sum() >= 6
    bias = two["key"].str.endswith(":bias")  # the effects are there, bias falling
    assert (two["effect"][~bias] > 0).all() and (two["effect"][bias] < 0).all()


def test_missing_arms_are_reported_not_invented() -> None:
    ranks = fake_ranks({"zeroshot": 0.3, "hybrid-a0.5-full": 0.6})
    claims = default_claims(
        HeadlineArms(
            Arm("hybrid", 0.5, "full"), Arm("adapters", fallback="base"), Arm("hybrid", 0.5, "lora")
        )
    )
    table = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT)
    by_key = table.set_index("key")["verdict"]
    assert by_key["hybrid>mono:ml"] == "not run (mono-full missing)"
    missing = "not run (adapters-base, hybrid-a0.5-lora missing)"
    assert by_key["adapters>shared_lora:seen"] == missing  # against the shared LoRA, not full
    assert by_key["hybrid>zeroshot:heldout"] == "supported"
    markdown = claims_markdown(table)
    assert markdown.count("\n") == len(table) + 2 and "not run" in markdown


@pytest.mark.parametrize(
    ("low", "high", "direction", "expected"),
    [
        (0.02, 0.3, +1, "supported"),
        (0.005, 0.3, +1, "inconclusive"),  # excludes zero, not the minimum effect
        (-0.3, -0.02, +1, "contradicted"),
        (-0.3, -0.02, -1, "supported"),  # lower is better (rank distance)
        (0.02, 0.3, -1, "contradicted"),
        (-0.005, 0.008, +1, "equivalent"),  # inside +-0.01
        (-0.005, 0.008, -1, "equivalent"),
        (-0.1, 0.2, +1, "inconclusive"),
        (0.0, 0.01, +1, "inconclusive"),  # touches the minimum: not inside it
    ],
)
def test_verdict_rule(low, high, direction, expected) -> None:
    assert verdict(low, high, direction, 0.01) == expected


def test_verdict_needs_a_positive_minimum() -> None:
    with pytest.raises(ValueError, match="minimum effect must be positive"):
        verdict(0.1, 0.2, +1, 0.0)


def test_per_query_measures_known_values() -> None:
    ranks = fake_ranks({"hybrid-a0.5-full": 1.0}, bases=(0,), n_images=3)
    hits = per_query_measure(ranks, "t2i R@1", "seen", SEEN, HELDOUT)
    assert len(hits) == 9 and (hits["value"] == 1.0).all()
    ap = per_query_measure(ranks, "multilingual mAP", "all", SEEN, HELDOUT)
    assert np.allclose(ap["value"], 1.0) and len(ap) == 12  # translations at ranks 1, 2, 3
    rd = per_query_measure(ranks, "rank distance", "all", SEEN, HELDOUT)
    assert (rd["value"] == 2).all() and (rd["task"] == "multilingual").all()
    rd_seen = per_query_measure(ranks, "rank distance", "seen", SEEN, HELDOUT)
    assert (rd_seen["value"] == 1).all() and (rd_seen["task"] == "multilingual_seen").all()
    assert len(rd_seen) == 9  # the seen pool has no held-out query
    with pytest.raises(ValueError, match="no t2i caption queries"):
        per_query_measure(ranks[ranks["query_lang"] != "nl"], "t2i R@1", "heldout", SEEN, HELDOUT)


def test_measures_read_run_by_run_from_files_are_those_of_the_whole_frame(tmp_path) -> None:
    """Notebooks 05 and 06 measure one ranks file at a time (read_runs), never holding the
    study's ranks: the per-query table is row for row the one measured from every run at once,
    and reads only the tasks the measures need."""
    quality = {"zeroshot": 0.3, "mono-full": 0.5, "hybrid-a0.5-full": 0.7}
    ranks = pd.concat(
        [fake_ranks(quality, bases=(0, 1), n_images=8),
         fake_ranks(quality, bases=(0,), n_images=5).assign(benchmark="other")]
    )  # fmt: skip
    files = write_ranks(ranks, tmp_path)
    assert len(files) == 9  # three arms, two bases here and one there
    tasks = measure_tasks(STUDY_MEASURES)
    assert tasks == ["t2i", "multilingual", "multilingual_seen"]
    streamed = query_measures(
        read_runs(files, tasks, progress=False), STUDY_MEASURES, SEEN, HELDOUT
    )
    whole = measures_of(ranks)
    keys = ["benchmark", "arm", "base_seed", "measure", "langs", "query_idx"]
    pd.testing.assert_frame_equal(
        streamed.sort_values(keys).reset_index(drop=True),
        whole.sort_values(keys).reset_index(drop=True),
    )
    counts = whole.groupby(["benchmark", "measure", "langs"]).size()
    assert counts[("other", "t2i R@1", "heldout")] == 3 * 5  # one base, 5 nl captions
    assert counts[("synthetic", "rank distance", "seen")] == 6 * 8 * 3  # 6 runs, seen captions
    one = measure_rows(whole, "multilingual mAP", "all")
    assert set(one["task"]) == {"multilingual"} and len(one) == 6 * 4 * 8 + 3 * 4 * 5
    # notebook 06's multilingual mAP per arm, from these rows as from the ranks themselves
    captions = ranks[(ranks["task"] == "multilingual") & (ranks["query_lang"] != "image")]
    by = ("arm", "benchmark")
    expected = summarize_with_ci(captions, "mAP", by=by, strata="query_lang")
    shown = ["estimate", "low", "high", "n_runs", "n_images"]
    pd.testing.assert_frame_equal(
        interval_by_arm(one).sort_values(list(by)).reset_index(drop=True)[shown],
        expected.sort_values(list(by)).reset_index(drop=True)[shown],
    )
    with pytest.raises(ValueError, match="no run's ranks hold a caption query"):
        query_measures([ranks[ranks["task"] == "xt2t"]], STUDY_MEASURES, SEEN, HELDOUT)


def test_the_study_measures_hold_every_claims_measure() -> None:
    """A claim whose measure query_measures was not asked for would read as not run."""
    claims = default_claims(HEADLINE)
    assert {(c.measure, c.langs) for c in claims} <= set(STUDY_MEASURES)


def test_multilingual_measures_read_the_pool_the_group_names() -> None:
    assert measure_task("t2i R@1", "heldout") == "t2i"
    assert measure_task("multilingual mAP", "all") == "multilingual"
    assert measure_task("rank distance", "seen") == "multilingual_seen"
    with pytest.raises(ValueError, match="there is no 'heldout' pool"):
        measure_task("rank distance", "heldout")


def test_the_family_is_holm_adjusted_and_its_intervals_widened() -> None:
    table = table_for({arm: 0.5 for arm in ARMS})
    np.testing.assert_allclose(table["p_holm"], holm(table["p_value"].to_numpy()))
    np.testing.assert_allclose(table["interval_confidence"], 1 - 0.05 / 8)
    assert set(table["family"]) == {"batches"} and set(table["family_size"]) == {8}


HEADLINE = HeadlineArms(
    Arm("hybrid", 0.5, "full"),
    Arm("adapters", fallback="base"),
    Arm("hybrid", 0.5, "lora"),
    Arm("adapters_hybrid", 0.5, fallback="base"),
)


def test_each_claim_states_its_family_and_the_adapters_meet_fair_arms() -> None:
    claims = {c.key: c for c in default_claims(HEADLINE)}
    assert {c.family for c in claims.values()} == set(FAMILIES)
    adapters = [c for c in claims.values() if c.family == "adapters"]
    assert {(c.arm_a, c.arm_b) for c in adapters} == {
        ("adapters-base", "hybrid-a0.5-lora"), ("hybrid-a0.5-lora", "adapters-base"),
        ("adapters_hybrid-a0.5-base", "adapters-base"),
    }  # fmt: skip
    assert {c.langs for c in adapters if "hybrid-a0.5-lora" in (c.arm_a, c.arm_b)} >= {
        "seen", "heldout"
    }  # fmt: skip
    batches = [c for c in claims.values() if c.family == "batches"]
    assert all(c.arm_a == "hybrid-a0.5-full" for c in batches)
    assert {c.arm_b for c in batches} == {"mono-full", "cross-full", "multi-full", "zeroshot"}
    assert claims["hybrid>zeroshot:heldout"].langs == "heldout"
    bias = [c for c in claims.values() if c.measure == "rank distance"]
    assert bias and all(c.langs == "seen" and c.direction == -1 for c in bias)
    lora_only = default_claims(HeadlineArms(Arm("hybrid", 0.5, "lora"), None))
    assert {c.arm_b for c in lora_only} == {"mono-lora", "cross-lora", "multi-lora", "zeroshot"}
    assert default_claims(HeadlineArms(None, None)) == []


def test_holm_and_the_interval_level_count_the_family_that_ran() -> None:
    arms = [*ARMS, "hybrid-a0.5-lora", "adapters-base", "adapters_hybrid-a0.5-base"]
    ranks = fake_ranks({arm: 0.5 for arm in arms if arm != "multi-full"}, n_images=20)
    table = evaluate_claims(measures_of(ranks), default_claims(HEADLINE), SEEN, HELDOUT)
    ran = table[table["p_value"].notna()]
    assert table.loc[table["key"] == "hybrid>multi:ml", "verdict"].item().startswith("not run")
    for family, size in {"batches": 7, "adapters": 6}.items():
        part = ran[ran["family"] == family]
        assert len(part) == size and set(part["family_size"]) == {size}
        np.testing.assert_allclose(part["interval_confidence"], 1 - 0.05 / size)
        np.testing.assert_allclose(part["p_holm"], holm(part["p_value"].to_numpy()))
    assert family_levels([], 0.95) == {}


def test_the_rank_distance_effect_and_minimum_are_relative_to_the_reference_arm() -> None:
    ranks = fake_ranks({"mono-full": 0.4, "hybrid-a0.5-full": 0.5})
    claim = [c for c in default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
             if c.measure == "rank distance"]  # fmt: skip
    row = evaluate_claims(measures_of(ranks), claim, SEEN, HELDOUT).iloc[0]
    level = {
        arm: per_query_measure(ranks[ranks["arm"] == arm], "rank distance", "seen", SEEN, HELDOUT)
        .groupby("query_lang")["value"].mean().mean()  # one seed, bases alike in size
        for arm in ("mono-full", "hybrid-a0.5-full")
    }  # fmt: skip
    assert row["min_effect"] == pytest.approx(0.1)
    assert row["effect"] == pytest.approx(level["hybrid-a0.5-full"] / level["mono-full"] - 1)
    assert row["low"] < row["effect"] < row["high"]
    per_query = per_query_measure(ranks, "rank distance", "seen", SEEN, HELDOUT)
    difference = compare_arms(per_query, "hybrid-a0.5-full", "mono-full",
                              confidence=row["interval_confidence"]).iloc[0]  # fmt: skip
    assert row["p_value"] == pytest.approx(difference["p_value"])  # a / b = 1 iff a - b = 0


def test_a_rank_distance_verdict_is_the_relative_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The claims table takes a rank-distance claim's verdict from relative_verdict (the tests
    of a - (1 +- min) b), not from the interval it shows; other measures from their interval."""
    ranks = fake_ranks({"mono-full": 0.35, "hybrid-a0.5-full": 0.8}, **PLANTED)
    keys = ("hybrid<mono:bias", "hybrid>mono:t2i")
    claims = [c for c in default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
              if c.key in keys]  # fmt: skip
    calls: list[tuple] = []

    def scripted(*args: object) -> str:
        calls.append(args[2:])
        return "equivalent"

    monkeypatch.setattr(claims_module, "relative_verdict", scripted)
    table = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT).set_index("key")
    level = table.at["hybrid<mono:bias", "interval_confidence"]
    assert calls == [(-1, 0.1, level)]  # lower is less biased; 10% of b; the family's level
    assert table.at["hybrid<mono:bias", "verdict"] == "equivalent"
    assert table.at["hybrid>mono:t2i", "verdict"] == "supported"


def test_a_large_minimum_makes_a_null_difference_equivalent() -> None:
    ranks = fake_ranks({arm: 0.5 for arm in ARMS}, n_images=120)
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
    loose = MinEffectSection(recall_at_1=0.9, map=0.9, rank_distance=0.9)
    table = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT, min_effect=loose).set_index(
        "key"
    )
    assert table.loc["hybrid>cross:ml", "verdict"] == "equivalent"
    assert "supported" not in set(table["verdict"])


def test_one_run_is_never_directional() -> None:
    """A single base and seed leaves training noise unmeasured: however clear the images make
    the difference, the verdict stays inconclusive."""
    ranks = fake_ranks({"mono-full": 0.2, "hybrid-a0.5-full": 0.9}, bases=(0,))
    claims = [c for c in default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
              if c.key == "hybrid>mono:t2i"]  # fmt: skip
    row = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT).iloc[0]
    assert row["low"] > row["min_effect"] and row["n_runs"] == 1
    assert row["verdict"] == "inconclusive"


@pytest.mark.parametrize(
    ("n_images", "expected"), [(MIN_IMAGES - 1, "inconclusive"), (MIN_IMAGES, "supported")]
)
def test_fewer_images_than_calibration_needs_are_never_directional(n_images, expected) -> None:
    """Three bases, a clear effect: below MIN_IMAGES images the interval cannot be calibrated
    on the run's own data (a few 0/1 images can make it zero-width), so the verdict waits."""
    ranks = fake_ranks(
        {"mono-full": 0.2, "hybrid-a0.5-full": 0.9}, bases=(0, 1, 2), n_images=n_images
    )
    claims = [c for c in default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
              if c.key == "hybrid>mono:t2i"]  # fmt: skip
    row = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT).iloc[0]
    assert row["n_runs"] == 3 and row["n_images"] == n_images
    assert row["low"] > row["min_effect"] and row["verdict"] == expected


def test_each_benchmark_is_judged_on_its_own() -> None:
    """Two benchmarks: one row per claim on each, the family counting both; a benchmark without
    the claim's languages says so instead of lending the other's numbers."""
    quality = {"zeroshot": 0.2, "mono-full": 0.35, "cross-full": 0.4, "multi-full": 0.4,
               "hybrid-a0.5-full": 0.8}  # fmt: skip
    first = fake_ranks(quality, **PLANTED)
    second = fake_ranks({**quality, "hybrid-a0.5-full": 0.2}, **PLANTED).assign(benchmark="other")
    second = second[second["query_lang"] != "nl"]  # no held-out language there
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
    table = evaluate_claims(measures_of(pd.concat([first, second])), claims, SEEN, HELDOUT)
    assert len(table) == 2 * len(claims)
    by = table.set_index(["key", "benchmark"])
    assert by.loc[("hybrid>mono:ml", "synthetic"), "verdict"] == "supported"
    effect = by.loc[("hybrid>mono:ml", "other"), "effect"]
    assert effect < 0  # the other benchmark's own numbers, not the first's
    assert by.loc[("hybrid>zeroshot:heldout", "other"), "verdict"] == (
        "not run (no heldout language in other)"
    )
    ran = table[table["p_value"].notna()]
    assert set(ran["family_size"]) == {2 * len(claims) - 1}
    images_only = second[(second["task"] != "multilingual") | (second["query_lang"] == "image")]
    table = evaluate_claims(measures_of(pd.concat([first, images_only])), claims, SEEN, HELDOUT)
    assert table.set_index(["key", "benchmark"]).loc[("hybrid>mono:ml", "other"), "verdict"] == (
        "not run (no multilingual caption query in other)"
    )  # a pool without caption queries (a tiny Crossmodal-3600 subset) is no error
    assert claims_markdown(table).count(", other") == len(claims)
    without_mono = second[second["arm"] != "mono-full"]  # run elsewhere, not on this benchmark
    table = evaluate_claims(measures_of(pd.concat([first, without_mono])), claims, SEEN, HELDOUT)
    by = table.set_index(["key", "benchmark"])["verdict"]
    assert by[("hybrid>mono:t2i", "other")] == "not run (mono-full missing)"
    assert by[("hybrid>mono:t2i", "synthetic")] == "supported"


def test_a_runs_difference_is_its_macro_mean_over_query_languages() -> None:
    """Known answer: a run's value is the mean of its languages' mean differences, not the mean
    over its queries (here 3 German queries and 1 French one)."""
    units = pd.DataFrame(
        {"base_seed": 0, "seed": [0, 0, 0, 0, 1, 1],
         "query_lang": ["de", "de", "de", "fr", "de", "fr"],
         "value_a": [1.0, 1.0, 1.0, 0.0, 0.5, 0.5], "value_b": [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]}
    )  # fmt: skip
    runs = run_differences(units)
    assert runs.loc[(0, 0)] == pytest.approx(0.5)  # (1 + 0) / 2, not 3 / 4
    assert runs.loc[(0, 1)] == pytest.approx(0.25)


def test_claims_by_run_gives_each_runs_effect_as_the_claims_table_reads_it() -> None:
    """One row per claim, benchmark and run; the runs' mean is the claim's effect (one seed a
    base here, so every run weighs alike; for rank distance the ratio of the runs' mean levels)
    and their signs are the table's runs agreeing."""
    quality = {"zeroshot": 0.3, "mono-full": 0.45, "cross-full": 0.5, "hybrid-a0.5-full": 0.55}
    ranks = fake_ranks(quality, bases=(0, 1, 2), n_images=30)
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None))
    evidence = claim_evidence(measures_of(ranks), claims, SEEN, HELDOUT)
    runs = claims_by_run(evidence)
    table = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT).set_index("key")
    ran = table[table["p_value"].notna()]
    assert list(runs.columns) == ["key", "benchmark", "base_seed", "seed", "effect"]
    assert sorted(runs["key"].unique()) == sorted(ran.index)
    for key, rows in runs.groupby("key"):
        assert len(rows) == 3 and sorted(rows["base_seed"]) == [0, 1, 2]
        claim = next(claim for claim in claims if claim.key == key)
        if claim.measure == "rank distance":
            found = next(f for c, _, f in evidence if c.key == key)
            means = claim_units(found, claim).groupby(["base_seed", "query_lang"])[
                ["value_a", "value_b"]].mean().groupby("base_seed").mean()  # fmt: skip
            np.testing.assert_allclose(rows["effect"], means["value_a"] / means["value_b"] - 1)
            assert means["value_a"].mean() / means["value_b"].mean() - 1 == pytest.approx(
                ran.at[key, "effect"])  # fmt: skip
        else:
            assert rows["effect"].mean() == pytest.approx(ran.at[key, "effect"])
        agreeing = int((np.sign(rows["effect"]) == claim.direction).sum())
        assert ran.at[key, "runs_agreeing"] == f"{agreeing}/3"
    assert claims_by_run([]).empty
