"""Phenomenon controls: does the world show what the study is about?

A study of language bias on a world without any can only find nothing. Before any claim is
read, three facts about the zero-shot model and the simplest fine-tuning must hold (DESIGN,
Data): zero-shot retrieval is better in languages the model saw more of in pretraining; the
zero-shot model is measurably language-biased (its rank distance well above the floor a
language-invariant encoder reaches); and cross-lingual fine-tuning clearly improves
cross-lingual text retrieval between the seen languages. :func:`phenomenon_controls` measures
them from the results of notebook 04; :func:`check_phenomenon` stops a study whose world
cannot show them (``report.require_phenomenon``): change the world, never the control.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from xlr.analysis.bias import rank_distance_per_query
from xlr.arms import ZEROSHOT, Arm
from xlr.eval.results import MULTILINGUAL_SEEN, check_table

# The issue that asked for these controls set the clear margin of cross-lingual fine-tuning over
# zero-shot at 0.10 seen-pair xt2t R@1. Twice the invariant floor is a first, weak bar for
# "measurably biased" (it says little beyond retrieval quality); a language-blind null is the
# better test and is still to come.
MIN_XT2T_GAIN = 0.10
MIN_FLOOR_MULTIPLE = 2.0


def share_correlation(recall: pd.Series, shares: Mapping[str, float]) -> float:
    """Spearman correlation between languages' pretraining-share rank (1 = most frequent) and
    their R@1 (``recall`` indexed by language): below 0 when rarer languages retrieve worse."""
    langs = [lang for lang in recall.index if lang in shares]
    if len(langs) < 3:
        raise ValueError(f"a rank correlation needs three or more languages, got {langs}")
    share_rank = pd.Series({lang: shares[lang] for lang in langs}).rank(ascending=False)
    return float(share_rank.corr(recall.loc[langs], method="spearman"))


def invariant_floor(n_langs: int) -> int:
    """The rank distance of a language-invariant encoder for a caption query in a pool of
    ``n_langs`` languages: its ``n_langs - 1`` translations tie and take ranks 1, 2, ... in pool
    order (the tie rule), so max - min = ``n_langs - 2``."""
    if n_langs < 3:
        raise ValueError(f"a rank distance needs a pool of three or more languages, got {n_langs}")
    return n_langs - 2


def _zero_shot_t2i(results: pd.DataFrame) -> pd.Series:
    rows = results[
        (results["arm"] == ZEROSHOT.name)
        & (results["task"] == "t2i")
        & (results["metric"] == "R@1")
        & (results["lang_group"] != "mixed")
        & (results["query_lang"] != "macro")
    ]
    return rows.groupby("query_lang")["value"].mean()


def _seen_pair_xt2t(results: pd.DataFrame, seen: Sequence[str]) -> pd.Series:
    """Mean xt2t R@1 over ordered seen-language pairs, per arm and base."""
    rows = results[
        (results["task"] == "xt2t")
        & (results["metric"] == "R@1")
        & results["query_lang"].isin(seen)
        & results["target_lang"].isin(seen)
    ]
    return rows.groupby(["arm", "base_seed"])["value"].mean()


def phenomenon_controls(
    results: pd.DataFrame,
    ranks: pd.DataFrame,
    seen: Sequence[str],
    shares: Mapping[str, float],
    trained: str = "full",
) -> pd.DataFrame:
    """The three controls with their value, threshold and ``passed``, from notebook 04's results
    and ranks; ``shares`` is each language's share of the pretraining mix and ``trained`` what
    the cross-lingual arm trains (``cross-<trained>``)."""
    check_table(results, ["arm", "base_seed", "task", "query_lang", "target_lang"], "results")
    rows = []
    correlation = share_correlation(_zero_shot_t2i(results), shares)
    rows.append(
        {
            "control": "zero-shot t2i R@1 falls with the language's pretraining share",
            "measure": "Spearman(share rank, R@1)",
            "value": correlation,
            "threshold": "< 0",
            "passed": bool(correlation < 0),
        }
    )
    rows.append(_bias_control(ranks, seen))
    xt2t = _seen_pair_xt2t(results, seen)
    cross = Arm("cross", trained=trained).name
    if cross in xt2t.index.get_level_values("arm"):
        gain = float((xt2t[cross] - xt2t[ZEROSHOT.name]).mean())  # paired by base
    else:
        gain = np.nan
    rows.append(
        {
            "control": "cross-lingual fine-tuning beats zero-shot between seen languages",
            "measure": f"xt2t R@1 ({cross} - zero-shot), seen pairs",
            "value": gain,
            "threshold": f">= {MIN_XT2T_GAIN:g}",
            "passed": bool(gain >= MIN_XT2T_GAIN),  # a missing arm fails: nan is not >=
        }
    )
    return pd.DataFrame(rows)


def _bias_control(ranks: pd.DataFrame, seen: Sequence[str]) -> dict[str, object]:
    """The zero-shot rank distance in the seen pool against the invariant floor; not applicable
    (``passed`` None) with fewer than three seen languages, where no floor is above zero."""
    control = {"control": "the zero-shot model is language-biased"}
    if len(seen) < 3:
        return control | {"measure": "mean rank distance, seen pool", "value": np.nan,
                          "threshold": "needs three seen languages", "passed": None}  # fmt: skip
    pool = ranks[(ranks["arm"] == ZEROSHOT.name) & (ranks["task"] == MULTILINGUAL_SEEN)]
    per_query = rank_distance_per_query(pool, pool=list(seen))
    distance = float(per_query.loc[per_query["query_kind"] == "caption", "value"].mean())
    floor = invariant_floor(len(seen))
    return control | {
        "measure": f"mean rank distance, seen pool (floor {floor})",
        "value": distance,
        "threshold": f">= {MIN_FLOOR_MULTIPLE:g} x floor = {MIN_FLOOR_MULTIPLE * floor:g}",
        "passed": bool(distance >= MIN_FLOOR_MULTIPLE * floor),
    }


def check_phenomenon(controls: pd.DataFrame, required: bool) -> pd.DataFrame:
    """``controls``, after stopping the study if ``required`` (``report.require_phenomenon``)
    and a control failed: its claims would measure a world that cannot show the effect. The
    message names each failed control with its value."""
    failed = controls[controls["passed"].eq(False)]  # None: not applicable
    if required and not failed.empty:
        lines = [
            f"- {row.control}: {row.measure} = {row.value:.3f}, needs {row.threshold}"
            for row in failed.itertuples()
        ]
        raise AssertionError(
            "phenomenon controls failed (report.require_phenomenon is set): the world does not "
            "show what the study measures; change the world, never the control\n" + "\n".join(lines)
        )
    return controls
