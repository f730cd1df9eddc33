"""Notebook 01's audits of the evaluation sets: identical captions across languages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlr.config import SyntheticSection
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.overview import identical_across_languages
from xlr.data.synthetic import generate_corpus, load_pool


def captioned(rows: list[tuple[int, str, int, str]]) -> ImageTextSet:
    captions = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    images = ArrayImages(np.zeros((3, 2, 2, 3), dtype=np.uint8))
    return ImageTextSet("set", ["a", "b", "c"], images, captions, parallel=False)


def test_identical_texts_of_one_image_in_two_languages_are_counted() -> None:
    """Image 0's en and de captions are one text (both counted, with a second en caption that
    differs); image 1 has one text in en and fr, but fr is not a study language; image 2's twins
    are its own two en captions, not two languages; the same text on two images is no tie of
    translations."""
    table = identical_across_languages(
        {
            "set": captioned(
                [
                    (0, "en", 0, "Taxi"), (0, "de", 0, "Taxi"), (0, "en", 1, "A taxi"),
                    (1, "en", 0, "Paris"), (1, "fr", 0, "Paris"), (1, "de", 0, "Ein Bild"),
                    (2, "en", 0, "Hi"), (2, "en", 1, "Hi"), (2, "de", 0, "A taxi"),
                ]
            )
        },
        ["en", "de"],
    )  # fmt: skip
    row = table.loc["set"]
    assert (row["captions"], row["identical"], row["images"]) == (8, 2, 1)
    assert row["share"] == 2 / 8 and row["example"] == "de/en: 'Taxi'"
    empty = identical_across_languages({"set": captioned([(0, "en", 0, "x")])}, ["de"]).loc["set"]
    assert (empty["captions"], empty["identical"], empty["example"]) == (0, 0, None)
    assert np.isnan(empty["share"])


def test_the_generated_corpus_has_no_identical_translations(tmp_path: Path) -> None:
    """As the audit's doc and notebook 01 say: its languages' captions never share a text."""
    cfg = SyntheticSection(pretrain_images=50, finetune_images=10, eval_images=60)
    corpus = generate_corpus(cfg, tmp_path / "corpus", progress=False)
    pools = {name: load_pool(corpus, name) for name in ("eval", "val")}
    table = identical_across_languages(pools, cfg.langs)
    assert (table["captions"] > 0).all() and (table["identical"] == 0).all()
