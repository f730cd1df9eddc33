"""Per-query tables to intervals: runs stay runs, images are the units, pairs share them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_claims import fake_ranks

from xlr.analysis.intervals import (
    COMPARISON_COLUMNS,
    against_reference,
    compare_arms,
    interval_by_arm,
    paired_units,
    summarize_with_ci,
)
from xlr.analysis.stats import crossed_mean_interval

LANGS = ["en", "de", "fr"]


def per_query(arm: str, runs: list[tuple[int, object]], run_shift: dict, n_images: int = 40):
    """Caption queries, one per image and language, of ``arm`` in each (base, seed) run: value =
    the run's shift + an image difficulty shared by every language, run and arm."""
    difficulty = np.random.default_rng(0).normal(0.5, 0.2, n_images)
    rows = [
        {"arm": arm, "seed": seed, "base_seed": base, "benchmark": "synthetic", "task": "t2i",
         "query_idx": li * n_images + image, "query_lang": lang, "query_image_id": image,
         "query_kind": "caption", "value": run_shift[(base, seed)] + difficulty[image]}
        for base, seed in runs
        for li, lang in enumerate(LANGS)
        for image in range(n_images)
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def test_runs_are_runs_not_more_queries() -> None:
    """Three seeds of one base differ by training noise: the interval must widen with it, and
    the same queries scored three times must not narrow it."""
    one = per_query("mono", [(0, 0)], {(0, 0): 0.0})
    noisy = per_query("mono", [(0, 0), (0, 1), (0, 2)], {(0, 0): -0.05, (0, 1): 0.0, (0, 2): 0.05})
    quiet = per_query("mono", [(0, 0), (0, 1), (0, 2)], {(0, s): 0.0 for s in range(3)})
    se = {name: interval_by_arm(t)["se"].item() for name, t in [("one", one), ("noisy", noisy),
                                                                 ("quiet", quiet)]}  # fmt: skip
    assert se["quiet"] == pytest.approx(se["one"])  # identical runs add no evidence
    # the seeds' spread enters as var([-0.05, 0, 0.05]) / 3 seeds, on top of the images'
    assert se["noisy"] ** 2 == pytest.approx(se["one"] ** 2 + 0.05**2 / 3)
    assert interval_by_arm(noisy)["training_unit"].item() == "seed"


def test_paired_comparison_pairs_base_seed_and_query() -> None:
    runs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    shifts_a = {run: 0.1 + 0.01 * i for i, run in enumerate(runs)}
    a = per_query("hybrid", runs, shifts_a)
    b = per_query("mono", runs, dict.fromkeys(runs, 0.0))
    both = pd.concat([a, b])
    result = compare_arms(both, "hybrid", "mono").iloc[0]
    assert result["estimate"] == pytest.approx(0.115)  # difficulty cancels in every pair
    assert (result["n_bases"], result["n_runs"], result["n_images"]) == (2, 4, 40)
    units = paired_units(a, b, ["benchmark", "task", "query_idx", "base_seed", "seed"])
    diffs = units["value_a"] - units["value_b"]
    direct = crossed_mean_interval(
        diffs.to_numpy(), units["base_seed"].to_numpy(), units["seed"].to_numpy(),
        units["query_image_id"].to_numpy(), units["query_lang"].to_numpy(),
    )  # fmt: skip
    assert (result["low"], result["high"]) == pytest.approx((direct.low, direct.high))


def test_every_seed_pairs_with_the_reference_of_its_base() -> None:
    runs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    arm = per_query("mono", runs, {run: 0.1 * (1 + run[0]) for run in runs})
    zero_shot = per_query("zeroshot", [(0, pd.NA), (1, pd.NA)], {(0, pd.NA): 0.0, (1, pd.NA): 0.1})
    on = ["benchmark", "task", "query_idx", "base_seed"]
    result = compare_arms(pd.concat([arm, zero_shot]), "mono", "zeroshot", on).iloc[0]
    assert result["estimate"] == pytest.approx(0.1)  # 0.1 - 0 in base 0, 0.2 - 0.1 in base 1
    assert (result["n_bases"], result["n_runs"]) == (2, 4)
    with pytest.raises(ValueError, match="put base_seed in on"):
        paired_units(arm, zero_shot, ["benchmark", "task", "query_idx"])


def test_against_reference_compares_every_arm_with_the_zero_shot_model() -> None:
    runs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    mono = per_query("mono-full", runs, {run: 0.1 * (1 + run[0]) for run in runs})
    hybrid = per_query("hybrid-a0.5-full", runs, {run: 0.3 for run in runs})
    zero_shot = per_query("zeroshot", [(0, pd.NA), (1, pd.NA)], {(0, pd.NA): 0.0, (1, pd.NA): 0.1})
    table = against_reference(pd.concat([mono, zero_shot, hybrid]), "zeroshot")
    assert table["arm_a"].tolist() == ["hybrid-a0.5-full", "mono-full"]  # name order
    assert set(table["arm_b"]) == {"zeroshot"}
    estimates = table.set_index("arm_a")["estimate"]
    assert estimates.to_dict() == pytest.approx({"hybrid-a0.5-full": 0.25, "mono-full": 0.1})
    assert (table["n_runs"] == 4).all() and (table["n_bases"] == 2).all()
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    # nothing to compare (no reference, or no other arm): an empty table with the same columns
    for alone in (mono, zero_shot):
        empty = against_reference(alone, "zeroshot")
        assert empty.empty and list(empty.columns) == list(COMPARISON_COLUMNS)
    with pytest.raises(ValueError, match="has fine-tuning seeds"):
        against_reference(pd.concat([mono, hybrid]), "mono-full")
    with pytest.raises(ValueError, match="not an arm name"):  # misspelt: no empty table
        against_reference(pd.concat([mono, zero_shot]), "zero-shot")


def test_interval_by_arm_groups_by_further_columns() -> None:
    runs = [(0, 0), (0, 1)]
    table = pd.concat(
        [per_query("mono", runs, {(0, 0): s, (0, 1): s}).assign(lang=lang) for lang, s in
         [("de", 0.0), ("en", 0.2)]]
    )  # fmt: skip
    by_lang = interval_by_arm(table, by=("lang",)).set_index("lang")
    mean = per_query("mono", runs, dict.fromkeys(runs, 0.0))["value"].mean()
    assert by_lang["estimate"].to_dict() == pytest.approx({"de": mean, "en": mean + 0.2})
    with pytest.raises(ValueError, match=r"lacks columns \['lang'\]"):
        interval_by_arm(table.drop(columns="lang"), by=("lang",))


def test_bad_tables_are_clear_errors() -> None:
    table = per_query("mono", [(0, 0), (0, 1)], {(0, 0): 0.0, (0, 1): 0.1})
    with pytest.raises(ValueError, match=r"lacks columns \['query_image_id'\]"):
        interval_by_arm(table.drop(columns="query_image_id"))
    with pytest.raises(ValueError, match="at least two images"):
        interval_by_arm(table.assign(query_image_id=7))  # one unit only
    with pytest.raises(ValueError, match=r"\['image'\] labels are missing"):
        interval_by_arm(table.assign(query_image_id=table["query_image_id"].where(
            table["query_idx"] != 3)))  # fmt: skip


def test_two_benchmarks_image_ids_name_different_images() -> None:
    ranks = fake_ranks({"mono-full": 0.5}, bases=(0,), n_images=10)
    t2i = ranks[ranks["task"] == "t2i"]
    both = pd.concat([t2i, t2i.assign(benchmark="xtd10")])
    row = summarize_with_ci(both, "R@1", by=("arm",), strata="query_lang").iloc[0]
    assert row["n_images"] == 20
