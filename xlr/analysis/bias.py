"""Language-bias measures of a retrieval run, computed from its saved ranks and results only.

Inputs are the two tables notebook 04 writes, so notebooks 05 and 06 never re-run retrieval:

- the **ranks** table (``results/ranks/*.parquet``): one row per (query, relevant item) with
  :data:`xlr.eval.results.RANK_COLUMNS`; ``rank`` is the 1-based position of that relevant
  item in the gallery the query was ranked against. In the multilingual tasks that gallery is a
  pool of one caption per image per language: ``multilingual`` holds every study language,
  ``multilingual_seen`` the seen ones only. A caption query's relevant items are its
  translations, one in each other pool language (its own language's only pool item is the query
  itself, excluded); an image query (``query_lang`` equal to :data:`xlr.eval.results.IMAGE`) has
  its caption in every pool language.
- the long-form **results** table (``results/retrieval.parquet``) with
  :data:`xlr.eval.results.RESULT_COLUMNS`.

Measures (lower rank distance and divergence mean less language bias):

- maximum rank distance (Huang et al. 2023, as Elmahdy et al. 2024 use it), in ranks, over the
  pool a task was ranked against (never a sub-pool sliced from a larger pool's ranks);
- language preference: which language a query's best-ranked relevant item is in, its share per
  language against uniform and the KL divergence from uniform (nats), and the English-first rate
  of image queries. These depend only on the order of the relevant items, which removing other
  gallery items cannot change, so they may be restricted to fewer languages than were ranked;
- fairness across languages: spread of per-language R@1 and the seen - held-out gap.

Per-query measures come back as tables with a ``value`` column (:data:`QUERY_COLUMNS`), so one
set of summaries serves them all: :func:`macro_mean` per run here, and intervals and paired
tests in :mod:`xlr.analysis.intervals`. Macro means weigh every query
language equally; image and caption queries (``query_kind``) are never mixed. ``seed`` is
missing (``<NA>``) for the zero-shot arm, which has no fine-tuning seed; grouping keeps such rows
and joins match them only to each other, so compare an arm with the zero-shot model by leaving
``seed`` out of the join keys (:func:`xlr.analysis.intervals.compare_arms`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlr.eval.results import IDENTITY_COLUMNS, IMAGE, RESULT_COLUMNS, check_table
from xlr.langs import UnknownLanguageError, canonical_code

RUN_KEYS: tuple[str, ...] = (*IDENTITY_COLUMNS, "task")
QUERY_KEYS: tuple[str, ...] = (*RUN_KEYS, "query_idx")
ENGLISH = "en"
USED_RANK_COLUMNS: tuple[str, ...] = (
    *QUERY_KEYS, "query_lang", "query_image_id", "relevant_lang", "rank",
)  # fmt: skip
# of per-query tables; the image is the unit intervals resample (xlr.analysis.stats)
QUERY_COLUMNS: list[str] = [*QUERY_KEYS, "query_lang", "query_image_id", "query_kind"]
_RUN_KIND = [*RUN_KEYS, "query_kind"]


def _check_ranks(ranks: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of the used rank columns, with ``query_kind`` (image | caption) added."""
    check_table(ranks, USED_RANK_COLUMNS, "ranks")
    frame = ranks[list(USED_RANK_COLUMNS)].copy()
    keys = [*QUERY_KEYS, "query_image_id"]
    null_keys = [c for c in keys if c != "seed" and frame[c].isna().any()]
    if null_keys:
        raise ValueError(
            f"ranks table has missing values in key columns {null_keys}; only ``seed`` may be "
            "missing (the zero-shot arm has no fine-tuning seed)"
        )
    if (frame["rank"] < 1).any():
        raise ValueError(f"ranks are 1-based, got a rank of {frame['rank'].min()}")
    is_image = (frame["query_lang"] == IMAGE).to_numpy()
    frame["query_kind"] = np.array(["caption", IMAGE], dtype=object)[is_image.astype(int)]
    return frame


def _pool(frame: pd.DataFrame, pool: Sequence[str] | None) -> list[str]:
    """The pool's languages (default: every relevant language in ``frame``), at least two."""
    present = sorted(frame["relevant_lang"].unique())
    langs = present if pool is None else sorted(set(pool))
    absent = sorted(set(langs) - set(present))
    if absent:
        raise ValueError(
            f"pool languages {absent} have no relevant item in the ranks table (it has {present})"
        )
    if len(langs) < 2:
        raise ValueError(
            f"a language pool needs at least two languages to compare ranks across, got {langs}"
        )
    return langs


def _checked_pool(
    ranks: pd.DataFrame, pool: Sequence[str] | None
) -> tuple[pd.DataFrame, list[str]]:
    """The validated ranks restricted to the pool's relevant items, and the pool's languages."""
    frame = _check_ranks(ranks)
    langs = _pool(frame, pool)
    return frame[frame["relevant_lang"].isin(langs)], langs


def _query_numbers(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Each row's query number (in first-seen order) and the query columns of every query, one
    row per number.

    Why: a study's ranks run to tens of millions of rows, and grouping them on the seven string
    and nullable query columns dominated notebook 05; numbered once, every later grouping is
    integer work.
    """
    numbers = frame.groupby(QUERY_COLUMNS, sort=False, dropna=False).ngroup().to_numpy()
    seen_before = np.maximum.accumulate(np.concatenate([[-1], numbers[:-1]]))
    first_rows = np.flatnonzero(numbers > seen_before)  # a first-seen number is a new maximum
    return numbers, frame.iloc[first_rows][QUERY_COLUMNS].reset_index(drop=True)


def _numbered_best(
    frame: pd.DataFrame, numbered: tuple[np.ndarray, pd.DataFrame]
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """:func:`_best_per_language`'s table, each of its rows' query number, and the queries, from
    ``frame`` and its :func:`_query_numbers`, so a per-query summary of the table groups on the
    numbers."""
    numbers, queries = numbered
    lang_codes, langs = pd.factorize(frame["relevant_lang"])
    key = numbers.astype(np.int64) * len(langs) + lang_codes
    best = pd.Series(frame["rank"].to_numpy()).groupby(key, sort=False).min()
    query, lang = np.divmod(best.index.to_numpy(), len(langs))
    table = queries.iloc[query].reset_index(drop=True)
    table["relevant_lang"] = np.asarray(langs, dtype=object)[lang]
    table["rank"] = best.to_numpy()
    return table, query, queries


def _best_per_language(frame: pd.DataFrame) -> pd.DataFrame:
    """Per query and pool language, the best rank: rows in first-seen (query, language) order."""
    return _numbered_best(frame, _query_numbers(frame))[0]


def best_rank_per_language(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Each query's best rank in every pool language (``relevant_lang``, ``rank``).

    Several captions of one language (Crossmodal-3600 has up to two, the embedded default a few)
    count once, by their best-ranked caption: the rank distance compares languages, not captions.
    """
    return _best_per_language(_checked_pool(ranks, pool)[0])


def _rank_distance(
    frame: pd.DataFrame,
    langs: list[str],
    partial: bool,
    numbered: tuple[np.ndarray, pd.DataFrame],
) -> pd.DataFrame:
    """:func:`rank_distance_per_query` of validated ranks of one pool of ``langs``, numbered by
    :func:`_query_numbers`."""
    best, numbers, per_query = _numbered_best(frame, numbered)
    other = best["relevant_lang"].to_numpy() != best["query_lang"].to_numpy()
    by_query = pd.DataFrame({"rank": best["rank"].to_numpy(), "other": other}).groupby(numbers)
    spans = by_query.agg(
        low=("rank", "min"),
        high=("rank", "max"),
        n_langs=("rank", "size"),
        n_other=("other", "sum"),
    )
    per_query = per_query.join(spans.reset_index(drop=True))
    expected_other = len(langs) - per_query["query_lang"].isin(langs).astype(int)
    incomplete = (per_query["n_other"] < expected_other) | (per_query["n_langs"] < 2)
    if partial:
        per_query = per_query[per_query["n_langs"] >= 2].copy()
    elif incomplete.any():
        first = per_query.loc[incomplete].iloc[0]
        raise ValueError(
            f"{int(incomplete.sum())} queries lack a relevant item in some pool language of "
            f"{langs} (first: query_idx {first['query_idx']}, query_lang {first['query_lang']!r}); "
            "a rank distance compares one item per language, so drop those queries or languages "
            "from the pool"
        )
    per_query["value"] = (per_query["high"] - per_query["low"]).astype(np.float64)
    return per_query[[*QUERY_COLUMNS, "n_langs", "value"]]


def check_within_pool(ranks: pd.DataFrame, pool: Sequence[str]) -> None:
    """Raise unless every relevant item of ``ranks`` is in a ``pool`` language: a rank distance
    over a sub-pool cannot be sliced from a larger pool's ranks
    (:func:`rank_distance_per_query`)."""
    outside = sorted(set(ranks["relevant_lang"]) - set(pool))
    if outside:
        raise ValueError(
            f"the ranks hold relevant items in {outside}, outside the pool {sorted(pool)}; a "
            "rank distance over a sub-pool must be ranked against that sub-pool (e.g. task "
            "multilingual_seen for the seen languages), not sliced from a larger pool's ranks"
        )


def rank_distance_per_query(
    ranks: pd.DataFrame, pool: Sequence[str] | None = None, partial: bool = False
) -> pd.DataFrame:
    """Maximum rank distance of every query over the pool it was ranked against, in ranks.

    RD (``value``) = max - min over the pool languages of each language's best-ranked relevant
    item (:func:`best_rank_per_language`); ``n_langs`` counts those languages. Lower is less
    biased. Ranks are distinct, so RD >= ``n_langs`` - 1: for an L-language pool, L - 2 for a
    caption query (its L - 1 translations) and L - 1 for an image query. A language-invariant
    encoder reaches that floor (its relevant items tie and take ranks 1, 2, ... by pool index).

    The ranks must come from a task whose gallery *is* the pool, so each task in ``ranks`` is
    measured over its own languages: ``multilingual`` over every study language,
    ``multilingual_seen`` over the seen ones. A sub-pool's RD cannot be sliced from a larger
    pool's ranks: items of the other languages ranked between the sub-pool's items would still
    widen it. ``pool`` is therefore a check, not a filter: every relevant language in ``ranks``
    must be in it, and each of its languages ranked in some benchmark (one benchmark may lack
    some: pass one benchmark's ranks with the pool languages it has).

    Every query needs a relevant item in each pool language other than its own; its own language
    may be missing because the query caption is excluded from its pool (its language's only item).
    Each benchmark is measured over the pool languages it has (Multi30K has four; its pool was
    built of those, :func:`xlr.eval.runner.languages_in`); one with fewer than two of them has no
    rank distance and no rows.

    ``partial`` measures each query over the pool languages it has relevant items in and drops
    those with fewer than two, for a paired comparison of two models on the same queries only
    (the positive control on a LAION validation split, whose images have captions in some seen
    languages only): the floor then differs between queries, so only the paired planted - real
    differences are averaged, never the distances themselves as a study's measure.
    """
    frame = _check_ranks(ranks)
    if pool is not None:
        check_within_pool(frame, pool)
        _pool(frame, pool)  # every pool language ranked in some benchmark: a typo shows here
    return _rank_distances(frame, pool, partial)


def _rank_distances(
    frame: pd.DataFrame,
    pool: Sequence[str] | None,
    partial: bool,
    numbered: tuple[np.ndarray, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """:func:`rank_distance_per_query` of validated ranks, each benchmark and task over the pool
    languages it has; ``numbered``, ``frame``'s :func:`_query_numbers`, serves a frame of one
    benchmark and task (a ranks file), whose one part is the frame."""
    groups = frame.groupby(["benchmark", "task"], sort=False)
    parts = []
    for _, part in groups:
        present = set(part["relevant_lang"])
        langs = None if pool is None else [lang for lang in pool if lang in present]
        if langs is None or len(langs) >= 2:
            one_part = numbered is not None and groups.ngroups == 1
            numbers = numbered if one_part else _query_numbers(part)
            parts.append(_rank_distance(part, _pool(part, langs), partial, numbers))
    if not parts:
        raise ValueError(f"no benchmark has at least two languages of the pool {pool} to compare")
    return pd.concat(parts, ignore_index=True)


def _top_language(frame: pd.DataFrame, numbered: tuple[np.ndarray, pd.DataFrame]) -> pd.DataFrame:
    """Per query, its best-ranked item's language and rank (a tie goes to the query's own
    language), sorted by the query columns; ``numbered`` is ``frame``'s
    :func:`_query_numbers`."""
    numbers, queries = numbered[0], numbered[1].copy()
    other = frame["relevant_lang"].to_numpy() != frame["query_lang"].to_numpy()
    score = frame["rank"].to_numpy(np.int64) * 2 + other  # rank first, own language on a tie
    rows = pd.Series(score).groupby(numbers).idxmin().to_numpy()  # one per query, in order
    queries["top_lang"] = frame["relevant_lang"].to_numpy()[rows]
    queries["top_rank"] = frame["rank"].to_numpy()[rows]
    return queries.sort_values(QUERY_COLUMNS).reset_index(drop=True)


@dataclass(frozen=True)
class TopLanguages:
    """Each query's best pool item and each benchmark's pool languages: all the language
    preference measures read (:func:`english_first`, :func:`language_preference`,
    :func:`preference_per_query`).

    ``queries``: :data:`QUERY_COLUMNS`, ``top_lang`` and ``top_rank``, sorted by the query
    columns; ``langs``: the pool languages each benchmark and task has (``lang``) with the
    ``uniform`` share 1 / L (:func:`_pool_languages`). One row per query where the ranks have one
    per query and pool language, so a study's are gathered run by run
    (:func:`xlr.analysis.pools.pool_measures`), never from all its ranks at once.
    """

    queries: pd.DataFrame
    langs: pd.DataFrame


def top_languages(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> TopLanguages:
    """The language (``top_lang``) and rank (``top_rank``) of each query's best pool item, and
    the pool languages each benchmark has.

    Search ranks are distinct, so exact ties occur only in hand-built tables; they go to the
    query's own language where it has a relevant item, else to the first row.
    """
    frame, _ = _checked_pool(ranks, pool)
    return TopLanguages(_top_language(frame, _query_numbers(frame)), _pool_languages(frame))


def pool_run_measures(
    ranks: pd.DataFrame, pool: Sequence[str]
) -> tuple[pd.DataFrame, TopLanguages]:
    """``rank_distance_per_query(ranks, pool)`` and ``top_languages(ranks, pool)``, the ranks
    validated once, and numbered once where they are one benchmark's of one task (a ranks file:
    :func:`xlr.analysis.pools.pool_measures` reads them so).

    Why: run by run, a study's pool ranks are measured file after file, and validating and
    numbering each file's rows for both measures was about half their time (synthetic study).
    """
    frame = _check_ranks(ranks)
    check_within_pool(frame, pool)
    _pool(frame, pool)  # as both measures check: every pool language present, at least two
    numbered = _query_numbers(frame)  # every row is in the pool: no rows to drop first
    distance = _rank_distances(frame, pool, False, numbered)
    return distance, TopLanguages(_top_language(frame, numbered), _pool_languages(frame))


def english_first(tops: TopLanguages) -> pd.DataFrame:
    """Per image query, 1.0 when its best pool caption is English (``value``).

    LAION is about 40% English, so a model that learnt English best ranks English captions
    first; the uniform rate is 1 / (number of pool languages the benchmark has, as
    :func:`language_preference`'s ``uniform``).
    """
    langs = tops.langs
    lacking = sorted(
        set(langs["benchmark"]) - set(langs.loc[langs["lang"] == ENGLISH, "benchmark"])
    )
    if lacking:
        raise ValueError(f"the English-first rate needs English in the pool; {lacking} have none")
    top = tops.queries[tops.queries["query_kind"] == IMAGE]
    if top.empty:
        raise ValueError(f"no image query (query_lang == {IMAGE!r}) among the top languages")
    return top.assign(value=(top["top_lang"] == ENGLISH).astype(np.float64))


def _pool_languages(frame: pd.DataFrame) -> pd.DataFrame:
    """The pool languages each benchmark and task has (``lang``) and the ``uniform`` share 1 / L.

    L counts the pool languages the benchmark has (Multi30K four of a wider study's): a language
    a benchmark lacks can never come first there, so counting it would call an unbiased model
    biased."""
    langs = (
        frame[["benchmark", "task", "relevant_lang"]]
        .drop_duplicates()
        .rename(columns={"relevant_lang": "lang"})
    )
    sizes = langs.groupby(["benchmark", "task"])["lang"].transform("size")
    return langs.assign(uniform=1.0 / sizes.to_numpy(np.float64))


def preference_per_query(tops: TopLanguages) -> Iterator[pd.DataFrame]:
    """Per benchmark, task and pool language (``lang``), one table: per query, 1.0 when its best
    pool item is in that language, else 0.0 (``value``), and the ``uniform`` share.

    The per-query form of :func:`language_preference`, whose shares are these values' macro
    means over query languages: each share takes its interval over bases, seeds and images from
    :func:`xlr.analysis.intervals.preference_intervals`, and one language's rows compare two
    arms query by query. A caption query's own language holds no relevant item (the query is
    left out of its pool), so its value there is 0. One language at a time: all languages at
    once would be a row per query and pool language, about as many as the pool's ranks.
    """
    queries = tops.queries.groupby(["benchmark", "task"], sort=False)
    for row in tops.langs.itertuples(index=False):
        part = queries.get_group((row.benchmark, row.task))
        value = part["top_lang"].eq(row.lang).astype(np.float64)
        yield part[QUERY_COLUMNS].assign(lang=row.lang, value=value, uniform=row.uniform)


def language_preference(tops: TopLanguages) -> pd.DataFrame:
    """Share of queries whose best pool item is in each language, against uniform.

    Per run and query kind: the share of each pool language (``top_lang``) among the queries'
    best items, computed per query language and macro-averaged over query languages (the macro
    mean of :func:`preference_per_query`, counted here from one row per query), with the
    ``uniform`` share 1 / L of an unbiased model (:func:`_pool_languages`). Languages never
    ranked first appear with 0.
    """
    top = tops.queries
    by_query_lang = [*_RUN_KIND, "query_lang"]
    counts = top.groupby([*by_query_lang, "top_lang"], sort=False, dropna=False).size()
    per_query_lang = counts / counts.groupby(level=by_query_lang, dropna=False).transform("sum")
    langs = tops.langs.rename(columns={"lang": "top_lang"})
    every_lang = (
        top[by_query_lang]
        .drop_duplicates()
        .merge(langs, on=["benchmark", "task"])
        .merge(per_query_lang.rename("share").reset_index(), how="left")
        .fillna({"share": 0.0})
    )
    keys = [*_RUN_KIND, "top_lang", "uniform"]
    shares = every_lang.groupby(keys, sort=True, dropna=False)["share"].mean().reset_index()
    return shares[[*_RUN_KIND, "top_lang", "share", "uniform"]]


def preference_divergence(shares: pd.DataFrame) -> pd.DataFrame:
    """KL divergence (nats) of the language shares from uniform, per run and query kind.

    KL(p || u) = sum_l p_l log(p_l L): 0 for a model that ranks every language first equally
    often, log(L) for one that always ranks the same language first.
    """
    check_table(shares, [*_RUN_KIND, "top_lang", "share", "uniform"], "shares")
    p = shares["share"].to_numpy()
    ratio = np.where(p > 0, p / shares["uniform"].to_numpy(), 1.0)
    terms = shares[_RUN_KIND].assign(value=p * np.log(ratio))
    return terms.groupby(_RUN_KIND, sort=False, dropna=False)["value"].sum().reset_index()


def macro_mean(per_query: pd.DataFrame) -> pd.DataFrame:
    """Per run and query kind: mean ``value`` per query language, then mean over languages."""
    check_table(per_query, [*QUERY_COLUMNS, "value"], "per-query")
    per_lang = per_query.groupby([*_RUN_KIND, "query_lang"], sort=False, dropna=False)["value"].agg(
        ["mean", "size"]
    )
    return (
        per_lang.groupby(level=_RUN_KIND, sort=False, dropna=False)
        .agg(value=("mean", "mean"), n_queries=("size", "sum"), n_query_langs=("mean", "size"))
        .reset_index()
    )


def _result_language(results: pd.DataFrame) -> pd.Series:
    """The language a results row is about: the query's, or the target's for image queries.

    Labels that are not languages (``all``, ``mixed``) map to None, with aliases made canonical.
    """
    label = results["query_lang"].where(results["query_lang"] != IMAGE, results["target_lang"])

    def code(value: str) -> str | None:
        try:
            return canonical_code(str(value))
        except UnknownLanguageError:
            return None

    return label.map({value: code(value) for value in label.unique()})


def per_language_metric(results: pd.DataFrame, metric: str = "R@1") -> pd.DataFrame:
    """Each language's ``metric`` per run and caption convention (``lang``, ``value``).

    A language's value is the mean over its rows: one row for ``t2i``/``i2t``, the mean over
    target languages of its row of the ``xt2t`` matrix. Rows about no single language (pooled
    ``multilingual`` image queries, aggregates) are left out.
    """
    check_table(results, RESULT_COLUMNS, "results")
    rows = results[results["metric"] == metric].assign(lang=_result_language)
    rows = rows.dropna(subset=["lang"])
    if rows.empty:
        raise ValueError(f"the results table has no per-language rows of metric {metric!r}")
    keys = [*RUN_KEYS, "captions", "metric", "lang"]
    return rows.groupby(keys, sort=True, dropna=False)["value"].mean().reset_index()


def language_fairness(
    results: pd.DataFrame, seen_langs: Sequence[str], metric: str = "R@1"
) -> pd.DataFrame:
    """Spread of per-language ``metric`` and the seen - held-out gap, per run and task.

    ``std`` is the population standard deviation over languages (ddof=0: the languages are all
    there are, not a sample) and ``range`` max - min, both in the metric's units; ``gap`` is the
    mean over seen languages minus the mean over held-out ones (NaN when a group is empty).
    """
    seen = {canonical_code(code) for code in seen_langs}
    per_lang = per_language_metric(results, metric)
    is_seen = per_lang["lang"].isin(seen)
    per_lang = per_lang.assign(
        seen_value=per_lang["value"].where(is_seen),
        heldout_value=per_lang["value"].where(~is_seen),
    )
    grouped = per_lang.groupby([*RUN_KEYS, "captions", "metric"], sort=True, dropna=False)
    table = grouped.agg(
        n_langs=("value", "size"),
        std=("value", lambda v: v.std(ddof=0)),
        range=("value", lambda v: v.max() - v.min()),
        mean_seen=("seen_value", "mean"),
        mean_heldout=("heldout_value", "mean"),
    )
    return table.assign(gap=table["mean_seen"] - table["mean_heldout"]).reset_index()
