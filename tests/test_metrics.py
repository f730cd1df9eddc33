"""Known-answer tests of the rank metrics, and agreement with CLIP_benchmark's recall formula."""

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


def clip_benchmark_hits(scores: torch.Tensor, positive_pairs: torch.Tensor, k: int) -> np.ndarray:
    """CLIP_benchmark's formula re-implemented from its description: a query is a hit when any
    positive pair falls among the top-k gallery indices of its score row; recall is the mean."""
    topk_indices = torch.topk(scores, k, dim=1).indices
    return torch.gather(positive_pairs, 1, topk_indices).any(dim=1).numpy()


@pytest.mark.parametrize("k", [1, 5, 10])
def test_recall_matches_clip_benchmark_formula(k):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((30, 16)).astype(np.float32)
    captions = images[np.repeat(np.arange(30), 3)] + rng.standard_normal((90, 16)) * 2.5
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    captions = (captions / np.linalg.norm(captions, axis=1, keepdims=True)).astype(np.float32)
    caption_image = np.repeat(np.arange(30), 3)
    for queries, gallery, query_labels, gallery_labels in [
        (captions, images, caption_image, np.arange(30)),  # text to image: one positive
        (images, captions, np.arange(30), caption_image),  # image to text: three positives
    ]:
        relevance = Relevance.from_labels(query_labels, gallery_labels)
        table = relevant_ranks(queries, gallery, relevance, device="cpu")
        ours = hit_at_k(QueryRanks.from_frame(table, len(queries)), k)
        scores = torch.from_numpy(queries) @ torch.from_numpy(gallery).T
        positive_pairs = torch.from_numpy(query_labels[:, None] == gallery_labels[None, :])
        theirs = clip_benchmark_hits(scores, positive_pairs, k)
        np.testing.assert_array_equal(ours, theirs)
        assert 0 < theirs.mean() < 1  # the case discriminates
