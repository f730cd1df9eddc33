"""One retrieval as the tasks of :mod:`xlr.eval.tasks` describe it, and its rows.

A :class:`Retrieval` is one call of :func:`xlr.eval.search.relevant_ranks`: a query side and a
gallery side (:class:`Side`: embeddings plus what each row is: reported id, language, image), the
relevant items and the excluded ones. :func:`rank_retrievals` turns retrievals into ranks rows and
:func:`metric_rows` ranks into results rows, so every task reports the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlr.eval.embedded import EmbeddedSet
from xlr.eval.metrics import QueryRanks, summarize
from xlr.eval.results import IMAGE
from xlr.eval.search import Relevance, relevant_ranks


@dataclass(frozen=True)
class Side:
    """Queries or gallery items of one retrieval: embeddings and what each row is."""

    embeddings: np.ndarray
    ids: np.ndarray  # query_idx / relevant_idx as reported
    langs: np.ndarray
    image_ids: np.ndarray

    def take(self, rows: np.ndarray) -> Side:
        return Side(self.embeddings[rows], self.ids[rows], self.langs[rows], self.image_ids[rows])


@dataclass(frozen=True)
class Retrieval:
    """One call of the retrieval routine: queries, gallery, relevant and excluded items."""

    queries: Side
    gallery: Side
    relevance: Relevance
    exclude: Relevance | None = None


@dataclass
class TaskOutput:
    """One task's results rows (without identity columns), ranks rows and notes to warn."""

    rows: list[dict]
    ranks: list[pd.DataFrame]
    notes: list[str]


def images_side(embedded: EmbeddedSet, image_ids: np.ndarray) -> Side:
    """Images ``image_ids``; their ids are the image ids."""
    ids = np.asarray(image_ids, dtype=np.int64)
    return Side(embedded.images[ids], ids, np.full(len(ids), IMAGE, dtype=object), ids)


def captions_side(
    embedded: EmbeddedSet, lang: str, rows: np.ndarray | None = None, offset: int = 0
) -> Side:
    """Captions ``rows`` of one language; their ids are ``offset`` + row."""
    table = embedded.captions[lang]
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    image_ids = table["image_id"].to_numpy(dtype=np.int64)[rows]
    langs = np.full(len(rows), lang, dtype=object)
    return Side(embedded.texts[lang][rows], rows + offset, langs, image_ids)


def concat_sides(sides: Sequence[Side]) -> Side:
    """One gallery of several sides, each row keeping its id."""
    return Side(
        np.concatenate([side.embeddings for side in sides]),
        np.concatenate([side.ids for side in sides]),
        np.concatenate([side.langs for side in sides]),
        np.concatenate([side.image_ids for side in sides]),
    )


def rank_retrievals(
    task: str, retrievals: Sequence[Retrieval], device: str | None = None
) -> pd.DataFrame:
    """Ranks rows (:data:`RANK_COLUMNS` without identity) of one or more retrievals, counted on
    ``device`` (:func:`~xlr.eval.search.relevant_ranks`; None: CUDA when available)."""
    frames = []
    for r in retrievals:
        q, g = r.queries.embeddings, r.gallery.embeddings
        frame = relevant_ranks(q, g, r.relevance, r.exclude, device=device)
        q, g = frame["query_idx"].to_numpy(), frame["relevant_idx"].to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "task": task,
                    "query_idx": r.queries.ids[q],
                    "query_lang": r.queries.langs[q],
                    "query_image_id": r.queries.image_ids[q],
                    "relevant_idx": r.gallery.ids[g],
                    "relevant_lang": r.gallery.langs[g],
                    "relevant_image_id": r.gallery.image_ids[g],
                    "rank": frame["rank"].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _query_ranks(ranks: pd.DataFrame) -> QueryRanks:
    """Group a ranks table of one query set by ``query_idx`` (queries renumbered 0..Q-1)."""
    codes, uniques = pd.factorize(ranks["query_idx"])
    return QueryRanks.from_long(codes, ranks["rank"].to_numpy(), len(uniques))


def metric_rows(
    ranks: pd.DataFrame, ks: Sequence[int], query_lang: str, target_lang: str, group: str
) -> list[dict]:
    """One results row per metric of :func:`xlr.eval.metrics.summarize`."""
    query_ranks = _query_ranks(ranks)
    return [
        {
            "task": ranks["task"].iat[0],
            "query_lang": query_lang,
            "target_lang": target_lang,
            "lang_group": group,
            "metric": metric,
            "value": value,
            "n_queries": query_ranks.n_queries,
        }
        for metric, value in summarize(query_ranks, ks).items()
    ]
