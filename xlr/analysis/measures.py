"""Per-query measures of the study's claims and headline table, computed from saved ranks.

A claim or headline cell names a measure (:data:`Measure`: text-to-image R@1, multilingual mAP,
maximum rank distance) and a language group (:data:`LangGroup`: seen, held-out, all).
:func:`per_query_measure` gives one value per caption query of a ranks table;
:func:`query_measures` builds the table of every query's measures one run (ranks file) at a time,
so notebooks 05 and 06 never hold the study's ranks (about 150 million rows) at once; the claims
(:mod:`xlr.analysis.claims`) and the headline table (:mod:`xlr.analysis.tables`) read that
table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import pandas as pd

from xlr.analysis.bias import rank_distance_per_query
from xlr.eval.metrics import per_query_values
from xlr.eval.results import MULTILINGUAL, MULTILINGUAL_SEEN

Measure = Literal["t2i R@1", "multilingual mAP", "rank distance"]
LangGroup = Literal["seen", "heldout", "all"]
POOL_TASKS: dict[str, str] = {"all": MULTILINGUAL, "seen": MULTILINGUAL_SEEN}
# what notebooks 05 and 06 measure per query (query_measures): the claims' measures and groups
# (a test checks they are all here) and the headline table's, which adds the whole pool's bias
STUDY_MEASURES: tuple[tuple[Measure, LangGroup], ...] = (
    ("t2i R@1", "seen"),
    ("t2i R@1", "heldout"),
    ("multilingual mAP", "all"),
    ("rank distance", "seen"),
    ("rank distance", "all"),
)


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


def group_langs(group: LangGroup, seen: Sequence[str], heldout: Sequence[str]) -> list[str]:
    """The languages of a claim's group: the seen ones, the held-out ones or all."""
    return {"seen": list(seen), "heldout": list(heldout), "all": [*seen, *heldout]}[group]


def _measured_rows(
    ranks: pd.DataFrame, measure: Measure, group: LangGroup, seen: Sequence[str],
    heldout: Sequence[str],
) -> pd.DataFrame:  # fmt: skip
    """The rows of ``ranks`` that ``measure`` reads for language group ``group``."""
    langs = group_langs(group, seen, heldout)
    return ranks[(ranks["task"] == measure_task(measure, group)) & ranks["query_lang"].isin(langs)]


def is_measured(
    ranks: pd.DataFrame, measure: Measure, group: LangGroup, seen: Sequence[str],
    heldout: Sequence[str],
) -> bool:  # fmt: skip
    """Whether one benchmark's ``ranks`` hold a query that ``measure`` reads for ``group``: not
    every benchmark has every language (Multi30K has no held-out language of most studies) or
    every pool (a Crossmodal-3600 subset without two captions of an image has no caption query
    in its multilingual pool)."""
    return not _measured_rows(ranks, measure, group, seen, heldout).empty


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
    table = _measured_rows(ranks, measure, group, seen, heldout)
    langs = list(group_langs(group, seen, heldout))
    if table.empty:
        raise ValueError(
            f"no {measure_task(measure, group)} caption queries in {langs} in the ranks"
        )
    if measure in ("t2i R@1", "multilingual mAP"):
        metric = measure.split()[1]
        return per_query_values(table, metric).assign(query_kind="caption")
    present = set(table["relevant_lang"])  # one benchmark may lack some (Multi30K: 4 languages)
    per_query = rank_distance_per_query(table, pool=[lang for lang in langs if lang in present])
    return per_query[per_query["query_kind"] == "caption"]


def query_measures(
    runs: Iterable[pd.DataFrame],
    measures: Sequence[tuple[Measure, LangGroup]],
    seen: Sequence[str],
    heldout: Sequence[str],
) -> pd.DataFrame:
    """Every caption query's value of each ``(measure, group)`` (:func:`per_query_measure`),
    one row per query, measure and group (columns ``measure`` and ``langs`` name the two), measured
    frame by frame and, within one, benchmark by benchmark. ``runs`` yields ranks of whole runs
    (every row of a run on a benchmark): from :func:`xlr.eval.results.read_runs`, one file at a
    time, so a file or two is held at once, never the study's ranks (whose 150 million rows
    would not fit in memory beside the analyses' copies).
    A benchmark that cannot give a measure (:func:`is_measured`) has no rows of it. The claims
    (:func:`xlr.analysis.claims.claim_evidence`) and the headline table read this table, not
    ranks.
    """
    frames = [
        per_query_measure(part, measure, group, seen, heldout).assign(measure=measure, langs=group)
        for ranks in runs
        for _, part in ranks.groupby("benchmark", sort=False)  # a pool's languages: per benchmark
        for measure, group in measures
        if is_measured(part, measure, group, seen, heldout)
    ]
    if not frames:
        raise ValueError(
            f"no run's ranks hold a caption query that {[f'{m} ({g})' for m, g in measures]} "
            "read; are these the ranks of notebook 04?"
        )
    return pd.concat(frames, ignore_index=True)


def measure_tasks(measures: Sequence[tuple[Measure, LangGroup]]) -> list[str]:
    """The ranks tasks ``measures`` read (:func:`measure_task`), in order: the only ones
    :func:`query_measures` needs read."""
    return list(dict.fromkeys(measure_task(measure, group) for measure, group in measures))


def measure_rows(table: pd.DataFrame, measure: Measure, group: LangGroup) -> pd.DataFrame:
    """The rows of a :func:`query_measures` table of one measure and language group."""
    return table[(table["measure"] == measure) & (table["langs"] == group)]
