"""Batch strategies of the training arms: which captions and languages share a contrastive batch.

A training example is (image, query caption in language ``a``, target caption in language ``b``);
the strategies differ only in how ``a`` and ``b`` are chosen (README, "The arms"):

- ``mono``: one language ``l`` per batch, ``a = b = l``; the target is another caption of the same
  image in ``l`` (a different ``caption_idx``; a ``target_only`` round trip of a LAION pool,
  :mod:`xlr.data.laion.paraphrase`, counts, though it is never a query). An image with a single
  caption in ``l`` has no target: :attr:`Batch.has_target` is ``False`` there and the text-text
  loss skips the row.
- ``cross``: one ordered pair ``a != b`` per batch; the target is the *parallel* caption (same
  image, same ``caption_idx``, never a ``target_only`` one) in ``b``.
- ``multi``: every example draws its own ordered pair ``a != b`` (mixed in-batch negatives).
  ``a == b`` is excluded so that ``multi`` differs from ``cross`` only in how languages are mixed
  within a batch, not in the kind of positive pair.
- ``hybrid``: each step is a ``mono`` batch with probability ``alpha``, else a ``cross`` batch.

Languages are drawn with p(l) proportional to n_l^tau, n_l the number of captions of ``l`` in the
table (tau = 0 uniform, tau = 1 proportional to size). Ordered pairs are drawn with
p(a, b) proportional to p(a) p(b) over the pairs the table can fill (:class:`PairGraph`).

Which pairs exist is data (:mod:`xlr.train.pairs`): a pair is drawn only when at least
``batch_size`` images have parallel captions in both languages, so on LAION (one caption per
image plus ``ENG TEXT``) only X-en pairs are drawn. In a fully parallel pool (the generated
corpus) every pair is kept and p(a, b) is the plain product off the diagonal, so query and target
languages share one marginal.

Every batch is a pure function of (strategy, table, languages, batch size, alpha, tau, seed,
step): its generator is ``np.random.default_rng([seed, step])``. Resuming a checkpoint at step
``s`` therefore replays exactly the batches an uninterrupted run would have seen, at no cost.
Images are sampled without replacement within a batch, so in-batch negatives are never the
positive's own image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from xlr.train.pairs import (
    CaptionIndex,
    PairGraph,
    caption_indexes,
    key_range,
    key_stride,
    pair_index,
    positional,
    present_langs,
    query_captions,
)

Strategy = Literal["mono", "cross", "multi", "hybrid"]
BatchKind = Literal["mono", "cross", "multi"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PAIR_STRATEGIES: tuple[str, ...] = ("cross", "multi", "hybrid")  # those that pair two languages


def language_probabilities(counts: Mapping[str, int], tau: float) -> dict[str, float]:
    """Sampling probabilities p(l) proportional to ``counts[l] ** tau``, in ``counts`` order.

    ``tau`` = 0 gives every language the same share, 1 the share of its size; values between
    temper the long tail (XLM-R samples its languages with 0.3, mBERT with 0.7).
    """
    if not counts:
        raise ValueError("language_probabilities needs at least one language in counts")
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    sizes = np.array([counts[lang] for lang in counts], dtype=np.float64)
    if np.any(sizes <= 0):
        empty = [lang for lang in counts if counts[lang] <= 0]
        raise ValueError(f"languages {empty} have no examples; drop them from the language list")
    # Weights in log space: n ** tau overflows float64 for large n and tau.
    log_weights = tau * np.log(sizes)
    weights = np.exp(log_weights - log_weights.max())
    probs = weights / weights.sum()
    return dict(zip(counts, probs.tolist(), strict=True))


@dataclass(frozen=True)
class LanguageSampler:
    """Draws languages from p(l), and ordered pairs of distinct languages among ``pairs``."""

    langs: tuple[str, ...]
    probs: np.ndarray  # p(l), aligned with langs, sums to one
    pairs: np.ndarray | None = None  # bool [L, L], symmetric: pairs that may be drawn; None: all

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], tau: float, pairs: np.ndarray | None = None
    ) -> LanguageSampler:
        """The sampler with p(l) proportional to ``counts[l] ** tau``, drawing only ``pairs``."""
        probs = language_probabilities(counts, tau)
        return cls(tuple(probs), np.array(list(probs.values())), pairs)

    @property
    def pair_probs(self) -> np.ndarray:
        """p(a, b) proportional to p(a) p(b) over the drawable pairs off the diagonal, zero
        elsewhere: ``[L, L]``."""
        joint = np.outer(self.probs, self.probs)
        np.fill_diagonal(joint, 0.0)
        if self.pairs is not None:
            joint = np.where(self.pairs, joint, 0.0)
        total = joint.sum()
        if total <= 0:
            raise ValueError(
                f"pairs of distinct languages need at least two that may be paired, got "
                f"{self.langs}"
            )
        return joint / total

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` language indices (positions in :attr:`langs`) drawn i.i.d. from p(l)."""
        return rng.choice(len(self.langs), size=size, p=self.probs)

    def draw_pairs(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` ordered pairs ``[size, 2]`` of distinct language indices, from p(a, b)."""
        flat = rng.choice(len(self.langs) ** 2, size=size, p=self.pair_probs.ravel())
        return np.stack(np.divmod(flat, len(self.langs)), axis=1)


@dataclass(frozen=True)
class Batch:
    """One step's examples as positions into the captions table, plus their texts.

    ``query_rows`` / ``target_rows`` are positional row indices (``iloc``) into the captions
    table; ``target_rows`` is -1 and ``target_texts`` is ``None`` where an example has no target
    (a ``mono`` image with a single caption in its language). The caller fetches images by
    ``image_ids``.
    """

    step: int
    kind: BatchKind
    image_ids: np.ndarray  # int64 [B]
    query_rows: np.ndarray  # int64 [B]
    target_rows: np.ndarray  # int64 [B], -1 where there is no target
    query_langs: tuple[str, ...]
    target_langs: tuple[str, ...]
    query_texts: list[str]
    target_texts: list[str | None]

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def has_target(self) -> np.ndarray:
        """Boolean mask ``[B]``: rows that take part in the text-text loss."""
        return self.target_rows >= 0

    def shard(self, rank: int, world_size: int) -> Batch:
        """This rank's contiguous slice of the global batch.

        Rank order matches ``all_gather``'s concatenation, so the loss over gathered shards sees
        the same global batch, in the same order, as one process would.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..world_size-1 (world_size={world_size})")
        if len(self) % world_size:
            raise ValueError(
                f"batch_size {len(self)} does not split over world_size {world_size}; "
                "choose a batch_size divisible by the number of processes"
            )
        per = len(self) // world_size
        part = slice(rank * per, (rank + 1) * per)
        return Batch(
            step=self.step,
            kind=self.kind,
            image_ids=self.image_ids[part],
            query_rows=self.query_rows[part],
            target_rows=self.target_rows[part],
            query_langs=self.query_langs[part],
            target_langs=self.target_langs[part],
            query_texts=self.query_texts[part],
            target_texts=self.target_texts[part],
        )


class BatchSampler:
    """The batch of any step of one strategy, computed from an index built once over the table.

    ``batch(step)`` is pure: call it in any order, from any step (checkpoint resume), on every
    rank (then take :meth:`Batch.shard`), and get the same examples. ``graph`` is the table's
    :class:`PairGraph` for a pair strategy (None for ``mono``): its ``dropped`` pairs are never
    drawn.
    """

    def __init__(
        self,
        strategy: Strategy,
        captions: pd.DataFrame,
        langs: Sequence[str],
        batch_size: int,
        seed: int,
        alpha: float = 0.5,
        tau: float = 0.0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if batch_size < 2:
            raise ValueError(
                f"batch_size must be at least 2 (in-batch negatives), got {batch_size}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0 (numpy seed sequences), got {seed}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha is the share of mono steps and must be in [0, 1], got {alpha}")
        self.strategy = strategy
        self.batch_size = batch_size
        self.seed = seed
        self.alpha = alpha
        self.captions = positional(captions)
        queries = query_captions(self.captions)
        self.langs = _checked_langs(langs, queries, strategy)
        self._stride = key_stride(self.captions)
        self._lang_column = self.captions["lang"].to_numpy()
        self._text_column = self.captions["caption"].to_numpy()
        # mono's targets are drawn from every caption, target_only ones too
        self._by_lang, self._all_by_lang = caption_indexes(
            self.captions, queries, self.langs, self._stride
        )
        if strategy in ("mono", "hybrid"):
            self._check_size(
                {f"language {lang!r}": len(self._by_lang[lang].images) for lang in self.langs}
            )
        self._shared: dict[tuple[int, int], CaptionIndex] = {}
        self.graph: PairGraph | None = None
        if strategy != "mono":
            self._shared = pair_index(self._by_lang, self.langs, self._stride)
            self.graph = PairGraph.from_index(
                self.langs, self._by_lang, self._all_by_lang, self._shared, self._stride,
                batch_size,
            )  # fmt: skip
            self.graph.check(f"strategy {strategy!r}")
        self.sampler = LanguageSampler.from_counts(
            {lang: len(self._by_lang[lang].keys) for lang in self.langs},
            tau,
            None if self.graph is None else self.graph.mask,
        )

    def _check_size(self, available: Mapping[str, int]) -> None:
        unit, smallest = min(available.items(), key=lambda item: item[1])
        if smallest < self.batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} exceeds the {smallest} images available for "
                f"{unit} (images are not repeated within a batch); lower batch_size or drop "
                "that language from langs"
            )

    def batch(self, step: int) -> Batch:
        """The batch of training step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        rng = np.random.default_rng([self.seed, step])
        kind: BatchKind
        if self.strategy == "hybrid":
            kind = "mono" if rng.random() < self.alpha else "cross"
        else:
            kind = self.strategy
        if kind == "mono":
            return self._mono(step, rng)
        if kind == "cross":
            pairs = np.repeat(self.sampler.draw_pairs(rng, 1), self.batch_size, axis=0)
            images = rng.choice(self._pair(*pairs[0]).images, self.batch_size, replace=False)
        else:
            pairs = self.sampler.draw_pairs(rng, self.batch_size)
            images = self._distinct_images(pairs, rng)
        return self._parallel(step, kind, pairs, images, rng)

    def _mono(self, step: int, rng: np.random.Generator) -> Batch:
        lang = self.langs[int(self.sampler.draw(rng, 1)[0])]
        index, every = self._by_lang[lang], self._all_by_lang[lang]
        images = rng.choice(index.images, self.batch_size, replace=False)
        start, stop = key_range(index.keys, images, self._stride)
        query = start + rng.integers(0, stop - start)
        # An image's query captions come first among all its captions (check_targets_last checks),
        # so the query sits at the same offset in both indexes.
        first, last = key_range(every.keys, images, self._stride)
        n_captions = last - first
        # A uniformly chosen *other* caption: shift by 1..n-1 positions, cyclically.
        shift = 1 + rng.integers(0, np.maximum(n_captions - 1, 1))
        target = first + (query - start + shift) % n_captions
        target_rows = np.where(n_captions > 1, every.rows[target], -1)
        return self._batch(step, "mono", images, index.rows[query], target_rows)

    def _pair(self, a: int, b: int) -> CaptionIndex:
        return self._shared[(min(a, b), max(a, b))]

    def _distinct_images(self, pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One image per example, uniform over those eligible for its pair and not yet taken.

        Rejection sampling: redraw while the image is taken. It ends because every drawn pair has
        at least batch_size images, and costs O(batch_size) draws while batches are small next to
        the pool, instead of a pass over the pool per example.
        """
        taken: set[int] = set()
        images = np.empty(len(pairs), dtype=np.int64)
        for i, (a, b) in enumerate(pairs):
            eligible = self._pair(a, b).images
            image = int(eligible[rng.integers(len(eligible))])
            while image in taken:
                image = int(eligible[rng.integers(len(eligible))])
            taken.add(image)
            images[i] = image
        return images

    def _parallel(
        self,
        step: int,
        kind: BatchKind,
        pairs: np.ndarray,
        images: np.ndarray,
        rng: np.random.Generator,
    ) -> Batch:
        """Queries in each example's language a, targets their parallel captions in b."""
        query_rows = np.empty(len(images), dtype=np.int64)
        target_rows = np.empty(len(images), dtype=np.int64)
        for a, b in np.unique(pairs, axis=0):
            chosen = np.flatnonzero((pairs[:, 0] == a) & (pairs[:, 1] == b))
            shared = self._pair(a, b)
            start, stop = key_range(shared.keys, images[chosen], self._stride)
            keys = shared.keys[start + rng.integers(0, stop - start)]
            query_rows[chosen] = self._rows(self.langs[a], keys)
            target_rows[chosen] = self._rows(self.langs[b], keys)
        return self._batch(step, kind, images, query_rows, target_rows)

    def _rows(self, lang: str, keys: np.ndarray) -> np.ndarray:
        index = self._by_lang[lang]
        return index.rows[np.searchsorted(index.keys, keys)]

    def _batch(
        self,
        step: int,
        kind: BatchKind,
        images: np.ndarray,
        query_rows: np.ndarray,
        target_rows: np.ndarray,
    ) -> Batch:
        langs, texts = self._lang_column, self._text_column
        has_target = target_rows >= 0
        safe_rows = np.where(has_target, target_rows, query_rows)
        return Batch(
            step=step,
            kind=kind,
            image_ids=images.astype(np.int64),
            query_rows=query_rows,
            target_rows=target_rows,
            query_langs=tuple(langs[query_rows].tolist()),
            target_langs=tuple(langs[safe_rows].tolist()),
            query_texts=texts[query_rows].tolist(),
            target_texts=[
                text if keep else None
                for text, keep in zip(texts[safe_rows].tolist(), has_target, strict=True)
            ],
        )


def _checked_langs(langs: Sequence[str], captions: pd.DataFrame, strategy: str) -> tuple[str, ...]:
    """:func:`xlr.train.pairs.present_langs`, enough of them for the strategy."""
    codes = present_langs(langs, captions)
    if strategy != "mono" and len(codes) < 2:
        raise ValueError(
            f"strategy {strategy!r} pairs distinct languages and needs at least two in langs, "
            f"got {list(codes)}; use strategy 'mono' for a single language"
        )
    return codes
