"""The claims table: each claim of the source synthesis, its measured effect and a verdict.

Every number is computed from the saved per-query ranks (notebook 04), never written by hand:
a claim names two arms, a measure and a language group, and the effect is the paired difference
``arm_a - arm_b`` of macro means over query languages, paired by base, seed and query, with an
interval whose units are bases, seeds within a base and images
(:func:`xlr.analysis.intervals.compare_arms`, :mod:`xlr.analysis.stats`).

The verdict reads the interval against the claim's minimum effect (``report.min_effect``):
*supported* when the whole interval lies beyond +min in the claimed direction, *contradicted*
when it lies beyond -min the other way, *equivalent* when it lies inside +-min, *inconclusive*
otherwise. Rank distance grows with the pool, so its minimum is a fraction of arm b's level and
its effect is relative, ``a / b - 1``, shown with Fieller's interval of the ratio
(:mod:`xlr.analysis.ratios`) and judged by the tests of a - (1 +- min) b themselves
(:func:`xlr.analysis.verdicts.relative_verdict`): the level b is measured on the same runs and
images as a, and its noise belongs in the verdict (a fraction of b's estimate, read as if known,
left it out; the p-value of no difference is the same either way). A comparison of a single run,
whose training noise is unmeasured, is inconclusive, and so is one on fewer than
:data:`MIN_IMAGES` images, whose interval can be degenerate: with 0/1 values such as R@1, few
images can all deviate alike and give a zero-width interval (a rehearsal benchmark of 2 images
did), which is also why :mod:`xlr.analysis.calibration` cannot check such a design. (Two
training units are calibrated, and their verdicts stand, but their interval's training part has
1 degree of freedom, whose t quantile at a family's level, 102 at 1 - 0.05/8, leaves almost any
claim inconclusive.)
How many bases and runs show the claimed sign is reported beside it and is not part of the rule:
with three bases, all three show the claimed sign by chance one time in eight.

Each claim belongs to a family, the question it answers (:data:`FAMILIES`): *batches* (hybrid
batches against mono, cross and multi batches training the same part, and against the zero-shot
model on held-out languages) and *adapters* (per-language adapters against a shared LoRA of the
same rank, targets and budget, and hybrid batches through the adapters against mono ones). Within
a family, the claims that ran have their p-values (of a zero effect, from the same interval)
Holm-adjusted, and their verdicts read Bonferroni intervals at level 1 - alpha/m for the m claims
of the family that ran (alpha = 1 - ``confidence``), so the chance that any verdict of a family
is wrong is at most alpha. Why Bonferroni for the interval: Holm has no simultaneous interval of
its own, and a directional verdict from a Bonferroni interval implies a Holm-adjusted p below
alpha, so for R@1 and mAP the two never disagree about a supported or contradicted claim. Rank
distance's verdict is the relative rule's (the tests of a - 0.9 b and a - 1.1 b), whose variance
is not that of a - b: there a supported claim may show a Holm p above alpha (where b's level is
hard to tell from zero), and the verdict is the one to read. Claims whose arms were
not run say so and do not count in m. :mod:`xlr.analysis.calibration` checks the rule on the
run's own data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from xlr.analysis.intervals import COMPARISON_KEYS, compare_arms, paired_cells, paired_units
from xlr.analysis.measures import LangGroup, Measure, group_langs, measure_rows, measure_task
from xlr.analysis.ratios import ratio_interval
from xlr.analysis.stats import holm
from xlr.analysis.verdicts import Verdict, relative_verdict, verdict
from xlr.arms import ZEROSHOT, Arm, HeadlineArms
from xlr.config import MinEffectSection

MIN_IMAGES = 20  # fewer: a verdict is inconclusive and its calibration not applicable
MIN_EFFECT_FIELD: dict[str, str] = {
    "t2i R@1": "recall_at_1", "multilingual mAP": "map", "rank distance": "rank_distance",
}  # fmt: skip
RELATIVE_MEASURES: tuple[str, ...] = ("rank distance",)  # effect a / b - 1, minimum a fraction
DEFAULT_MIN_EFFECT = MinEffectSection()  # the params defaults, for callers without params


BATCHES, ADAPTERS = "batches", "adapters"
FAMILIES: dict[str, str] = {
    BATCHES: "hybrid batches against mono, cross and multi batches training the same part, and "
    "against the zero-shot model on held-out languages",
    ADAPTERS: "per-language adapters against a shared LoRA of the same rank, targets and budget, "
    "and hybrid against mono batches through the adapters",
}  # the claims families: Holm and the interval level count the claims of one family that ran


@dataclass(frozen=True)
class Claim:
    """One testable statement of ``family``: ``arm_a`` beats ``arm_b`` on ``measure`` in
    ``langs``."""

    key: str
    statement: str
    arm_a: str
    arm_b: str
    measure: Measure
    langs: LangGroup
    direction: int  # +1: a above b supports the claim; -1: a below b (rank distance)
    family: str


def default_claims(headline: HeadlineArms) -> list[Claim]:
    """The study's claims about its headline arms (:func:`xlr.arms.headline_arms`), each family
    where its arms are named: the *batches* family about the headline hybrid arm (e.g.
    ``hybrid-a0.5-full``) against mono, cross and multi arms training what it trains, so like is
    compared with like, and against the zero-shot model; the *adapters* family
    (:func:`_adapter_claims`). Rank distance is read in the seen languages' pool, ranked on its
    own."""
    claims = _batch_claims(headline.hybrid) if headline.hybrid is not None else []
    return claims + _adapter_claims(headline)


def _batch_claims(hybrid_arm: Arm) -> list[Claim]:
    """Hybrid batches against the other batch strategies of the same trainable part, and the
    zero-shot model on the languages fine-tuning never saw."""
    hybrid, zeroshot = hybrid_arm.name, ZEROSHOT.name
    mono, cross, multi = (
        Arm(family, trained=hybrid_arm.trained).name for family in ("mono", "cross", "multi")
    )
    return [
        Claim("hybrid>mono:ml", "Hybrid batches give better multilingual retrieval than mono "
              "batches", hybrid, mono, "multilingual mAP", "all", +1, BATCHES),
        Claim("hybrid>cross:ml", "Hybrid batches give better multilingual retrieval than "
              "cross-lingual batches", hybrid, cross, "multilingual mAP", "all", +1, BATCHES),
        Claim("hybrid>multi:ml", "Hybrid batches give better multilingual retrieval than mixed "
              "(multi) batches", hybrid, multi, "multilingual mAP", "all", +1, BATCHES),
        Claim("hybrid>mono:t2i", "Hybrid batches beat mono batches in text-to-image retrieval "
              "(seen languages)", hybrid, mono, "t2i R@1", "seen", +1, BATCHES),
        Claim("hybrid>cross:t2i", "Hybrid batches beat cross-lingual batches in text-to-image "
              "retrieval (seen languages)", hybrid, cross, "t2i R@1", "seen", +1, BATCHES),
        Claim("hybrid<mono:bias", "Hybrid batches reduce language bias (rank distance in the "
              "seen languages' pool) compared with mono batches", hybrid, mono, "rank distance",
              "seen", -1, BATCHES),
        Claim("hybrid<cross:bias", "Hybrid batches reduce language bias (rank distance in the "
              "seen languages' pool) compared with cross-lingual batches", hybrid, cross,
              "rank distance", "seen", -1, BATCHES),
        Claim("hybrid>zeroshot:heldout", "Hybrid fine-tuning on the seen languages improves "
              "zero-shot text-to-image retrieval in held-out languages", hybrid, zeroshot,
              "t2i R@1", "heldout", +1, BATCHES),
    ]  # fmt: skip


def _adapter_claims(headline: HeadlineArms) -> list[Claim]:
    """Per-language adapters against hybrid batches through a shared LoRA of the same rank,
    targets and training budget (``headline.shared_lora``; README, "The arms": against
    full fine-tuning, the adapters' smaller capacity would decide the comparison by design), on
    seen and held-out languages and in the seen pool's rank distance; and the adapters trained
    with hybrid batches against those trained with mono batches (same adapters, same budget)."""
    adapters, claims = headline.adapters, []
    if adapters is not None and headline.shared_lora is not None:
        ours, shared = adapters.name, headline.shared_lora.name
        claims += [
            Claim("adapters>shared_lora:seen", "Per-language adapters beat a shared LoRA of the "
                  "same size and budget (hybrid batches) in text-to-image retrieval on seen "
                  "languages", ours, shared, "t2i R@1", "seen", +1, ADAPTERS),
            Claim("shared_lora>adapters:heldout", "A shared LoRA of the same size and budget "
                  "(hybrid batches) beats per-language adapters in text-to-image retrieval on "
                  "held-out languages", shared, ours, "t2i R@1", "heldout", +1, ADAPTERS),
            Claim("shared_lora>adapters:ml", "A shared LoRA of the same size and budget (hybrid "
                  "batches) gives better multilingual retrieval than per-language adapters",
                  shared, ours, "multilingual mAP", "all", +1, ADAPTERS),
            Claim("shared_lora<adapters:bias", "A shared LoRA of the same size and budget "
                  "(hybrid batches) shows less language bias (rank distance in the seen "
                  "languages' pool) than per-language adapters", shared, ours, "rank distance",
                  "seen", -1, ADAPTERS),
        ]  # fmt: skip
    if adapters is not None and headline.adapters_hybrid is not None:
        combined = headline.adapters_hybrid.name
        claims += [
            Claim("adapters_hybrid>adapters:ml", "Training the per-language adapters with hybrid "
                  "batches gives better multilingual retrieval than with mono batches",
                  combined, adapters.name, "multilingual mAP", "all", +1, ADAPTERS),
            Claim("adapters_hybrid<adapters:bias", "Training the per-language adapters with "
                  "hybrid batches reduces language bias (rank distance in the seen languages' "
                  "pool)", combined, adapters.name, "rank distance", "seen", -1, ADAPTERS),
        ]  # fmt: skip
    return claims


def min_effect_of(measure: Measure, min_effect: MinEffectSection) -> float:
    """The claim's minimum effect in its effect's units: absolute for R@1 and mAP, a fraction
    (of arm b's level: the effect is a / b - 1) for :data:`RELATIVE_MEASURES`."""
    return getattr(min_effect, MIN_EFFECT_FIELD[measure])


def relative_change(units: pd.DataFrame, confidence: float) -> tuple[float, float, float]:
    """A claim's effect as a / b - 1 with its interval at ``confidence`` from its paired units
    (:func:`claim_units`): Fieller's interval of the ratio (:mod:`xlr.analysis.ratios`), which
    holds b's noise as well as a's, less one; shown, while :func:`relative_verdict` judges."""
    ratio = ratio_interval(*paired_cells(units), confidence)
    return ratio.estimate - 1, ratio.low - 1, ratio.high - 1


def run_means(units: pd.DataFrame, side: str) -> pd.Series:
    """Each run's macro mean (the mean over query languages of their means) of one side of a
    claim's paired units (:func:`claim_units`: ``value_a`` or ``value_b``), as the interval
    reads a run, indexed by ``base_seed`` and ``seed``."""
    return (
        units.groupby(["base_seed", "seed", "query_lang"], dropna=False)[side]
        .mean()
        .groupby(level=["base_seed", "seed"], dropna=False)
        .mean()
    )


def run_differences(units: pd.DataFrame) -> pd.Series:
    """Each run's macro-mean difference a - b (:func:`run_means`). The interval assumes the
    training units' effects roughly normal; a run far from the others shows where that fails
    (README: a skew can push it past its level)."""
    return run_means(units, "value_a") - run_means(units, "value_b")


def run_effects(units: pd.DataFrame, claim: Claim) -> pd.Series:
    """Each run's effect in the claims table's units: its difference a - b, or its a / b - 1
    for :data:`RELATIVE_MEASURES` (same sign where b's level is positive, as rank distance's
    is)."""
    if claim.measure in RELATIVE_MEASURES:
        return run_means(units, "value_a") / run_means(units, "value_b") - 1
    return run_differences(units)


def _agreement(units: pd.DataFrame, direction: int) -> dict[str, str]:
    """In how many bases and runs the macro-mean difference a - b has the claimed sign."""
    runs = run_differences(units)
    bases = runs.groupby(level="base_seed").mean()
    agree = [f"{int((np.sign(d) == direction).sum())}/{len(d)}" for d in (bases, runs)]
    return {"bases_agreeing": agree[0], "runs_agreeing": agree[1]}


def claim_pairing(claim: Claim) -> list[str]:
    """The keys a claim's two arms are paired on: benchmark, task, query and base, and the
    fine-tuning seed unless one side is the zero-shot model (scored once per base)."""
    on = ["benchmark", "task", "query_idx", "base_seed"]
    return on if ZEROSHOT.name in (claim.arm_a, claim.arm_b) else [*on, "seed"]


def claim_per_query(measures: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """Per-query values of the claim's measure and languages for its two arms, from a
    :func:`xlr.analysis.measures.query_measures` table."""
    rows = measure_rows(measures, claim.measure, claim.langs)
    return rows[rows["arm"].isin([claim.arm_a, claim.arm_b])]


def claim_units(per_query: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """The claim's paired units (:func:`xlr.analysis.intervals.paired_units`: ``value_a``,
    ``value_b`` per run and query) from its :func:`claim_per_query` values: the evidence its
    interval, agreement and calibration read."""
    sides = [per_query[per_query["arm"] == arm] for arm in (claim.arm_a, claim.arm_b)]
    return paired_units(*sides, claim_pairing(claim))


def _measure_claim(
    per_query: pd.DataFrame, claim: Claim, min_effect: MinEffectSection, level: float
) -> tuple[dict[str, object], Verdict]:
    """A claim's effect, interval at ``level``, p-value, minimum effect, agreement and design,
    from its :func:`claim_per_query` values on one benchmark, and the verdict of its interval
    (:func:`verdict`, or :func:`relative_verdict` for :data:`RELATIVE_MEASURES`)."""
    on = claim_pairing(claim)
    comparison = compare_arms(per_query, claim.arm_a, claim.arm_b, on, confidence=level)
    if len(comparison) != 1:
        raise ValueError(
            f"claim {claim.key!r} needs one comparison per benchmark, got {len(comparison)}:\n"
            f"{comparison[list(COMPARISON_KEYS)].to_string()}"
        )
    effect, units = comparison.iloc[0], claim_units(per_query, claim)
    minimum = min_effect_of(claim.measure, min_effect)
    if claim.measure in RELATIVE_MEASURES:
        shown = relative_change(units, level)
        rule = relative_verdict(*paired_cells(units), claim.direction, minimum, level)
    else:
        shown = (float(effect["estimate"]), float(effect["low"]), float(effect["high"]))
        rule = verdict(shown[1], shown[2], claim.direction, minimum)
    return {
        **dict(zip(("effect", "low", "high"), shown, strict=True)),
        "min_effect": minimum,
        "p_value": float(effect["p_value"]),
        **_agreement(units, claim.direction),
        "n_bases": int(effect["n_bases"]),
        "n_runs": int(effect["n_runs"]),
        "n_images": int(effect["n_images"]),
        "training_unit": effect["training_unit"],
    }, rule


def _judged(measured: dict[str, object]) -> bool:
    """Whether a claim's design may give a directional or equivalence verdict (module doc):
    more than one run, so training noise is measured, and :data:`MIN_IMAGES` images or more."""
    return int(measured["n_runs"]) > 1 and int(measured["n_images"]) >= MIN_IMAGES


def family_levels(ran: Sequence[Claim], confidence: float = 0.95) -> dict[str, tuple[int, float]]:
    """Per claims family, how many of its rows ran (m: ``ran`` holds a claim once per benchmark
    it ran on) and the level of each of their intervals, 1 - (1 - confidence) / m (Bonferroni:
    the family-wise level is ``confidence``)."""
    sizes = Counter(claim.family for claim in ran)
    return {family: (m, 1 - (1 - confidence) / m) for family, m in sizes.items()}


def claims_by_run(evidence: Sequence[tuple[Claim, str, pd.DataFrame | str]]) -> pd.DataFrame:
    """One row per claim, benchmark and run where the claim ran (its :func:`claim_evidence`):
    ``key``, ``benchmark``, ``base_seed``, ``seed`` and the run's ``effect``
    (:func:`run_effects`: a - b, or a / b - 1 for rank distance), so that a run far from the
    others can be seen."""
    frames = [
        run_effects(claim_units(found, claim), claim)
        .rename("effect")
        .reset_index()
        .assign(key=claim.key, benchmark=benchmark)
        for claim, benchmark, found in evidence
        if not isinstance(found, str)
    ]
    columns = ["key", "benchmark", "base_seed", "seed", "effect"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def claim_evidence(
    measures: pd.DataFrame, claims: Sequence[Claim], seen: Sequence[str], heldout: Sequence[str]
) -> list[tuple[Claim, str, pd.DataFrame | str]]:
    """Each claim on each benchmark of ``measures`` (a
    :func:`xlr.analysis.measures.query_measures` table of the claims' measures; benchmarks
    sorted): its :func:`claim_per_query` values, or why it cannot run
    there (an arm missing there, or none of its languages or pool's caption queries). A benchmark
    without a row of any measure (its evaluation ran neither ``t2i`` nor a pool with caption
    queries) is not in the table, and so has no claim rows.

    A claim is judged per benchmark, never over their union: benchmarks differ in images,
    languages and difficulty, and each is a finding of its own (the family counts them all).
    """
    by_benchmark = dict(list(measures.groupby("benchmark", sort=True)))
    evidence: list[tuple[Claim, str, pd.DataFrame | str]] = []
    for claim in claims:
        langs = group_langs(claim.langs, seen, heldout)
        for benchmark, on_benchmark in by_benchmark.items():
            absent = sorted({claim.arm_a, claim.arm_b} - set(on_benchmark["arm"]))
            if absent:
                evidence.append((claim, benchmark, f"not run ({', '.join(absent)} missing)"))
                continue
            if claim.langs != "all" and not on_benchmark["query_lang"].isin(langs).any():
                evidence.append(
                    (claim, benchmark, f"not run (no {claim.langs} language in {benchmark})")
                )
                continue
            per_query = claim_per_query(on_benchmark, claim)
            if per_query.empty:
                task = measure_task(claim.measure, claim.langs)
                per_query = f"not run (no {task} caption query in {benchmark})"
            evidence.append((claim, benchmark, per_query))
    return evidence


def evaluate_claims(
    measures: pd.DataFrame,
    claims: Sequence[Claim],
    seen: Sequence[str],
    heldout: Sequence[str],
    min_effect: MinEffectSection = DEFAULT_MIN_EFFECT,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The claims table: one row per claim and benchmark (:func:`claim_evidence`, from a
    :func:`xlr.analysis.measures.query_measures` table) with effect, interval, minimum effect,
    raw and Holm-adjusted p-values, agreement, design and verdict (module doc for the rule).

    ``confidence`` is the family-wise level; ``interval_confidence`` the level of each row's
    interval, 1 - (1 - confidence) / m for the m rows of its family that ran (``family_size``,
    :func:`family_levels`); Holm adjusts within each family.
    """
    evidence = claim_evidence(measures, claims, seen, heldout)
    return claims_table(evidence, min_effect, confidence)


def claims_table(
    evidence: Sequence[tuple[Claim, str, pd.DataFrame | str]],
    min_effect: MinEffectSection = DEFAULT_MIN_EFFECT,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """:func:`evaluate_claims` from the claims' :func:`claim_evidence`, for callers that read
    the evidence too (computing it ranks every claim's per-query measure)."""
    levels = family_levels(
        [c for c, _, found in evidence if not isinstance(found, str)], confidence
    )
    rows = []
    for claim, benchmark, found in evidence:
        row = {**asdict(claim), "benchmark": benchmark, "confidence": confidence}
        if isinstance(found, str):
            rows.append({**row, "verdict": found})
            continue
        size, level = levels[claim.family]
        measured, rule = _measure_claim(found, claim, min_effect, level)
        rows.append(
            {
                **row,
                **measured,
                "interval_confidence": level,
                "family_size": size,
                "verdict": rule if _judged(measured) else "inconclusive",
            }
        )
    table = pd.DataFrame(rows)
    if "p_value" not in table.columns:
        return table
    for family in levels:
        ran = (table["family"] == family) & table["p_value"].notna()
        table.loc[ran, "p_holm"] = holm(table.loc[ran, "p_value"].to_numpy())
    return table
