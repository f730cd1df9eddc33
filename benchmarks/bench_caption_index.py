"""Indexing a fine-tuning pool's captions by language, as every batch sampler does when an arm
starts (:func:`xlr.train.pairs.language_indexes`): languages coded once and each image's
captions counted off the sorted keys, against the plain alternative, a string comparison per
language and ``np.unique`` of the image ids, over the same table.

The real study's pool is 900k images in 8 languages, twice that with round-trip paraphrases
(``data.laion.translate.paraphrase_via``). A shared arm's sampler indexes all its languages at
once; an adapters arm builds one sampler per language, on every rank (``--one-by-one``: eight
one-language indexes, each over the whole table, on both sides).

    python benchmarks/bench_caption_index.py [--images 900000] [--round-trips] [--one-by-one]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from timing import best_times

from xlr.train.pairs import CaptionIndex, key_stride, language_indexes

LANGS = ["en", "de", "fr", "es", "it", "ru", "zh", "ja"]


def pool(images: int, round_trips: bool) -> pd.DataFrame:
    """One caption per image and language, in a shuffled order (as pools are stored); with
    ``round_trips``, a second one each."""
    ids = np.repeat(np.arange(images), len(LANGS))
    table = pd.DataFrame(
        {"image_id": ids, "lang": np.tile(np.array(LANGS, dtype=object), images),
         "caption_idx": 0}
    )  # fmt: skip
    if round_trips:
        table = pd.concat([table, table.assign(caption_idx=1)], ignore_index=True)
    order = np.random.default_rng(0).permutation(len(table))
    return table.iloc[order].reset_index(drop=True)


def plain(captions: pd.DataFrame, langs: list[str], stride: int) -> dict[str, CaptionIndex]:
    """The plain index: one string comparison over the table per language, np.unique per
    language."""
    indexes = {}
    for lang in langs:
        part = captions[captions["lang"] == lang]
        keys = part["image_id"].to_numpy(np.int64) * stride + part["caption_idx"].to_numpy(np.int64)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        rows = part.index.to_numpy(np.int64)[order]
        indexes[lang] = CaptionIndex(keys, rows, np.unique(keys // stride))
    return indexes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=900_000)
    parser.add_argument("--round-trips", action="store_true")
    parser.add_argument("--one-by-one", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    captions = pool(args.images, args.round_trips)
    stride = key_stride(captions)
    results = {}

    calls = [[lang] for lang in LANGS] if args.one_by_one else [LANGS]

    def coded() -> None:
        results["coded"] = {}
        for langs in calls:
            results["coded"] |= language_indexes(captions, langs, stride)

    def per_language() -> None:
        results["plain"] = {}
        for langs in calls:
            results["plain"] |= plain(captions, langs, stride)

    t_coded, t_plain = best_times([coded, per_language], args.repeats)
    for lang in LANGS:
        ours, theirs = results["coded"][lang], results["plain"][lang]
        for field in ("keys", "rows", "images"):
            if not np.array_equal(getattr(ours, field), getattr(theirs, field)):
                raise AssertionError(f"the two indexes differ in {lang} {field}")
    print(f"{len(captions):,} captions ({args.images:,} images x {len(LANGS)} languages"
          f"{' x 2' if args.round_trips else ''}), {len(calls)} call(s), "
          f"best of {args.repeats}")  # fmt: skip
    print(f"plain {t_plain:.2f} s  coded {t_coded:.2f} s  coded/plain {t_coded / t_plain:.2f}")


if __name__ == "__main__":
    main()
