"""The four retrieval settings of notebook 04, their results tables and their files.

Every setting turns an arm's embeddings into per-query ranks through the one retrieval routine,
:func:`xlr.eval.search.relevant_ranks` (never a dense ``[Q, G]`` matrix), and into metrics through
:mod:`xlr.eval.metrics`:

- ``t2i`` per language: captions of the language query the images; relevant: the caption's image.
- ``i2t`` per language: images query the language's captions; relevant: all captions of the
  image in that language.
- ``xt2t`` per ordered language pair (a, b): captions in a query captions in b; one relevant
  item, the parallel caption (same image and ``caption_idx``). For a == b the positive is another
  caption of the same image (the query itself left out of the gallery); a set with one caption
  per image has no diagonal, and a warning says so.
- ``multilingual``: a caption, or an image, queries the union of every language's captions; the
  query caption is left out (``exclude``); relevant: the image's captions in every language.

Captions follow ``eval.captions``: ``all`` (every caption is a query and a gallery item) or
``first`` (CLIP_benchmark's Crossmodal-3600 convention, one caption per image and language);
every results row states which.

Two long tables come out (:data:`RESULT_COLUMNS`, :data:`RANK_COLUMNS`). In ranks, ``query_idx``
and ``relevant_idx`` are positions in the task's query list and gallery: caption positions
follow ``ImageTextSet.captions_in(lang, first_only)``, image positions are image ids, and the
multilingual pool concatenates the languages' caption lists in language order (seen, then
held-out), caption queries taking their pool position as ``query_idx``. Image queries and items
have the language :data:`IMAGE`. Ranks are 1-based in the whole gallery.
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
from xlr.eval.encoders import EmbeddingKey, Encoder, cached_embeddings, set_fingerprint
from xlr.eval.metrics import (
    QueryRanks,
    summarize,
)
from xlr.eval.results import (
    IMAGE,
    MACRO,
    POOL,
    RANK_COLUMNS,
    RESULT_COLUMNS,
)
from xlr.eval.search import Relevance, relevant_ranks

TASKS: tuple[str, ...] = ("t2i", "i2t", "xt2t", "multilingual")


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


@dataclass(frozen=True)
class EmbeddedSet:
    """An eval set's embeddings under one captions convention.

    ``captions[lang]`` is ``captions_in(lang, first_only)`` and ``texts[lang]`` its embeddings,
    row for row; ``images`` are indexed by image id.
    """

    images: np.ndarray
    captions: dict[str, pd.DataFrame]
    texts: dict[str, np.ndarray]
    convention: str


@dataclass(frozen=True)
class _Side:
    """Queries or gallery items of one retrieval: embeddings and what each row is."""

    embeddings: np.ndarray
    ids: np.ndarray  # query_idx / relevant_idx as reported
    langs: np.ndarray
    image_ids: np.ndarray


@dataclass
class TaskOutput:
    """One task's results rows (without identity columns), ranks rows and notes to warn."""

    rows: list[dict]
    ranks: list[pd.DataFrame]
    notes: list[str]


def _images_side(embedded: EmbeddedSet, image_ids: np.ndarray) -> _Side:
    ids = np.asarray(image_ids, dtype=np.int64)
    return _Side(embedded.images[ids], ids, np.full(len(ids), IMAGE, dtype=object), ids)


def _captions_side(embedded: EmbeddedSet, lang: str, rows: np.ndarray | None = None) -> _Side:
    table = embedded.captions[lang]
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    image_ids = table["image_id"].to_numpy(dtype=np.int64)[rows]
    langs = np.full(len(rows), lang, dtype=object)
    return _Side(embedded.texts[lang][rows], rows, langs, image_ids)


def _concat_sides(sides: Sequence[_Side]) -> _Side:
    """One gallery of several sides, ids renumbered to positions in it (the pool)."""
    embeddings = np.concatenate([side.embeddings for side in sides])
    langs = np.concatenate([side.langs for side in sides])
    image_ids = np.concatenate([side.image_ids for side in sides])
    return _Side(embeddings, np.arange(len(embeddings)), langs, image_ids)


def _rank(
    task: str,
    queries: _Side,
    gallery: _Side,
    relevance: Relevance,
    exclude: Relevance | None = None,
) -> pd.DataFrame:
    """Ranks rows (:data:`RANK_COLUMNS` without identity) of one retrieval."""
    frame = relevant_ranks(queries.embeddings, gallery.embeddings, relevance, exclude)
    q, g = frame["query_idx"].to_numpy(), frame["relevant_idx"].to_numpy()
    return pd.DataFrame(
        {
            "task": task,
            "query_idx": queries.ids[q],
            "query_lang": queries.langs[q],
            "query_image_id": queries.image_ids[q],
            "relevant_idx": gallery.ids[g],
            "relevant_lang": gallery.langs[g],
            "relevant_image_id": gallery.image_ids[g],
            "rank": frame["rank"].to_numpy(),
        }
    )


def _query_ranks(ranks: pd.DataFrame) -> QueryRanks:
    """Group a ranks table of one query set by ``query_idx`` (queries renumbered 0..Q-1)."""
    codes, uniques = pd.factorize(ranks["query_idx"])
    return QueryRanks.from_long(codes, ranks["rank"].to_numpy(), len(uniques))


def _metric_rows(
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


def text_to_image(embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]) -> TaskOutput:
    """``t2i``: each language's captions query every image; relevant: the caption's image."""
    out = TaskOutput([], [], [])
    gallery = _images_side(embedded, np.arange(len(embedded.images)))
    for lang in groups.langs:
        queries = _captions_side(embedded, lang)
        relevance = Relevance.from_labels(queries.image_ids, gallery.image_ids)
        ranks = _rank("t2i", queries, gallery, relevance)
        out.rows += _metric_rows(ranks, ks, lang, IMAGE, groups.group(lang))
        out.ranks.append(ranks)
    return out


def image_to_text(embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]) -> TaskOutput:
    """``i2t``: images with a caption in the language query its captions; relevant: all of the
    image's captions there (CLIP_benchmark's positive pairs)."""
    out = TaskOutput([], [], [])
    for lang in groups.langs:
        gallery = _captions_side(embedded, lang)
        queries = _images_side(embedded, np.unique(gallery.image_ids))
        relevance = Relevance.from_labels(queries.image_ids, gallery.image_ids)
        ranks = _rank("i2t", queries, gallery, relevance)
        out.rows += _metric_rows(ranks, ks, IMAGE, lang, groups.group(lang))
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


def second_caption_positions(table: pd.DataFrame) -> np.ndarray:
    """Row of the next caption of the same image (cyclic in ``caption_idx``), -1 where the
    image has a single caption: the positive of a same-language ``xt2t`` query."""
    order = np.lexsort((table["caption_idx"].to_numpy(), table["image_id"].to_numpy()))
    image_ids = table["image_id"].to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, image_ids[1:] != image_ids[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    start = np.repeat(starts, sizes)
    within = np.arange(len(order)) - start
    following = order[start + (within + 1) % np.repeat(sizes, sizes)]
    partner = np.empty(len(table), dtype=np.int64)
    partner[order] = np.where(np.repeat(sizes, sizes) > 1, following, -1)
    return partner


def _one_positive(positions: np.ndarray) -> tuple[np.ndarray, Relevance]:
    """Queries that have a positive, and their one-item relevance."""
    kept = np.flatnonzero(positions >= 0)
    return kept, Relevance(np.arange(len(kept) + 1), positions[kept])


def cross_lingual_text(
    embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]
) -> TaskOutput:
    """``xt2t``: every ordered pair (a, b); queries in a, gallery in b, one parallel positive.

    Queries without a parallel caption in b (non-parallel sets) are left out and counted in
    ``n_queries``; a pair with no query left, or a diagonal without second captions, is
    skipped with a note.
    """
    out = TaskOutput([], [], [])
    for a in groups.langs:
        for b in groups.langs:
            same = a == b
            table_a, table_b = embedded.captions[a], embedded.captions[b]
            positions = (
                second_caption_positions(table_a) if same else parallel_positions(table_a, table_b)
            )
            kept, relevance = _one_positive(positions)
            if len(kept) == 0:
                why = "has one caption per image" if same else f"has no caption parallel to {a}"
                out.notes.append(
                    f"xt2t {a}->{b} skipped: with captions={embedded.convention!r} the set {why}"
                )
                continue
            exclude = Relevance(np.arange(len(kept) + 1), kept) if same else None
            queries = _captions_side(embedded, a, kept)
            ranks = _rank("xt2t", queries, _captions_side(embedded, b), relevance, exclude)
            out.rows += _metric_rows(ranks, ks, a, b, groups.group(a, b))
            out.ranks.append(ranks)
    return out


def _macro_rows(rows: list[dict], groups: LanguageGroups) -> list[dict]:
    """Macro means over caption query languages: seen, held-out, and all (``mixed``)."""
    table = pd.DataFrame(rows, columns=["query_lang", "metric", "value", "n_queries"])
    out = []
    for name, langs in (("seen", groups.seen), ("heldout", groups.heldout), ("mixed", None)):
        part = table if langs is None else table[table["query_lang"].isin(langs)]
        if part.empty:
            continue
        for metric, values in part.groupby("metric", sort=False):
            out.append(
                {
                    "task": "multilingual",
                    "query_lang": MACRO,
                    "target_lang": POOL,
                    "lang_group": name,
                    "metric": metric,
                    "value": float(values["value"].mean()),
                    "n_queries": int(values["n_queries"].sum()),
                }
            )
    return out


def _pool_caption_queries(pool: _Side) -> tuple[_Side, Relevance, Relevance]:
    """Pool captions that have another caption of their image: the queries, their relevant
    items (those other captions) and what to exclude (the query itself)."""
    per_image = np.bincount(pool.image_ids)
    kept = np.flatnonzero(per_image[pool.image_ids] > 1)
    queries = _Side(pool.embeddings[kept], kept, pool.langs[kept], pool.image_ids[kept])
    same_image = Relevance.from_labels(queries.image_ids, pool.image_ids)
    others = same_image.indices != kept[same_image.query_of_pair]
    counts = np.bincount(same_image.query_of_pair[others], minlength=len(kept))
    relevance = Relevance(np.r_[0, np.cumsum(counts)], same_image.indices[others])
    return queries, relevance, Relevance(np.arange(len(kept) + 1), kept)


def multilingual_pool(
    embedded: EmbeddedSet, groups: LanguageGroups, ks: Sequence[int]
) -> TaskOutput:
    """``multilingual``: captions and images query the union of every language's captions.

    A caption query's relevant items are the other captions of its image in every language (the
    query itself is excluded from its ranking); an image query's are all its captions. Metrics
    per query language (``image`` for image queries), then macro means over caption languages.
    """
    out = TaskOutput([], [], [])
    pool = _concat_sides([_captions_side(embedded, lang) for lang in groups.langs])
    queries, relevance, exclude = _pool_caption_queries(pool)
    if len(queries.ids):
        caption_ranks = _rank("multilingual", queries, pool, relevance, exclude)
        out.ranks.append(caption_ranks)
    for lang in groups.langs:
        if lang not in set(queries.langs):
            out.notes.append(f"multilingual: no {lang} caption has another caption of its image")
            continue
        ranks = caption_ranks[caption_ranks["query_lang"] == lang]
        out.rows += _metric_rows(ranks, ks, lang, POOL, groups.group(lang))
    out.rows += _macro_rows(out.rows, groups)
    image_queries = _images_side(embedded, np.unique(pool.image_ids))
    image_relevance = Relevance.from_labels(image_queries.image_ids, pool.image_ids)
    image_ranks = _rank("multilingual", image_queries, pool, image_relevance)
    out.rows += _metric_rows(image_ranks, ks, IMAGE, POOL, "mixed")
    out.ranks.append(image_ranks)
    return out


TASK_FUNCTIONS = {
    "t2i": text_to_image,
    "i2t": image_to_text,
    "xt2t": cross_lingual_text,
    "multilingual": multilingual_pool,
}


def check_eval_set(eval_set: ImageTextSet, groups: LanguageGroups) -> None:
    """Refuse an empty set or one without captions in a requested language, before encoding."""
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


def embed_set(
    encoder: Encoder,
    eval_set: ImageTextSet,
    langs: Sequence[str],
    captions: str,
    key: EmbeddingKey,
    cache_dir: str | os.PathLike[str] | None,
) -> EmbeddedSet:
    """Encode the images once and each language's captions in one call, through the cache.

    All of a language's captions are encoded (and cached) whatever the convention; ``first``
    then keeps the first caption's rows, so both conventions share one cache entry.
    """
    images = cached_embeddings(
        cache_dir, key, "images", len(eval_set), lambda: encoder.encode_images(eval_set.images)
    )
    tables, texts = {}, {}
    for lang in langs:
        table = eval_set.captions_in(lang)
        texts_all = cached_embeddings(
            cache_dir,
            key,
            f"text-{lang}",
            len(table),
            lambda table=table, lang=lang: encoder.encode_texts(table["caption"].tolist(), lang),
        )
        if texts_all.shape[1] != images.shape[1]:
            raise ValueError(
                f"{key.arm}: image embeddings have dimension {images.shape[1]} but {lang} caption "
                f"embeddings have {texts_all.shape[1]}; the encoder must map both towers into "
                "one space (check its projection heads, or a stale embedding cache)"
            )
        first = table["caption_idx"] == table.groupby("image_id")["caption_idx"].transform("min")
        keep = first.to_numpy() if captions == "first" else np.ones(len(table), dtype=bool)
        tables[lang] = table[keep].reset_index(drop=True)
        texts[lang] = texts_all[keep]
    return EmbeddedSet(images, tables, texts, captions)


def _with_identity(frame: pd.DataFrame, identity: dict, columns: Sequence[str]) -> pd.DataFrame:
    for name, value in identity.items():
        frame[name] = value
    frame["seed"] = frame["seed"].astype("Int64")
    frame["base_seed"] = frame["base_seed"].astype("int64")
    return frame[list(columns)]


def evaluate_arm(
    encoder: Encoder,
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

    Returns the long results table (:data:`RESULT_COLUMNS`) and the ranks table
    (:data:`RANK_COLUMNS`). ``seed`` is None for the ``zeroshot`` arm (the base itself), stored
    as a missing value in the nullable ``seed`` column. Notes on skipped pairs are warned.
    """
    eval_cfg = eval_cfg or EvalSection()
    tasks = list(tasks or eval_cfg.tasks)
    unknown = [task for task in tasks if task not in TASK_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown retrieval tasks {unknown}; choose from {list(TASKS)}")
    groups = LanguageGroups(tuple(seen_langs), tuple(heldout_langs))
    check_eval_set(eval_set, groups)
    key = EmbeddingKey(
        arm, base_seed, seed, encoder.checkpoint, eval_set.name, set_fingerprint(eval_set)
    )
    embedded = embed_set(encoder, eval_set, groups.langs, eval_cfg.captions, key, cache_dir)
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
    seeds and benchmarks left in ``results``; filter first to see one)."""
    part = results[(results["task"] == "xt2t") & (results["metric"] == metric)]
    if part.empty:
        raise ValueError(f"no xt2t rows with metric {metric!r} in these results")
    langs = list(dict.fromkeys(part["query_lang"]))
    matrix = part.pivot_table(index="query_lang", columns="target_lang", values="value")
    return matrix.reindex(index=langs, columns=langs)
