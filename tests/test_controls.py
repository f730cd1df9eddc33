"""The controls of notebook 05: a planted bias must be seen, seeds of one arm rarely differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_bias import simulated_ranks

from xlr.analysis.bias import rank_distance_per_query
from xlr.analysis.controls import negative_control, positive_control

POOL = ["en", "de", "fr", "ja"]


def test_positive_control_sees_a_planted_bias_and_fails_without_one() -> None:
    ranks = simulated_ranks(np.random.default_rng(0), arm="zeroshot", seed=None)
    table = positive_control(ranks, POOL, penalty=30, n_resamples=200)
    assert table["passed"].all() and (table["estimate"] > 0).all()
    assert table["arm_a"].item() == "zeroshot+ja-30"  # the pool's last language by default
    with pytest.raises(AssertionError, match="positive control failed"):
        positive_control(ranks, POOL, penalty=0, n_resamples=200)  # nothing planted, nothing seen
    with pytest.raises(ValueError, match="'zh' is not in the pool"):
        positive_control(ranks, POOL, lang="zh")


def test_positive_control_needs_the_zero_shot_arm() -> None:
    with pytest.raises(ValueError, match="evaluate it"):
        positive_control(simulated_ranks(np.random.default_rng(0)), POOL)


def test_negative_control_compares_the_first_two_seeds_of_each_trained_arm() -> None:
    rng = np.random.default_rng(3)
    runs = [
        rank_distance_per_query(simulated_ranks(rng, arm=arm, seed=seed))
        for arm in ("mono-full", "cross-full")
        for seed in (0, 1)
    ]
    runs.append(rank_distance_per_query(simulated_ranks(rng, arm="zeroshot", seed=None)))
    table = negative_control(pd.concat(runs), seeds=[0, 1])
    assert table["arm"].tolist() == ["cross-full", "mono-full"]  # zero-shot has no seeds
    assert table["p_value"].between(0, 1).all()
    one_seed = negative_control(pd.concat(runs), seeds=[0])
    assert one_seed["p_value"].isna().all() and "two run.seeds" in one_seed["note"].item()
