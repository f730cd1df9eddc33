"""Time exact retrieval: faiss search vs brute-force torch top-k, and chunked vs dense ranks.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py [--threads 1]``.
Every ratio compares two timings from the same run (best of ``--repeats``), so they are
comparable across machines even when the absolute seconds are not.
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
import torch
from timing import best_time

from xlr.eval.search import Relevance, exact_index, relevant_ranks, search


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def torch_top_k(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    scores = torch.from_numpy(queries) @ torch.from_numpy(gallery).T
    return torch.topk(scores, k, dim=1).indices.numpy()


def dense_ranks(queries: np.ndarray, gallery: np.ndarray, relevance: Relevance) -> np.ndarray:
    """Ranks from the full score matrix and a stable sort of every row (the memory-hungry way)."""
    scores = (torch.from_numpy(queries) @ torch.from_numpy(gallery).T).numpy()
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks[relevance.query_of_pair, relevance.indices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rank-queries", type=int, default=2_000)
    parser.add_argument("--relevant", type=int, default=5, help="relevant items per rank query")
    parser.add_argument("--chunk", type=int, default=256, help="queries per rank chunk")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    gallery = unit_rows(rng, args.gallery, args.dim)
    queries = unit_rows(rng, args.queries, args.dim)
    print(
        f"gallery {args.gallery} x {args.dim}, {args.queries} queries, k={args.k}, "
        f"{args.threads} thread(s), best of {args.repeats}"
    )

    ours = search(queries, gallery, args.k, use_gpu=False).indices
    agree = (ours == torch_top_k(queries, gallery, args.k)).mean()
    t_faiss = best_time(lambda: search(queries, gallery, args.k, use_gpu=False), args.repeats)
    t_torch = best_time(lambda: torch_top_k(queries, gallery, args.k), args.repeats)
    t_raw = best_time(
        lambda: exact_index(gallery, use_gpu=False).search(queries, args.k), args.repeats
    )
    print(
        f"search   faiss {t_faiss:.3f} s  torch matmul+topk {t_torch:.3f} s  "
        f"faiss/torch {t_faiss / t_torch:.2f}  index agreement {agree:.6f}  "
        f"(raw faiss without the tie rule {t_raw:.3f} s)"
    )

    rank_queries = queries[: args.rank_queries]
    targets = rng.integers(0, args.gallery, size=(len(rank_queries), args.relevant))
    relevance = Relevance.from_lists([np.unique(row) for row in targets])
    chunked = relevant_ranks(rank_queries, gallery, relevance, chunk_size=args.chunk, device="cpu")
    assert np.array_equal(chunked["rank"], dense_ranks(rank_queries, gallery, relevance))

    def ranks_with(chunk: int) -> object:
        return relevant_ranks(rank_queries, gallery, relevance, chunk_size=chunk, device="cpu")

    t_chunked = best_time(lambda: ranks_with(args.chunk), args.repeats)
    t_one = best_time(lambda: ranks_with(len(rank_queries)), args.repeats)
    t_sort = best_time(lambda: dense_ranks(rank_queries, gallery, relevance), args.repeats)
    print(
        f"ranks    {len(rank_queries)} queries x {args.relevant} relevant: chunked "
        f"({args.chunk}) {t_chunked:.3f} s  one chunk {t_one:.3f} s  dense sort {t_sort:.3f} s"
    )
    print(
        f"         chunked/one-chunk {t_chunked / t_one:.2f}  chunked/dense-sort "
        f"{t_chunked / t_sort:.2f}  peak chunk scores {args.chunk * args.gallery * 4 / 2**20:.0f}"
        f" MiB vs dense {len(rank_queries) * args.gallery * 4 / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
