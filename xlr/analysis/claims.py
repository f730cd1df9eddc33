"""The claims table: each claim of the source synthesis, its measured effect and a verdict.

Every number is computed from the saved per-query ranks (notebook 04), never written by hand:
a claim names two arms, a measure and a language group, and the effect is the paired difference
``arm_a - arm_b`` on the same queries (so, for every arm, the difference of its paired gains
over the zero-shot model of the same base), each query averaged over the bases and seeds it ran
in, with a bootstrap interval over queries stratified by query language and a sign-flip test
(:func:`xlr.analysis.intervals.compare_arms`).

Because the base model's seed dominates the variance on the embedded default (DESIGN.md, Study
protocol), an interval over queries alone would overstate certainty; a claim is therefore
*supported* only when the interval excludes zero in the claimed direction **and** the effect has
that sign in every base; *not supported* when the interval excludes zero the other way; otherwise
*inconclusive*. Claims whose arms were not run say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from xlr.analysis.bias import macro_mean, rank_distance_per_query
from xlr.analysis.intervals import compare_arms
from xlr.arms import ZEROSHOT, Arm, HeadlineArms
from xlr.eval.metrics import per_query_values
from xlr.eval.results import MULTILINGUAL, MULTILINGUAL_SEEN

Measure = Literal["t2i R@1", "multilingual mAP", "rank distance"]
LangGroup = Literal["seen", "heldout", "all"]
POOL_TASKS: dict[str, str] = {"all": MULTILINGUAL, "seen": MULTILINGUAL_SEEN}


def measure_task(measure: Measure, group: LangGroup) -> str:
    """The ranks task a claim's measure reads: ``t2i`` for text-to-image R@1; for the
    multilingual measures the pool the group names, ranked on its own (``all``: task
    ``multilingual``, ``seen``: ``multilingual_seen``)."""
    if measure == "t2i R@1":
        return "t2i"
    if group not in POOL_TASKS:
        raise ValueError(
            f"{measure} is measured in a ranked pool, 'all' (task {MULTILINGUAL}) or 'seen' "
            f"(task {MULTILINGUAL_SEEN}); there is no {group!r} pool"
        )
    return POOL_TASKS[group]


@dataclass(frozen=True)
class Claim:
    """One testable statement: ``arm_a`` beats ``arm_b`` on ``measure`` in ``langs``."""

    key: str
    statement: str
    arm_a: str
    arm_b: str
    measure: Measure
    langs: LangGroup
    direction: int  # +1: a above b supports the claim; -1: a below b (rank distance)


def default_claims(headline: HeadlineArms) -> list[Claim]:
    """The source synthesis's claims about the study's headline hybrid arm (e.g.
    ``hybrid-a0.5-full``, :func:`xlr.arms.headline_arms`) and, when run, its adapters arm;
    none without a hybrid arm. Mono, cross and multi arms train what the hybrid arm trains, so
    like is compared with like."""
    if headline.hybrid is None:
        return []
    hybrid, zeroshot = headline.hybrid.name, ZEROSHOT.name
    mono, cross, multi = (
        Arm(family, trained=headline.hybrid.trained).name for family in ("mono", "cross", "multi")
    )
    claims = [
        Claim("hybrid>mono:ml", "Hybrid batches give better multilingual retrieval than mono "
              "batches", hybrid, mono, "multilingual mAP", "all", +1),
        Claim("hybrid>cross:ml", "Hybrid batches give better multilingual retrieval than "
              "cross-lingual batches", hybrid, cross, "multilingual mAP", "all", +1),
        Claim("hybrid>multi:ml", "Hybrid batches give better multilingual retrieval than mixed "
              "(multi) batches", hybrid, multi, "multilingual mAP", "all", +1),
        Claim("hybrid>mono:t2i", "Hybrid batches beat mono batches for the same initialiser in "
              "text-to-image retrieval (seen languages)", hybrid, mono, "t2i R@1", "seen", +1),
        Claim("hybrid>cross:t2i", "Hybrid batches beat cross-lingual batches for the same "
              "initialiser in text-to-image retrieval (seen languages)", hybrid, cross,
              "t2i R@1", "seen", +1),
        Claim("hybrid<mono:bias", "Hybrid batches reduce language bias (rank distance in the "
              "seen languages' pool) compared with mono batches", hybrid, mono, "rank distance",
              "seen", -1),
        Claim("hybrid>zeroshot:heldout", "Hybrid fine-tuning on the seen languages improves "
              "zero-shot retrieval in held-out languages", hybrid, zeroshot, "t2i R@1",
              "heldout", +1),
    ]  # fmt: skip
    if headline.adapters is not None and headline.shared_lora is not None:
        claims += _adapter_claims(headline.adapters.name, headline.shared_lora.name)
    return claims


def _adapter_claims(adapters: str, hybrid: str) -> list[Claim]:
    """Per-language adapters against hybrid batches through a shared LoRA (``hybrid``) of the
    same rank, targets and training budget (DESIGN, fair comparisons): with full fine-tuning on
    the other side, the adapters' smaller capacity would decide the comparison by design."""
    return [
        Claim("adapters>hybrid_lora:seen", "Language adapters beat hybrid batches (shared LoRA "
              "of the same size and budget) on seen languages", adapters, hybrid, "t2i R@1",
              "seen", +1),
        Claim("hybrid_lora>adapters:heldout", "Hybrid batches (shared LoRA of the same size and "
              "budget) beat language adapters on held-out languages", hybrid, adapters,
              "t2i R@1", "heldout", +1),
        Claim("hybrid_lora>adapters:ml", "Hybrid batches (shared LoRA of the same size and "
              "budget) give better multilingual retrieval than language adapters", hybrid,
              adapters, "multilingual mAP", "all", +1),
        Claim("hybrid_lora<adapters:bias", "Hybrid batches (shared LoRA of the same size and "
              "budget) show less language bias than language adapters (rank distance in the "
              "seen languages' pool)", hybrid, adapters, "rank distance", "seen", -1),
    ]  # fmt: skip


def group_langs(group: LangGroup, seen: Sequence[str], heldout: Sequence[str]) -> list[str]:
    """The languages of a claim's group: the seen ones, the held-out ones or all."""
    return {"seen": list(seen), "heldout": list(heldout), "all": [*seen, *heldout]}[group]


def per_query_measure(
    ranks: pd.DataFrame,
    measure: Measure,
    group: LangGroup,
    seen: Sequence[str],
    heldout: Sequence[str],
) -> pd.DataFrame:
    """Per-query values of ``measure`` for the caption queries of language group ``group``.

    ``t2i R@1``: 1 if the query's image is ranked first, for caption queries in the group's
    languages. The multilingual measures read the pool the group names (:func:`measure_task`)
    and every caption query in it: ``multilingual mAP`` is the average precision of the query's
    translations in the pool, ``rank distance`` their maximum rank distance (ranks).
    """
    task = measure_task(measure, group)
    langs = group_langs(group, seen, heldout)
    table = ranks[(ranks["task"] == task) & ranks["query_lang"].isin(langs)]
    if table.empty:
        raise ValueError(f"no {task} caption queries in {list(langs)} in the ranks")
    if measure in ("t2i R@1", "multilingual mAP"):
        metric = measure.split()[1]
        return per_query_values(table, metric).assign(query_kind="caption")
    per_query = rank_distance_per_query(table, pool=list(langs))
    return per_query[per_query["query_kind"] == "caption"]


def _bases_agreeing(per_query: pd.DataFrame, claim: Claim) -> tuple[int, int]:
    """In how many bases the macro-mean difference a - b has the claimed sign, of how many."""
    runs = macro_mean(per_query[per_query["arm"].isin([claim.arm_a, claim.arm_b])])
    by_base = runs.groupby(["base_seed", "arm"])["value"].mean().unstack("arm")
    by_base = by_base.dropna(subset=[claim.arm_a, claim.arm_b])
    signs = np.sign(by_base[claim.arm_a] - by_base[claim.arm_b]) == claim.direction
    return int(signs.sum()), len(by_base)


def verdict(low: float, high: float, direction: int, agreeing: int, bases: int) -> str:
    """``supported`` / ``not supported`` / ``inconclusive`` from the interval of a - b."""
    lo, hi = (low, high) if direction > 0 else (-high, -low)
    if lo > 0 and agreeing == bases:
        return "supported"
    if hi < 0:
        return "not supported"
    return "inconclusive"


def evaluate_claims(
    ranks: pd.DataFrame,
    claims: Sequence[Claim],
    seen: Sequence[str],
    heldout: Sequence[str],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    rng: int = 0,
) -> pd.DataFrame:
    """The claims table: one row per claim with effect, interval, p-value and verdict."""
    arms = set(ranks["arm"].unique())
    rows = []
    for claim in claims:
        benchmarks = ", ".join(sorted(ranks["benchmark"].unique()))
        row = {**asdict(claim), "benchmark": benchmarks, "confidence": confidence}
        missing = sorted({claim.arm_a, claim.arm_b} - arms)
        if missing:
            rows.append({**row, "verdict": f"not run ({', '.join(missing)} missing)"})
            continue
        per_query = per_query_measure(
            ranks[ranks["arm"].isin([claim.arm_a, claim.arm_b])],
            claim.measure,
            claim.langs,
            seen,
            heldout,
        )
        on = ["benchmark", "task", "query_idx", "base_seed"]
        if ZEROSHOT.name not in (claim.arm_a, claim.arm_b):
            on.append("seed")
        test = compare_arms(
            per_query, claim.arm_a, claim.arm_b, on, n_resamples, confidence, rng=rng
        )
        effect = test.iloc[0]
        agreeing, bases = _bases_agreeing(per_query, claim)
        rows.append(
            {
                **row,
                "effect": float(effect["estimate"]),
                "low": float(effect["low"]),
                "high": float(effect["high"]),
                "p_value": float(effect["p_value"]),
                "n_queries": int(effect["n"]),
                "bases_agreeing": f"{agreeing}/{bases}",
                "test": f"paired bootstrap over queries ({confidence:.0%}), sign-flip p",
                "verdict": verdict(effect["low"], effect["high"], claim.direction, agreeing, bases),
            }
        )
    return pd.DataFrame(rows)
