"""Round-trip paraphrases (``data.laion.translate.paraphrase_via``): mono's text-text target on a
LAION pool. Known answers with a scripted translator (which pivot, what is dropped, where the
rows go), the batches that read them (mono targets them, nothing else sees them), the params
errors, and the real tiny M2M100 translating through a pivot with its own cache keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mt_models import build_mt_model
from test_laion_translate import _laion_params, laion_pool, settings

from xlr.config import ParamsError, parse_params
from xlr.data.imagetext import TARGET_ONLY, ArrayImages, ImageTextSet, target_only
from xlr.data.laion.paraphrase import paraphrase_pool, with_paraphrases
from xlr.data.laion.translate import (
    SOURCE_LANG,
    Seq2SeqTranslator,
    TranslationError,
    translate_pool,
    with_translations,
)
from xlr.data.translate_settings import TranslateSection
from xlr.train.batching import BatchSampler
from xlr.train.pairs import pair_graph, sorted_runs

CPU = torch.device("cpu")


class ScriptedTranslator(Seq2SeqTranslator):
    """Appends ``>lang`` on the way to a pivot and turns it into `` (lang)`` on the way back;
    a caption holding ``same`` comes back word for word, one holding ``case`` in capitals with a
    full stop, one holding ``lost`` empty, one holding ``val`` as ``a validation caption``.
    Counts the texts it is asked to translate per (source, target)."""

    def __init__(self, pivots: list[str]) -> None:
        super().__init__(
            TranslateSection(model="someone/mt", family="nllb", paraphrase_via=pivots), CPU
        )
        self.asked: dict[tuple[str, str], int] = {}

    def identity(self, lang: str, source: str = SOURCE_LANG) -> str:
        return f"scripted {source}->{lang}"

    def translate(self, texts: list[str], lang: str, source: str = SOURCE_LANG) -> list[str]:
        self.asked[(source, lang)] = self.asked.get((source, lang), 0) + len(texts)
        if not any(">" in text for text in texts):  # the way there
            return [f"{text}>{lang}" for text in texts]
        scripted = {"same": lambda own: own, "case": lambda own: own.upper() + ".",
                    "lost": lambda own: "", "val": lambda own: "A validation caption!"}  # fmt: skip
        back = []
        for text in texts:
            own = text.rsplit(">", 1)[0]
            rule = next((word for word in scripted if word in own), None)
            back.append(scripted[rule](own) if rule else f"{own} ({lang})")
        return back


def pool_of(rows: list[tuple[int, str, int, str]]) -> ImageTextSet:
    captions = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    captions["translated_by"] = ""
    images = captions["image_id"].max() + 1
    pixels = np.zeros((images, 2, 2, 3), dtype=np.uint8)
    return ImageTextSet("p", [f"k{i}" for i in range(images)], ArrayImages(pixels), captions)


def test_round_trips_go_through_the_first_other_pivot_and_drop_echoes(tmp_path: Path) -> None:
    pool = pool_of([
        (0, "de", 0, "ein Hund"), (0, "nl", 0, "een hond"), (1, "de", 0, "same Katze"),
        (1, "nl", 0, "een kat"), (2, "de", 0, "lost Haus"), (2, "fr", 0, "une maison"),
        (3, "de", 0, "case Baum"), (4, "de", 0, "val Tisch"),
    ])  # fmt: skip
    translator = ScriptedTranslator(["nl", "de"])
    held_out = {"a validation caption"}  # folded, as the split compares captions
    table = paraphrase_pool(
        pool.captions, pool.image_keys, ["de", "nl"], translator, tmp_path / "c.sqlite", held_out
    )
    # de goes through nl, nl (the first pivot) through de; fr is not a training language here
    assert table.values.tolist() == [
        ["k0", "de", "ein Hund (de)", "round trip via nl: scripted de->nl | scripted nl->de"],
        ["k0", "nl", "een hond (nl)", "round trip via de: scripted nl->de | scripted de->nl"],
        ["k1", "nl", "een kat (nl)", "round trip via de: scripted nl->de | scripted de->nl"],
    ]  # back word for word ('same'), folded ('case'), empty ('lost') or as a validation
    # caption ('val'): no target for them
    # de there (5) and nl back (2); nl there (2) and de back (5)
    assert translator.asked == {("de", "nl"): 7, ("nl", "de"): 7}
    again = ScriptedTranslator(["nl", "de"])
    assert paraphrase_pool(
        pool.captions, pool.image_keys, ["de", "nl"], again, tmp_path / "c.sqlite", held_out
    ).equals(table)
    assert again.asked == {}  # both legs read back from the cache


def test_round_trips_follow_their_image_and_are_marked_target_only() -> None:
    pool = pool_of([
        (0, "de", 0, "a"), (0, "de", 1, "b"), (1, "de", 0, "c"), (1, "en", 0, "d"),
    ])  # fmt: skip
    table = pd.DataFrame(
        [("k1", "de", "c2", "rt"), ("k0", "de", "a2", "rt"), ("k0", "de", "b2", "rt"),
         ("k1", "en", "d2", "rt")],
        columns=["image_key", "lang", "caption", "translated_by"],
    )  # fmt: skip
    captions = with_paraphrases(pool, table).captions
    added = captions[captions[TARGET_ONLY]]
    assert added[["image_id", "lang", "caption_idx", "caption"]].values.tolist() == [
        [1, "de", 2, "c2"], [0, "de", 2, "a2"], [0, "de", 3, "b2"], [1, "en", 2, "d2"],
    ]  # fmt: skip
    assert captions.loc[~captions[TARGET_ONLY], "caption"].tolist() == ["a", "b", "c", "d"]
    assert with_paraphrases(pool, table.iloc[:0]).captions[TARGET_ONLY].sum() == 0
    twice = ImageTextSet("p", ["k0", "k0"], pool.images, pool.captions)
    with pytest.raises(ValueError, match=r"p: image keys repeat \('k0'\)"):
        with_paraphrases(twice, table)
    stale = table.assign(image_key=["k1", "k0", "k7", "k1"])
    with pytest.raises(ValueError, match=r"p: round trips of image 'k7', which the fine-tuning "
                       r"pool does not hold; run notebook 01 again"):  # fmt: skip
        with_paraphrases(pool, stale)


def _paraphrased(images: int) -> tuple[ImageTextSet, ImageTextSet]:
    """A LAION-shaped pool (one caption per image and language, de-fr-en through a scripted
    translation) and the same pool with a round trip of every caption but image 0's German."""
    rows = []
    for i in range(images):
        for lang in ("en", "de", "fr"):
            rows.append((i, lang, 0, f"{lang} caption {i}"))
    pool = pool_of(rows)
    table = pd.DataFrame(
        [(pool.image_keys[i], lang, f"{lang} round trip {i}", "rt")
         for i, lang, _, _ in rows if (i, lang) != (0, "de")],
        columns=["image_key", "lang", "caption", "translated_by"],
    )  # fmt: skip
    return pool, with_paraphrases(pool, table)


def test_mono_targets_the_round_trip_and_no_batch_queries_or_pairs_it() -> None:
    plain, paraphrased = _paraphrased(12)
    marked = paraphrased.captions[TARGET_ONLY].to_numpy()
    langs = ["en", "de", "fr"]
    for strategy in ("mono", "cross", "multi", "hybrid"):
        before = BatchSampler(strategy, plain.captions, langs, batch_size=4, seed=3, alpha=0.5)
        after = BatchSampler(strategy, paraphrased.captions, langs, batch_size=4, seed=3, alpha=0.5)
        for step in range(40):
            old, new = before.batch(step), after.batch(step)
            # the same images and queries: the round trips change no draw
            assert np.array_equal(old.image_ids, new.image_ids)
            assert np.array_equal(old.query_rows, new.query_rows)
            assert not marked[new.query_rows].any()
            if new.kind != "mono":
                assert np.array_equal(old.target_rows, new.target_rows)
                assert not marked[new.target_rows].any()
                continue
            assert not old.has_target.any()  # LAION's shape: no second caption before
            for image, target, text in zip(
                new.image_ids, new.target_rows, new.target_texts, strict=True
            ):
                lang = new.query_langs[0]
                if (image, lang) == (0, "de"):
                    assert target == -1 and text is None
                else:
                    assert marked[target] and text == f"{lang} round trip {image}"
    graph = pair_graph(paraphrased.captions, langs, batch_size=4)
    assert graph.paraphrases == {"en": 12, "de": 11, "fr": 12}
    assert graph.captioned == {"en": 12, "de": 12, "fr": 12}
    assert graph.images == pair_graph(plain.captions, langs, batch_size=4).images
    assert "of those captioned): en (12 of 12), de (11 of 12)" in graph.describe()
    assert BatchSampler("hybrid", paraphrased.captions, langs, 4, seed=0).graph == graph


def test_round_trips_count_only_for_images_captioned_in_their_language() -> None:
    _, paraphrased = _paraphrased(6)
    captions = paraphrased.captions
    german = (captions["image_id"] == 1) & (captions["lang"] == "de")
    # image 1 loses its German caption but keeps its German round trip, twice
    second = captions[german & captions[TARGET_ONLY]].assign(caption_idx=2)
    orphaned = pd.concat([captions[~german | captions[TARGET_ONLY]], second], ignore_index=True)
    graph = pair_graph(orphaned, ["en", "de"], 4)
    assert graph.captioned == {"en": 6, "de": 5}
    assert graph.paraphrases == {"en": 6, "de": 4}  # image 0 has no German round trip


def test_a_row_without_a_mark_is_a_query_caption() -> None:
    _, paraphrased = _paraphrased(3)
    captions = paraphrased.captions
    row = pd.DataFrame([(0, "en", 9, "x")], columns=["image_id", "lang", "caption_idx", "caption"])
    unmarked = pd.concat([captions, row], ignore_index=True)
    assert unmarked[TARGET_ONLY].isna().iloc[-1]  # concatenated without the column
    assert target_only(unmarked).tolist() == [*captions[TARGET_ONLY].tolist(), False]


def test_a_negative_caption_index_is_refused() -> None:
    _, paraphrased = _paraphrased(6)
    captions = paraphrased.captions.copy()
    captions.loc[captions.index[captions[TARGET_ONLY]][0], "caption_idx"] = -1
    with pytest.raises(ValueError, match=r"negative caption_idx \(-1\)"):
        BatchSampler("mono", captions, ["en", "de"], batch_size=4, seed=0)


def test_a_round_trip_before_its_query_captions_is_refused() -> None:
    _, paraphrased = _paraphrased(6)
    captions = paraphrased.captions.copy()
    first = captions.index[captions[TARGET_ONLY]][0]
    captions.loc[first, "caption_idx"] = 0
    captions.loc[(captions["image_id"] == captions.loc[first, "image_id"])
                 & (captions["lang"] == captions.loc[first, "lang"])
                 & ~captions[TARGET_ONLY], "caption_idx"] = 1  # fmt: skip
    message = r"image 0 has a target_only caption in 'en' at caption_idx 0, before its query cap"
    with pytest.raises(ValueError, match=message):
        BatchSampler("mono", captions, ["en", "de"], batch_size=4, seed=0)
    with pytest.raises(ValueError, match=message):
        pair_graph(captions, ["en", "de"], batch_size=4)
    gaps = paraphrased.captions.assign(
        caption_idx=np.where(paraphrased.captions[TARGET_ONLY], 7, 2)
    )  # indices need not be consecutive: queries first is what counts
    assert BatchSampler("mono", gaps, ["en", "de"], batch_size=4, seed=0).batch(0).has_target.any()


def test_sorted_runs_are_numpys_unique_counts() -> None:
    values = np.sort(np.random.default_rng(0).integers(0, 50, 500))
    for part in (values, values[:1], values[:0]):
        distinct, counts = sorted_runs(part)
        expected = np.unique(part, return_counts=True)
        assert np.array_equal(distinct, expected[0]) and np.array_equal(counts, expected[1])


def test_params_name_the_paraphrase_fields() -> None:
    hub = {"model": "facebook/nllb-200-distilled-600M", "family": "nllb"}
    plain = parse_params(_laion_params(hub))
    assert "paraphrase_via" not in plain.data.laion.translate.model_dump()  # hashes unchanged
    params = parse_params(_laion_params(hub | {"paraphrase_via": ["NL", "de"]}))
    section = params.data.laion.translate
    assert section.paraphrase_via == ["nl", "de"]
    assert (section.pivot("de"), section.pivot("nl"), section.pivot("fr")) == ("nl", "de", "nl")
    for pivots, message in [
        (["nl"], r"paraphrase_via \['nl'\] must list at least two distinct languages"),
        (["ja", "jp"], r"must list at least two distinct languages"),  # one, by its alias
        (["nl", "xx"], r"paraphrase_via: unknown language code 'xx'"),
    ]:
        with pytest.raises(ParamsError, match=message):
            parse_params(_laion_params(hub | {"paraphrase_via": pivots}))
    marian = {"model": "Helsinki-NLP/opus-mt-en-{lang}", "family": "marian"}
    with pytest.raises(ParamsError, match=r"paraphrase_via needs a model that translates "
                       r"between any two languages \(family nllb or m2m100\)"):  # fmt: skip
        parse_params(_laion_params(marian | {"paraphrase_via": ["nl", "de"]}))
    with pytest.raises(TranslationError, match=r"'marian' translates English into one "
                       r"language per model and cannot translate 'de'"):  # fmt: skip
        Seq2SeqTranslator(TranslateSection(**marian), CPU).translate(["x"], "fr", source="de")


def test_the_real_model_round_trips_through_its_pivot(tmp_path: Path) -> None:
    model = build_mt_model(tmp_path / "m2m100", "m2m100")
    langs = ["en", "de", "fr"]
    translator = Seq2SeqTranslator(settings(model, paraphrase_via=["es", "it"]), CPU)
    pool = laion_pool(9)
    cache = tmp_path / "c.sqlite"
    pool = with_translations(
        pool, translate_pool(pool.captions, pool.image_keys, langs, translator, cache)
    )
    table = paraphrase_pool(pool.captions, pool.image_keys, langs, translator, cache)
    captions = pool.captions.set_index(["image_id", "lang"])["caption"]
    ids = {key: i for i, key in enumerate(pool.image_keys)}
    for key, lang, text in table[["image_key", "lang", "caption"]].itertuples(index=False):
        assert text and text != captions.loc[(ids[key], lang)]
    with sqlite3.connect(cache) as db:
        keys = {
            row[0].split(" src=")[-1] + "->" + row[1]
            for row in db.execute(
                "SELECT DISTINCT translator, lang FROM translations WHERE translator LIKE '% src=%'"
            )
        }
        english = db.execute(
            "SELECT COUNT(*) FROM translations WHERE lang = 'es' AND translator NOT LIKE '% src=%'"
        ).fetchone()[0]
    # every non-English source is keyed by it; English keys as before (translate_pool's too)
    assert keys == {"de->es", "fr->es", "es->en", "es->de", "es->fr"} and english > 0
    assert len(table) > 0
    paraphrased = with_paraphrases(pool, table)
    graph = pair_graph(paraphrased.captions, langs, batch_size=2)
    assert graph.paraphrases == table.groupby("lang").size().reindex(langs, fill_value=0).to_dict()
