"""Phenomenon controls on hand-built results: each passes when the world shows the effect and
fails, with a message naming it, when it does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlr.analysis.phenomenon import (
    check_phenomenon,
    invariant_floor,
    phenomenon_controls,
    share_correlation,
)

SEEN = ["en", "de", "es", "zh"]
SHARES = {"en": 0.5, "de": 0.2, "es": 0.2, "zh": 0.08, "hi": 0.02}


def results(recall: dict[str, float], xt2t: dict[str, float]) -> pd.DataFrame:
    """Zero-shot t2i R@1 per language and xt2t R@1 per arm (every seen pair equal)."""
    rows = [
        {"arm": "zeroshot", "seed": None, "base_seed": 0, "benchmark": "synthetic", "task": "t2i",
         "query_lang": lang, "target_lang": "image", "lang_group": "seen", "metric": "R@1",
         "value": value}
        for lang, value in recall.items()
    ]  # fmt: skip
    rows += [
        {"arm": arm, "seed": None if arm == "zeroshot" else 0, "base_seed": 0,
         "benchmark": "synthetic", "task": "xt2t", "query_lang": a, "target_lang": b,
         "lang_group": "seen", "metric": "R@1", "value": value}
        for arm, value in xt2t.items() for a in SEEN for b in SEEN if a != b
    ]  # fmt: skip
    return pd.DataFrame(rows)


def ranks(distance: int) -> pd.DataFrame:
    """Zero-shot seen-pool ranks: every caption query's translations at ranks 1 .. L-2 and then
    ``1 + distance`` (so its rank distance is ``distance``)."""
    rows = []
    for query_idx, lang in enumerate(SEEN * 5):
        others = [other for other in SEEN if other != lang]
        for i, other in enumerate(others):
            rank = 1 + i if i < len(others) - 1 else 1 + distance
            rows.append(
                {"arm": "zeroshot", "seed": None, "base_seed": 0, "benchmark": "synthetic",
                 "task": "multilingual_seen", "query_idx": query_idx, "query_lang": lang,
                 "query_image_id": query_idx, "relevant_idx": len(rows), "relevant_lang": other,
                 "relevant_image_id": query_idx, "rank": rank}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_share_correlation_and_floor_known_answers() -> None:
    falling = pd.Series({"en": 0.6, "de": 0.5, "es": 0.4, "zh": 0.1})
    # share ranks 1, 2.5, 2.5, 4 (de and es tie) against R@1 ranks 4, 3, 2, 1
    expected = np.corrcoef([1, 2.5, 2.5, 4], [4, 3, 2, 1])[0, 1]
    assert share_correlation(falling, SHARES) == pytest.approx(expected)
    assert expected < 0
    rising = pd.Series({"en": 0.1, "de": 0.4, "es": 0.5, "zh": 0.6})
    assert share_correlation(rising, SHARES) == pytest.approx(-expected)
    assert invariant_floor(5) == 3 and invariant_floor(3) == 1
    with pytest.raises(ValueError, match="three or more"):
        invariant_floor(2)


def test_a_world_with_the_phenomenon_passes() -> None:
    table = phenomenon_controls(
        results(
            {"en": 0.6, "de": 0.5, "es": 0.45, "zh": 0.2}, {"zeroshot": 0.3, "cross-full": 0.5}
        ),  # fmt: skip
        ranks(distance=40),
        SEEN,
        SHARES,
    )
    assert table["passed"].all()
    assert table["value"].tolist() == pytest.approx([table["value"].iloc[0], 40.0, 0.2])
    assert check_phenomenon(table, required=True) is table


def test_a_world_without_it_fails_with_the_failed_controls_named() -> None:
    flat = phenomenon_controls(
        results(
            {"en": 0.3, "de": 0.5, "es": 0.4, "zh": 0.6},  # rarer languages retrieve better
            {"zeroshot": 0.3, "cross-full": 0.35},
        ),  # fmt: skip
        ranks(distance=3),
        SEEN,
        SHARES,  # a nearly invariant zero-shot model (floor 2)
    )
    assert not flat["passed"].any()
    check_phenomenon(flat, required=False)  # reported, not enforced
    with pytest.raises(AssertionError, match="change the world") as error:
        check_phenomenon(flat, required=True)
    for control in flat["control"]:
        assert control in str(error.value)
    missing = phenomenon_controls(results({"en": 0.6, "de": 0.5, "es": 0.4}, {"zeroshot": 0.3}),
                                  ranks(40), SEEN, SHARES)  # fmt: skip
    assert not missing.set_index("measure").filter(like="cross", axis=0)["passed"].any()


def test_with_two_seen_languages_the_bias_control_does_not_apply() -> None:
    two = ["en", "de"]
    table = phenomenon_controls(
        results({"en": 0.6, "de": 0.5, "es": 0.4}, {"zeroshot": 0.3, "cross-full": 0.5}),
        ranks(40),
        two,
        SHARES,
    )
    bias = table.set_index("control").loc["the zero-shot model is language-biased"]
    assert bias["passed"] is None and np.isnan(bias["value"])
    check_phenomenon(table, required=True)  # not applicable is not a failure
