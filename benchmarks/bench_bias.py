"""Time the bias measures' per-query groupings against the plain pandas code they replaced.

Run: ``.venv/bin/python benchmarks/bench_bias.py [--runs 40 --queries 3000]``.
A multilingual ranks table like notebook 04's (runs x queries x two captions in each of 14
languages, string keys, a missing seed for the zero-shot runs) is validated once as the public
measures do (``xlr.analysis.bias._check_ranks``); then the groupings behind
:func:`xlr.analysis.bias.best_rank_per_language` and
:func:`xlr.analysis.bias.top_languages` are timed against straightforward ``groupby`` /
``sort_values`` code on that same frame, outputs checked equal first. Ratios come from the same
run (best of ``--repeats``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from timing import best_time

from xlr.analysis.bias import _best_per_language, _check_ranks, _top_language

LANGS = ["ar", "de", "en", "es", "fr", "hi", "it", "ja", "nl", "pl", "pt", "ru", "tr", "zh"]
KEYS = ["arm", "seed", "base_seed", "benchmark", "task", "query_idx", "query_lang", "query_kind"]


def ranks_table(runs: int, queries: int, rng: np.random.Generator) -> pd.DataFrame:
    """Two captions per language for every query, at distinct random whole-gallery ranks."""
    per_query = 2 * len(LANGS)
    n = runs * queries * per_query
    run = np.repeat(np.arange(runs), queries * per_query)
    query = np.tile(np.repeat(np.arange(queries), per_query), runs)
    slot = np.tile(np.arange(per_query), runs * queries)
    ranks = np.argsort(rng.random((runs * queries, 4 * per_query)), axis=1)[:, :per_query] + 1
    seed = pd.Series(run % 3, dtype="Int64").mask(run % 5 == 0)  # zero-shot runs: no seed
    return pd.DataFrame(
        {
            "arm": np.array([f"arm{r // 5}" for r in range(runs)], dtype=object)[run],
            "seed": seed,
            "base_seed": run % 5,
            "benchmark": "synthetic",
            "task": "multilingual",
            "query_idx": query,
            "query_lang": np.array(LANGS + ["image"], dtype=object)[query % (len(LANGS) + 1)],
            "query_image_id": query // len(LANGS),
            "relevant_idx": slot + query * per_query,
            "relevant_lang": np.array(LANGS, dtype=object)[slot // 2],
            "relevant_image_id": query // len(LANGS),
            "rank": ranks.reshape(n),
        }
    )


def plain_best(frame: pd.DataFrame) -> pd.DataFrame:
    best = frame.groupby([*KEYS, "relevant_lang"], sort=False, dropna=False)["rank"].min()
    return best.reset_index()


def plain_top(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(other=frame["relevant_lang"] != frame["query_lang"])
    top = frame.sort_values([*KEYS, "rank", "other"]).drop_duplicates(KEYS)
    top = top.rename(columns={"relevant_lang": "top_lang", "rank": "top_rank"})
    return top[[*KEYS, "top_lang", "top_rank"]].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    table = ranks_table(args.runs, args.queries, np.random.default_rng(0))
    print(f"ranks table: {len(table):,} rows ({args.runs} runs x {args.queries} queries)")
    start = time.perf_counter()
    frame = _check_ranks(table)
    print(f"validation (shared by both): {time.perf_counter() - start:.2f} s")
    cases = [
        ("best rank per language", _best_per_language, plain_best),
        ("top language per query", _top_language, plain_top),
    ]
    for name, ours, plain in cases:
        pd.testing.assert_frame_equal(ours(frame), plain(frame))
        t_ours = best_time(lambda f=ours: f(frame), args.repeats)
        t_plain = best_time(lambda f=plain: f(frame), args.repeats)
        ratio = t_ours / t_plain
        print(f"{name}: xlr {t_ours:.2f} s, plain pandas {t_plain:.2f} s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
