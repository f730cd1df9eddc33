"""Round-trip paraphrases of a LAION fine-tuning pool: a text-text target for ``mono`` batches.

A training example's text-text term pulls a query caption towards a target caption: a ``mono``
batch's target is another caption of the image in the query's language, a pair batch's its
translation (:mod:`xlr.train.batching`). LAION has one caption per image and language, so without
a second one mono batches (and the adapters trained on them) train the image-text term alone
while the pair batches also train the text-text term, and the claims of hybrid against mono
batches would compare objectives as well as batch schedules (README, "The arms").

``data.laion.translate.paraphrase_via`` gives each caption a second one in its own language: its
round trip through a pivot language (``de -> nl -> de``) with the translation model, the usual
way to paraphrase with MT (back-translation). The round trip goes through a pivot rather than
English because most captions of a translated pool were themselves translated from English by
the same model, and their round trip through English would mostly come back word for word.

A round trip is a target only (``target_only``): it is never a query, never paired across
languages, never evaluated, so every arm's image-text term reads the same captions it read
before; only mono's text-text target is new. A round trip that comes back as its own caption
(or empty), or as a validation caption, once case, punctuation and spacing are folded as the
validation split compares captions (:func:`xlr.data.laion.holdout.folded`), is dropped: the
example then has no text-text target, as before, and no validation text is trained on. The
validation split gets none (it is never trained on).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from xlr.data.imagetext import TARGET_ONLY, ImageTextSet
from xlr.data.laion.holdout import folded
from xlr.data.laion.translate import (
    Seq2SeqTranslator,
    TranslationCache,
    model_language,
    translate_texts,
)
from xlr.langs import canonical_code

PARAPHRASE_COLUMNS: tuple[str, ...] = ("image_key", "lang", "caption", "translated_by")


def _identity(pivot: str, lang: str, translator: Seq2SeqTranslator) -> str:
    """``translated_by`` of a round trip: both legs' translators."""
    return f"round trip via {pivot}: {translator.identity(pivot, lang)} | " + (
        translator.identity(lang, pivot)
    )


def paraphrase_pool(
    captions: pd.DataFrame,
    image_keys: Sequence[str],
    langs: Sequence[str],
    translator: Seq2SeqTranslator,
    cache_path: Path,
    held_out: Collection[str] = frozenset(),
) -> pd.DataFrame:
    """Each caption's round trip in ``langs`` through its pivot
    (``translator.settings.pivot``): one row per caption whose round trip, folded, is neither
    its own caption nor one of ``held_out`` (folded validation captions),
    :data:`PARAPHRASE_COLUMNS`. Both legs are cached like translations, so a re-run translates
    nothing twice."""
    settings = translator.settings
    assert settings.paraphrase_via is not None, "paraphrase_pool needs paraphrase_via"
    targets = [canonical_code(lang) for lang in langs]
    for lang in [*targets, *settings.paraphrase_via]:  # every code checked before a model loads
        field = "data.train_langs" if lang in targets else "data.laion.translate.paraphrase_via"
        model_language(settings.family, lang, field)
    rows = []
    with closing(TranslationCache(cache_path)) as cache:
        for lang in targets:
            own = captions[captions["lang"] == lang]
            pivot = settings.pivot(lang)
            there = translate_texts(own["caption"], pivot, translator, cache, source=lang)
            halfway = [text for text in there.values() if text]
            back = translate_texts(halfway, lang, translator, cache, source=pivot)
            who = _identity(pivot, lang, translator)
            round_trip = {text: back.get(pivoted, "") for text, pivoted in there.items()}
            out = own["caption"].map(round_trip)
            out_folded = folded(out)
            kept = (out_folded != "") & (out_folded != folded(own["caption"]))
            kept &= ~out_folded.isin(held_out)
            rows += [
                (image_keys[image_id], lang, text, who)
                for image_id, text in zip(own["image_id"][kept], out[kept], strict=True)
            ]
    return pd.DataFrame(rows, columns=list(PARAPHRASE_COLUMNS))


def with_paraphrases(pool: ImageTextSet, table: pd.DataFrame) -> ImageTextSet:
    """``pool`` with the :func:`paraphrase_pool` rows of ``table`` added, marked
    ``target_only``, with caption indices past every one of the pool (the order
    :class:`~xlr.train.batching.BatchSampler` needs: an image's query captions first), in
    ``table`` order within an image and language. Done in numpy: every process that loads the
    fine-tuning pool pays it (pandas' group-by took 9.9 s at 900k images x 8 languages)."""
    keys = pd.Index(pool.image_keys)
    if not keys.is_unique:
        raise ValueError(
            f"{pool.name}: image keys repeat ({keys[keys.duplicated()][0]!r}), so a round trip "
            "cannot be placed by its image key; run notebook 01 again"
        )
    ids = keys.get_indexer(table["image_key"])
    if np.any(ids < 0):
        raise ValueError(
            f"{pool.name}: round trips of image {table['image_key'][ids < 0].iloc[0]!r}, which "
            "the fine-tuning pool does not hold; run notebook 01 again, which makes them anew"
        )
    codes, langs = pd.factorize(table["lang"])
    past = int(pool.captions["caption_idx"].to_numpy().max(initial=-1)) + 1
    within = _rank_within(ids.astype(np.int64) * max(len(langs), 1) + codes)
    added = pd.DataFrame(
        {
            "image_id": ids,
            "lang": table["lang"].to_numpy(),
            "caption_idx": past + within,
            "caption": table["caption"].to_numpy(),
            "translated_by": table["translated_by"].to_numpy(),
            TARGET_ONLY: True,
        }
    )
    captions = pd.concat([pool.captions.assign(**{TARGET_ONLY: False}), added], ignore_index=True)
    return replace(pool, captions=captions)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Each element's position among the earlier elements of its group (0, 1, ...)."""
    if not len(groups):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    start = np.maximum.accumulate(np.where(starts, np.arange(len(groups)), 0))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - start
    return rank
