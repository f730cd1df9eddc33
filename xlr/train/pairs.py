"""Which captions of a training pool are parallel: the caption index and the pair graph.

A pair strategy (``cross``, ``multi``, ``hybrid``; :mod:`xlr.train.batching`) pairs a caption in
language ``a`` with its *parallel* caption in ``b``: same image, same ``caption_idx``. Which
pairs a pool holds is data, not an assumption (README, "The LAION subset"). LAION gives each
image one caption in its own language, and the translated release adds ``ENG TEXT``, so a LAION
pool's only pairs are X-en; the generated corpus is parallel in every pair.

:class:`PairGraph` counts, for every pair of training languages, the images captioned in both,
and keeps a pair only if it can fill a batch (``batch_size`` distinct images: a ``cross`` batch
draws all its examples from one pair). A training language left in no kept pair is an error
(:meth:`PairGraph.check`): a pair arm would never train it, yet it would be reported as seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlr.data.imagetext import TARGET_ONLY, target_only
from xlr.langs import UnknownLanguageError, canonical_code


class PairGraphError(ValueError):
    """A pool without the parallel captions a pair strategy needs for one of its languages."""


@dataclass(frozen=True)
class CaptionIndex:
    """One language's captions (or one pair's shared ones) keyed by
    ``image_id * stride + caption_idx``, sorted."""

    keys: np.ndarray  # int64, sorted and unique
    rows: np.ndarray  # int64 positional rows of the table (a pair's: positions in its first
    # language's keys), aligned with keys
    images: np.ndarray  # int64, sorted image ids with at least one caption


def key_range(keys: np.ndarray, images: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop positions in sorted ``keys`` of each image's captions."""
    return (
        np.searchsorted(keys, images * stride, side="left"),
        np.searchsorted(keys, (images + 1) * stride, side="left"),
    )


def key_stride(captions: pd.DataFrame) -> int:
    """The key multiplier that keeps every ``caption_idx`` of an image inside its own range
    (``image_id * stride + caption_idx``, which a negative index would move to another image)."""
    indices = captions["caption_idx"].to_numpy()
    if len(indices) and indices.min() < 0:
        raise ValueError(
            f"captions table has a negative caption_idx ({indices.min()}); caption indices "
            "count an image's captions in a language from 0"
        )
    return int(indices.max(initial=0)) + 1


def query_captions(captions: pd.DataFrame) -> pd.DataFrame:
    """The rows of a table with a positional index that a batch may query or pair: all but the
    ``target_only`` ones (:data:`~xlr.data.imagetext.TARGET_ONLY`; :func:`check_targets_last`
    checks where they sit)."""
    return captions[~target_only(captions)] if TARGET_ONLY in captions else captions


def check_targets_last(queries: CaptionIndex, every: CaptionIndex, stride: int, lang: str) -> None:
    """Refuse a ``target_only`` caption of ``lang`` (a key of ``every`` that ``queries`` lacks)
    placed before a query caption of its image (a lower ``caption_idx``): an image's captions
    in key order must put its queries first, as a mono batch reads them."""
    targets = np.setdiff1d(every.keys, queries.keys, assume_unique=True)
    after = np.searchsorted(queries.keys, targets, side="right")
    inside = after < len(queries.keys)
    early = inside.copy()
    early[inside] = queries.keys[after[inside]] // stride == targets[inside] // stride
    if early.any():
        target = int(targets[early][0])
        query = int(queries.keys[after[early][0]])
        raise ValueError(
            f"captions table: image {target // stride} has a target_only caption in {lang!r} "
            f"at caption_idx {target % stride}, before its query caption {query % stride}; give "
            "target_only captions the highest caption indices "
            "(xlr.data.laion.paraphrase.with_paraphrases does)"
        )


def caption_indexes(
    table: pd.DataFrame, queries: pd.DataFrame, langs: Sequence[str], stride: int
) -> tuple[dict[str, CaptionIndex], dict[str, CaptionIndex]]:
    """``langs``' indexes of the query captions (``queries``, :func:`query_captions` of the
    positional ``table``) and of every caption, ``target_only`` ones included and checked to
    come last (:func:`check_targets_last`); one index serves both when there are none."""
    by_query = language_indexes(queries, langs, stride)
    if queries is table:  # query_captions returns the table itself when nothing is target_only
        return by_query, by_query
    every = language_indexes(table, langs, stride)
    for lang in langs:
        check_targets_last(by_query[lang], every[lang], stride, lang)
    return by_query, every


def sorted_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and how many times each occurs: ``np.unique`` with
    counts without its sort or hash (0.7 s for 7M keys, against milliseconds)."""
    if not len(values):
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[starts], np.diff(np.append(starts, len(values)))


def positional(captions: pd.DataFrame) -> pd.DataFrame:
    """``captions`` with a positional index (0, 1, ...): itself when it has one, so that a large
    pool is not copied for every sampler built on it."""
    index = captions.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return captions
    return captions.reset_index(drop=True)


def language_indexes(
    captions: pd.DataFrame, langs: Sequence[str], stride: int
) -> dict[str, CaptionIndex]:
    """Each of ``langs``' captions of a table with a positional index (:func:`positional`),
    keyed by ``image_id * stride + caption_idx``. The languages are coded once: comparing a
    string column per language took 0.3 s per language at 14M rows."""
    codes, uniques = pd.factorize(captions["lang"])
    keys = captions["image_id"].to_numpy(np.int64) * stride
    keys = keys + captions["caption_idx"].to_numpy(np.int64)
    positions = captions.index.to_numpy(np.int64)
    found = {lang: code for code, lang in enumerate(uniques)}
    return {
        lang: _language_index(keys, positions, codes == found.get(lang, -2), lang, stride)
        for lang in langs
    }


def _language_index(
    keys: np.ndarray, positions: np.ndarray, mask: np.ndarray, lang: str, stride: int
) -> CaptionIndex:
    keys, rows = keys[mask], positions[mask]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    if np.any(np.diff(keys) == 0):
        raise ValueError(
            f"captions table has repeated (image_id, lang={lang!r}, caption_idx) rows; "
            "each caption index must occur once per image and language"
        )
    return CaptionIndex(keys, rows[order], sorted_runs(keys // stride)[0])


def pair_index(
    by_lang: Mapping[str, CaptionIndex], langs: Sequence[str], stride: int
) -> dict[tuple[int, int], CaptionIndex]:
    """For each unordered pair ``(a, b)`` of positions in ``langs`` (``a < b``), the
    (image, caption_idx) keys present in both languages.

    ``rows`` here are positions into the first language's keys; the second language's rows
    are looked up by key.
    """
    shared = {}
    for a in range(len(langs)):
        for b in range(a + 1, len(langs)):
            first, second = by_lang[langs[a]], by_lang[langs[b]]
            keys = np.intersect1d(first.keys, second.keys, assume_unique=True)
            rows = np.searchsorted(first.keys, keys)
            shared[(a, b)] = CaptionIndex(keys, rows, sorted_runs(keys // stride)[0])
    return shared


@dataclass(frozen=True)
class PairGraph:
    """Which language pairs of a pool can fill a batch, and mono's paraphrase targets.

    ``images`` holds every unordered pair of ``langs`` (in ``langs`` order) with the number of
    images that have a parallel caption in both languages; a pair strategy draws a pair only if
    that number reaches ``batch_size``. ``captioned`` holds, per language, the images a mono
    batch may draw (those with a query caption in it), and ``paraphrases`` those of them with a
    second caption in it (``target_only`` round trips included): the only ones for which a
    ``mono`` batch has a text-text target (a LAION pool without
    ``data.laion.translate.paraphrase_via`` has none, so there mono trains the image-text term
    alone).
    """

    langs: tuple[str, ...]
    images: dict[tuple[str, str], int]
    captioned: dict[str, int]
    paraphrases: dict[str, int]
    batch_size: int

    @classmethod
    def from_index(
        cls,
        langs: tuple[str, ...],
        queries: Mapping[str, CaptionIndex],
        every: Mapping[str, CaptionIndex],
        shared: Mapping[tuple[int, int], CaptionIndex],
        stride: int,
        batch_size: int,
    ) -> PairGraph:
        """The graph of an index built by :func:`language_indexes` and :func:`pair_index`:
        ``queries`` and ``shared`` index the query captions, ``every`` all captions
        (``target_only`` ones included)."""
        images = {(langs[a], langs[b]): len(pair.images) for (a, b), pair in shared.items()}
        paraphrases = {}
        for lang in langs:
            ids, counts = sorted_runs(every[lang].keys // stride)
            paraphrases[lang] = int(np.isin(ids[counts > 1], queries[lang].images).sum())
        captioned = {lang: len(queries[lang].images) for lang in langs}
        return cls(langs, images, captioned, paraphrases, batch_size)

    @property
    def drawn(self) -> list[tuple[str, str]]:
        """Pairs with enough images with parallel captions for a batch."""
        return [pair for pair, n in self.images.items() if n >= self.batch_size]

    @property
    def dropped(self) -> list[tuple[str, str]]:
        """Pairs too thin for a batch (on LAION every pair but X-en, with 0 images)."""
        return [pair for pair, n in self.images.items() if n < self.batch_size]

    @property
    def stranded(self) -> list[str]:
        """Languages in no drawn pair: a pair strategy would never train them."""
        paired = {lang for pair in self.drawn for lang in pair}
        return [lang for lang in self.langs if lang not in paired]

    @property
    def mask(self) -> np.ndarray:
        """Drawn pairs as a symmetric bool ``[L, L]`` over ``langs`` (the language sampler's
        ``pairs``)."""
        position = {lang: i for i, lang in enumerate(self.langs)}
        mask = np.zeros((len(self.langs), len(self.langs)), dtype=bool)
        for a, b in self.drawn:
            mask[position[a], position[b]] = mask[position[b], position[a]] = True
        return mask

    def check(self, user: str) -> None:
        """Refuse, naming ``user`` (a strategy or an arm), languages that no pair can train."""
        stranded = self.stranded
        if not stranded:
            return
        reasons = []
        for lang in stranded:
            (a, b), n = max(
                ((pair, n) for pair, n in self.images.items() if lang in pair),
                key=lambda item: item[1],
            )
            reasons.append(
                f"batch_size {self.batch_size} exceeds the {n} images available for pair "
                f"({a!r}, {b!r}), {lang!r}'s largest"
            )
        raise PairGraphError(
            f"{user} draws only language pairs with parallel captions (the same image captioned "
            f"in both) for a whole batch, and {stranded} are in none: {'; '.join(reasons)}. Give "
            "them parallel captions (LAION pairs a language only with English, through ENG "
            "TEXT: keep 'en' in data.train_langs), lower train.batch_size, or drop them from "
            "data.train_langs"
        )

    def describe(self) -> str:
        """What the pair and mono batches get from this pool, in three lines for a notebook."""

        def listed(pairs: list[tuple[str, str]]) -> str:
            return ", ".join(f"{a}-{b} ({self.images[(a, b)]})" for a, b in pairs) or "none"

        targets = {lang: n for lang, n in self.paraphrases.items() if n}
        mono = (
            ", ".join(f"{lang} ({n} of {self.captioned[lang]})" for lang, n in targets.items())
            if targets
            else "none: one caption per image and language, so mono trains image-text only"
        )
        return (
            f"pairs drawn (at least {self.batch_size} images with parallel captions): "
            f"{listed(self.drawn)}\n"
            f"pairs dropped: {listed(self.dropped)}\n"
            f"mono text-text targets (images with a second caption, of those captioned): {mono}"
        )

    def to_frame(self) -> pd.DataFrame:
        """The graph as a ``langs x langs`` table of image counts: images with parallel captions
        in both languages off the diagonal, mono's paraphrase images on it."""
        table = pd.DataFrame(0, index=list(self.langs), columns=list(self.langs))
        for (a, b), n in self.images.items():
            table.loc[a, b] = table.loc[b, a] = n
        for lang, n in self.paraphrases.items():
            table.loc[lang, lang] = n
        table.index.name = "language"
        return table


def present_langs(langs: Sequence[str], captions: pd.DataFrame) -> tuple[str, ...]:
    """Canonical, distinct, non-empty languages that all occur in the table."""
    try:
        codes = tuple(canonical_code(lang) for lang in langs)
    except UnknownLanguageError as err:
        raise ValueError(f"langs: {err}") from None
    if len(set(codes)) != len(codes):
        raise ValueError(f"langs lists a language twice: {list(langs)}")
    present = set(captions["lang"])
    absent = [code for code in codes if code not in present]
    if absent:
        raise ValueError(
            f"langs {absent} have no captions in the table; choose from {sorted(present)}"
        )
    if not codes:
        raise ValueError("langs is empty; pass the training languages")
    return codes


def pair_graph(captions: pd.DataFrame, langs: Sequence[str], batch_size: int) -> PairGraph:
    """The :class:`PairGraph` of ``langs`` in a captions table for batches of ``batch_size``:
    what the pair strategies can draw from a pool, known before any arm trains."""
    table = positional(captions)
    queries = query_captions(table)
    codes = present_langs(langs, queries)
    stride = key_stride(table)
    by_query, every = caption_indexes(table, queries, codes, stride)
    shared = pair_index(by_query, codes, stride)
    return PairGraph.from_index(codes, by_query, every, shared, stride, batch_size)
