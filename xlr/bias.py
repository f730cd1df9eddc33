"""Language-bias measures of a retrieval run, computed from its saved ranks and results only.

Inputs are the two tables notebook 04 writes, so notebooks 05 and 06 never re-run retrieval:

- the **ranks** table (``results/ranks/*.parquet``): one row per (query, relevant item) with
  :data:`RANK_COLUMNS`; ``rank`` is the 1-based position of that relevant item in the whole
  gallery. In the ``multilingual`` task a query (a caption, or an image with ``query_lang`` equal
  to :data:`IMAGE_QUERY`) has relevant captions in every language of the pool.
- the long-form **results** table (``results/retrieval.parquet``) with :data:`RESULT_COLUMNS`.

Measures (lower rank distance and divergence mean less language bias):

- maximum rank distance (Huang et al. 2023, as Elmahdy et al. 2024 use it), in ranks;
- language preference: which language a query's best-ranked relevant item is in, its share per
  language against uniform and the KL divergence from uniform (nats), the same-language-first rate
  of caption queries and the English-first rate of image queries;
- fairness across languages: spread of per-language R@1 and the seen - held-out gap.

Per-query measures come back as tables with a ``value`` column, so one set of summaries serves
them all: :func:`macro_mean` per run, :func:`bootstrap_by_arm` for intervals over queries,
:func:`compare_arms` for paired tests, :func:`seed_spread` for the spread over seeds. Macro means
weigh every query language equally; image and caption queries (``query_kind``) are never mixed.
``seed`` is missing (``<NA>``) for the zero-shot arm, which has no fine-tuning seed; grouping
keeps such rows and joins match them only to each other, so compare an arm with the zero-shot
model by leaving ``seed`` out of the join keys (:func:`compare_arms`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xlr.langs import UnknownLanguageError, canonical_code
from xlr.stats import bootstrap_mean, paired_bootstrap_difference, seed_summary, sign_flip_test

RUN_KEYS: tuple[str, ...] = ("arm", "seed", "base_seed", "benchmark", "task")
QUERY_KEYS: tuple[str, ...] = (*RUN_KEYS, "query_idx")
RANK_COLUMNS: tuple[str, ...] = (
    *QUERY_KEYS,
    "query_lang",
    "query_image_id",
    "relevant_idx",
    "relevant_lang",
    "relevant_image_id",
    "rank",
)
RESULT_COLUMNS: tuple[str, ...] = (
    *RUN_KEYS,
    "query_lang",
    "target_lang",
    "lang_group",
    "metric",
    "value",
    "captions",
    "n_queries",
)
PAIR_KEYS: tuple[str, ...] = ("benchmark", "task", "query_idx", "base_seed", "seed")
ARM_SUMMARY_KEYS: tuple[str, ...] = ("arm", "benchmark", "task", "query_kind")
IMAGE_QUERY = "image"  # query_lang of image queries
ENGLISH = "en"

_USED_RANK_COLUMNS = (*QUERY_KEYS, "query_lang", "relevant_lang", "rank")
_QUERY_COLUMNS = [*QUERY_KEYS, "query_lang", "query_kind"]
_RUN_KIND = [*RUN_KEYS, "query_kind"]
# A query's resampling unit: its differences are averaged over the seeds and bases it ran in.
_UNIT_KEYS = ["benchmark", "task", "query_kind", "query_lang", "query_idx"]


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` naming the columns ``frame`` lacks, or that it has no rows."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} table lacks columns {missing}; it needs {list(columns)} "
            "(see xlr.bias.RANK_COLUMNS and RESULT_COLUMNS)"
        )
    if frame.empty:
        raise ValueError(f"{name} table is empty: there is nothing to measure")


def _check_ranks(ranks: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of the used rank columns, with ``query_kind`` (image | caption) added."""
    _require(ranks, _USED_RANK_COLUMNS, "ranks")
    frame = ranks[list(_USED_RANK_COLUMNS)].copy()
    null_keys = [c for c in QUERY_KEYS if c != "seed" and frame[c].isna().any()]
    if null_keys:
        raise ValueError(
            f"ranks table has missing values in key columns {null_keys}; only ``seed`` may be "
            "missing (the zero-shot arm has no fine-tuning seed)"
        )
    if (frame["rank"] < 1).any():
        raise ValueError(f"ranks are 1-based, got a rank of {frame['rank'].min()}")
    is_image = (frame["query_lang"] == IMAGE_QUERY).to_numpy()
    frame["query_kind"] = np.array(["caption", IMAGE_QUERY], dtype=object)[is_image.astype(int)]
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
    numbers = frame.groupby(_QUERY_COLUMNS, sort=False, dropna=False).ngroup().to_numpy()
    seen_before = np.maximum.accumulate(np.concatenate([[-1], numbers[:-1]]))
    first_rows = np.flatnonzero(numbers > seen_before)  # a first-seen number is a new maximum
    return numbers, frame.iloc[first_rows][_QUERY_COLUMNS].reset_index(drop=True)


def _numbered_best(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """:func:`_best_per_language`'s table, each of its rows' query number, and the queries
    (:func:`_query_numbers`), so a per-query summary of the table groups on the numbers."""
    numbers, queries = _query_numbers(frame)
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
    return _numbered_best(frame)[0]


def best_rank_per_language(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Each query's best whole-gallery rank in every pool language (``relevant_lang``, ``rank``).

    Several captions of one language (Crossmodal-3600 has up to two, the embedded default a few)
    count once, by their best-ranked caption: the rank distance compares languages, not captions.
    """
    return _best_per_language(_checked_pool(ranks, pool)[0])


def rank_distance_per_query(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Maximum rank distance of every query over a language pool, in ranks (``value``).

    RD = max - min over the pool languages of each language's best-ranked relevant item
    (:func:`best_rank_per_language`); ``n_langs`` counts those languages. Lower is less biased.

    Ranks are **whole-gallery** ranks: restricting to the seen languages' pool drops the other
    languages' relevant items, but the gallery items of those languages still count in the ranks
    that remain. Ranks within a pool-only gallery cannot be recovered from whole-gallery ranks of
    the relevant items alone, since the non-relevant items between them are not stored. Removing
    gallery items can only close the gap between two items, so the value here is an exact RD over
    whole-gallery ranks and an upper bound of the RD within a pool-only gallery (equal when no
    out-of-pool item ranks between the pool's best and worst language). Ranks saved by a task
    whose gallery is the pool itself give the within-pool RD exactly through this same function.

    Every query needs a relevant item in each pool language other than its own; its own language
    may be missing because the query caption is excluded from its gallery, and with one caption
    per language (XTD10) nothing else of that language is relevant.
    """
    frame, langs = _checked_pool(ranks, pool)
    best, numbers, per_query = _numbered_best(frame)
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
    if incomplete.any():
        first = per_query.loc[incomplete].iloc[0]
        raise ValueError(
            f"{int(incomplete.sum())} queries lack a relevant item in some pool language of "
            f"{langs} (first: query_idx {first['query_idx']}, query_lang {first['query_lang']!r}); "
            "a rank distance compares one item per language, so drop those queries or languages "
            "from the pool"
        )
    per_query["value"] = (per_query["high"] - per_query["low"]).astype(np.float64)
    return per_query[[*_QUERY_COLUMNS, "n_langs", "value"]]


def _top_language(frame: pd.DataFrame) -> pd.DataFrame:
    """Per query, its best-ranked item's language and rank (a tie goes to the query's own
    language), sorted by the query columns."""
    numbers, queries = _query_numbers(frame)
    other = frame["relevant_lang"].to_numpy() != frame["query_lang"].to_numpy()
    score = frame["rank"].to_numpy(np.int64) * 2 + other  # rank first, own language on a tie
    rows = pd.Series(score).groupby(numbers).idxmin().to_numpy()  # one per query, in order
    queries["top_lang"] = frame["relevant_lang"].to_numpy()[rows]
    queries["top_rank"] = frame["rank"].to_numpy()[rows]
    return queries.sort_values(_QUERY_COLUMNS).reset_index(drop=True)


def top_language_per_query(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """The language (``top_lang``) and rank (``top_rank``) of each query's best pool item.

    Exact ties occur only in planted ranks (:func:`plant_same_language_boost` leaves the items it
    overtakes in place); they go to the query's own language, the item that was moved up.
    """
    return _top_language(_checked_pool(ranks, pool)[0])


def same_language_first(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Per caption query, 1.0 when its best pool item is in the query's own language (``value``).

    Only caption queries whose language is in the pool can score: for the others the outcome is
    impossible, and counting them as 0 would make the rate depend on the pool.
    """
    frame, langs = _checked_pool(ranks, pool)
    top = _top_language(frame)
    top = top[(top["query_kind"] == "caption") & top["query_lang"].isin(langs)]
    if top.empty:
        raise ValueError(f"no caption query in a pool language of {langs}")
    return top.assign(value=(top["top_lang"] == top["query_lang"]).astype(np.float64))


def english_first(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Per image query, 1.0 when its best pool caption is English (``value``).

    LAION is about 40% English, so a model that learnt English best ranks English captions
    first; the uniform rate is 1 / (number of pool languages).
    """
    frame, langs = _checked_pool(ranks, pool)
    if ENGLISH not in langs:
        raise ValueError(f"the English-first rate needs English in the pool, got {langs}")
    top = _top_language(frame)
    top = top[top["query_kind"] == IMAGE_QUERY]
    if top.empty:
        raise ValueError(f"no image query (query_lang == {IMAGE_QUERY!r}) in the ranks table")
    return top.assign(value=(top["top_lang"] == ENGLISH).astype(np.float64))


def language_preference(ranks: pd.DataFrame, pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Share of queries whose best pool item is in each language, against uniform.

    Per run and query kind: the share of each pool language (``top_lang``) among the queries'
    best items, computed per query language and macro-averaged over query languages, with the
    ``uniform`` share 1 / L of an unbiased model. Languages never ranked first appear with 0.
    """
    frame, langs = _checked_pool(ranks, pool)
    top = _top_language(frame)
    by_query_lang = [*_RUN_KIND, "query_lang"]
    counts = top.groupby([*by_query_lang, "top_lang"], sort=False, dropna=False).size()
    per_query_lang = counts / counts.groupby(level=by_query_lang, dropna=False).transform("sum")
    every_lang = (
        top[by_query_lang]
        .drop_duplicates()
        .merge(pd.DataFrame({"top_lang": langs}), how="cross")
        .merge(per_query_lang.rename("share").reset_index(), how="left")
        .fillna({"share": 0.0})
    )
    shares = every_lang.groupby([*_RUN_KIND, "top_lang"], sort=True, dropna=False)["share"].mean()
    return shares.reset_index().assign(uniform=1.0 / len(langs))


def preference_divergence(shares: pd.DataFrame) -> pd.DataFrame:
    """KL divergence (nats) of the language shares from uniform, per run and query kind.

    KL(p || u) = sum_l p_l log(p_l L): 0 for a model that ranks every language first equally
    often, log(L) for one that always ranks the same language first.
    """
    _require(shares, [*_RUN_KIND, "top_lang", "share", "uniform"], "shares")
    p = shares["share"].to_numpy()
    ratio = np.where(p > 0, p / shares["uniform"].to_numpy(), 1.0)
    terms = shares[_RUN_KIND].assign(value=p * np.log(ratio))
    return terms.groupby(_RUN_KIND, sort=False, dropna=False)["value"].sum().reset_index()


def macro_mean(per_query: pd.DataFrame) -> pd.DataFrame:
    """Per run and query kind: mean ``value`` per query language, then mean over languages."""
    _require(per_query, [*_QUERY_COLUMNS, "value"], "per-query")
    per_lang = per_query.groupby([*_RUN_KIND, "query_lang"], sort=False, dropna=False)["value"].agg(
        ["mean", "size"]
    )
    return (
        per_lang.groupby(level=_RUN_KIND, sort=False, dropna=False)
        .agg(value=("mean", "mean"), n_queries=("size", "sum"), n_query_langs=("mean", "size"))
        .reset_index()
    )


def _query_units(per_query: pd.DataFrame) -> pd.DataFrame:
    """One row per query (:data:`_UNIT_KEYS`), its ``value`` averaged over seeds and bases.

    The query is the resampling unit: the same query scored under several seeds is one piece of
    evidence about the query population, not several; the seed spread is :func:`seed_spread`.
    """
    return per_query.groupby(_UNIT_KEYS, sort=False, dropna=False)["value"].mean().reset_index()


def bootstrap_by_arm(
    per_query: pd.DataFrame,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
) -> pd.DataFrame:
    """Bootstrap interval over queries of each arm's macro mean, per benchmark, task, query kind.

    Each query's value is first averaged over the seeds and bases it ran in, then queries are
    resampled within their query language (``strata``) so the macro mean keeps its weights.
    Returns ``estimate, low, high, n`` (queries) and ``confidence``.
    """
    _require(per_query, [*_QUERY_COLUMNS, "value"], "per-query")
    rng = np.random.default_rng(rng)
    rows = []
    for keys, group in per_query.groupby(list(ARM_SUMMARY_KEYS), sort=True, dropna=False):
        units = _query_units(group)
        interval = bootstrap_mean(
            units["value"].to_numpy(), n_resamples, confidence, rng, units["query_lang"].to_numpy()
        )
        rows.append({**dict(zip(ARM_SUMMARY_KEYS, keys, strict=True)), **vars(interval)})
    return pd.DataFrame(rows)


def _paired_units(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str]) -> pd.DataFrame:
    """Per query unit, the mean ``value_a`` and ``value_b`` of rows joined on ``on``."""
    keys = list(dict.fromkeys([*on, *_UNIT_KEYS]))
    try:
        joined = a[[*keys, "value"]].merge(
            b[[*keys, "value"]], on=keys, suffixes=("_a", "_b"), validate="many_to_one"
        )
    except pd.errors.MergeError as error:
        raise ValueError(
            f"the reference side has several rows per {keys}; join on more keys (e.g. seed)"
        ) from error
    if joined.empty:
        raise ValueError(f"the two sides share no query on {keys}; nothing to compare")
    return (
        joined.groupby(_UNIT_KEYS, sort=False, dropna=False)[["value_a", "value_b"]]
        .mean()
        .reset_index()
    )


def _paired_test(
    units: pd.DataFrame,
    n_resamples: int,
    confidence: float,
    n_permutations: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    a, b = units["value_a"].to_numpy(), units["value_b"].to_numpy()
    interval = paired_bootstrap_difference(
        a, b, n_resamples, confidence, rng, units["query_lang"].to_numpy()
    )
    return {**vars(interval), "p_value": sign_flip_test(a, b, n_permutations, rng)}


def compare_arms(
    per_query: pd.DataFrame,
    arm_a: str,
    arm_b: str,
    on: Sequence[str] = PAIR_KEYS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    n_permutations: int = 10_000,
    rng: np.random.Generator | int = 0,
) -> pd.DataFrame:
    """Paired comparison arm_a - arm_b on the same queries, per benchmark, task and query kind.

    Rows are joined on ``on`` (default: same query, base and fine-tuning seed); to compare every
    seed of an arm against a reference scored once per base (the zero-shot model), leave
    ``seed`` out of ``on``. Each query's differences are averaged over the runs it was paired in;
    ``estimate, low, high`` is the bootstrap interval of the macro mean difference (strata = query
    language) and ``p_value`` the two-sided sign-flip test of the plain mean difference (the two
    coincide when every query language has as many queries, as on parallel benchmarks).
    """
    _require(per_query, [*_QUERY_COLUMNS, "value"], "per-query")
    rng = np.random.default_rng(rng)
    sides = [per_query[per_query["arm"] == arm] for arm in (arm_a, arm_b)]
    for arm, side in zip((arm_a, arm_b), sides, strict=True):
        if side.empty:
            raise ValueError(
                f"arm {arm!r} is not in the table (arms: {sorted(per_query['arm'].unique())})"
            )
    units = _paired_units(*sides, on)
    rows = []
    for keys, group in units.groupby(["benchmark", "task", "query_kind"], sort=True, dropna=False):
        test = _paired_test(group, n_resamples, confidence, n_permutations, rng)
        names = dict(zip(("benchmark", "task", "query_kind"), keys, strict=True))
        rows.append({**names, "arm_a": arm_a, "arm_b": arm_b, **test})
    return pd.DataFrame(rows)


def seed_negative_control(
    per_query: pd.DataFrame,
    arm: str,
    seed_a: int,
    seed_b: int,
    n_permutations: int = 10_000,
    rng: np.random.Generator | int = 0,
) -> float:
    """Sign-flip p-value between two fine-tuning seeds of one arm on the same queries.

    The negative control of :func:`compare_arms`: seeds of one arm differ by chance only, so the
    p-value should rarely fall below the test level. If it often does, the per-query test is
    detecting seed noise, and arm differences must be judged against :func:`seed_spread`.
    ``per_query`` must hold one benchmark, task and query kind (filter it first).
    """
    _require(per_query, [*_QUERY_COLUMNS, "value"], "per-query")
    runs = per_query[per_query["arm"] == arm]
    groups = runs[["benchmark", "task", "query_kind"]].drop_duplicates()
    if len(groups) != 1:
        raise ValueError(
            f"the negative control compares one benchmark, task and query kind; arm {arm!r} "
            f"has {len(groups)}: filter the table first"
        )
    a, b = (runs[runs["seed"] == seed] for seed in (seed_a, seed_b))
    on = ["benchmark", "task", "query_idx", "base_seed"]
    units = _paired_units(a, b, on)
    return sign_flip_test(
        units["value_a"].to_numpy(), units["value_b"].to_numpy(), n_permutations, rng
    )


def seed_spread(per_run: pd.DataFrame, keys: Sequence[str] = ARM_SUMMARY_KEYS) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) of a per-run ``value`` over seeds and bases.

    ``per_run`` is e.g. :func:`macro_mean`, :func:`preference_divergence` or
    :func:`language_fairness` (after picking its ``value``); ``keys`` are the columns kept.
    """
    _require(per_run, [*keys, "value"], "per-run")
    rows = [
        {**dict(zip(keys, group_keys, strict=True)), **vars(seed_summary(group["value"]))}
        for group_keys, group in per_run.groupby(list(keys), sort=True, dropna=False)
    ]
    return pd.DataFrame(rows)


def plant_same_language_boost(ranks: pd.DataFrame, boost: int) -> pd.DataFrame:
    """Positive control: move every caption query's same-language relevant items up ``boost``.

    New rank = max(1, rank - boost) for items in the query's own language; every other item keeps
    its rank (so planted ranks may tie). A measure of language bias must register the planted
    preference: same-language-first rises, and so does the rank distance wherever the boost
    moves a query's own language ahead of the others (with a boost past every other language it
    becomes the best item, and the RD grows unless that language was the worst-ranked one).
    """
    if boost < 0:
        raise ValueError(f"boost is a number of ranks to move up, at least 0; got {boost}")
    _require(ranks, _USED_RANK_COLUMNS, "ranks")
    own = ranks["relevant_lang"] == ranks["query_lang"]
    planted = ranks.copy()
    planted["rank"] = np.where(own, np.maximum(1, ranks["rank"] - boost), ranks["rank"])
    return planted


def _result_language(results: pd.DataFrame) -> pd.Series:
    """The language a results row is about: the query's, or the target's for image queries.

    Labels that are not languages (``all``, ``mixed``) map to None, with aliases made canonical.
    """
    label = results["query_lang"].where(
        results["query_lang"] != IMAGE_QUERY, results["target_lang"]
    )

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
    _require(results, RESULT_COLUMNS, "results")
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
