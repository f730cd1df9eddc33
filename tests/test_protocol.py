"""Known answers of the evaluation protocol (README, "Retrieval and bias measures").

An encoder that maps every caption of an image, in every language and wording, to the image's
own vector is perfect at cross-lingual retrieval: it must score R@1 = mAP = 1 on ``xt2t`` and on
both multilingual pools, for caption and image queries, on parallel and on independent sets.
Its relevant items all tie, so the tie rule (lower gallery index first) puts them at ranks
1, 2, ... in pool order: in an L-language pool a caption query's L - 1 translations take ranks
1..L-1 (rank distance L - 2) and an image query's L captions ranks 1..L (rank distance L - 1).
That is the floor. A per-language offset must then be seen: rank distance up, mAP down.

Vectors are exact in float32: image vectors have 16 entries of +-1/4 (unit norm, and every dot
product a multiple of 1/16), so the invariant encoder's ties are exact ties.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from xlr.analysis.bias import rank_distance_per_query
from xlr.data.imagetext import ArrayImages, ImageStore, ImageTextSet
from xlr.eval.embedded import EmbeddedSet
from xlr.eval.results import MULTILINGUAL, MULTILINGUAL_SEEN
from xlr.eval.tasks import evaluate_arm, pool_selections

SEEN, HELDOUT = ("en", "de", "es"), ("fr", "ja")
LANGS = SEEN + HELDOUT
N_IMAGES, DIM = 6, 16
# Each language's offset along an axis orthogonal to every image vector (the per-language encoder).
OFFSETS = {"en": 0.0, "de": 0.5, "es": 2.0, "fr": 3.0, "ja": 1.0}
CROSS_LINGUAL = ("xt2t", MULTILINGUAL, MULTILINGUAL_SEEN)


def image_vectors() -> np.ndarray:
    """Distinct +-1/4 vectors (plus a zero language axis); images 2m and 2m + 1 differ in four
    entries, so their dot product is exactly 1/2."""
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(N_IMAGES, DIM))
    signs[1::2] = signs[0::2]
    signs[1::2, :4] *= -1
    assert len(np.unique(signs, axis=0)) == N_IMAGES
    return np.pad(signs / 4, ((0, 0), (0, 1))).astype(np.float32)


VECTORS = image_vectors()


class InvariantEncoder:
    """Every caption of image i maps to the image's vector; with ``offset``, each language adds
    its :data:`OFFSETS` along the extra axis (then normalised): a per-language shift."""

    name = "invariant"

    def __init__(self, offset: bool = False) -> None:
        self.offset = offset
        self.checkpoint = f"invariant-offset{offset}"

    def describe(self) -> dict[str, Any]:
        return {"encoder": "InvariantEncoder", "offset": self.offset}

    def encode_images(self, images: ImageStore) -> np.ndarray:
        return np.stack([VECTORS[int(np.asarray(images[i])[0, 0, 0])] for i in range(len(images))])

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
        vectors = VECTORS[[int(text.split()[1]) for text in texts]].astype(np.float64)
        if self.offset:
            vectors[:, DIM] = OFFSETS[lang]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)


def captions_per_image(parallel: bool, image: int, lang: str) -> int:
    """Two captions everywhere in the parallel set; one or two, varying, in the independent set."""
    return 2 if parallel else 1 + (image + LANGS.index(lang)) % 2


def hand_built_set(parallel: bool) -> ImageTextSet:
    pixels = np.zeros((N_IMAGES, 2, 2, 3), dtype=np.uint8)
    pixels[:, 0, 0, 0] = np.arange(N_IMAGES)  # the image id, read back by the encoder
    rows = [
        (i, lang, k, f"{lang} {i} {k}")
        for lang in LANGS
        for i in range(N_IMAGES)
        for k in range(captions_per_image(parallel, i, lang))
    ]
    captions = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    name = "parallel" if parallel else "independent"
    return ImageTextSet(name, [f"{i}.jpg" for i in range(N_IMAGES)], ArrayImages(pixels), captions,
                        parallel=parallel)  # fmt: skip


def evaluate(parallel: bool, offset: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # paraphrase skips single-caption languages
        return evaluate_arm(
            InvariantEncoder(offset), hand_built_set(parallel), SEEN, HELDOUT,
            tasks=["xt2t", "paraphrase", "multilingual"], arm="invariant",
        )  # fmt: skip


@pytest.fixture(scope="module", params=[True, False], ids=["parallel", "independent"])
def parallel(request) -> bool:
    return request.param


@pytest.fixture(scope="module")
def invariant(parallel: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    return evaluate(parallel)


@pytest.fixture(scope="module")
def offset(parallel: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    return evaluate(parallel, offset=True)


def test_invariant_encoder_is_perfect_on_every_cross_lingual_task(invariant) -> None:
    results, _ = invariant
    cross = results[results["task"].isin(CROSS_LINGUAL)]
    assert set(cross["task"]) == set(CROSS_LINGUAL)
    for metric in ("R@1", "mAP"):
        values = cross.loc[cross["metric"] == metric, "value"]
        assert (values == 1.0).all(), metric
    xt2t = cross[(cross["task"] == "xt2t") & (cross["metric"] == "R@1")]
    assert len(xt2t) == len(LANGS) * (len(LANGS) - 1)  # every ordered pair, no diagonal
    kinds = set(cross.loc[cross["task"] == MULTILINGUAL, "query_lang"])
    assert kinds == {*LANGS, "image", "macro"}
    assert (results.loc[results["task"] == "paraphrase", "value"] == 1.0).all()


def test_xt2t_gallery_is_one_caption_per_image_for_parallel_sets(parallel, invariant) -> None:
    _, ranks = invariant
    xt2t = ranks[ranks["task"] == "xt2t"]
    assert (xt2t["relevant_image_id"] == xt2t["query_image_id"]).all()
    per_query = xt2t.groupby(["query_lang", "relevant_lang", "query_idx"]).size()
    if parallel:  # one relevant item, the translation, at rank 1
        assert (per_query == 1).all() and (xt2t["rank"] == 1).all()
    else:  # every b caption of the image is relevant; ties fill ranks 1..n
        assert set(per_query) == {1, 2}
        ranks_per_query = xt2t.groupby(["query_lang", "relevant_lang", "query_idx"])["rank"]
        assert (ranks_per_query.max() == per_query).all()


# (caption, image) rank-distance floors: L - 2 and L - 1 for the 5-language and 3-language pools
FLOORS = {MULTILINGUAL: (3, 4), MULTILINGUAL_SEEN: (1, 2)}
POOL_LANGS = {MULTILINGUAL: LANGS, MULTILINGUAL_SEEN: SEEN}


def test_rank_distance_of_the_invariant_encoder_is_at_its_floor(parallel, invariant) -> None:
    _, ranks = invariant
    for task, (caption_floor, image_floor) in FLOORS.items():
        langs = POOL_LANGS[task]
        part = ranks[ranks["task"] == task]
        rd = rank_distance_per_query(part, pool=langs)
        captions, images = rd[rd["query_kind"] == "caption"], rd[rd["query_kind"] == "image"]
        # parallel: every caption queries (two per image); independent: each image's first
        assert len(captions) == N_IMAGES * len(langs) * (2 if parallel else 1)
        assert len(images) == N_IMAGES
        assert captions["value"].tolist() == [caption_floor] * len(captions)
        assert images["value"].tolist() == [image_floor] * len(images)
        assert set(captions["n_langs"]) == {len(langs) - 1} and set(images["n_langs"]) == {
            len(langs)
        }
        # the tie rule: translations take ranks 1, 2, ... in pool (language) order
        for _, query in part[part["query_lang"] != "image"].groupby("query_idx"):
            query = query.sort_values("rank")
            assert [LANGS.index(lang) for lang in query["relevant_lang"]] == sorted(
                LANGS.index(lang) for lang in query["relevant_lang"]
            )
            assert query["rank"].tolist() == list(range(1, len(query) + 1))


def test_a_per_language_offset_raises_rank_distance_and_lowers_map(offset, invariant) -> None:
    results, ranks = offset
    perfect = invariant[1]
    for task, langs in POOL_LANGS.items():
        rd = rank_distance_per_query(ranks[ranks["task"] == task], pool=langs)
        floor = rank_distance_per_query(perfect[perfect["task"] == task], pool=langs)
        for kind in ("caption", "image"):
            shifted, level = rd[rd["query_kind"] == kind], floor[floor["query_kind"] == kind]
            assert (shifted["value"] >= level["value"].max()).all()
            assert shifted["value"].mean() > level["value"].mean(), (task, kind)
        mean_ap = results[(results["task"] == task) & (results["metric"] == "mAP")]
        assert (mean_ap["value"] <= 1.0).all() and mean_ap["value"].min() < 1.0
    images = results[(results["task"] == MULTILINGUAL) & (results["query_lang"] == "image")]
    assert images.set_index("metric")["value"]["mAP"] < 1.0
    # within one target language the shift is common to every item: xt2t does not move
    xt2t = results[(results["task"] == "xt2t") & (results["metric"] == "R@1")]
    assert (xt2t["value"] == 1.0).all()


def test_the_seen_pool_holds_no_heldout_item(parallel, offset) -> None:
    _, ranks = offset
    eval_set = hand_built_set(parallel)
    tables = {lang: eval_set.captions_in(lang) for lang in LANGS}
    embedded = EmbeddedSet(np.zeros((N_IMAGES, 2)), tables, {}, "all", parallel)
    for pool in pool_selections(embedded, SEEN):
        assert set(pool) == set(SEEN)
    seen = ranks[ranks["task"] == MULTILINGUAL_SEEN]
    assert set(seen["relevant_lang"]) == set(SEEN)
    assert set(seen["query_lang"]) == {*SEEN, "image"}
    n_seen_captions = N_IMAGES * len(SEEN)  # one caption per image per seen language
    assert seen["rank"].max() <= n_seen_captions
    every = ranks[ranks["task"] == MULTILINGUAL]
    assert every["rank"].max() > n_seen_captions  # the offset scatters the full pool further
    with pytest.raises(ValueError, match="not sliced from a larger pool"):
        rank_distance_per_query(every, pool=SEEN)


def test_caption_numbering_is_shared_by_both_pools(invariant) -> None:
    _, ranks = invariant
    captions = ranks[ranks["query_lang"] != "image"]
    key = ["query_idx", "query_lang", "query_image_id"]
    seen = captions[captions["task"] == MULTILINGUAL_SEEN][key].drop_duplicates()
    every = captions[captions["task"] == MULTILINGUAL][key].drop_duplicates()
    assert len(seen.merge(every)) == len(seen)  # a seen caption has one number in both pools


def test_cross_lingual_tasks_need_the_set_to_declare_its_captions() -> None:
    undeclared = replace(hand_built_set(True), parallel=None)
    with pytest.raises(ValueError, match="does not declare whether its captions are parallel"):
        evaluate_arm(InvariantEncoder(), undeclared, SEEN, HELDOUT, tasks=["xt2t"])
    results, _ = evaluate_arm(InvariantEncoder(), undeclared, SEEN, HELDOUT, tasks=["t2i"])
    assert (results["value"] == 1.0).all()
    duplicated = hand_built_set(True).captions.assign(caption_idx=0)
    with pytest.raises(ValueError, match="declared parallel, but two captions share"):
        replace(hand_built_set(True), captions=duplicated)
