"""Time exact relevant ranks at Crossmodal-3600 scale against the bare score matmul.

Run: ``.venv/bin/python benchmarks/bench_ranking.py [--queries 256] [--threads 2] [--device cuda]``.
The gallery is the full multilingual pool (259,200 captions, 512-d float32 random unit vectors);
each query has ``--relevant`` relevant items (35: its translations in the other languages of a
36-language pool). Only the first ``--queries`` of the pool's queries are ranked (1024 by
default, 0.4% of them: five chunks of 226 at the default 1 GiB budget, so that counting one
chunk overlaps the next chunk's matmul as in a whole-pool run, and a CPU run takes about a
minute); seconds per query scale linearly.
The ratio compares :func:`relevant_ranks` with the matmul alone over the same query chunks,
in one run, both on ``--device``, each the best of ``--repeats`` calls taken in turn. On the
CPU, peak resident memory of each is measured in a fresh process (``resource.getrusage``), data
generation included; on CUDA, the peak GPU memory torch allocates in one more call of each
(fresh processes would pay the whole pool again on a lent machine's few minutes, and their host
memory would mostly be CUDA's own libraries).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from timing import best_time, best_times

from xlr.eval.search import Relevance, rank_chunk_size, relevant_ranks


def pool_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, Relevance]:
    """Gallery ``[G, d]``, the first queries (pool rows, as in the multilingual task) and their
    relevant items, drawn without building any float64 copy of the gallery."""
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    gallery /= np.sqrt(np.einsum("ij,ij->i", gallery, gallery))[:, None]
    queries = gallery[: args.queries].copy()
    relevance = Relevance.from_lists(
        [np.sort(rng.choice(args.gallery, args.relevant, replace=False)) for _ in queries]
    )
    return gallery, queries, relevance


def matmul_chunks(
    queries: np.ndarray, gallery: np.ndarray, chunk: int, device: str = "cpu"
) -> None:
    """The scores alone, chunk by chunk on ``device``: what any exact ranking has to compute
    (the gallery's copy to the device included, as :func:`relevant_ranks` makes it), into one
    reused buffer, as :func:`relevant_ranks` does: fresh pages would cost the matmul alone
    about as much again on the CPU and flatter the ratio."""
    gallery_t = torch.from_numpy(gallery).to(device).T
    scores = torch.empty(chunk * len(gallery), device=device)
    for start in range(0, len(queries), chunk):
        rows = torch.from_numpy(queries[start : start + chunk]).to(device)
        torch.matmul(rows, gallery_t, out=scores[: len(rows) * len(gallery)].view(len(rows), -1))
    if device.startswith("cuda"):
        torch.cuda.synchronize()  # kernels are asynchronous: wait for them before the clock


def peak_rss_gib(args: argparse.Namespace, ranks: bool) -> tuple[float, float]:
    """Peak resident memory (GiB) of a fresh process after building the data, and after then
    ranking (or only multiplying): the second exceeds the first by what the work adds."""

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB

    torch.set_num_threads(args.threads)
    gallery, queries, relevance = pool_data(args)
    data = peak()
    if ranks:
        relevant_ranks(queries, gallery, relevance, device=args.device)
    else:
        matmul_chunks(queries, gallery, rank_chunk_size(len(gallery), 2**30), args.device)
    return data, peak()


def peak_gpu_gib(work: Callable[[], None]) -> float:
    """Peak GPU memory (GiB) torch's allocator holds during ``work`` beyond what it held before."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    work()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**30


def check_against_sort(
    gallery: np.ndarray, queries: np.ndarray, relevance: Relevance, device: str
) -> None:
    """Ranks of the first queries on ``device`` equal a stable sort of their whole score rows
    (the same torch matmul there, so the same float32 scores)."""
    few = Relevance(relevance.offsets[:5], relevance.indices[: relevance.offsets[4]])
    table = relevant_ranks(queries[:4], gallery, few, device=device)
    rows, columns = torch.from_numpy(queries[:4]).to(device), torch.from_numpy(gallery).to(device)
    scores = (rows @ columns.T).cpu().numpy()
    order = np.argsort(-scores, axis=1, kind="stable")
    rank_of = np.empty_like(order)
    np.put_along_axis(rank_of, order, np.arange(1, len(gallery) + 1)[None, :], axis=1)
    if not np.array_equal(table["rank"], rank_of[few.query_of_pair, few.indices]):
        raise AssertionError(f"ranks on {device} differ from a stable sort of the same scores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=259_200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1024, help="queries ranked (a fraction)")
    parser.add_argument("--relevant", type=int, default=35, help="relevant items per query")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where ranks and matmul run: cpu, cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gallery, queries, relevance = pool_data(args)
    chunk = rank_chunk_size(len(gallery), 2**30)  # relevant_ranks' default budget
    print(
        f"gallery {args.gallery} x {args.dim}, {args.queries} queries "
        f"({args.queries / args.gallery:.2%} of the pool) x {args.relevant} relevant, "
        f"chunk {chunk}, {args.threads} thread(s), {args.device}, best of {args.repeats}"
    )
    check_against_sort(gallery, queries, relevance, args.device)

    def ranks() -> None:
        relevant_ranks(queries, gallery, relevance, device=args.device)
        if torch.get_num_threads() != args.threads:  # the matmul would run at another width
            raise AssertionError(f"ranking left torch at {torch.get_num_threads()} threads")

    t_ranks, t_matmul = best_times(
        [ranks, lambda: matmul_chunks(queries, gallery, chunk, args.device)], args.repeats
    )
    first = Relevance(relevance.offsets[:2], relevance.indices[: relevance.offsets[1]])
    t_one = best_time(
        lambda: relevant_ranks(queries[:1], gallery, first, device=args.device), args.repeats
    )  # one query: mostly the per-call cost (input checks), which a whole pool pays once
    per_query = 1e3 / args.queries
    print(
        f"ranks   {t_ranks * per_query:.3g} ms/query  matmul alone {t_matmul * per_query:.3g} "
        f"ms/query  ranks/matmul {t_ranks / t_matmul:.2f}  "
        f"(whole pool at this speed: {t_ranks / args.queries * args.gallery / 60:.3g} min)"
    )
    print(
        f"        one query {t_one:.2f} s per call; beyond it ranks/matmul "
        f"{(t_ranks - t_one) / t_matmul:.2f}"
    )
    if args.device.startswith("cuda"):
        gpu_ranks = peak_gpu_gib(ranks)
        gpu_matmul = peak_gpu_gib(lambda: matmul_chunks(queries, gallery, chunk, args.device))
        print(f"peak GPU memory  ranks {gpu_ranks:.2f} GiB  matmul alone {gpu_matmul:.2f} GiB")
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        data, rss_ranks = pool.submit(peak_rss_gib, args, True).result()
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        _, rss_matmul = pool.submit(peak_rss_gib, args, False).result()
    print(
        f"peak RSS  data alone {data:.2f} GiB  ranks {rss_ranks:.2f} GiB  "
        f"matmul alone {rss_matmul:.2f} GiB"
    )


if __name__ == "__main__":
    main()
