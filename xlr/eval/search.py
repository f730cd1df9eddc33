"""Retrieval over L2-normalised float32 embeddings: exact faiss search and exact relevant ranks.

Scores are inner products (cosine similarities, since inputs are unit vectors). One total order
is used everywhere: higher score first, and among exactly equal float32 scores the lower gallery
index first. faiss does not promise that order for ties, so :func:`search` re-sorts what faiss
returns and fetches more rows where a tie straddles the cut-off; :func:`relevant_ranks` counts it
directly. Two items count as tied only when their computed float32 scores are bitwise equal.
Duplicate gallery rows usually are, but not always: a float32 matmul may round the same product
one unit in the last place apart depending on the row's column and the chunk's shape (seen with
chunks of one query), and faiss and torch round differently too, so items within a rounding
error of each other (duplicates included) may be ordered differently by the two routines or by
two chunk sizes.

Approximate indexes (IVF, HNSW through ``faiss.index_factory``) are for scale studies only, and
:func:`approximate_recall` reports how much of the exact top-k they recover.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from xlr.faiss_builds import import_faiss

faiss = import_faiss()

GPU_MAX_K = 2048  # largest k a faiss GPU index selects; larger requests fall back to the CPU
TIE_MARGIN = 16  # extra rows fetched beyond k so that most ties at the cut-off are seen at once
NORM_TOLERANCE = 1e-2  # allowed deviation of an L2 norm from 1 (bf16 outputs cast to float32)
RANK_BYTES_PER_SCORE = 17  # two float32 score buffers, the scaled copy, int32 bin, candidate mask
RANK_BYTES_PER_BIN = 5  # int32 histogram count and the boolean "holds a relevant item" flag
MAX_BINS = 2**16  # histogram bins per query (see _count_ranks)
FLOAT_EXACT_INTEGERS = 2**24  # float32 holds every integer up to this: a chunk's bin numbers
INT32_MAX = 2**31 - 1  # a chunk's scores, counted by its int32 histogram
SCORE_RANGE = 1.03  # |score| bound: rows are unit vectors within NORM_TOLERANCE
MATCH_SLICE_DIVISOR = 32  # tie matches per slice: a chunk's scores / this (_ties_ahead)


@dataclass(frozen=True)
class SearchResult:
    """Top-k of every query: ``scores`` float32 ``[Q, k]`` and gallery ``indices`` int64."""

    scores: np.ndarray
    indices: np.ndarray


@dataclass(frozen=True)
class Relevance:
    """Relevant gallery items of every query in CSR form.

    Query ``q``'s relevant gallery indices are ``indices[offsets[q]:offsets[q + 1]]``; this keeps
    261k-caption pools (Crossmodal-3600) in memory without a dense ``[Q, G]`` boolean matrix.
    """

    offsets: np.ndarray
    indices: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64)
        indices = np.asarray(self.indices, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0:
            raise ValueError("Relevance offsets must be a 1-D array starting at 0 (length Q + 1)")
        if np.any(np.diff(offsets) < 0) or offsets[-1] != len(indices):
            raise ValueError(
                f"Relevance offsets must be non-decreasing and end at len(indices) = "
                f"{len(indices)}, got last offset {offsets[-1]}"
            )
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "indices", indices)

    @property
    def n_queries(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """Number of relevant items per query, int64 ``[Q]``."""
        return np.diff(self.offsets)

    @cached_property
    def query_of_pair(self) -> np.ndarray:
        """Query index of every (query, relevant item) pair, aligned with ``indices``."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.counts)

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int] | np.ndarray]) -> Relevance:
        """Build from one sequence of gallery indices per query."""
        counts = np.array([len(items) for items in lists], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = [np.asarray(items, dtype=np.int64) for items in lists]
        indices = np.concatenate(flat) if flat else np.empty(0, dtype=np.int64)
        return cls(offsets, indices)

    @classmethod
    def from_labels(cls, query_labels: np.ndarray, gallery_labels: np.ndarray) -> Relevance:
        """Relevant = gallery items sharing the query's label (e.g. ``image_id``), index order.

        This is CLIP_benchmark's ``positive_pairs`` matrix without materialising it.
        """
        query_labels = np.asarray(query_labels)
        order = np.argsort(gallery_labels, kind="stable")
        sorted_labels = np.asarray(gallery_labels)[order]
        low = np.searchsorted(sorted_labels, query_labels, side="left")
        counts = np.searchsorted(sorted_labels, query_labels, side="right") - low
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
        return cls(offsets, order[np.repeat(low, counts) + within])


def _as_embeddings(name: str, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Validate a ``[N, d]`` matrix of unit vectors and return it as C-contiguous float32."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()  # numpy has no bf16
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [N, d] matrix, got shape {x.shape}")
    # Row norms without a temporary copy of x (a 259k-row gallery is 0.5 GB), on every torch
    # thread; a NaN or an infinity anywhere makes its row's norm non-finite, so x itself is
    # scanned only then.
    norms = torch.linalg.vector_norm(torch.from_numpy(x), dim=1).numpy()
    if not np.isfinite(norms).all() and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.abs(norms - 1).max() > NORM_TOLERANCE:
        raise ValueError(
            f"{name} rows must be L2-normalised (norms range {norms.min():.4g}..{norms.max():.4g});"
            " apply torch.nn.functional.normalize(x, dim=-1) first"
        )
    return x


def _as_pair(
    queries: np.ndarray | torch.Tensor, gallery: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    q, g = _as_embeddings("queries", queries), _as_embeddings("gallery", gallery)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but gallery has {g.shape[1]}")
    return q, g


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _is_gpu_index(index: faiss.Index) -> bool:
    return hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)


def exact_index(gallery: np.ndarray, use_gpu: bool | None = None) -> faiss.Index:
    """``IndexFlatIP`` over the gallery, on GPU when ``use_gpu`` (default: when one exists)."""
    if use_gpu and not gpu_available():
        raise ValueError("use_gpu=True, but this faiss build sees no GPU; install faiss-gpu")
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    if use_gpu if use_gpu is not None else gpu_available():
        gpu = torch.cuda.current_device() if torch.cuda.is_available() else 0  # this rank's
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu, index)
    return index


def _tie_ordered_top_k(
    index: faiss.Index, queries: np.ndarray, k: int, fetch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k under the tie rule, fetching ``fetch >= k`` rows and more where ties are cut."""
    if fetch > GPU_MAX_K and _is_gpu_index(index):
        index = faiss.index_gpu_to_cpu(index)
    scores, indices = index.search(queries, fetch)
    order = np.lexsort((indices, -scores), axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    indices = np.take_along_axis(indices, order, axis=1)
    if fetch < index.ntotal:
        # If the last fetched score equals the k-th, unfetched items may tie with the k-th too.
        cut = scores[:, fetch - 1] == scores[:, k - 1]
        if cut.any():
            more = min(2 * fetch, index.ntotal)
            scores[cut, :k], indices[cut, :k] = _tie_ordered_top_k(index, queries[cut], k, more)
    return scores[:, :k], indices[:, :k].astype(np.int64)


def search(
    queries: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    use_gpu: bool | None = None,
) -> SearchResult:
    """Exact top-k gallery items by inner product for every query, ties to the lower index.

    ``queries`` ``[Q, d]`` and ``gallery`` ``[G, d]`` are L2-normalised embeddings; ``1 <= k <=
    G``. Runs on a GPU through ``StandardGpuResources`` when faiss has one (``use_gpu=None``).
    """
    q, g = _as_pair(queries, gallery)
    if not 1 <= k <= len(g):
        raise ValueError(f"k must be between 1 and the gallery size {len(g)}, got {k}")
    index = exact_index(g, use_gpu)
    scores, indices = _tie_ordered_top_k(index, q, k, min(len(g), k + TIE_MARGIN))
    return SearchResult(scores, indices)


def approximate_index(
    gallery: np.ndarray | torch.Tensor, factory: str, search_params: str = ""
) -> faiss.Index:
    """A trained CPU faiss index from a factory string, e.g. ``"IVF256,Flat"`` or ``"HNSW32"``.

    ``search_params`` uses faiss's ``ParameterSpace`` syntax, e.g. ``"nprobe=16"`` or
    ``"efSearch=64"``. For scale studies only; report :func:`approximate_recall` beside results.
    """
    g = _as_embeddings("gallery", gallery)
    index = faiss.index_factory(g.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(g)
    index.add(g)
    if search_params:
        faiss.ParameterSpace().set_index_parameters(index, search_params)
    return index


def approximate_recall(
    queries: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    factory: str,
    search_params: str = "",
) -> float:
    """Mean fraction of the exact top-k that the approximate index also returns in its top-k."""
    q, g = _as_pair(queries, gallery)
    exact = search(q, g, k).indices
    _, approx = approximate_index(g, factory, search_params).search(q, k)
    # each row's indices offset by row * G, so one membership test over Q * k keys does every
    # row at once (a [Q, k, k] comparison is 259 GB at Q = 259,200 and k = 1000)
    offset = np.arange(len(q), dtype=np.int64)[:, None] * len(g)
    found = np.isin(approx + offset, exact + offset) & (approx >= 0)  # faiss pads with -1
    return float(found.sum() / (len(q) * k))


def rank_chunk_size(n_gallery: int, memory_budget_bytes: int) -> int:
    """Queries per chunk so that a chunk's ``[chunk, G]`` scores, bins and histogram fit."""
    per_query = RANK_BYTES_PER_SCORE * n_gallery + RANK_BYTES_PER_BIN * _bins_per_query(n_gallery)
    return max(1, min(memory_budget_bytes // per_query, _max_chunk(n_gallery)))


def _max_chunk(n_gallery: int) -> int:
    """Most queries per chunk whose bin numbers float32 holds exactly (256 at 65,536 bins) and
    whose scores an int32 histogram counts."""
    return max(1, min(FLOAT_EXACT_INTEGERS // _bins_per_query(n_gallery), INT32_MAX // n_gallery))


def _bins_per_query(n_gallery: int) -> int:
    """Histogram bins per query: about one per gallery item, between 256 and 65,536."""
    return min(MAX_BINS, max(256, n_gallery))


def _pair_keys(relevance: Relevance, n_gallery: int) -> np.ndarray:
    """One int64 key per (query, item) pair, for set operations between relevance lists."""
    return relevance.query_of_pair * n_gallery + relevance.indices


def _validate_relevance(relevance: Relevance, n_queries: int, n_gallery: int, name: str) -> None:
    if relevance.n_queries != n_queries:
        raise ValueError(f"{name} covers {relevance.n_queries} queries, but there are {n_queries}")
    items = relevance.indices
    if len(items) and (items.min() < 0 or items.max() >= n_gallery):
        raise ValueError(f"{name} refers to gallery indices outside 0..{n_gallery - 1}")
    keys = np.sort(_pair_keys(relevance, n_gallery))
    # sorted neighbours, not np.unique: numpy 2.3+ hashes integers there, 18x slower over the 9M
    # pairs of a Crossmodal-3600 pool (13.4 s against 0.73 s here)
    if (keys[1:] == keys[:-1]).any():
        raise ValueError(f"{name} lists the same gallery item twice for one query")


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the true entries of a 1-D mask, ascending. On the CPU through numpy, whose
    ``flatnonzero`` was 5x faster than ``torch.nonzero`` over a 70M-entry chunk."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.nonzero().squeeze(1)


class _Scratch:
    """Buffers of one chunk's counting, reused chunk after chunk (a later, shorter chunk uses
    their first part). Fresh, a 256-query chunk at Crossmodal-3600 scale asks for about 0.6 GB
    of new pages every chunk, and on the CPU faulting them in cost about as much as the
    arithmetic that fills them (about 55 ms per 265 MB here). The histogram is int32 (a chunk
    holds fewer than 2**31 scores: :func:`_max_chunk`), filled by ``index_add_``: on the CPU
    that took 79 ms where ``torch.bincount``'s fresh int64 output took 110 ms."""

    def __init__(self, n_rows: int, n_gallery: int, device: torch.device) -> None:
        n_scores = n_rows * n_gallery
        self.scaled = torch.empty(n_scores, dtype=torch.float32, device=device)
        self.bins = torch.empty(n_scores, dtype=torch.int32, device=device)
        self.in_wanted = torch.empty(n_scores, dtype=torch.bool, device=device)
        self.histogram = torch.empty(
            n_rows * _bins_per_query(n_gallery), dtype=torch.int32, device=device
        )
        self.ones = torch.ones(1, dtype=torch.int32, device=device).expand(n_scores)


def _count_ranks(
    scores: torch.Tensor,
    rows: torch.Tensor,
    items: torch.Tensor,
    excluded: tuple[torch.Tensor, torch.Tensor],
    scratch: _Scratch,
) -> torch.Tensor:
    """1-based rank of gallery item ``items[p]`` in row ``rows[p]`` of a ``[C, G]`` score chunk.

    A monotone binning of the scores (``SCORE_RANGE`` cut into ``B`` bins per row) turns "how many
    items score higher" into a histogram suffix sum, whatever the number of relevant items per
    query; only the items sharing a bin with a relevant item (about 1% of the gallery) are then
    compared with it exactly, score first and gallery index on ties. (One pass per relevant item
    over the whole row cost 8x the matmul at Crossmodal-3600 scale.) Exactness does not depend
    on where bin edges fall: the binning is a non-decreasing function of the float32 score, so
    an item in a higher bin scores strictly higher. ``excluded`` (rows, items) go to their
    row's first bin, below every real score's bin. ``scratch`` holds the chunk-sized buffers.
    """
    n_rows, n_gallery = scores.shape
    n_scores = n_rows * n_gallery
    n_bins = _bins_per_query(n_gallery)
    scale = (n_bins - 1) / (2 * SCORE_RANGE)
    row_bin_0 = torch.arange(n_rows, device=scores.device, dtype=torch.float32)[:, None] * n_bins
    # Row r's bins are r * B .. r * B + B - 1, in one pass and a cast: exact in float32 while
    # rows x B <= FLOAT_EXACT_INTEGERS (relevant_ranks caps the chunk so).
    scaled = scratch.scaled[:n_scores].view(n_rows, n_gallery)
    torch.add(row_bin_0 + SCORE_RANGE * scale, scores, alpha=scale, out=scaled)
    bins = scratch.bins[:n_scores].view(n_rows, n_gallery).copy_(scaled)  # truncates, as .to()
    bins[excluded] = excluded[0].to(torch.int32) * n_bins
    bins = bins.view(-1)
    pair_bins = bins[rows * n_gallery + items].long()
    histogram = scratch.histogram[: n_rows * n_bins].zero_()
    histogram.index_add_(0, bins, scratch.ones[:n_scores]).cumsum_(0)
    row_end = histogram[(rows + 1) * n_bins - 1]
    higher_bins = row_end - histogram[pair_bins]
    wanted = torch.zeros(n_rows * n_bins, dtype=torch.bool, device=scores.device)
    wanted[pair_bins] = True
    in_wanted = torch.index_select(wanted, 0, bins, out=scratch.in_wanted[:n_scores])
    candidates = _flat_nonzero(in_wanted)  # items sharing a bin
    pair_order = torch.argsort(pair_bins)
    ahead = _ties_ahead(
        scores.view(-1), bins, candidates, pair_order, pair_bins.index_select(0, pair_order),
        rows * n_gallery + items, max(1, n_scores // MATCH_SLICE_DIVISOR),
    )  # fmt: skip
    return 1 + higher_bins + ahead


def _ties_ahead(
    flat: torch.Tensor,
    bins: torch.Tensor,
    candidates: torch.Tensor,
    pair_order: torch.Tensor,
    sorted_bins: torch.Tensor,
    pair_flat: torch.Tensor,
    limit: int,
) -> torch.Tensor:
    """For every pair, how many of the ``candidates`` (flat positions sharing a bin with some
    pair) score above it or tie with a lower gallery index.

    Every candidate is matched with the pairs of its bin (through the pairs sorted by bin,
    ``pair_order``), at most about ``limit`` matches at a time: usually a bin holds one pair and
    the matches are as many as the candidates, one slice; where scores bunch (a collapsed text
    tower puts a row's every item in one bin) they are candidates x pairs per row, which took
    10.8 GiB of peak memory in one go at a 39,600-caption pool with a 1 GiB budget, 1.5 GiB in
    slices. Not quite the budget: there every score is a candidate, whose index (8 bytes a
    score) and a slice's matches (about as much) come on top of ``RANK_BYTES_PER_SCORE``, so a
    collapsed tower may take about twice the budget (budgeting for it would halve every other
    model's chunks).
    """
    ahead = torch.zeros(len(pair_flat), dtype=torch.int64, device=flat.device)
    start, size = 0, limit
    while start < len(candidates):
        part = candidates[start : start + size]
        part_bins = bins.index_select(0, part).long()
        first = torch.searchsorted(sorted_bins, part_bins)
        n_matches = torch.searchsorted(sorted_bins, part_bins, right=True) - first
        fits = int(torch.searchsorted(torch.cumsum(n_matches, 0), limit, right=True))
        if fits < len(part):  # too many matches: this slice's first `fits` only, and smaller
            size = max(1, fits)
            part, first, n_matches = part[:size], first[:size], n_matches[:size]
        else:
            size = min(limit, 2 * size)
        match = torch.repeat_interleave(n_matches)  # candidate of each (candidate, pair) match
        starts = torch.cumsum(n_matches, 0) - n_matches
        within = torch.arange(len(match), device=flat.device) - starts.index_select(0, match)
        cand = part.index_select(0, match)
        pair = pair_order.index_select(0, first.index_select(0, match) + within)
        pair_at = pair_flat.index_select(0, pair)
        cand_scores, pair_scores = flat.index_select(0, cand), flat.index_select(0, pair_at)
        # A bin lies within one row, so flat positions order a tie by gallery index.
        wins = (cand_scores > pair_scores) | ((cand_scores == pair_scores) & (cand < pair_at))
        ahead += torch.bincount(pair[wins], minlength=len(pair_flat))
        start += len(part)
    return ahead


def relevant_ranks(
    queries: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    relevance: Relevance,
    exclude: Relevance | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int = 2**30,
    device: str | None = None,
) -> pd.DataFrame:
    """Exact 1-based rank in the whole gallery of every (query, relevant item) pair.

    rank = 1 + (items scoring strictly higher) + (items scoring equal with a lower gallery index),
    the order of :func:`search`. Scores are computed ``chunk_size`` queries at a time (default:
    as many as fit ``memory_budget_bytes``) with a float32 torch matmul on ``device`` (default:
    CUDA when available), so the ``[Q, G]`` matrix never exists at once; the counting
    (:func:`_count_ranks`) runs there too, and only the ranks come back to the host.
    ``exclude`` lists gallery items to leave out of a query's ranking entirely, e.g. the query
    caption itself in a multilingual pool that contains it. Returns a long table ``query_idx,
    relevant_idx, rank`` (int64) in the pair order of ``relevance``, ready to save as parquet.
    """
    q, g = _as_pair(queries, gallery)
    _validate_relevance(relevance, len(q), len(g), "relevance")
    if exclude is not None:
        _validate_relevance(exclude, len(q), len(g), "exclude")
        if np.isin(_pair_keys(relevance, len(g)), _pair_keys(exclude, len(g))).any():
            raise ValueError("an item is both relevant to and excluded from the same query")
    chunk_size = chunk_size or rank_chunk_size(len(g), memory_budget_bytes)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    chunk_size = min(chunk_size, _max_chunk(len(g)))  # ranks depend on it only through rounding
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gallery_t = torch.from_numpy(g).to(device).T
    pair_queries = torch.from_numpy(relevance.query_of_pair).to(device)
    pair_items = torch.from_numpy(relevance.indices).to(device)
    if exclude is None:
        exclude = Relevance(np.zeros(len(q) + 1, dtype=np.int64), np.empty(0, dtype=np.int64))
    excluded_queries = torch.from_numpy(exclude.query_of_pair).to(device)
    excluded_items = torch.from_numpy(exclude.indices).to(device)
    chunk_ranks = []
    chunk_size = max(1, min(chunk_size, len(q)))
    scratch = _Scratch(chunk_size, len(g), gallery_t.device)
    # Two score buffers: the matmul fills one while the other's chunk is counted.
    score_buffers = [torch.empty(chunk_size * len(g), device=gallery_t.device) for _ in "ab"]
    # On the CPU a chunk's counting (partly single-threaded: cumsum, flatnonzero) runs in a second
    # thread while the next chunk's matmul runs; on a GPU the stream already overlaps them.
    with ThreadPoolExecutor(1) as counter:
        counting: Future | None = None
        for n_chunk, start in enumerate(range(0, len(q), chunk_size)):
            stop = min(start + chunk_size, len(q))
            scores = score_buffers[n_chunk % 2][: (stop - start) * len(g)].view(stop - start, -1)
            torch.matmul(torch.from_numpy(q[start:stop]).to(device), gallery_t, out=scores)
            lo, hi = exclude.offsets[start], exclude.offsets[stop]
            excluded = (excluded_queries[lo:hi] - start, excluded_items[lo:hi])
            lo, hi = relevance.offsets[start], relevance.offsets[stop]
            rows = pair_queries[lo:hi] - start
            if counting is not None:
                chunk_ranks.append(counting.result())
            counting = counter.submit(
                _count_ranks, scores, rows, pair_items[lo:hi], excluded, scratch
            )
            if scores.device.type != "cpu":
                chunk_ranks.append(counting.result())
                counting = None
        if counting is not None:
            chunk_ranks.append(counting.result())
    ranks = torch.cat([chunk.cpu() for chunk in chunk_ranks]).numpy()
    return pd.DataFrame(
        {"query_idx": relevance.query_of_pair, "relevant_idx": relevance.indices, "rank": ranks}
    )
