"""The retrieval settings of notebook 04, their results tables and their files.

Every setting turns an arm's embeddings into per-query ranks through the one retrieval routine,
:func:`xlr.eval.search.relevant_ranks` (never a dense ``[Q, G]`` matrix), and into metrics through
:mod:`xlr.eval.metrics`. What counts as the same meaning across languages depends on the set's
declaration (:attr:`xlr.data.imagetext.ImageTextSet.parallel`): a *parallel* set's caption ``k``
is a translation of caption ``k`` in every language; an *independent* set's captions share only
their image.

- ``t2i`` per language: captions of the language query the images; relevant: the caption's image.
- ``i2t`` per language: images query the language's captions; relevant: all captions of the
  image in that language.
- ``xt2t`` per ordered language pair (a, b), a != b. Parallel sets: the gallery is the b captions
  with the query's caption index (one per image) and the one relevant item is the translation.
  Independent sets: the gallery is every b caption; relevant: the b captions of the query's image.
- ``paraphrase`` per language: a caption queries the other captions of its language (itself
  excluded); relevant: the image's other captions there. Same-language retrieval, reported on
  its own and never part of a cross-lingual measure; skipped with a note where images have one
  caption (``captions='first'``, XTD10).
- ``multilingual``: a caption queries a pool holding one caption per image per pool language:
  for parallel sets the captions with the query's caption index (one pool per index), for
  independent sets each image's first caption in each language (only those captions query).
  The query itself is excluded; relevant: its image's captions in the other languages, one per
  language. An image queries the first-caption pool; relevant: its caption in each language.
  Two pools, each ranked on its own: every study language (task ``multilingual``, target
  ``all``) and the seen languages only (task ``multilingual_seen``, target ``seen``), so a
  seen-only rank distance never counts held-out items (:mod:`xlr.eval.results`).

An encoder that maps every caption of an image, in every language, to the image's vector scores
R@1 = mAP = 1 on every cross-lingual task; in an L-language pool its translations take ranks
1..L-1 in pool order (the tie rule), so its rank distance is L - 2 for caption queries and
L - 1 for image queries: the floor (``tests/test_protocol.py``).

Captions follow ``eval.captions``: ``all`` (every caption is a query and a gallery item) or
``first`` (CLIP_benchmark's Crossmodal-3600 convention, one caption per image and language);
every results row states which.

Two long tables come out (:data:`RESULT_COLUMNS`, :data:`RANK_COLUMNS`). In ranks, caption
positions (``query_idx``, ``relevant_idx``) follow ``ImageTextSet.captions_in(lang, first_only)``
and image positions are image ids; in the multilingual tasks a caption's position is its place in
the concatenation of the study languages' caption lists (seen, then held-out), the same in both
pools. Image queries and items have the language :data:`IMAGE`. Ranks are 1-based in the gallery
the query was ranked against.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlr.config import EvalSection
from xlr.data.imagetext import ImageTextSet
from xlr.eval.embedded import EmbeddedSet, embed_model, first_caption_rows
from xlr.eval.encoders import Encoder
from xlr.eval.results import (
    IMAGE,
    MACRO,
    MULTILINGUAL,
    MULTILINGUAL_SEEN,
    POOL,
    RANK_COLUMNS,
    RESULT_COLUMNS,
    SEEN_POOL,
)
from xlr.eval.retrieval import (
    Retrieval,
    Side,
    TaskOutput,
    captions_side,
    concat_sides,
    images_side,
    metric_rows,
    rank_retrievals,
)
from xlr.eval.search import Relevance

TASKS: tuple[str, ...] = ("t2i", "i2t", "xt2t", "paraphrase", "multilingual")
CROSS_LINGUAL_TASKS: tuple[str, ...] = ("xt2t", "multilingual")  # need the set's declaration


@dataclass(frozen=True)
class LanguageGroups:
    """Seen (fine-tuning) and held-out (zero-shot) languages; every result is reported for both."""

    seen: tuple[str, ...]
    heldout: tuple[str, ...]

    def __post_init__(self) -> None:
        both = sorted(set(self.seen) & set(self.heldout))
        if both:
            raise ValueError(
                f"languages {both} are both seen and held out; list each in one of "
                "data.train_langs and data.heldout_langs"
            )
        if not self.langs:
            raise ValueError("no languages to evaluate: data.train_langs and heldout_langs empty")

    @property
    def langs(self) -> list[str]:
        return list(dict.fromkeys(self.seen + self.heldout))

    def group(self, *langs: str) -> str:
        """``seen`` or ``heldout`` when all ``langs`` are in that group, else ``mixed``."""
        for name, members in (("seen", self.seen), ("heldout", self.heldout)):
            if all(lang in members for lang in langs):
                return name
        return "mixed"


def text_to_image(embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]) -> TaskOutput:
    """``t2i``: each language's captions query every image; relevant: the caption's image."""
    out = TaskOutput([], [], [])
    gallery = images_side(embedded, np.arange(len(embedded.images)))
    for lang in groups.langs:
        queries = captions_side(embedded, lang)
        relevance = Relevance.from_labels(queries.image_ids, gallery.image_ids)
        ranks = rank_retrievals("t2i", [Retrieval(queries, gallery, relevance)], embedded.device)
        out.rows += metric_rows(ranks, ks, lang, IMAGE, groups.group(lang))
        out.ranks.append(ranks)
    return out


def image_to_text(embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]) -> TaskOutput:
    """``i2t``: images with a caption in the language query its captions; relevant: all of the
    image's captions there (CLIP_benchmark's positive pairs)."""
    out = TaskOutput([], [], [])
    for lang in groups.langs:
        gallery = captions_side(embedded, lang)
        queries = images_side(embedded, np.unique(gallery.image_ids))
        relevance = Relevance.from_labels(queries.image_ids, gallery.image_ids)
        ranks = rank_retrievals("i2t", [Retrieval(queries, gallery, relevance)], embedded.device)
        out.rows += metric_rows(ranks, ks, IMAGE, lang, groups.group(lang))
        out.ranks.append(ranks)
    return out


def parallel_positions(queries: pd.DataFrame, gallery: pd.DataFrame) -> np.ndarray:
    """Gallery row of each query's parallel caption (same ``image_id`` and ``caption_idx``),
    -1 where the gallery has none."""
    keys = ["image_id", "caption_idx"]
    index = pd.MultiIndex.from_frame(gallery[keys])
    if not index.is_unique:
        raise ValueError("two captions share an image_id and caption_idx in one language")
    return index.get_indexer(pd.MultiIndex.from_frame(queries[keys]))


def _index_rows(table: pd.DataFrame) -> dict[int, np.ndarray]:
    """Rows of each caption index of one language's captions, in index order."""
    index = table["caption_idx"].to_numpy()
    return {int(k): np.flatnonzero(index == k) for k in np.unique(index)}


def _translation_retrievals(embedded: EmbeddedSet, a: str, b: str) -> list[Retrieval]:
    """Parallel ``xt2t`` a -> b: per caption index, a's captions query b's captions of that index;
    the one relevant item is the translation. Queries without one in b are left out."""
    rows_b = _index_rows(embedded.captions[b])
    out = []
    for k, rows_a in _index_rows(embedded.captions[a]).items():
        if k not in rows_b:
            continue
        positions = parallel_positions(
            embedded.captions[a].iloc[rows_a], embedded.captions[b].iloc[rows_b[k]]
        )
        kept = np.flatnonzero(positions >= 0)
        if len(kept):
            relevance = Relevance(np.arange(len(kept) + 1), positions[kept])
            queries = captions_side(embedded, a, rows_a[kept])
            out.append(Retrieval(queries, captions_side(embedded, b, rows_b[k]), relevance))
    return out


def _same_image_retrievals(embedded: EmbeddedSet, a: str, b: str) -> list[Retrieval]:
    """Independent ``xt2t`` a -> b: a's captions query every b caption; relevant: the b captions
    of the query's image. Queries whose image has no b caption are left out."""
    gallery = captions_side(embedded, b)
    queries = captions_side(embedded, a)
    queries = queries.take(np.flatnonzero(np.isin(queries.image_ids, gallery.image_ids)))
    if not len(queries.ids):
        return []
    relevance = Relevance.from_labels(queries.image_ids, gallery.image_ids)
    return [Retrieval(queries, gallery, relevance)]


def cross_lingual_text(
    embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]
) -> TaskOutput:
    """``xt2t``: every ordered pair (a, b) of different languages, queries in a, gallery in b.

    Parallel sets rank the translation in the gallery of b captions with the query's caption
    index; independent sets rank the image's b captions among every b caption. Queries without a
    relevant item in b are left out (``n_queries`` counts the rest); a pair with no query left is
    skipped with a note.
    """
    out = TaskOutput([], [], [])
    pairs = _translation_retrievals if embedded.parallel else _same_image_retrievals
    for a in groups.langs:
        for b in groups.langs:
            if a == b:
                continue
            retrievals = pairs(embedded, a, b)
            if not retrievals:
                why = f"no {a} caption has a relevant {b} caption"
                out.notes.append(f"xt2t {a}->{b} skipped: {why}")
                continue
            ranks = rank_retrievals("xt2t", retrievals, embedded.device)
            out.rows += metric_rows(ranks, ks, a, b, groups.group(a, b))
            out.ranks.append(ranks)
    return out


def _other_captions_of_the_image(pool: Side) -> Retrieval | None:
    """Pool items that have another item of their image query the pool: relevant, those other
    items; excluded, the query itself. None when no item has a partner."""
    kept = np.flatnonzero(np.bincount(pool.image_ids)[pool.image_ids] > 1)
    if not len(kept):
        return None
    queries = pool.take(kept)
    same_image = Relevance.from_labels(queries.image_ids, pool.image_ids)
    others = same_image.indices != kept[same_image.query_of_pair]
    counts = np.bincount(same_image.query_of_pair[others], minlength=len(kept))
    relevance = Relevance(np.r_[0, np.cumsum(counts)], same_image.indices[others])
    return Retrieval(queries, pool, relevance, Relevance(np.arange(len(kept) + 1), kept))


def paraphrase(embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]) -> TaskOutput:
    """``paraphrase``: per language, a caption queries that language's other captions; relevant:
    the other captions of its image. Same-language retrieval, never a cross-lingual measure."""
    out = TaskOutput([], [], [])
    for lang in groups.langs:
        retrieval = _other_captions_of_the_image(captions_side(embedded, lang))
        if retrieval is None:
            out.notes.append(
                f"paraphrase {lang} skipped: with captions={embedded.convention!r} the set has "
                "one caption per image"
            )
            continue
        ranks = rank_retrievals("paraphrase", [retrieval], embedded.device)
        out.rows += metric_rows(ranks, ks, lang, lang, groups.group(lang))
        out.ranks.append(ranks)
    return out


def _macro_rows(rows: list[dict], groups: LanguageGroups, task: str, pool: str) -> list[dict]:
    """Macro means over caption query languages: seen, held-out, and all (``mixed``) where
    both groups are present."""
    table = pd.DataFrame(rows, columns=["query_lang", "metric", "value", "n_queries"])
    present = [
        (name, langs)
        for name, langs in (("seen", groups.seen), ("heldout", groups.heldout))
        if table["query_lang"].isin(langs).any()
    ]
    everything = [("mixed", groups.langs)] if len(present) == 2 else []
    out = []
    for name, langs in present + everything:
        part = table[table["query_lang"].isin(langs)]
        for metric, values in part.groupby("metric", sort=False):
            out.append(
                {
                    "task": task,
                    "query_lang": MACRO,
                    "target_lang": pool,
                    "lang_group": name,
                    "metric": metric,
                    "value": float(values["value"].mean()),
                    "n_queries": int(values["n_queries"].sum()),
                }
            )
    return out


def caption_offsets(embedded: EmbeddedSet, langs: Sequence[str]) -> dict[str, int]:
    """Where each language's caption list starts in the concatenation of ``langs``' lists: the
    multilingual tasks' caption numbering."""
    sizes = [len(embedded.captions[lang]) for lang in langs]
    return dict(zip(langs, np.r_[0, np.cumsum(sizes)[:-1]].tolist(), strict=True))


def pool_selections(embedded: EmbeddedSet, langs: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """The caption rows of each pool, per language: one caption per image per language.

    Parallel sets: one pool per caption index, holding the captions of that index (so a query
    meets exactly its translations). Independent sets: one pool of each image's first caption.
    """
    if not embedded.parallel:
        return [{lang: first_caption_rows(embedded.captions[lang]) for lang in langs}]
    by_lang = {lang: _index_rows(embedded.captions[lang]) for lang in langs}
    indices = sorted(set().union(*by_lang.values()))
    empty = np.empty(0, dtype=np.int64)
    return [{lang: by_lang[lang].get(k, empty) for lang in langs} for k in indices]


def _pool_side(embedded: EmbeddedSet, rows: dict[str, np.ndarray], offsets: dict[str, int]) -> Side:
    """The pool of ``rows`` per language, captions numbered by ``offsets``."""
    return concat_sides(
        [captions_side(embedded, lang, part, offsets[lang]) for lang, part in rows.items()]
    )


def _multilingual_pool(
    embedded: EmbeddedSet,
    groups: LanguageGroups,
    ks: Sequence[int],
    task: str,
    langs: Sequence[str],
    pool_label: str,
) -> TaskOutput:
    """One multilingual task over the pool of ``langs`` (module docstring)."""
    out = TaskOutput([], [], [])
    offsets = caption_offsets(embedded, groups.langs)
    pools = [_pool_side(embedded, rows, offsets) for rows in pool_selections(embedded, langs)]
    retrievals = [r for r in map(_other_captions_of_the_image, pools) if r is not None]
    if retrievals:
        caption_ranks = rank_retrievals(task, retrievals, embedded.device)
        out.ranks.append(caption_ranks)
        for lang in langs:
            ranks = caption_ranks[caption_ranks["query_lang"] == lang]
            if ranks.empty:
                out.notes.append(f"{task}: no {lang} caption has a translation in the pool")
                continue
            out.rows += metric_rows(ranks, ks, lang, pool_label, groups.group(lang))
        out.rows += _macro_rows(out.rows, groups, task, pool_label)
    else:
        out.notes.append(f"{task}: no caption has a translation in the pool of {list(langs)}")
    first = {lang: first_caption_rows(embedded.captions[lang]) for lang in langs}
    gallery = _pool_side(embedded, first, offsets)
    queries = images_side(embedded, np.unique(gallery.image_ids))
    relevance = Relevance.from_labels(queries.image_ids, gallery.image_ids)
    image_ranks = rank_retrievals(task, [Retrieval(queries, gallery, relevance)], embedded.device)
    out.rows += metric_rows(image_ranks, ks, IMAGE, pool_label, groups.group(*langs))
    out.ranks.append(image_ranks)
    return out


def multilingual_pool(
    embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]
) -> TaskOutput:
    """``multilingual`` and ``multilingual_seen``: captions and images query a pool of one
    caption per image per language, over every study language and over the seen ones only.

    Metrics per query language (``image`` for image queries), then macro means over caption
    languages. The seen-only pool needs two seen languages; with fewer it is skipped with a note.
    """
    out = _multilingual_pool(embedded, groups, ks, MULTILINGUAL, groups.langs, POOL)
    if len(groups.seen) < 2:
        out.notes.append(f"{MULTILINGUAL_SEEN} skipped: it needs two seen languages")
        return out
    seen = _multilingual_pool(embedded, groups, ks, MULTILINGUAL_SEEN, groups.seen, SEEN_POOL)
    return TaskOutput(out.rows + seen.rows, out.ranks + seen.ranks, out.notes + seen.notes)


TASK_FUNCTIONS = {
    "t2i": text_to_image,
    "i2t": image_to_text,
    "xt2t": cross_lingual_text,
    "paraphrase": paraphrase,
    "multilingual": multilingual_pool,
}


def check_eval_set(
    eval_set: ImageTextSet, groups: LanguageGroups, tasks: Sequence[str] = ()
) -> None:
    """Refuse an empty set, one without captions in a requested language, or one that does not
    declare whether its captions are parallel when a cross-lingual task needs to know."""
    if len(eval_set) == 0 or eval_set.captions.empty:
        raise ValueError(
            f"eval set {eval_set.name!r} is empty ({len(eval_set)} images, "
            f"{len(eval_set.captions)} captions); check its loader or data.synthetic.eval_images"
        )
    missing = [lang for lang in groups.langs if lang not in set(eval_set.captions["lang"])]
    if missing:
        raise ValueError(
            f"eval set {eval_set.name!r} has no captions in {missing} (it has "
            f"{sorted(eval_set.langs)}); drop them from data.train_langs/heldout_langs, or pass "
            "only the languages the set has"
        )
    needs = [task for task in tasks if task in CROSS_LINGUAL_TASKS]
    if needs and eval_set.parallel is None:
        raise ValueError(
            f"eval set {eval_set.name!r} does not declare whether its captions are parallel "
            f"across languages, which {needs} need; its loader must build the ImageTextSet with "
            "parallel=True (caption k is a translation of caption k: XTD10, Multi30K, the "
            "generated eval pool) or parallel=False (independent captions: Crossmodal-3600)"
        )


def _with_identity(frame: pd.DataFrame, identity: dict, columns: Sequence[str]) -> pd.DataFrame:
    for name, value in identity.items():
        frame[name] = value
    frame["seed"] = frame["seed"].astype("Int64")
    frame["base_seed"] = frame["base_seed"].astype("int64")
    return frame[list(columns)]


def evaluate_arm(
    model: Encoder | EmbeddedSet,
    eval_set: ImageTextSet,
    seen_langs: Sequence[str],
    heldout_langs: Sequence[str],
    tasks: Sequence[str] | None = None,
    eval_cfg: EvalSection | None = None,
    arm: str = "model",
    seed: int | None = None,
    base_seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the retrieval ``tasks`` (default ``eval_cfg.tasks``) of one arm on one eval set.

    ``model`` is an encoder (embedded through the cache in ``cache_dir``), or ``eval_set``
    already embedded in its study languages under ``eval_cfg.captions``: the positive control
    ranks copies of one model's embeddings (:mod:`xlr.eval.planted`) without encoding the set
    again per copy. Returns the long results table (:data:`RESULT_COLUMNS`) and the ranks table
    (:data:`RANK_COLUMNS`). ``seed`` is None for the ``zeroshot`` arm (the base itself), stored
    as a missing value in the nullable ``seed`` column. Notes on skipped pairs are warned.
    """
    eval_cfg = eval_cfg or EvalSection()
    tasks = list(tasks or eval_cfg.tasks)
    unknown = [task for task in tasks if task not in TASK_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown retrieval tasks {unknown}; choose from {list(TASKS)}")
    groups = LanguageGroups(tuple(seen_langs), tuple(heldout_langs))
    check_eval_set(eval_set, groups, tasks)
    if isinstance(model, EmbeddedSet):
        embedded = model
        if embedded.convention != eval_cfg.captions or set(embedded.captions) != set(groups.langs):
            raise ValueError(
                f"{eval_set.name}: the embeddings hold captions {embedded.convention!r} in "
                f"{sorted(embedded.captions)}; eval.captions is {eval_cfg.captions!r} and the "
                f"study languages are {sorted(groups.langs)}: embed the set with those"
            )
    else:
        key = (arm, base_seed, seed)
        embedded = embed_model(model, eval_set, groups.langs, eval_cfg.captions, key, cache_dir)
    rows, ranks = [], []
    for task in tasks:
        output = TASK_FUNCTIONS[task](embedded, groups, eval_cfg.recall_at)
        rows += output.rows
        ranks += output.ranks
        for note in output.notes:
            warnings.warn(f"{eval_set.name}: {note}", stacklevel=2)
    identity = {"arm": arm, "seed": seed, "base_seed": base_seed, "benchmark": eval_set.name}
    results = pd.DataFrame(rows).assign(captions=eval_cfg.captions)
    return (
        _with_identity(results, identity, RESULT_COLUMNS),
        _with_identity(pd.concat(ranks, ignore_index=True), identity, RANK_COLUMNS),
    )


def xt2t_matrix(results: pd.DataFrame, metric: str = "R@1") -> pd.DataFrame:
    """Query language x target language matrix of an ``xt2t`` metric (mean over the arms,
    seeds and benchmarks left in ``results``; filter first to see one). The diagonal is empty:
    same-language retrieval is the ``paraphrase`` task."""
    part = results[(results["task"] == "xt2t") & (results["metric"] == metric)]
    if part.empty:
        raise ValueError(f"no xt2t rows with metric {metric!r} in these results")
    langs = list(dict.fromkeys([*part["query_lang"], *part["target_lang"]]))
    matrix = part.pivot_table(index="query_lang", columns="target_lang", values="value")
    return matrix.reindex(index=langs, columns=langs)
