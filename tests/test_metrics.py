"""Known-answer tests of the rank metrics, and agreement with CLIP_benchmark's own recall."""

import numpy as np
import pandas as pd
import pytest
import torch

from xlr.eval.metrics import (
    QueryRanks,
    average_precision,
    best_rank,
    hit_at_k,
    mean_recall,
    reciprocal_rank,
    summarize,
)
from xlr.eval.search import Relevance, relevant_ranks


@pytest.fixture()
def hand_ranks() -> QueryRanks:
    """Query 0: relevant at ranks 1 and 3; query 1: at 4; query 2: at 2, 5, 6 (given unsorted)."""
    return QueryRanks.from_long(
        query_idx=np.array([2, 0, 1, 2, 0, 2]), rank=np.array([6, 3, 4, 2, 1, 5])
    )


def test_hand_example_metrics(hand_ranks):
    np.testing.assert_array_equal(best_rank(hand_ranks), [1, 4, 2])
    np.testing.assert_array_equal(hit_at_k(hand_ranks, 1), [1, 0, 0])
    np.testing.assert_array_equal(hit_at_k(hand_ranks, 4), [1, 1, 1])
    np.testing.assert_allclose(mean_recall(hand_ranks, (1, 5)), [1, 0.5, 0.5])
    np.testing.assert_allclose(reciprocal_rank(hand_ranks), [1, 1 / 4, 1 / 2])
    expected_ap = [(1 / 1 + 2 / 3) / 2, 1 / 4, (1 / 2 + 2 / 5 + 3 / 6) / 3]
    np.testing.assert_allclose(average_precision(hand_ranks), expected_ap)


def test_summarize_reports_task_means(hand_ranks):
    summary = summarize(hand_ranks, ks=(1, 5))
    assert summary["R@1"] == pytest.approx(1 / 3)
    assert summary["R@5"] == pytest.approx(1.0)
    assert summary["mean_recall"] == pytest.approx(2 / 3)
    assert summary["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 2) / 3)
    assert set(summary) == {"R@1", "R@5", "mean_recall", "MRR", "mAP"}


def test_perfect_ranking_scores_one():
    ranks = QueryRanks.from_long(np.array([0, 0, 0, 1]), np.array([1, 2, 3, 1]))
    np.testing.assert_array_equal(average_precision(ranks), [1, 1])
    np.testing.assert_array_equal(reciprocal_rank(ranks), [1, 1])


def test_from_frame_reads_relevant_ranks_table():
    frame = pd.DataFrame({"query_idx": [1, 0], "relevant_idx": [7, 9], "rank": [3, 2]})
    np.testing.assert_array_equal(best_rank(QueryRanks.from_frame(frame)), [2, 3])


def test_query_without_relevant_item_is_an_error():
    with pytest.raises(ValueError, match=r"1 of 3 queries have no relevant item \(first: \[1\]\)"):
        QueryRanks.from_long(np.array([0, 2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="no relevant item"):
        QueryRanks.from_long(np.array([0]), np.array([1]), n_queries=2)
    with pytest.raises(ValueError, match="no ranks given"):
        QueryRanks.from_long(np.array([], dtype=int), np.array([], dtype=int))


def test_malformed_ranks_are_errors():
    with pytest.raises(ValueError, match="1-based"):
        QueryRanks.from_long(np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="share a rank"):
        QueryRanks.from_long(np.array([0, 0]), np.array([2, 2]))
    with pytest.raises(ValueError, match="one length"):
        QueryRanks.from_long(np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="n_queries=1"):
        QueryRanks.from_long(np.array([0, 1]), np.array([1, 1]), n_queries=1)
    with pytest.raises(ValueError, match="k must be"):
        hit_at_k(QueryRanks.from_long(np.array([0]), np.array([1])), 0)


class LookupModel:
    """A CLIP-like model for CLIP_benchmark's ``evaluate`` whose "images" and "tokens" are row
    indices into fixed embeddings, so that its own code ranks exactly the vectors ours ranks."""

    def __init__(self, images: np.ndarray, captions: np.ndarray) -> None:
        self.images, self.captions = torch.from_numpy(images), torch.from_numpy(captions)

    def encode_image(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index]

    def encode_text(self, index: torch.Tensor) -> torch.Tensor:
        return self.captions[index]


def clip_benchmark_recall(
    images: np.ndarray, captions: np.ndarray, per_image: int, ks: list[int]
) -> dict[str, float]:
    """CLIP_benchmark 1.6.2's own ``zeroshot_retrieval.evaluate`` on these embeddings: batches
    of images with their captions in image order, as its dataloaders give them."""
    from clip_benchmark.metrics import zeroshot_retrieval  # make env installs 1.6.2

    names = [f"{j}" for j in range(len(captions))]
    batches = [
        (torch.arange(start, min(start + 8, len(images))), [
            names[i * per_image:(i + 1) * per_image]
            for i in range(start, min(start + 8, len(images)))
        ])
        for start in range(0, len(images), 8)
    ]  # fmt: skip

    def tokenizer(texts: list[str]) -> torch.Tensor:
        return torch.tensor([int(text) for text in texts])

    model = LookupModel(images, captions)
    return zeroshot_retrieval.evaluate(
        model, batches, tokenizer, "cpu", amp=False, recall_k_list=ks
    )


def test_recall_matches_clip_benchmark() -> None:
    """Our hit rates equal CLIP_benchmark's own ``evaluate`` (installed by ``make env``) on the
    same embeddings: text-to-image with one positive, image-to-text with three."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((30, 16)).astype(np.float32)
    captions = images[np.repeat(np.arange(30), 3)] + rng.standard_normal((90, 16)) * 2.5
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    captions = (captions / np.linalg.norm(captions, axis=1, keepdims=True)).astype(np.float32)
    caption_image = np.repeat(np.arange(30), 3)
    ks = [1, 5, 10]
    theirs = clip_benchmark_recall(images, captions, 3, ks)
    for name, queries, gallery, query_labels, gallery_labels in [
        ("image_retrieval", captions, images, caption_image, np.arange(30)),  # text to image
        ("text_retrieval", images, captions, np.arange(30), caption_image),  # image to text
    ]:
        relevance = Relevance.from_labels(query_labels, gallery_labels)
        table = relevant_ranks(queries, gallery, relevance, device="cpu")
        for k in ks:
            ours = hit_at_k(QueryRanks.from_frame(table, len(queries)), k).mean()
            assert ours == pytest.approx(theirs[f"{name}_recall@{k}"], abs=1e-7), (name, k)
            assert 0 < ours < 1  # the case discriminates
