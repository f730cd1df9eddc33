"""Controls of the bias analysis (notebook 05): checks that the measures can see an effect
when one is planted, and do not see one between seeds of the same arm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlr.analysis.bias import USED_RANK_COLUMNS
from xlr.eval.results import check_table


def plant_same_language_boost(ranks: pd.DataFrame, boost: int) -> pd.DataFrame:
    """Positive control: move every caption query's same-language relevant items up ``boost``.

    New rank = max(1, rank - boost) for items in the query's own language; every other item keeps
    its rank (so planted ranks may tie). A measure of language bias must register the planted
    preference: same-language-first rises, and so does the rank distance wherever the boost
    moves a query's own language ahead of the others (with a boost past every other language it
    becomes the best item, and the RD grows unless that language was the worst-ranked one).
    """
    if boost < 0:
        raise ValueError(f"boost is a number of ranks to move up, at least 0; got {boost}")
    check_table(ranks, USED_RANK_COLUMNS, "ranks")
    own = ranks["relevant_lang"] == ranks["query_lang"]
    planted = ranks.copy()
    planted["rank"] = np.where(own, np.maximum(1, ranks["rank"] - boost), ranks["rank"])
    return planted
