"""Exact search and exact relevant ranks against brute-force torch, with deliberate ties; the one
faiss build they run on."""

import importlib.metadata
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import xlr.eval.search as search_module
from xlr.eval.search import (
    RANK_BYTES_PER_BIN,
    RANK_BYTES_PER_SCORE,
    Relevance,
    approximate_index,
    approximate_recall,
    gpu_available,
    rank_chunk_size,
    relevant_ranks,
    search,
)
from xlr.faiss_builds import import_faiss, installed_faiss

CHECKOUT = Path(__file__).resolve().parents[1]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def tied_data() -> tuple[np.ndarray, np.ndarray]:
    """Gallery with blocks of identical rows (exact score ties) and queries equal to them."""
    rng = np.random.default_rng(0)
    gallery = unit_rows(rng, 400, 24)
    gallery[100:140] = gallery[5]  # 41 copies: more than k + TIE_MARGIN for small k
    gallery[300:303] = gallery[7]
    gallery[399] = gallery[7]
    queries = unit_rows(rng, 60, 24)
    queries[:10] = gallery[5]
    queries[10:15] = gallery[7]
    return queries, gallery


def torch_scores(queries: np.ndarray, gallery: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(queries) @ torch.from_numpy(gallery).T


def dense_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every gallery item per query under (-score, index), via a stable sort."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks


@pytest.mark.parametrize("k", [1, 5, 17, 40])
def test_search_equals_stable_torch_topk_with_ties(tied_data, k):
    queries, gallery = tied_data
    result = search(queries, gallery, k, use_gpu=False)
    scores = torch_scores(queries, gallery)
    expected = torch.sort(scores, dim=1, descending=True, stable=True)
    np.testing.assert_array_equal(result.indices, expected.indices[:, :k].numpy())
    np.testing.assert_allclose(result.scores, expected.values[:, :k].numpy(), atol=1e-5)
    assert result.indices.dtype == np.int64 and result.scores.dtype == np.float32


def test_full_ranking_differs_from_torch_only_at_rounding_level_near_ties(tied_data):
    """faiss and torch round differently in the last bit, so distinct near-equal scores may swap
    places; exact ties (duplicate rows) may not, as the k <= 40 cases above show."""
    queries, gallery = tied_data
    result = search(queries, gallery, len(gallery), use_gpu=False)
    scores = torch_scores(queries, gallery)
    expected = torch.sort(scores, dim=1, descending=True, stable=True)
    rows, cols = np.nonzero(result.indices != expected.indices.numpy())
    swapped = scores.numpy()[rows, result.indices[rows, cols]] - expected.values.numpy()[rows, cols]
    assert np.abs(swapped).max(initial=0) < 1e-6
    assert len(rows) < 0.001 * result.indices.size


def test_search_ties_go_to_lower_index(tied_data):
    queries, gallery = tied_data
    top = search(queries[:1], gallery, 3, use_gpu=False).indices[0]
    np.testing.assert_array_equal(top, [5, 100, 101])


def test_hand_built_ranks_with_ties():
    a, b, c = np.eye(3, dtype=np.float32)
    gallery = np.stack([b, a, c, a, (a + b) / np.sqrt(2)]).astype(np.float32)
    queries = np.stack([a, b]).astype(np.float32)
    relevance = Relevance.from_lists([[3, 1, 0], [4]])
    table = relevant_ranks(queries, gallery, relevance, device="cpu")
    # query a: items 1 and 3 tie at 1.0 (1 first), item 4 at 0.707, items 0 and 2 tie at 0
    assert table["rank"].tolist() == [2, 1, 4, 2]
    assert table["query_idx"].tolist() == [0, 0, 0, 1]
    assert table["relevant_idx"].tolist() == [3, 1, 0, 4]


@pytest.mark.parametrize("chunk_size", [1, 3, 17, 60, 1000])
def test_chunked_ranks_equal_dense_ranks(tied_data, chunk_size):
    queries, gallery = tied_data
    rng = np.random.default_rng(1)
    relevance = Relevance.from_labels(rng.integers(0, 30, 60), rng.integers(0, 30, 400))
    table = relevant_ranks(queries, gallery, relevance, chunk_size=chunk_size, device="cpu")
    expected = dense_ranks(torch_scores(queries, gallery).numpy())
    np.testing.assert_array_equal(
        table["rank"], expected[table["query_idx"], table["relevant_idx"]]
    )
    assert len(table) == len(relevance.indices)


@pytest.mark.parametrize("divisor", [32, 10**9])  # the default; one match a slice
def test_a_collapsed_tower_ranks_by_index_in_slices_of_matches(monkeypatch, divisor):
    """Every caption embedded alike (a collapsed text tower): every item of a row shares one
    bin, and the tie matches (candidates x pairs) are counted slice by slice; the ranks are
    the tie order's, 1 + the items before it by index, excluded ones left out."""
    monkeypatch.setattr(search_module, "MATCH_SLICE_DIVISOR", divisor)
    same = np.tile(unit_rows(np.random.default_rng(3), 1, 8), (50, 1))
    relevance = Relevance.from_lists([[q + 30, q, q + 21] for q in range(20)])
    exclude = Relevance.from_lists([[] if q == 8 else [q + 20] for q in range(20)])
    table = relevant_ranks(same[:20], same, relevance, exclude=exclude, chunk_size=7)
    left_out = np.array([q + 20 if q != 8 else 99 for q in table["query_idx"]])
    expected = 1 + table["relevant_idx"] - (left_out < table["relevant_idx"])
    np.testing.assert_array_equal(table["rank"], expected)


def test_memory_budget_sets_chunk_size(tied_data):
    queries, gallery = tied_data
    per_query = RANK_BYTES_PER_SCORE * 400 + RANK_BYTES_PER_BIN * 400  # 400 bins for 400 items
    assert rank_chunk_size(400, per_query * 7) == 7
    assert rank_chunk_size(10**6, 1) == 1
    # a chunk's histogram counts in int32: 21 rows of 10**8 scores fit, 22 would not
    assert rank_chunk_size(10**8, 2**62) == (2**31 - 1) // 10**8 == 21
    relevance = Relevance.from_lists([[i % 400, (i * 7 + 1) % 400] for i in range(60)])
    small = relevant_ranks(queries, gallery, relevance, memory_budget_bytes=per_query * 7)
    whole = relevant_ranks(queries, gallery, relevance, chunk_size=60)
    np.testing.assert_array_equal(small["rank"], whole["rank"])


def test_single_relevant_rank_agrees_with_search(tied_data):
    queries, gallery = tied_data
    targets = np.random.default_rng(2).integers(0, 400, 60)
    ranks = relevant_ranks(queries, gallery, Relevance.from_lists(targets[:, None]))["rank"]
    top = search(queries, gallery, 10, use_gpu=False).indices
    np.testing.assert_array_equal(ranks <= 10, (top == targets[:, None]).any(axis=1))


def test_exclude_removes_items_from_the_ranking():
    rng = np.random.default_rng(3)
    pool = unit_rows(rng, 50, 8)
    labels = np.arange(50) // 5  # 10 images, 5 captions each; query every caption against pool
    relevance_all = Relevance.from_labels(labels, labels)
    keep = relevance_all.indices != relevance_all.query_of_pair
    counts = np.bincount(relevance_all.query_of_pair[keep], minlength=50)
    relevance = Relevance(np.concatenate([[0], np.cumsum(counts)]), relevance_all.indices[keep])
    itself = Relevance.from_lists(np.arange(50)[:, None])
    table = relevant_ranks(pool, pool, relevance, exclude=itself, chunk_size=7, device="cpu")
    scores = torch_scores(pool, pool).numpy()
    np.fill_diagonal(scores, -np.inf)
    expected = dense_ranks(scores)
    np.testing.assert_array_equal(
        table["rank"], expected[table["query_idx"], table["relevant_idx"]]
    )
    assert table["rank"].max() <= 49


def test_relevance_from_labels_matches_positive_pairs():
    rng = np.random.default_rng(4)
    query_labels, gallery_labels = rng.integers(0, 6, 9), rng.integers(0, 6, 20)
    relevance = Relevance.from_labels(query_labels, gallery_labels)
    positive_pairs = query_labels[:, None] == gallery_labels[None, :]
    for q in range(9):
        items = relevance.indices[relevance.offsets[q] : relevance.offsets[q + 1]]
        np.testing.assert_array_equal(items, np.flatnonzero(positive_pairs[q]))


def test_exact_ivf_probe_recovers_exact_top_k():
    rng = np.random.default_rng(5)
    gallery, queries = unit_rows(rng, 600, 16), unit_rows(rng, 40, 16)
    assert approximate_recall(queries, gallery, 10, "IVF4,Flat", "nprobe=4") == 1.0
    assert 0.5 < approximate_recall(queries, gallery, 10, "HNSW16", "efSearch=64") <= 1.0
    # a known answer where the approximate index misses some: the share of each exact top-k
    # found in the approximate one, counted pair by pair
    exact = search(queries, gallery, 10).indices
    _, approx = approximate_index(gallery, "IVF8,Flat", "nprobe=1").search(queries, 10)
    share = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert share < 1.0
    assert approximate_recall(queries, gallery, 10, "IVF8,Flat", "nprobe=1") == pytest.approx(share)


def test_embeddings_may_be_bf16_tensors(tied_data):
    """bf16 tensors are searched as their values: the top 3 by brute force over the bf16
    values (as float64), ties to the lower gallery index."""
    queries, gallery = (torch.from_numpy(x).bfloat16() for x in tied_data)
    scores = queries.double().numpy() @ gallery.double().numpy().T
    index = np.arange(scores.shape[1])
    expected = [np.lexsort((index, -row))[:3] for row in scores]
    np.testing.assert_array_equal(search(queries, gallery, 3).indices, expected)


def test_search_rejects_bad_inputs(tied_data):
    queries, gallery = tied_data
    with pytest.raises(ValueError, match="dimension"):
        search(queries[:, :8] / np.linalg.norm(queries[:, :8], axis=1, keepdims=True), gallery, 1)
    with pytest.raises(ValueError, match="non-empty"):
        search(np.empty((0, 24), np.float32), gallery, 1)
    with pytest.raises(ValueError, match="k must be between"):
        search(queries, gallery, 401)
    with pytest.raises(ValueError, match="k must be between"):
        search(queries, gallery, 0)
    with pytest.raises(ValueError, match="L2-normalised"):
        search(queries * 2, gallery, 1)
    nan_queries = queries.copy()
    nan_queries[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search(nan_queries, gallery, 1)


def test_relevant_ranks_rejects_bad_relevance(tied_data):
    queries, gallery = tied_data
    with pytest.raises(ValueError, match="covers 2 queries"):
        relevant_ranks(queries, gallery, Relevance.from_lists([[1], [2]]))
    with pytest.raises(ValueError, match="outside"):
        relevant_ranks(queries, gallery, Relevance.from_lists([[400]] * 60))
    with pytest.raises(ValueError, match="twice"):
        relevant_ranks(queries, gallery, Relevance.from_lists([[3, 3]] * 60))
    both = Relevance.from_lists([[3]] * 60)
    with pytest.raises(ValueError, match="both relevant"):
        relevant_ranks(queries, gallery, both, exclude=both)
    with pytest.raises(ValueError, match="offsets"):
        Relevance(np.array([0, 2]), np.array([1]))


@pytest.mark.skipif(gpu_available(), reason="checks the error raised where faiss sees no GPU")
def test_asking_for_a_missing_gpu_is_an_error(tied_data):
    queries, gallery = tied_data
    with pytest.raises(ValueError, match="faiss-gpu"):
        search(queries, gallery, 1, use_gpu=True)


def test_ranks_at_first_and_last_position_and_among_duplicates():
    """Known answers: gallery items 0..5 score 0.9, 0.5, 0.5, 0.5, 0.1, -0.2 against the query;
    the duplicates at 0.5 take ranks 2, 3, 4 in index order, and the last item is ranked last."""
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    cosines = np.array([0.9, 0.5, 0.5, 0.5, 0.1, -0.2], dtype=np.float32)
    gallery = np.stack([cosines, np.sqrt(1 - cosines**2)], axis=1).astype(np.float32)
    relevance = Relevance.from_lists([[5, 3, 0, 1, 2]])
    assert relevant_ranks(query, gallery, relevance, device="cpu")["rank"].tolist() == [
        6,
        4,
        1,
        2,
        3,
    ]
    excluded = relevant_ranks(
        query, gallery, relevance, exclude=Relevance.from_lists([[4]]), device="cpu"
    )
    assert excluded["rank"].tolist() == [5, 4, 1, 2, 3]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_engine_and_faiss_agree_on_random_data_with_duplicates(seed):
    """The torch rank engine and faiss's exact search give the same order: every item faiss
    puts at position r of a full ranking has rank r, duplicates (exact ties) included."""
    rng = np.random.default_rng(seed)
    gallery = unit_rows(rng, 300, 16)
    gallery[rng.integers(0, 300, 60)] = gallery[rng.integers(0, 300, 60)]  # duplicate rows
    queries = unit_rows(rng, 25, 16)
    queries[:5] = gallery[rng.integers(0, 300, 5)]
    top = search(queries, gallery, 20, use_gpu=False)
    ranks = relevant_ranks(queries, gallery, Relevance.from_lists(top.indices), device="cpu")
    expected = np.tile(np.arange(1, 21), len(queries))
    tied = np.isclose(top.scores[:, :-1], top.scores[:, 1:], rtol=0, atol=1e-6) & (
        top.scores[:, :-1] != top.scores[:, 1:]
    )  # within rounding, not exact: may swap
    near = np.zeros_like(top.indices, dtype=bool)
    near[:, :-1] |= tied
    near[:, 1:] |= tied
    np.testing.assert_array_equal(ranks["rank"].to_numpy()[~near.ravel()], expected[~near.ravel()])
    assert near.mean() < 0.02


def test_ranks_do_not_depend_on_the_chunk_size_with_exclusions(tied_data):
    queries, gallery = tied_data
    rng = np.random.default_rng(6)
    relevance = Relevance.from_lists([rng.choice(400, 9, replace=False) for _ in range(60)])
    exclude = Relevance.from_lists(
        [np.setdiff1d(rng.choice(400, 4, replace=False), items) for items in
         np.split(relevance.indices, 60)]
    )  # fmt: skip
    tables = [
        relevant_ranks(queries, gallery, relevance, exclude, chunk_size=size, device="cpu")
        for size in (1, 7, 60)
    ]
    for table in tables[1:]:
        np.testing.assert_array_equal(table["rank"], tables[0]["rank"])
    scores = torch_scores(queries, gallery).numpy()
    scores[exclude.query_of_pair, exclude.indices] = -np.inf
    expected = dense_ranks(scores)[relevance.query_of_pair, relevance.indices]
    np.testing.assert_array_equal(tables[0]["rank"], expected)


def test_full_size_chunks_keep_every_row_in_its_own_bins():
    """At 65,536 bins per query a chunk of 256 rows numbers its bins up to 2**24, the last
    integers float32 holds: ranks there still equal a direct count."""
    rng = np.random.default_rng(7)
    gallery = unit_rows(rng, 70_000, 8)
    queries = gallery[rng.integers(0, 70_000, 256)]  # each query also finds itself
    assert rank_chunk_size(len(gallery), 2**40) == 256
    relevance = Relevance.from_lists([rng.choice(70_000, 2, replace=False) for _ in queries])
    table = relevant_ranks(queries, gallery, relevance, memory_budget_bytes=2**40, device="cpu")
    scores = torch_scores(queries, gallery).numpy()
    rows, items = relevance.query_of_pair, relevance.indices
    own = scores[rows, items][:, None]
    before = np.arange(70_000)[None, :] < items[:, None]
    expected = 1 + ((scores[rows] > own) | ((scores[rows] == own) & before)).sum(axis=1)
    np.testing.assert_array_equal(table["rank"], expected)


def _installed(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str]) -> None:
    """Pretend exactly ``versions`` are the installed distributions."""

    def version(name: str) -> str:
        if name in versions:
            return versions[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_two_faiss_builds_are_refused_with_the_command_that_mends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both builds write the one `faiss` module: which one runs would depend on install order."""
    _installed(monkeypatch, {"faiss-cpu": "1.15.1", "faiss-gpu": "1.15.1", "torch": "2.14.1"})
    assert installed_faiss() == {"faiss-cpu": "1.15.1", "faiss-gpu": "1.15.1"}
    with pytest.raises(
        ImportError,
        match=r"faiss-cpu 1\.15\.1 and faiss-gpu 1\.15\.1 are installed together.*"
        r"pip uninstall -y faiss-cpu faiss-gpu, then pip install -e '\.\[cpu\]'",
    ):
        import_faiss()


def test_no_faiss_build_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, {})
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    with pytest.raises(ImportError, match=r"faiss is not installed.*'\.\[cpu\]'.*'\.\[gpu\]'"):
        import_faiss()


def test_this_environment_has_one_faiss_build_and_imports_it() -> None:
    assert len(installed_faiss()) == 1
    assert import_faiss() is sys.modules["faiss"]


def test_the_faiss_builds_are_extras_never_installed_together() -> None:
    """No install command of the project can put both builds in one environment: faiss is in no
    core dependency and no extra but `cpu` and `gpu`, which the Makefile and the conda file pick
    one of."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def faiss_of(requirements: list[str]) -> list[str]:
        return [r for r in requirements if r.lower().startswith("faiss")]

    assert faiss_of(project["dependencies"]) == []
    assert faiss_of(extras["cpu"]) == extras["cpu"] and faiss_of(extras["gpu"]) == extras["gpu"]
    assert [name for name, needs in extras.items() if faiss_of(needs)] == ["cpu", "gpu"]
    self_extras = [r for needs in extras.values() for r in needs if r.startswith("xlr[")]
    assert self_extras and not any("cpu" in r or "gpu" in r for r in self_extras)  # dev: laion
    makefile = (CHECKOUT / "Makefile").read_text()
    assert "-e '.[dev,$(FAISS)]'" in makefile and "FAISS ?= cpu" in makefile
    assert "pip uninstall --quiet --yes faiss-$(OTHER_FAISS)" in makefile
    assert "- -e .[dev,cpu]" in (CHECKOUT / "environment.yml").read_text()
