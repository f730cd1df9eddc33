"""An eval set's embeddings, computed once per arm and shared by every retrieval task.

:func:`embed_set` encodes the images once and each language's captions in one call through the
on-disk cache (:func:`xlr.eval.encoders.cached_embeddings`), then keeps the rows of the captions
convention (``all`` or ``first``). The tasks of :mod:`xlr.eval.tasks` read only the result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlr.data.imagetext import ImageTextSet
from xlr.eval.encoders import EmbeddingKey, Encoder, cached_embeddings, set_fingerprint


@dataclass(frozen=True)
class EmbeddedSet:
    """An eval set's embeddings under one captions convention.

    ``captions[lang]`` is ``captions_in(lang, first_only)`` and ``texts[lang]`` its embeddings,
    row for row; ``images`` are indexed by image id. ``parallel`` is the set's declaration
    (:attr:`xlr.data.imagetext.ImageTextSet.parallel`). ``device`` is where its retrievals are
    ranked: the encoder's (``run.device``), or None where the encoder has none, for CUDA when
    available.
    """

    images: np.ndarray
    captions: dict[str, pd.DataFrame]
    texts: dict[str, np.ndarray]
    convention: str
    parallel: bool | None = None
    device: str | None = None


def first_caption_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of ``table`` (one language's captions) holding each image's smallest caption index:
    one caption per image, CLIP_benchmark's ``first`` convention."""
    first = table["caption_idx"] == table.groupby("image_id")["caption_idx"].transform("min")
    return np.flatnonzero(first.to_numpy())


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
        keep = first_caption_rows(table) if captions == "first" else np.arange(len(table))
        tables[lang] = table.iloc[keep].reset_index(drop=True)
        texts[lang] = texts_all[keep]
    device = getattr(encoder, "device", None)  # ModelEncoder's; a designed encoder has none
    return EmbeddedSet(images, tables, texts, captions, eval_set.parallel, device and str(device))


def embed_model(
    encoder: Encoder,
    eval_set: ImageTextSet,
    langs: Sequence[str],
    captions: str,
    model: tuple[str, int, int | None],
    cache_dir: str | os.PathLike[str] | None,
) -> EmbeddedSet:
    """:func:`embed_set` under the cache key of one model, ``(arm, base_seed, seed)``, its
    checkpoint and the set's content: the embeddings every task of that model reads."""
    arm, base_seed, seed = model
    key = EmbeddingKey(
        arm, base_seed, seed, encoder.checkpoint, eval_set.name, set_fingerprint(eval_set)
    )
    return embed_set(encoder, eval_set, langs, captions, key, cache_dir)
