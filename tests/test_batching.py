"""Language sampler and batch strategies: distributions, invariants, determinism, errors."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from xlr.train.batching import (
    Batch,
    BatchSampler,
    LanguageSampler,
    language_probabilities,
)

# Upper 0.1% points of the chi-square distribution, by degrees of freedom (statistical tables).
CHI2_CRITICAL_001 = {2: 13.816, 5: 20.515}
Z_999 = 3.291  # two-sided 99.9% normal quantile


def chi_square(observed: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's goodness-of-fit statistic of counts against probabilities."""
    expected = observed.sum() * probs
    return float(((observed - expected) ** 2 / expected).sum())


def caption_table() -> pd.DataFrame:
    """A small, deliberately uneven pool, rows shuffled so positions differ from ids.

    en: every image, 2 captions on even images, 1 on odd ones; de: every image, 1-3 captions;
    fr: 2 captions, images 0-4 absent. Caption text is ``lang:image:caption_idx``.
    """
    rows = []
    for image in range(30):
        per_lang = {"en": 2 if image % 2 == 0 else 1, "de": 1 + image % 3}
        if image >= 5:
            per_lang["fr"] = 2
        for lang, n in per_lang.items():
            rows += [(image, lang, k, f"{lang}:{image}:{k}") for k in range(n)]
    table = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


TABLE = caption_table()
LANGS = ["en", "de", "fr"]


def parse(text: str) -> tuple[str, int, int]:
    lang, image, idx = text.split(":")
    return lang, int(image), int(idx)


def test_language_probabilities_known_answers() -> None:
    counts = {"a": 1, "b": 4, "c": 16}
    assert language_probabilities(counts, 0.0) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )
    assert language_probabilities(counts, 0.5) == pytest.approx(
        {"a": 1 / 7, "b": 2 / 7, "c": 4 / 7}
    )
    assert language_probabilities(counts, 1.0) == pytest.approx(
        {"a": 1 / 21, "b": 4 / 21, "c": 16 / 21}
    )
    assert list(language_probabilities(counts, 1.0)) == ["a", "b", "c"]


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_sampler_frequencies_fit_probabilities(tau: float) -> None:
    sampler = LanguageSampler.from_counts({"a": 100, "b": 400, "c": 1600}, tau)
    draws = sampler.draw(np.random.default_rng(1), 20_000)
    observed = np.bincount(draws, minlength=3)
    assert chi_square(observed, sampler.probs) < CHI2_CRITICAL_001[2]


def test_chi_square_check_has_power() -> None:
    """Uniform draws are rejected against tau = 1's skewed p(l): the test above can fail."""
    uniform = LanguageSampler.from_counts({"a": 1, "b": 1, "c": 1}, 0.0)
    skewed = LanguageSampler.from_counts({"a": 100, "b": 400, "c": 1600}, 1.0)
    observed = np.bincount(uniform.draw(np.random.default_rng(1), 2_000), minlength=3)
    assert chi_square(observed, skewed.probs) > CHI2_CRITICAL_001[2]


def test_pair_frequencies_fit_product_distribution() -> None:
    sampler = LanguageSampler.from_counts({"a": 100, "b": 400, "c": 1600}, 1.0)
    pairs = sampler.draw_pairs(np.random.default_rng(2), 20_000)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    off_diagonal = ~np.eye(3, dtype=bool)
    observed = np.zeros((3, 3))
    np.add.at(observed, (pairs[:, 0], pairs[:, 1]), 1)
    probs = sampler.pair_probs
    p = sampler.probs
    assert probs[0, 1] == pytest.approx(p[0] * p[1] / (1 - (p**2).sum()))
    assert chi_square(observed[off_diagonal], probs[off_diagonal]) < CHI2_CRITICAL_001[5]


def test_mono_languages_follow_caption_counts_at_tau_one() -> None:
    sampler = BatchSampler("mono", TABLE, LANGS, batch_size=4, seed=3, tau=1.0)
    counts = TABLE["lang"].value_counts()
    probs = np.array([counts[lang] for lang in LANGS], dtype=float)
    probs /= probs.sum()
    seen = Counter(sampler.batch(step).query_langs[0] for step in range(1_500))
    observed = np.array([seen[lang] for lang in LANGS])
    assert chi_square(observed, probs) < CHI2_CRITICAL_001[2]


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_hybrid_mono_share_matches_alpha(alpha: float) -> None:
    sampler = BatchSampler("hybrid", TABLE, LANGS, batch_size=4, seed=4, alpha=alpha)
    steps = 2_000
    n_mono = sum(sampler.batch(step).kind == "mono" for step in range(steps))
    assert abs(n_mono - steps * alpha) <= Z_999 * np.sqrt(steps * alpha * (1 - alpha))


@pytest.mark.parametrize(("alpha", "kind"), [(0.0, "cross"), (1.0, "mono")])
def test_hybrid_extremes_are_pure(alpha: float, kind: str) -> None:
    sampler = BatchSampler("hybrid", TABLE, LANGS, batch_size=4, seed=5, alpha=alpha)
    assert {sampler.batch(step).kind for step in range(200)} == {kind}


def batches(*args: object, steps: range, **kwargs: object) -> list[Batch]:
    """The batches of ``steps`` a sampler draws (each a pure function of seed and step)."""
    sampler = BatchSampler(*args, **kwargs)  # type: ignore[arg-type]
    return [sampler.batch(step) for step in steps]


def check_rows(batch: Batch) -> None:
    """Texts, languages and images agree with the rows they claim."""
    for i, image in enumerate(batch.image_ids):
        query = TABLE.iloc[batch.query_rows[i]]
        assert (query["image_id"], query["lang"]) == (image, batch.query_langs[i])
        assert query["caption"] == batch.query_texts[i]
        if batch.has_target[i]:
            target = TABLE.iloc[batch.target_rows[i]]
            assert (target["image_id"], target["lang"]) == (image, batch.target_langs[i])
            assert target["caption"] == batch.target_texts[i]
        else:
            assert batch.target_texts[i] is None


def test_mono_invariants() -> None:
    missing_targets = 0
    for batch in batches("mono", TABLE, LANGS, 8, 6, steps=range(60)):
        assert batch.kind == "mono"
        assert len(batch) == 8 and len(set(batch.image_ids.tolist())) == 8
        assert len(set(batch.query_langs)) == 1 and batch.target_langs == batch.query_langs
        check_rows(batch)
        for query, target in zip(batch.query_texts, batch.target_texts, strict=True):
            lang, image, idx = parse(query)
            n_captions = ((TABLE["image_id"] == image) & (TABLE["lang"] == lang)).sum()
            if target is None:
                assert n_captions == 1
                missing_targets += 1
            else:
                t_lang, t_image, t_idx = parse(target)
                assert (t_lang, t_image) == (lang, image) and t_idx != idx
    assert missing_targets > 0  # the pool has single-caption images: the mask was exercised


@pytest.mark.parametrize("strategy", ["cross", "multi"])
def test_parallel_invariants(strategy: str) -> None:
    languages_seen = set()
    for batch in batches(strategy, TABLE, LANGS, 8, 7, steps=range(60)):
        assert batch.kind == strategy
        assert len(set(batch.image_ids.tolist())) == 8
        assert batch.has_target.all()
        check_rows(batch)
        pairs = set(zip(batch.query_langs, batch.target_langs, strict=True))
        if strategy == "cross":
            assert len(pairs) == 1
        assert all(a != b for a, b in pairs)
        for query, target in zip(batch.query_texts, batch.target_texts, strict=True):
            lang, image, idx = parse(query)
            t_lang, t_image, t_idx = parse(target)
            assert (t_image, t_idx) == (image, idx)  # the parallel caption
            assert image >= 5 or "fr" not in (lang, t_lang)  # images 0-4 have no fr caption
        languages_seen |= pairs
    assert len(languages_seen) == 6  # every ordered pair occurs


def test_multi_mixes_languages_within_a_batch() -> None:
    batch = BatchSampler("multi", TABLE, LANGS, batch_size=12, seed=8).batch(0)
    assert len(set(zip(batch.query_langs, batch.target_langs, strict=True))) > 1


def test_multi_images_never_lack_their_pair() -> None:
    """fr lacks images 0-4: examples paired with fr never get them, even in large batches."""
    sampler = BatchSampler("multi", TABLE, LANGS, batch_size=25, seed=9)
    for step in range(30):
        batch = sampler.batch(step)
        assert len(set(batch.image_ids.tolist())) == 25
        for i, image in enumerate(batch.image_ids):
            if "fr" in (batch.query_langs[i], batch.target_langs[i]):
                assert image >= 5


@pytest.mark.parametrize("strategy", ["mono", "cross", "multi", "hybrid"])
def test_stream_is_deterministic_and_resumable(strategy: str) -> None:
    args = (strategy, TABLE, LANGS, 6, 11)
    full = batches(*args, alpha=0.5, tau=0.5, steps=range(20))
    again = batches(*args, alpha=0.5, tau=0.5, steps=range(20))
    resumed = batches(*args, alpha=0.5, tau=0.5, steps=range(13, 20))
    other_seed = batches(strategy, TABLE, LANGS, 6, 12, alpha=0.5, tau=0.5, steps=range(20))
    assert_same(full, again)
    assert_same(full[13:], resumed)
    assert [b.query_texts for b in full] != [b.query_texts for b in other_seed]
    assert [b.step for b in resumed] == list(range(13, 20))


def assert_same(left: list[Batch], right: list[Batch]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert (a.step, a.kind, a.query_texts, a.target_texts) == (
            b.step,
            b.kind,
            b.query_texts,
            b.target_texts,
        )
        np.testing.assert_array_equal(a.image_ids, b.image_ids)


def test_shards_concatenate_to_the_global_batch() -> None:
    batch = BatchSampler("multi", TABLE, LANGS, batch_size=8, seed=13).batch(2)
    shards = [batch.shard(rank, 2) for rank in range(2)]
    assert sum((s.query_texts for s in shards), []) == batch.query_texts
    np.testing.assert_array_equal(np.concatenate([s.image_ids for s in shards]), batch.image_ids)
    with pytest.raises(ValueError, match="divisible"):
        batch.shard(0, 3)


def test_aliases_are_canonicalised() -> None:
    table = TABLE.assign(lang=TABLE["lang"].replace({"de": "ja"}))
    batch = BatchSampler("cross", table, ["en", "jp"], batch_size=4, seed=0).batch(0)
    assert set(batch.query_langs) | set(batch.target_langs) == {"en", "ja"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 31}, "batch_size 31 exceeds the 30 images available"),
        (
            {"strategy": "cross", "langs": LANGS, "batch_size": 26},
            r"batch_size 26 exceeds the 25 .*'fr'",
        ),
        ({"strategy": "cross", "langs": ["en"]}, "needs at least two in langs"),
        ({"strategy": "hybrid", "langs": ["en"]}, "needs at least two in langs"),
        ({"strategy": "multi", "langs": ["en"]}, "needs at least two in langs"),
        ({"langs": ["en", "ru"]}, r"langs \['ru'\] have no captions"),
        ({"langs": ["en", "xx"]}, "langs: unknown language code 'xx'"),
        ({"langs": []}, "langs is empty"),
        ({"langs": ["en", "en"]}, "twice"),
        ({"strategy": "mixed"}, "strategy must be one of"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"alpha": 1.5}, r"alpha .* \[0, 1\]"),
        ({"tau": -1.0}, "tau must be"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs: dict, message: str) -> None:
    args = {"strategy": "mono", "captions": TABLE, "langs": ["en"], "batch_size": 4, "seed": 0}
    with pytest.raises(ValueError, match=message):
        BatchSampler(**(args | kwargs)).batch(0)


def test_mono_single_language_is_allowed() -> None:
    batch = BatchSampler("mono", TABLE, ["fr"], batch_size=25, seed=0).batch(0)
    assert set(batch.query_langs) == {"fr"} and batch.has_target.all()


@pytest.mark.parametrize(
    ("round_trips", "expected"),
    [
        (False, "4f04a62c4d841f2e69d6edd70d9a35355e944f26ddb82f143f503885bc14f110"),
        (True, "a50b3ed37ef989a6e6abc271f46fec988cc6e931cd7b73338e753de65d6c062f"),
    ],
)
def test_the_batch_stream_is_pinned(round_trips: bool, expected: str) -> None:
    """Every strategy's batches of a fixed table, hashed: an arm trained (or checkpointed)
    before a change to the samplers resumes on the same stream only if this holds. The samplers
    gave these digests both before and after they began to code the languages once (a numpy
    release that changes its generators' streams would fail this too, rightly: resumed arms
    would change). The first table is stored out of key order, the second (with round trips, a
    target_only caption after each first caption) in a plain positional index."""
    rng = np.random.default_rng(1)
    rows = [
        (i, lang, k, f"{lang}{i}.{k}")
        for i in range(3000)
        for lang in ("en", "de", "fr", "ja")
        if rng.random() < 0.8
        for k in range(int(rng.integers(1, 3)))
    ]
    table = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    table = table.sample(frac=1, random_state=0)  # stored order is not key order
    if round_trips:
        first = table[table["caption_idx"] == 0]
        table = pd.concat(
            [table.assign(target_only=False),
             first.assign(caption_idx=2, caption=first["caption"] + "*", target_only=True)],
            ignore_index=True,
        )  # fmt: skip
    digest = hashlib.sha256()
    for strategy in ("mono", "cross", "multi", "hybrid"):
        sampler = BatchSampler(strategy, table, ["en", "de", "fr", "ja"], 16, 3, 0.4, 0.5)
        for step in range(200):
            batch = sampler.batch(step)
            for part in (batch.image_ids, batch.query_rows, batch.target_rows):
                digest.update(part.tobytes())
    assert digest.hexdigest() == expected
