"""Figures of notebooks 05 and 06: titled and labelled, error bars at the intervals, pair matrices
averaged over runs, atomic saves, and clear errors for tables they cannot draw."""

import colorsys
import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from xlr.analysis.figure_style import (
    ARM_VARIANTS,
    FAMILY_COLOURS,
    SPARE_COLOURS,
    arm_order,
    arm_styles,
    family_and_variant,
    family_colour,
    save_figure,
)
from xlr.analysis.heatmaps import (
    pair_difference_unclear,
    pair_heatmap_figure,
    pair_heatmaps_figure,
    pair_matrix,
)
from xlr.analysis.plots import (
    accuracy_vs_params_figure,
    alpha_sweep_figure,
    language_preference_figure,
    per_language_recall_figure,
    rank_distance_figure,
    seen_heldout_figure,
)
from xlr.arms import FALLBACKS, FAMILIES, TRAINABLE


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labelled(fig: Figure) -> None:
    ax = fig.axes[0]
    assert isinstance(fig, Figure)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def error_spans(ax) -> list[tuple[float, float, float]]:
    """(x, low, high) of every vertical error bar drawn on ``ax``, sorted."""
    spans = []
    for container in ax.containers:  # bar(yerr=...) registers its ErrorbarContainer here too
        if isinstance(container, ErrorbarContainer):
            for (x, low), (_, high) in container.lines[2][0].get_segments():
                spans.append((round(x, 6), round(low, 6), round(high, 6)))
    return sorted(spans)


def intervals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arm": ["zeroshot"] * 3 + ["hybrid-a0.5-full"] * 3,
            "query_lang": ["en", "de", "sw"] * 2,
            "lang_group": ["seen", "seen", "heldout"] * 2,
            "estimate": [0.5, 0.4, 0.2, 0.6, 0.5, 0.3],
            "low": [0.45, 0.35, 0.1, 0.55, 0.4, 0.25],
            "high": [0.55, 0.42, 0.3, 0.7, 0.6, 0.35],
        }
    )


def test_per_language_recall_figure_error_bars_match_intervals() -> None:
    fig = per_language_recall_figure(intervals())
    labelled(fig)
    ax = fig.axes[0]
    # seen languages first (alphabetical), a gap, then held-out: de, en | sw
    assert [t.get_text() for t in ax.get_xticklabels()] == ["de", "en", "sw"]
    table = intervals()
    lows = sorted(round(v, 6) for v in table["low"])
    highs = sorted(round(v, 6) for v in table["high"])
    spans = error_spans(ax)
    assert sorted(s[1] for s in spans) == lows and sorted(s[2] for s in spans) == highs
    # the zeroshot bar of sw (first arm, left of centre at x = 3) spans 0.1 .. 0.3
    assert (2.8, 0.1, 0.3) in spans
    dividers = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    assert dividers == [2.0]  # between en (x = 1) and sw (x = 3)


def test_per_language_rejects_a_language_in_two_groups() -> None:
    table = intervals()
    table.loc[0, "lang_group"] = "heldout"
    with pytest.raises(ValueError, match="several lang_groups"):
        per_language_recall_figure(table)


@pytest.mark.parametrize(
    ("label", "family", "variant"),
    [
        ("zeroshot", "zeroshot", ""),
        ("hybrid-a0.5-lora", "hybrid-a0.5", "lora"),
        ("adapters_hybrid-a0.5-average", "adapters_hybrid-a0.5", "average"),
        ("my-arm", "my-arm", ""),  # not an arm name: its own family, drawn without a variant
    ],
)
def test_family_and_variant(label: str, family: str, variant: str) -> None:
    assert family_and_variant(label) == (family, variant)
    assert label in arm_styles([label, "mono-full"])


def test_every_trainable_kind_and_fallback_has_its_own_shape() -> None:
    variants = [*TRAINABLE, *FALLBACKS]
    assert set(variants) <= set(ARM_VARIANTS)
    for attribute in ("marker", "hatch", "dashes"):
        shapes = [getattr(ARM_VARIANTS[v], attribute) for v in variants]
        assert len(set(shapes)) == len(shapes), attribute


def test_arm_styles_colour_by_family_and_shape_by_variant() -> None:
    arms = ["zeroshot", "mono-full", "mono-lora", "hybrid-a0.5-full", "hybrid-a0.5-lora",
            "adapters-base", "adapters-nearest"]  # fmt: skip
    styles = arm_styles(arms)
    assert styles["mono-full"].colour == styles["mono-lora"].colour
    assert styles["mono-full"].marker != styles["mono-lora"].marker
    assert styles["adapters-base"].hatch != styles["adapters-nearest"].hatch
    families = {a: family_and_variant(a)[0] for a in arms}
    colours = {families[a]: styles[a].colour for a in arms}
    assert len(set(colours.values())) == len(colours) == 4  # four families, four colours
    # the same colour whichever arms a figure holds (the loss curves have no zero-shot model)
    assert arm_styles(arms[1:])["mono-full"] == styles["mono-full"]
    assert arm_styles(["my-arm", *arms])["mono-full"] == styles["mono-full"]
    assert len(FAMILY_COLOURS) == len(FAMILIES) == len(set(FAMILY_COLOURS))  # one each
    assert not set(FAMILY_COLOURS) & set(SPARE_COLOURS)


COLOUR_VISION = ("deuteranomaly", "protanomaly", "tritanomaly")  # Machado et al. 2009


def closest_colours(labels: list[str]) -> list[tuple[float, str, str, str]]:
    """Every pair of ``labels``' colours (family_colour) as CIELAB distance under each simulated
    colour-vision deficiency at full severity, nearest first."""
    from colorspacious import cspace_convert

    rgb = np.array([family_colour(label) for label in labels])
    pairs = []
    for kind in COLOUR_VISION:
        seen = np.clip(cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": kind,
                                             "severity": 100}, "sRGB1"), 0, 1)  # fmt: skip
        lab = cspace_convert(seen, "sRGB1", "CIELab")
        for i, j in itertools.combinations(range(len(labels)), 2):
            pairs.append((float(np.linalg.norm(lab[i] - lab[j])), kind, labels[i], labels[j]))
    return sorted(pairs)


@pytest.mark.parametrize("alphas", [("0.25", "0.5", "0.75"), ("0.4", "0.5", "0.6"),
                                    ("0.1", "0.5", "0.9")])  # fmt: skip
@pytest.mark.parametrize("adapters_alpha", ["0.5", "0.6", "0.25"])
def test_family_colours_stay_apart_under_colour_vision_deficiency(
    alphas: tuple[str, ...], adapters_alpha: str
) -> None:
    """figure_style's claim: every pair of the study's colours at least 11 apart (CIELAB) under
    simulated deutan, protan and tritan vision (the palette's grey for zero-shot came within 10.8
    of multi's green, deutan), whatever the hybrid sweep's alphas and adapters.hybrid_alpha (whose
    colour once followed the ramp and came within 4.9 of mono's at 0.6)."""
    labels = ["zeroshot", "mono-full", "cross-full", "multi-full", "adapters-base",
              *(f"hybrid-a{alpha}-full" for alpha in alphas),
              f"adapters_hybrid-a{adapters_alpha}-base"]  # fmt: skip
    pairs = closest_colours(labels)
    assert pairs[0][0] >= 11, pairs[0]


@pytest.mark.parametrize("alphas", [(0.25, 0.5, 0.75), (0.4, 0.5, 0.6), (0.01, 0.02, 0.99)])
def test_hybrid_alphas_differ_in_lightness_and_other_labels_take_spare_colours(alphas) -> None:
    arms = [f"hybrid-a{alpha:g}-full" for alpha in alphas]  # synthetic, real study, extremes
    styles = arm_styles([*arms, "my-arm", "your-arm"])
    light = [colorsys.rgb_to_hls(*styles[a].colour)[1] for a in arms]
    assert light[0] > light[1] > light[2]  # darker as alpha grows, never clamped together
    assert min(light) > 0.2 and max(light) < 0.8  # neither black nor white
    if alphas[1] - alphas[0] >= 0.1:
        assert light[0] - light[1] > 0.05 and light[1] - light[2] > 0.05
    hues = {round(colorsys.rgb_to_hls(*styles[a].colour)[0], 6) for a in arms}
    assert len(hues) == 1  # one family, one hue
    family = {styles[a].colour for a in arms} | {arm_styles(["mono-full"])["mono-full"].colour}
    assert len({styles["my-arm"].colour, styles["your-arm"].colour} | family) == 6


def test_per_language_points_share_a_family_colour() -> None:
    full = intervals()[intervals()["arm"] == "hybrid-a0.5-full"]
    table = pd.concat([intervals(), full.assign(arm="hybrid-a0.5-lora")])
    ax = per_language_recall_figure(table).axes[0]
    marks = {c.get_label(): c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer)}
    full, lora = marks["hybrid-a0.5-full"], marks["hybrid-a0.5-lora"]
    assert full.get_color() == lora.get_color() != marks["zeroshot"].get_color()
    assert full.get_marker() != lora.get_marker()


def results() -> pd.DataFrame:
    """xt2t R@1 of two arms over en <-> de, two seeds of the fine-tuned arm, plus noise rows."""
    rows = []
    for arm, seed, en_de, de_en in [
        ("zeroshot", pd.NA, 0.5, 0.4),
        ("multi-full", 0, 0.6, 0.5),
        ("multi-full", 1, 0.8, 0.7),
    ]:
        for q, t, value in [("en", "de", en_de), ("de", "en", de_en)]:
            rows.append((arm, seed, "xt2t", q, t, "R@1", value))
            rows.append((arm, seed, "xt2t", q, t, "mAP", 9.0))
        rows.append((arm, seed, "t2i", "en", "image", "R@1", 9.0))
    table = pd.DataFrame(
        rows, columns=["arm", "seed", "task", "query_lang", "target_lang", "metric", "value"]
    )
    return table.assign(
        base_seed=0, benchmark="xm3600", lang_group="seen", captions="all", n_queries=10
    )


def test_pair_matrix_means_over_seeds() -> None:
    matrix = pair_matrix(results(), "multi-full")
    assert list(matrix.index) == ["de", "en"] and list(matrix.columns) == ["de", "en"]
    assert matrix.loc["en", "de"] == pytest.approx(0.7)  # (0.6 + 0.8) / 2
    assert matrix.loc["de", "en"] == pytest.approx(0.6)  # (0.5 + 0.7) / 2
    assert np.isnan(matrix.loc["en", "en"]) and np.isnan(matrix.loc["de", "de"])


def test_pair_matrix_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="no xt2t rows of arm 'cross-full'"):
        pair_matrix(results(), "cross-full")
    two_benchmarks = pd.concat([results(), results().assign(benchmark="multi30k")])
    with pytest.raises(ValueError, match="benchmark"):
        pair_matrix(two_benchmarks, "zeroshot")
    assert pair_matrix(two_benchmarks, "zeroshot", benchmark="xm3600").loc["en", "de"] == 0.5


def test_pair_heatmap_figure() -> None:
    matrix = pair_matrix(results(), "multi-full")
    fig = pair_heatmap_figure(matrix, "xt2t R@1, multi-full")
    labelled(fig)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0.60", "0.70"]
    zeroshot = pair_matrix(results(), "zeroshot")
    fig = pair_heatmap_figure(matrix - zeroshot, "diff", diverging=True)
    mesh = fig.axes[0].collections[0]
    low, high = mesh.get_clim()
    assert low == pytest.approx(-high)  # centred at 0
    with pytest.raises(ValueError, match="empty"):
        pair_heatmap_figure(pd.DataFrame(), "t")


def test_pair_heatmaps_share_one_scale_and_group_languages() -> None:
    matrix = pair_matrix(results(), "multi-full")
    matrices = {"multi-full": matrix, "zeroshot": pair_matrix(results(), "zeroshot")}
    fig = pair_heatmaps_figure(matrices, "xt2t R@1", seen=["en"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["zeroshot", "multi-full"]  # zero-shot first
    assert {ax.collections[0].get_clim() for ax in panels} == {(0.4, 0.7)}  # one joint scale
    assert len(fig.axes) == 3  # two panels, one colour bar
    first = panels[0]
    assert [t.get_text() for t in first.get_yticklabels()] == ["en", "de"]  # seen first
    assert any(list(line.get_ydata()) == [1, 1] for line in first.lines)  # the separator


def test_arm_order_puts_zero_shot_first() -> None:
    arms = ["hybrid-a0.5-full", "adapters-nearest", "zeroshot", "mono-lora", "mono-full", "x"]
    assert arm_order(arms) == [
        "zeroshot", "mono-full", "mono-lora", "hybrid-a0.5-full", "adapters-nearest", "x",
    ]  # fmt: skip


def test_alpha_sweep_figure() -> None:
    points = pd.DataFrame(
        {
            "alpha": [0.0, 0.5, 1.0, 0.0, 1.0],
            "trained": ["full"] * 3 + ["lora"] * 2,
            "estimate": [0.3, 0.5, 0.4, 0.25, 0.35],
            "low": [0.25, 0.45, 0.35, 0.2, 0.3],
            "high": [0.35, 0.55, 0.45, 0.3, 0.4],
        }
    )
    fig = alpha_sweep_figure(points, zero_shot=0.2)
    labelled(fig)
    ax = fig.axes[0]
    assert (0.5, 0.45, 0.55) in error_spans(ax)
    assert len(error_spans(ax)) == 5
    assert any(line.get_linestyle() == "--" for line in ax.lines)  # the zero-shot level
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        alpha_sweep_figure(points.assign(alpha=points["alpha"] * 2))


def test_accuracy_vs_params_figure() -> None:
    points = pd.DataFrame(
        {
            "arm": ["zeroshot", "mono-full", "cross-full", "adapters"],
            "trainable_params": [0, 150_000_000, 150_000_000, 2_000_000],
            "estimate": [0.3, 0.4, 0.45, 0.42],
            "low": [0.28, 0.38, 0.43, 0.4],
            "high": [0.32, 0.42, 0.47, 0.44],
        }
    )
    fig = accuracy_vs_params_figure(points)
    labelled(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["zeroshot", "mono-full", "cross-full", "adapters"]  # zero-shot: dashed line
    assert not ax.texts  # names live in the legend: labels beside the points collide
    assert (2_000_000, 0.4, 0.44) in error_spans(ax)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["2M", "150M"]  # the counts the arms train, no minor ticks
    xs = sorted(x for x, _, _ in error_spans(ax) if x > 1e8)  # the two arms at 150M, side by side
    assert np.sqrt(xs[0] * xs[1]) == pytest.approx(150_000_000)  # centred on the true count
    with pytest.raises(ValueError, match=r"one row per \['arm'\]"):
        accuracy_vs_params_figure(pd.concat([points, points]))


def test_seen_heldout_figure() -> None:
    points = pd.DataFrame(
        {
            "arm": ["mono-full", "mono-full", "hybrid-a0.5-full", "hybrid-a0.5-full"],
            "lang_group": ["heldout", "seen", "heldout", "seen"],
            "estimate": [0.2, 0.5, 0.3, 0.6],
            "low": [0.1, 0.4, 0.2, 0.5],
            "high": [0.3, 0.6, 0.4, 0.7],
        }
    )
    fig = seen_heldout_figure(points.assign(confidence=0.9))
    labelled(fig)
    ax = fig.axes[0]
    assert "90% CI over bases, seeds, images" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["seen in fine-tuning", "held out"]
    assert (0.2, 0.1, 0.3) in error_spans(ax)  # mono-full held-out, right of x = 0


def test_rank_distance_figure_uses_log_scale_across_decades() -> None:
    per_query = pd.DataFrame(
        {"arm": ["mono-full"] * 4 + ["hybrid-a0.5-full"] * 4, "value": [1, 3, 10, 900] * 2}
    )
    fig = rank_distance_figure(per_query)
    labelled(fig)
    assert fig.axes[0].get_yscale() == "log"
    narrow = rank_distance_figure(per_query.assign(value=[1, 2, 3, 4] * 2))
    assert narrow.axes[0].get_yscale() == "linear"
    mixed = per_query.assign(query_kind=["image", "caption"] * 4)
    with pytest.raises(ValueError, match="query_kind"):
        rank_distance_figure(mixed)


def test_language_preference_figure_draws_intervals_from_uniform() -> None:
    shares = pd.DataFrame(
        {
            "arm": ["mono-full", "mono-full"],
            "lang": ["en", "de"],
            "estimate": [0.7, 0.3],
            "low": [0.6, 0.25],
            "high": [0.75, 0.45],
            "uniform": 0.5,
            "confidence": 0.95,
        }
    )
    fig = language_preference_figure(shares)
    labelled(fig)
    ax = fig.axes[0]
    points = ax.containers[0]  # one errorbar container per arm
    ys = points.lines[0].get_ydata()
    # de, en: 30% and 70% from uniform (50%)
    assert list(np.round(np.asarray(ys, float), 6)) == [-20.0, 20.0]
    segments = points.lines[2][0].get_segments()
    spans = sorted((round(seg[0][1], 6), round(seg[1][1], 6)) for seg in segments)
    assert spans == [(-25.0, -5.0), (10.0, 25.0)]  # each interval, from uniform
    low, high = ax.get_ylim()
    assert low == pytest.approx(-high) and high >= 25.0  # centred at uniform, bars inside
    assert "50.0%" in ax.get_title() and "95% CI" in ax.get_title()
    with pytest.raises(ValueError, match="several uniform levels"):
        language_preference_figure(shares.assign(uniform=[0.5, 0.25]))


@pytest.mark.parametrize(
    "draw, columns",
    [
        (per_language_recall_figure, ["arm", "query_lang", "lang_group"]),
        (alpha_sweep_figure, ["alpha", "trained"]),
        (accuracy_vs_params_figure, ["arm", "trainable_params"]),
        (seen_heldout_figure, ["arm", "lang_group"]),
        (rank_distance_figure, ["arm", "value"]),
        (language_preference_figure, ["arm", "lang", "uniform"]),
    ],
)
def test_figures_name_missing_columns_and_refuse_empty_tables(draw, columns) -> None:
    with pytest.raises(ValueError, match="lacks columns") as error:
        draw(pd.DataFrame({"other": [1.0]}))
    for column in columns:
        assert repr(column) in str(error.value)
    with pytest.raises(ValueError, match="empty"):
        draw(pd.DataFrame(columns=[*columns, "estimate", "low", "high"]))


def test_intervals_must_contain_their_estimate() -> None:
    table = intervals()
    table.loc[2, "low"] = 0.25  # above the estimate 0.2
    with pytest.raises(ValueError, match=r"low <= estimate <= high.*\[2\]"):
        per_language_recall_figure(table)


def test_save_figure_writes_every_format_atomically(tmp_path) -> None:
    fig = seen_heldout_figure(
        pd.DataFrame(
            {"arm": ["a"], "lang_group": ["seen"], "estimate": [0.5], "low": [0.4], "high": [0.6]}
        )
    )
    out = tmp_path / "figures" / "nested"
    paths = save_figure(fig, out, "seen_heldout")
    assert paths == [out / "seen_heldout.png", out / "seen_heldout.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in paths[1].read_bytes()[:2000]
    assert sorted(p.name for p in out.iterdir()) == ["seen_heldout.png", "seen_heldout.svg"]
    with pytest.raises(ValueError, match="plain file stem"):
        save_figure(fig, out, "../escape")


def test_save_figure_leaves_no_half_file_on_failure(tmp_path) -> None:
    fig = plt.figure()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path, "broken", formats=("png", "not-a-format"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]


def xt2t_ranks(n_images: int = 30) -> pd.DataFrame:
    """xt2t ranks of zero-shot and hybrid on one base: en->de, hybrid always first and zero-shot
    never (a clear gain); de->en, each first on alternate images (no difference)."""
    rows = []
    for arm, seed in (("zeroshot", None), ("hybrid-a0.5-full", 0)):
        for query, target in (("en", "de"), ("de", "en")):
            for image in range(n_images):
                if query == "en":
                    rank = 1 if arm != "zeroshot" else 4
                else:
                    rank = 1 if (image % 2 == 0) == (arm == "zeroshot") else 3
                rows.append(
                    {"arm": arm, "seed": seed, "base_seed": 0, "benchmark": "xtd10", "task": "xt2t",
                     "query_idx": image, "query_lang": query, "query_image_id": image,
                     "relevant_idx": image, "relevant_lang": target, "relevant_image_id": image,
                     "rank": rank}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_difference_heatmap_hatches_the_cells_whose_interval_contains_zero() -> None:
    ranks = xt2t_ranks()
    unclear = pair_difference_unclear(ranks, "hybrid-a0.5-full", "zeroshot")
    assert not unclear.loc["en", "de"] and unclear.loc["de", "en"]
    assert not unclear.loc["en", "en"]  # the diagonal is not measured, not "unclear"
    gain = pd.DataFrame([[np.nan, 1.0], [0.0, np.nan]], index=["de", "en"], columns=["de", "en"])
    fig = pair_heatmap_figure(gain, "gain", diverging=True, seen=["en", "de"], unclear=unclear)
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch() == "///"]
    assert len(hatched) == 1 and "interval contains 0" in ax.get_title()
    with pytest.raises(ValueError, match="several benchmarks"):
        pair_difference_unclear(
            pd.concat([ranks, ranks.assign(benchmark="xm3600")]), "hybrid-a0.5-full", "zeroshot"
        )
