"""The headline table: known per-arm values on hand-built ranks, intervals around them, the
Markdown form, and the claims table's Markdown."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_claims import HELDOUT, SEEN, fake_ranks, measures_of

from xlr.analysis.bias import rank_distance_per_query
from xlr.analysis.claims import default_claims, evaluate_claims
from xlr.analysis.intervals import interval_by_arm
from xlr.analysis.plots import accuracy_vs_params_figure
from xlr.analysis.tables import (
    CLAIMS_COLUMNS,
    ONE_RUN,
    alpha_sweep_table,
    blank_missing,
    by_language,
    claims_columns_markdown,
    claims_markdown,
    cost_table,
    headline_table,
    headline_wide,
    interval_text,
    interval_wide,
    language_order,
    markdown_table,
    mean_by_arm,
    per_benchmark,
    pool_tables,
    rank_distance_tables,
    save_table,
    seen_heldout_table,
    with_cost,
)
from xlr.arms import Arm, HeadlineArms
from xlr.config import parse_params


def perfect_and_poor() -> pd.DataFrame:
    """A perfect arm (every t2i rank 1, each language's caption right after its own) and an arm
    whose t2i hits are all misses."""
    return fake_ranks({"hybrid-a0.5-full": 1.0, "zeroshot": 0.0}, bases=(0,), n_images=4)


def test_headline_known_values() -> None:
    table = headline_table(measures_of(perfect_and_poor()))
    value = table.set_index(["arm", "measure", "langs"])["estimate"]
    assert value[("hybrid-a0.5-full", "t2i R@1", "seen")] == 1.0
    assert value[("hybrid-a0.5-full", "t2i R@1", "heldout")] == 1.0
    assert value[("zeroshot", "t2i R@1", "seen")] == 0.0
    # the perfect arm ranks each query's translations first, one per language: AP 1
    assert value[("hybrid-a0.5-full", "multilingual mAP", "all")] == pytest.approx(1.0)
    # in the seen pool a caption's two translations sit at ranks 1 and 2; in the full pool, 1..3
    assert value[("hybrid-a0.5-full", "rank distance", "seen")] == 1.0
    assert value[("hybrid-a0.5-full", "rank distance", "all")] == 2.0
    assert list(pd.unique(table["arm"])) == ["zeroshot", "hybrid-a0.5-full"]  # zero-shot first
    assert (table["low"] <= table["estimate"]).all() and (table["estimate"] <= table["high"]).all()


def test_headline_refuses_several_benchmarks_and_reads_each_on_its_own() -> None:
    """Pooled, two benchmarks would repeat each arm's measure; per benchmark, each table holds
    that benchmark's own numbers."""
    other = fake_ranks({"hybrid-a0.5-full": 0.0, "zeroshot": 1.0}, bases=(0,), n_images=4)
    both = pd.concat([perfect_and_poor(), other.assign(benchmark="other")], ignore_index=True)
    with pytest.raises(ValueError, match=r"headline_table got several benchmarks.*per_benchmark"):
        headline_table(measures_of(both))
    parts = {name: (part, suffix) for name, part, suffix in per_benchmark(both)}
    assert {name: suffix for name, (_, suffix) in parts.items()} == {
        "other": "_other", "synthetic": "_synthetic"
    }  # fmt: skip
    for name, hybrid_r1 in (("synthetic", 1.0), ("other", 0.0)):
        table = headline_table(measures_of(parts[name][0])).set_index(["arm", "measure", "langs"])
        assert table.loc[("hybrid-a0.5-full", "t2i R@1", "seen"), "estimate"] == hybrid_r1


def test_headline_leaves_out_what_a_benchmark_cannot_measure() -> None:
    """Multi30K has no held-out language of most studies: no held-out column there, the rest
    measured (its per-benchmark loop in notebook 06 must not stop on it)."""
    ranks = perfect_and_poor()
    seen_only = ranks[~ranks["query_lang"].isin(HELDOUT)]
    table = headline_table(measures_of(seen_only))
    assert "heldout" not in set(table["langs"])
    assert {"t2i R@1", "multilingual mAP", "rank distance"} <= set(table["measure"])
    assert "t2i R@1 (heldout)" not in headline_wide(table).columns
    heldout_only = [("t2i R@1", "heldout")]
    with pytest.raises(ValueError, match=r"\['synthetic'\]: none of the headline measures"):
        headline_table(measures_of(seen_only), shown=heldout_only)


def test_one_benchmark_keeps_its_names() -> None:
    """A one-benchmark study's figures and tables keep their names: no suffix."""
    [(name, part, suffix)] = per_benchmark(perfect_and_poor())
    assert (name, suffix, len(part)) == ("synthetic", "", len(perfect_and_poor()))
    with pytest.raises(ValueError, match="lacks a benchmark column"):
        list(per_benchmark(pd.DataFrame({"arm": ["zeroshot"]})))


def test_headline_matches_an_independent_macro_mean() -> None:
    ranks = fake_ranks({"mono-full": 0.6}, bases=(0, 1), n_images=30)
    table = headline_table(measures_of(ranks))
    t2i = ranks[(ranks["task"] == "t2i") & ranks["query_lang"].isin(SEEN)]
    # per query: hit averaged over the two bases (one seed each: the mean over runs of their
    # macro means); then mean per language, then over languages
    per_query = t2i.assign(hit=t2i["rank"] == 1).groupby(["query_lang", "query_idx"])["hit"].mean()
    expected = per_query.groupby(level="query_lang").mean().mean()
    row = table[(table["measure"] == "t2i R@1") & (table["langs"] == "seen")]
    assert row["estimate"].iat[0] == pytest.approx(expected)
    assert (row["n_images"].iat[0], row["n_bases"].iat[0], row["n_runs"].iat[0]) == (30, 2, 2)


def test_headline_wide_formats_intervals_and_cost() -> None:
    table = headline_table(measures_of(perfect_and_poor()))
    cost = pd.DataFrame(
        {"trainable_params": [1234567], "examples": [9600], "wall_s": [12.345]},
        ["hybrid-a0.5-full"],
    )
    wide = headline_wide(table, cost).set_index("arm")
    assert wide.loc["hybrid-a0.5-full", "t2i R@1 (seen)"] == "1.000 [1.000, 1.000]"
    assert wide.loc["hybrid-a0.5-full", "rank distance (seen)"] == "1.0 [1.0, 1.0]"
    assert wide.loc["hybrid-a0.5-full", "rank distance (all)"] == "2.0 [2.0, 2.0]"
    assert wide.loc["hybrid-a0.5-full", "trainable params"] == "1,234,567"
    assert wide.loc["hybrid-a0.5-full", "examples seen"] == "9,600"
    assert wide.loc["zeroshot", "trainable params"] == "0"
    assert wide.loc["zeroshot", "train wall (s)"] == ""
    unsummarised = headline_wide(table, cost.iloc[:0]).set_index("arm")  # a summary missing
    assert unsummarised.loc["hybrid-a0.5-full", "trainable params"] == "no summary"
    assert unsummarised.loc["zeroshot", "trainable params"] == "0"
    with pytest.raises(ValueError, match=r"lacks columns \['wall_s'\]"):
        headline_wide(table, cost.drop(columns="wall_s"))
    with pytest.raises(ValueError, match=r"lacks columns \['high'\]"):
        headline_wide(table.drop(columns="high"))


def test_markdown_table_escapes_pipes() -> None:
    text = markdown_table(pd.DataFrame({"arm": ["a|b"], "value": [0.5]}))
    lines = text.splitlines()
    assert len(lines) == 3 and text.endswith("\n")
    assert r"a\|b" in lines[2] and lines[2].count(" | ") == 1  # one column separator, not two


def test_claims_markdown_has_one_line_per_claim() -> None:
    ranks = fake_ranks({"zeroshot": 0.3, "hybrid-a0.5-full": 0.6})
    claims = default_claims(
        HeadlineArms(
            Arm("hybrid", 0.5, "full"), Arm("adapters", fallback="base"), Arm("hybrid", 0.5, "lora")
        )
    )
    table = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT, confidence=0.9)
    text = claims_markdown(table)
    lines = text.splitlines()
    assert len(lines) == len(table) + 2
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == list(CLAIMS_COLUMNS)
    held_out = next(line for line in lines if "held-out languages" in line and "zero" in line)
    assert "| 90.0% " in held_out and "batches (m = 1)" in held_out  # one ran: no widening
    assert "adapters (m = 0)" in text  # no adapter claim ran
    ran = table[table["verdict"] == "supported"].iloc[0]
    assert any(f"{ran['effect']:+.3f}" in line and "supported" in line for line in lines)
    assert sum("not run" in line for line in lines) == int(
        np.sum(table["verdict"].str.startswith("not run"))
    )


def test_a_relative_claim_reads_in_percent_and_an_unbounded_interval_says_so() -> None:
    """Rank distance's effect is a / b - 1: percentages, the minimum too; Fieller's interval,
    where b's level is not told from zero, is "unbounded", not "[-inf%, +inf%]"."""
    row = {"statement": "s", "family": "batches", "measure": "rank distance", "langs": "seen",
           "benchmark": "x", "min_effect": 0.1, "effect": -0.1234, "low": -np.inf,
           "high": np.inf, "interval_confidence": 0.99, "p_value": 0.03, "p_holm": 0.1,
           "bases_agreeing": "3/3", "runs_agreeing": "6/6", "verdict": "supported",
           "n_runs": 6}  # fmt: skip
    bounded = {**row, "low": -0.2, "high": -0.05, "measure": "rank distance"}
    lines = claims_markdown(pd.DataFrame([row, bounded])).splitlines()
    assert "| 10.0% " in lines[2] and "| -12.3% " in lines[2] and "| unbounded " in lines[2]
    assert "| [-20.0%, -5.0%] " in lines[3] and "inf" not in "".join(lines)


def test_a_one_run_claim_shows_no_interval_and_no_p() -> None:
    """One base and seed (the smoke study): the interval over that run's images alone would
    leave training noise out; the table says so instead of printing it beside "inconclusive"."""
    ranks = fake_ranks({"zeroshot": 0.3, "hybrid-a0.5-full": 0.6}, bases=(0,))
    claims = default_claims(HeadlineArms(Arm("hybrid", 0.5, "full"), None, None))
    table = evaluate_claims(measures_of(ranks), claims, SEEN, HELDOUT)
    ran = table[table["p_value"].notna()]
    assert len(ran) == 1 and (ran["n_runs"] == 1).all() and (ran["verdict"] == "inconclusive").all()
    assert ran["p_value"].iloc[0] < 0.05  # the CSV keeps the images-only numbers
    line = next(row for row in claims_markdown(table).splitlines() if "held-out" in row)
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    columns = dict(zip(CLAIMS_COLUMNS, cells, strict=True))
    assert columns["interval"] == ONE_RUN and columns["p"] == columns["p (Holm)"] == ""
    assert columns["level"] == ""
    assert columns["effect"].startswith("+") and columns["verdict"] == "inconclusive"


def test_every_claims_column_is_explained_in_one_line() -> None:
    text = claims_columns_markdown()
    lines = text.splitlines()
    assert len(lines) == len(CLAIMS_COLUMNS)
    for line, name in zip(lines, CLAIMS_COLUMNS, strict=True):
        assert line.startswith(f"- **{name}**: ") and len(line) > len(name) + 20


def test_save_table_writes_csv_and_markdown(tmp_path) -> None:
    numbers = pd.DataFrame({"arm": ["zeroshot"], "estimate": [0.5]})
    paths = save_table(numbers, tmp_path / "tables", "headline", markdown_table(numbers))
    assert [p.name for p in paths] == ["headline.csv", "headline.md"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), numbers)
    assert "zeroshot" in paths[1].read_text()
    with pytest.raises(ValueError, match="plain file stem"):
        save_table(numbers, tmp_path, "../escape", "")


def test_alpha_sweep_places_mono_and_cross_at_the_ends(tmp_path) -> None:
    params = parse_params(
        {
            "run": {"name": "t", "runs_dir": str(tmp_path)},
            "data": {"train_langs": ["en", "de"], "heldout_langs": ["fr"]},
            "train": {
                "arms": ["zeroshot", "mono", "cross", "hybrid"],
                "alphas": [0.25, 0.5],
                "trainable": ["full", "lora"],
            },  # fmt: skip
        },
        source="test",
    )
    names = ["zeroshot", "mono-full", "cross-lora", "hybrid-a0.25-full", "adapters-base"]
    per_arm = pd.DataFrame({"arm": names, "estimate": [0.1, 0.2, 0.3, 0.4, 0.5]})
    sweep, zero_shot = alpha_sweep_table(per_arm, params)
    assert zero_shot == 0.1
    by_arm = sweep.set_index("arm")
    assert by_arm.loc[["mono-full", "cross-lora", "hybrid-a0.25-full"], "alpha"].tolist() == [
        1.0, 0.0, 0.25
    ]  # fmt: skip
    assert by_arm.loc["cross-lora", "trained"] == "lora"
    assert "adapters-base" not in by_arm.index and "zeroshot" not in by_arm.index
    assert alpha_sweep_table(per_arm.iloc[1:], params)[1] is None
    two = pd.concat([per_arm.assign(benchmark="a"), per_arm.assign(benchmark="b")])
    with pytest.raises(ValueError, match="alpha_sweep_table got several benchmarks"):
        alpha_sweep_table(two, params)  # the zero-shot level would be the first benchmark's


def test_cost_is_the_mean_over_runs_and_zero_for_the_zero_shot_arm() -> None:
    summaries = pd.DataFrame(
        {
            "name": ["mono-full", "mono-full", "adapters-base"],
            "trainable_params": [10, 10, 4],
            "examples": [160, 160, 160],
            "wall_s": [2.0, 4.0, 1.0],
            "steps": [5, 5, 5],
        }  # fmt: skip
    )
    cost = cost_table(summaries)
    assert cost.loc["mono-full"].tolist() == [10, 160, 3.0]
    assert cost.loc["adapters-base", "examples"] == 160  # the same budget for every arm
    points = with_cost(
        pd.DataFrame({"arm": ["zeroshot", "mono-full"], "estimate": [0.1, 0.2]}), cost
    )
    assert points["trainable_params"].tolist() == [0, 10]
    assert np.isnan(points["wall_s"].iloc[0])
    with pytest.raises(ValueError, match="train the arms first"):
        cost_table(pd.DataFrame({"name": ["mono-full"]}))


def test_languages_sort_seen_then_held_out_with_image_and_macro_last() -> None:
    langs = ["macro", "pt", "image", "en", "zz", "de", "ar"]
    assert language_order(langs, seen=["en", "de"], heldout=["pt", "ar"]) == [
        "de", "en", "ar", "pt", "zz", "image", "macro",
    ]  # fmt: skip
    index = pd.MultiIndex.from_product([["seen", "all"], ["macro", "image", "pt", "en"]])
    frame = pd.DataFrame(
        {"zeroshot": range(8), "hybrid-a0.5-full": range(8), "mono-full": range(8)},
        index=index.set_names(["target_lang", "query_lang"]),
    ).rename_axis(columns="arm")
    tidy = by_language(frame, seen=["en"], heldout=["pt"])
    assert list(tidy.index) == [
        (pool, lang) for pool in ("seen", "all") for lang in ("en", "pt", "image", "macro")
    ]  # the pools keep their order; languages sorted within each
    assert list(tidy.columns) == ["zeroshot", "mono-full", "hybrid-a0.5-full"]


def test_interval_wide_writes_estimate_and_interval() -> None:
    table = pd.DataFrame(
        {
            "arm": ["mono-full", "zeroshot"],
            "query_kind": ["caption"] * 2,
            "estimate": [0.5, 0.25],
            "low": [0.4, 0.125],
            "high": [0.6, 0.375],
        }
    )
    wide = interval_wide(table, "arm", "query_kind", digits=2)
    assert list(wide.index) == ["zeroshot", "mono-full"]
    assert wide.loc["mono-full", "caption"] == "0.50 [0.40, 0.60]"


def test_blank_missing_marks_unmeasured_cells() -> None:
    frame = pd.DataFrame({"n": pd.array([1, pd.NA], dtype="Int64"), "p": [0.5, np.nan]})
    assert blank_missing(frame).to_dict("list") == {"n": [1, "–"], "p": [0.5, "–"]}


def test_mean_by_arm_averages_runs_and_spreads_a_column() -> None:
    frame = pd.DataFrame(
        {
            "arm": ["mono-full"] * 4 + ["zeroshot"] * 2,
            "seed": pd.array([0, 0, 1, 1, pd.NA, pd.NA], dtype="Int64"),
            "query_kind": ["caption", "image"] * 3,
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    wide = mean_by_arm(frame, columns="query_kind")
    assert list(wide.index) == ["zeroshot", "mono-full"]
    assert wide.loc["mono-full"].tolist() == [2.0, 3.0] and list(wide.columns) == [
        "caption",
        "image",
    ]
    single = mean_by_arm(frame, name="KL")
    assert list(single.columns) == ["KL"] and single.loc["zeroshot", "KL"] == 5.5


def test_interval_text_known_answers() -> None:
    table = pd.DataFrame({"estimate": [0.0123, 2.0], "low": [-0.0204, 1.5], "high": [0.031, 2.5]})
    assert interval_text(table, 3).tolist() == ["0.012 [-0.020, 0.031]", "2.000 [1.500, 2.500]"]
    digits = pd.Series([2, 1], index=table.index)
    assert interval_text(table, digits, signed=True).tolist() == [
        "+0.01 [-0.02, +0.03]", "+2.0 [+1.5, +2.5]"
    ]  # fmt: skip


def retrieval_rows(rows: list[tuple]) -> pd.DataFrame:
    """A retrieval table (``evaluate_arms``' long form) from (benchmark, task, arm, seed,
    query_lang, target_lang, lang_group, metric, value) tuples."""
    columns = ["benchmark", "task", "arm", "seed", "query_lang", "target_lang", "lang_group",
               "metric", "value"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def test_seen_heldout_table_averages_each_group_over_languages_and_runs() -> None:
    rows = [
        ("x", "t2i", "mono-full", seed, lang, "image", group, metric, value + seed)
        for seed in (0, 1)
        for lang, group, value in (("en", "seen", 0.5), ("de", "seen", 0.3), ("pl", "heldout", 0.1))
        for metric in ("R@1", "R@5")
    ]
    rows += [("x", "t2i", "zeroshot", 0, "en", "image", "seen", "R@1", 0.2),
             ("x", "i2t", "zeroshot", 0, "image", "pl", "heldout", "R@1", 0.7),
             ("x", "xt2t", "zeroshot", 0, "en", "pl", "mixed", "R@1", 0.9)]  # fmt: skip
    table = seen_heldout_table(retrieval_rows(rows))
    assert list(table.columns) == ["seen languages", "held-out languages"]
    assert list(table.index) == [("x", "i2t", "zeroshot"), ("x", "t2i", "zeroshot"),
                                 ("x", "t2i", "mono-full")]  # fmt: skip
    # mono-full t2i seen: en and de over seeds 0 and 1: (0.5 + 0.3 + 1.5 + 1.3) / 4
    assert table.loc[("x", "t2i", "mono-full")].tolist() == pytest.approx([0.9, 0.6])
    assert table.loc[("x", "t2i", "zeroshot"), "seen languages"] == 0.2
    assert np.isnan(table.loc[("x", "t2i", "zeroshot"), "held-out languages"])
    assert table.loc[("x", "i2t", "zeroshot"), "held-out languages"] == 0.7


def test_pool_tables_give_one_table_a_benchmark_in_language_order() -> None:
    rows = [
        (bench, task, arm, 0, lang, task, group, metric, value)
        for bench in ("x", "y")
        for task in ("multilingual", "multilingual_seen")
        for arm, value in (("mono-full", 0.4), ("zeroshot", 0.2))
        for lang, group in (("macro", "mixed"), ("pl", "heldout"), ("en", "seen"), ("de", "seen"))
        for metric in ("mAP", "R@1")
        if task == "multilingual" or group == "seen"
    ]
    tables = dict(
        pool_tables(retrieval_rows(rows), ["multilingual", "multilingual_seen"], ["en", "de"],
                    ["pl"])
    )  # fmt: skip
    assert list(tables) == ["x", "y"]
    table = tables["x"]
    assert list(table.columns) == ["zeroshot", "mono-full"]
    assert list(table.index) == [
        ("multilingual", "seen", "de"), ("multilingual", "seen", "en"),
        ("multilingual", "heldout", "pl"), ("multilingual", "mixed", "macro"),
        ("multilingual_seen", "seen", "de"), ("multilingual_seen", "seen", "en"),
    ]  # seen, then held out, each alphabetical; macro last (language_order)  # fmt: skip
    assert (table["mono-full"] == 0.4).all() and (table["zeroshot"] == 0.2).all()


def test_rank_distance_tables_put_each_pool_and_query_kind_beside_the_arms() -> None:
    ranks = fake_ranks({"hybrid-a0.5-full": 0.9, "zeroshot": 0.3}, n_images=20)
    per_query = {
        "seen pool": rank_distance_per_query(ranks[ranks["task"] == "multilingual_seen"],
                                             pool=SEEN),
        "all languages": rank_distance_per_query(ranks[ranks["task"] == "multilingual"],
                                                 pool=[*SEEN, *HELDOUT]),
    }  # fmt: skip
    tables, designs = rank_distance_tables(per_query, 0.95)
    assert list(tables) == ["synthetic"]
    table = tables["synthetic"]
    assert list(table.index) == ["zeroshot", "hybrid-a0.5-full"]
    assert list(table.columns) == ["seen pool: caption queries", "all languages: caption queries"]
    intervals = interval_by_arm(per_query["all languages"], 0.95)
    row = intervals[intervals["arm"] == "hybrid-a0.5-full"]
    expected = interval_text(row, 1).iat[0]
    assert table.loc["hybrid-a0.5-full", "all languages: caption queries"] == expected
    assert designs == [(2, 20)]  # two bases of one run each, 20 images


def test_only_the_zero_shot_model_costs_nothing_without_a_summary() -> None:
    """A trained arm whose summary is missing is unknown, not free: the figure of accuracy
    against parameters refuses it rather than drawing it as a zero-shot reference line."""
    per_arm = pd.DataFrame(
        {"arm": ["zeroshot", "mono-full", "hybrid-a0.5-lora"], "estimate": [0.3, 0.5, 0.6],
         "low": [0.2, 0.4, 0.5], "high": [0.4, 0.6, 0.7]}
    )  # fmt: skip
    cost = pd.DataFrame({"trainable_params": [9.0], "examples": [8.0], "wall_s": [1.0]},
                        ["hybrid-a0.5-lora"])  # fmt: skip
    costed = with_cost(per_arm, cost).set_index("arm")["trainable_params"]
    assert (
        costed["zeroshot"] == 0
        and costed["hybrid-a0.5-lora"] == 9
        and np.isnan(costed["mono-full"])
    )
    with pytest.raises(ValueError, match=r"arms \['mono-full'\] have no cost summary"):
        accuracy_vs_params_figure(with_cost(per_arm, cost))
