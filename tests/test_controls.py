"""The controls of notebook 05: a bias planted in a language-blind model must be seen, more as
it grows and never where none was planted (and the control can fail), seeds of one arm rarely
differ."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_bias import simulated_ranks

from xlr.analysis import positive_control as planting
from xlr.analysis.bias import rank_distance_per_query
from xlr.analysis.intervals import paired_comparison
from xlr.analysis.negative_control import (
    NEGATIVE_CONTROL_TABLE,
    NO_REPLICATE,
    chance_pattern,
    negative_control,
    negative_control_summary,
    save_negative_control,
)
from xlr.analysis.positive_control import (
    POSITIVE_CONTROL_TABLE,
    check_positive_control,
    dose_response_points,
    dose_response_table,
    positive_control,
    positive_control_shortfalls,
    positive_control_summary,
    save_positive_control,
)
from xlr.config import EvalSection, parse_params
from xlr.data.imagetext import ArrayImages, ImageStore, ImageTextSet
from xlr.eval.embedded import EmbeddedSet, embed_model
from xlr.eval.planted import (
    PLANTED_FRACTION,
    control_doses,
    plant_bias,
    planted_language,
    planted_name,
    translation_distance,
    unit_direction,
)
from xlr.eval.tasks import evaluate_arm
from xlr.report_banner import banner, negative_control_warning, positive_control_warning

LANGS = ["en", "de", "fr", "ja"]
N_IMAGES, DIM = 40, 24


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def blind_set() -> ImageTextSet:
    """``N_IMAGES`` images with one parallel caption each in ``LANGS`` (``"<lang> <image>"``)."""
    pixels = np.zeros((N_IMAGES, 2, 2, 3), dtype=np.uint8)
    pixels[:, 0, 0, 0] = np.arange(N_IMAGES)
    rows = [(i, lang, 0, f"{lang} {i}") for lang in LANGS for i in range(N_IMAGES)]
    captions = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    keys = [f"{i}.jpg" for i in range(N_IMAGES)]
    return ImageTextSet("blind", keys, ArrayImages(pixels), captions, parallel=True)


class BlindEncoder:
    """A language-blind, imperfect encoder: image i is a fixed random unit vector e_i, and a
    caption of image i in any language is e_i plus noise drawn alike for every language."""

    name = "blind"
    checkpoint = "blindckpt"

    def __init__(self) -> None:
        self.images = _unit(np.random.default_rng(0).standard_normal((N_IMAGES, DIM)))

    def describe(self) -> dict[str, Any]:
        return {"encoder": "BlindEncoder"}

    def encode_images(self, images: ImageStore) -> np.ndarray:
        ids = [int(np.asarray(images[i])[0, 0, 0]) for i in range(len(images))]
        return self.images[ids].astype(np.float32)

    def encode_texts(self, texts: Sequence[str], lang: str) -> np.ndarray:
        ids = [int(text.split()[1]) for text in texts]
        rng = np.random.default_rng(LANGS.index(lang) + 1)  # the same law in every language
        noise = 0.12 * rng.standard_normal((len(ids), DIM))
        return _unit(self.images[ids] + noise).astype(np.float32)


def planted_ranks(fractions: Sequence[float]) -> tuple[pd.DataFrame, float]:
    """The blind encoder's multilingual ranks and its copies' with a bias of each of
    ``fractions`` planted in the first seen language, as evaluate_controls ranks them; and the
    translation distance."""
    encoder, eval_set = BlindEncoder(), blind_set()
    seen, heldout = LANGS[:3], LANGS[3:]
    lang = planted_language(seen)
    embedded = embed_model(encoder, eval_set, LANGS, "all", ("zeroshot", 0, None), None)
    run = {"tasks": ["multilingual"], "base_seed": 0}
    _, real = evaluate_arm(encoder, eval_set, seen, heldout, arm="zeroshot", **run)
    tables = [real]
    for fraction in fractions:
        bias = plant_bias(embedded, lang, fraction, seed=0)
        _, planted = evaluate_arm(bias.plant(embedded), eval_set, seen, heldout,
                                       arm=planted_name(lang, fraction), **run)  # fmt: skip
        tables.append(planted)
    return pd.concat(tables, ignore_index=True), bias.translation_distance


JUDGED = [0.0, PLANTED_FRACTION]  # the doses the control judges


def test_a_bias_planted_in_a_blind_model_is_seen() -> None:
    ranks, distance = planted_ranks(JUDGED)
    assert 0.5 < distance < 0.9  # translations near (as the smoke base's, 0.62), not identical
    table = check_positive_control(positive_control(ranks, "en", JUDGED), required=True)
    planted = table[table["fraction"] == PLANTED_FRACTION]
    captions = planted[planted["query_kind"] == "caption"].set_index(["task", "measure"])
    assert captions["seen"].all() and len(captions) == 4  # two pools x two measures
    assert (captions.xs("rank distance", level="measure")["estimate"] > 0).all()
    assert (captions.xs("mAP", level="measure")["estimate"] < 0).all()
    required = table[table["role"] == "required"].set_index(["task", "measure"]).index
    assert sorted(required) == [
        ("multilingual", "mAP"), ("multilingual_seen", "mAP"),
        ("multilingual_seen", "rank distance"),
    ]  # fmt: skip  # what the claims read; the all-language rank distance is shown only
    unseen = table.assign(seen=table["role"] == "required")  # only the rows nobody reads fail
    assert check_positive_control(unseen, required=True) is unseen
    summary = positive_control_summary(unseen)
    assert summary["role"].tolist()[:6] == ["required"] * 3 + ["zero dose"] * 3  # judged first
    assert summary["result"].tolist()[:6] == ["pass"] * 6
    assert set(summary["result"].tolist()[6:]) == {"not seen"}  # shown, not required
    assert summary.loc[0, "pool"] == "seen languages" and summary.loc[0, "queries"] == "caption"
    assert summary["dose"].tolist() == ["2x"] * 3 + ["0x"] * 3 + ["2x"] * 5


def test_the_bias_grows_with_its_dose_and_is_not_seen_at_zero() -> None:
    """The default doses on the blind model: mAP falls further at every larger dose (a known
    direction: the planted language's captions move away from everything else), nothing differs
    at a dose of 0, where the copy is the real model's embeddings (its ranks are the real
    model's bit for bit), and the judged dose passes. The judged summary holds the judged and
    zero-dose rows; the dose table every dose, in order."""
    doses = control_doses(EvalSection().control_doses)
    assert doses == [0.0, 0.5, 1.0, 2.0, 4.0]
    ranks, _ = planted_ranks(doses)
    table = check_positive_control(positive_control(ranks, "en", doses), required=True)
    captions = table[(table["query_kind"] == "caption") & (table["measure"] == "mAP")]
    for _, pool in captions.groupby("task"):
        estimates = pool.sort_values("fraction")["estimate"].to_numpy()
        assert np.all(np.diff(estimates) < 0), estimates
    zero = table[table["fraction"] == 0]
    assert not zero["differs"].any() and (zero[["estimate", "low", "high"]] == 0).all().all()
    zero_copy = ranks[ranks["arm"] == planted_name("en", 0)]["rank"].to_numpy()
    np.testing.assert_array_equal(zero_copy, ranks[ranks["arm"] == "zeroshot"]["rank"].to_numpy())
    assert sorted(zero.loc[zero["role"] == "zero dose", ["task", "measure"]].itertuples(
        index=False, name=None)) == [("multilingual", "mAP"), ("multilingual_seen", "mAP"),
                                     ("multilingual_seen", "rank distance")]  # fmt: skip
    summary = positive_control_summary(table)
    assert summary["role"].tolist() == ["required"] * 3 + ["zero dose"] * 3 + ["shown"] * 5
    assert (summary.loc[summary["role"] != "shown", "result"] == "pass").all()
    assert set(summary.loc[summary["role"] == "zero dose", "dose"]) == {"0x"}
    wide = dose_response_table(table)
    assert list(wide.columns) == ["benchmark", "pool", "queries", "measure",
                                  "0x", "0.5x", "1x", "2x", "4x"]  # fmt: skip
    assert len(wide) == 8  # two pools x two query kinds x two measures
    points = dose_response_points(table)
    assert {"pool", "queries"} <= set(points.columns) and "task" not in points.columns
    assert len(points) == len(table)


def test_a_bias_seen_where_nothing_was_planted_fails_the_control(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A difference at a dose of 0 is an error of the comparison, whichever its side: the
    judged dose's copy filed as the zero dose (mAP down, rank distance up) fails the control by
    name, and so does a zero-dose copy with perfect ranks (mAP up: the side a bias would not
    move it)."""
    ranks, _ = planted_ranks([PLANTED_FRACTION])
    relabelled = ranks.replace(
        {"arm": {planted_name("en", PLANTED_FRACTION): planted_name("en", 0)}}
    )
    both = pd.concat([ranks, relabelled[relabelled["arm"] != "zeroshot"]], ignore_index=True)
    table = positive_control(both, "en", [0.0, PLANTED_FRACTION])
    with pytest.raises(AssertionError, match=r"dose 0x.*a difference where nothing was planted"):
        check_positive_control(table, required=True)
    summary = positive_control_summary(table)
    assert (summary.loc[summary["role"] == "zero dose", "result"] == "FAIL").all()
    assert len(positive_control_shortfalls(summary)) == 3
    with pytest.raises(AssertionError, match="no comparison at the judged dose"):
        check_positive_control(positive_control(both, "en", [0.0]), required=True)
    with pytest.raises(AssertionError, match=r"no comparison at the zero dose.*re-run notebook 04"):
        check_positive_control(positive_control(ranks, "en", [PLANTED_FRACTION]), required=True)
    zero = planted_name("en", 0)
    first_ranks = both.groupby(["arm", "task", "query_idx"]).cumcount() + 1  # 1, 2, ... a query
    perfect = both.assign(rank=both["rank"].where(both["arm"] != zero, first_ranks))
    table = positive_control(perfect, "en", [0, 0.0, PLANTED_FRACTION])  # a dose given twice
    assert len(table) == 2 * len(positive_control(ranks, "en", [PLANTED_FRACTION]))
    mean_ap = table[(table["role"] == "zero dose") & (table["measure"] == "mAP")]
    assert (mean_ap["estimate"] > 0).all() and not mean_ap["seen"].any()
    with pytest.raises(AssertionError, match="a difference where nothing was planted"):
        check_positive_control(table, required=True)


def test_the_positive_control_can_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unplanted, _ = planted_ranks([0.0])
    relabelled = unplanted.replace(
        {"arm": {planted_name("en", 0): planted_name("en", PLANTED_FRACTION)}}
    )
    table = positive_control(relabelled, "en", [PLANTED_FRACTION])  # nothing planted, judged
    assert not table.loc[table["query_kind"] == "caption", "seen"].all()
    failed = r"(?s)positive control failed.*require_controls is set"
    with pytest.raises(AssertionError, match=failed):
        check_positive_control(table, required=True)
    assert check_positive_control(table, required=False) is table  # reported, not enforced
    printed = capsys.readouterr().out
    assert "reported, not enforced" in printed and "planted - real" in printed
    assert "FAIL" in positive_control_summary(table)["result"].tolist()
    ranks, _ = planted_ranks(JUDGED)

    def language_blind_measure(table: pd.DataFrame, partial: bool) -> pd.DataFrame:
        per_query = rank_distance_per_query(table, partial=partial)
        return per_query.assign(value=per_query["n_langs"].astype(float))  # a broken measure

    monkeypatch.setattr(planting, "rank_distance_per_query", language_blind_measure)
    with pytest.raises(AssertionError, match="went unseen"):
        check_positive_control(positive_control(ranks, "en", JUDGED), required=True)


def three_bases(doses: Sequence[float], zero_doses: Sequence[float] = (0.0,) * 3) -> pd.DataFrame:
    """Three bases' ranks, base b's judged copy being the blind model's copy at ``doses[b]`` and
    its zero-dose copy the one at ``zero_doses[b]`` (relabelled), each with the real model."""
    ranks, _ = planted_ranks(sorted({0.0, *doses, *zero_doses}))
    judged, zero = planted_name("en", PLANTED_FRACTION), planted_name("en", 0.0)
    bases = []
    for base, (dose, zero_dose) in enumerate(zip(doses, zero_doses, strict=True)):
        copies = {planted_name("en", dose): judged, planted_name("en", zero_dose): zero}
        real = ranks[ranks["arm"] == "zeroshot"]
        for name, label in copies.items():
            real = pd.concat([real, ranks[ranks["arm"] == name].assign(arm=label)])
        bases.append(real.assign(base_seed=base))
    return pd.concat(bases, ignore_index=True)


def test_the_control_is_judged_in_every_base_on_its_own() -> None:
    """Bases whose planted effects differ in size (the blind model's copies at 1x, 4x and 2x):
    the pooled interval's two degrees of freedom take it across zero, yet every base sees the
    bias, so the control passes; one base that does not see it (0.5x: the seen pool's rank
    distance +0.07 [-0.01, +0.14] there) fails it, however large the others' effect."""
    table = check_positive_control(positive_control(three_bases([1.0, 4.0, 2.0]), "en", JUDGED),
                                   required=True)  # fmt: skip
    required = table[table["role"] == "required"].set_index(["task", "measure"])
    distance = required.loc[("multilingual_seen", "rank distance")]
    assert distance["low"] < 0 < distance["estimate"] and distance["n_bases"] == 3
    assert (required["bases_seeing"] == 3).all() and required["seen"].all()
    summary = positive_control_summary(table)
    assert summary.loc[summary["role"] == "required", "bases"].tolist() == ["seen in 3 of 3"] * 3
    assert (
        summary.loc[summary["role"] == "zero dose", "bases"].tolist() == ["differs in 0 of 3"] * 3
    )
    weak = positive_control(three_bases([4.0, 4.0, 0.5]), "en", JUDGED)
    with pytest.raises(AssertionError, match=r"rank distance, dose 2x: .*seen in 2 of 3"):
        check_positive_control(weak, required=True)


def test_a_difference_in_one_base_at_the_zero_dose_fails_the_control(tmp_path: Path) -> None:
    """One base whose zero-dose copy is not the real model (the 0.5x copy filed as 0x): pooled
    over three bases the difference is within its interval, yet that base differs, so the
    control fails, and the landing page says in how many bases."""
    table = positive_control(three_bases([2.0] * 3, zero_doses=[0.0, 0.0, 0.5]), "en", JUDGED)
    zero = table[(table["role"] == "zero dose") & (table["measure"] == "mAP")]
    pooled_holds_zero = (zero["low"] <= 0) & (zero["high"] >= 0)
    assert (zero["differs"] & pooled_holds_zero).any()  # all-language mAP: -0.010 in base 2
    with pytest.raises(AssertionError, match=r"dose 0x: .*differs in 1 of 3 \(a difference where"):
        check_positive_control(table, required=True)
    save_positive_control(table, tmp_path / "tables")
    assert "differs in 1 of 3" in str(positive_control_warning(tmp_path))


def test_a_base_without_its_planted_copy_is_named() -> None:
    ranks = three_bases([2.0] * 3)
    judged = planted_name("en", PLANTED_FRACTION)
    missing = ranks[(ranks["base_seed"] != 2) | (ranks["arm"] != judged)]
    with pytest.raises(ValueError, match=r"base 2 has no multilingual ranks of 'zeroshot\+en@2"):
        positive_control(missing, "en", JUDGED)


def laion_shaped(ranks: pd.DataFrame) -> pd.DataFrame:
    """``ranks`` cut to what a LAION validation split without translation holds: image i has
    its own caption (de for even i, fr for odd) and ENG TEXT, nothing else."""
    own = np.where(ranks["query_image_id"] % 2 == 0, "de", "fr")
    has = lambda lang: (lang == "en") | (lang == own)  # noqa: E731
    query_ok = (ranks["query_lang"] == "image") | has(ranks["query_lang"])
    return ranks[query_ok & has(ranks["relevant_lang"])].reset_index(drop=True)


def test_on_a_laion_split_the_caption_rank_distance_is_not_measured_and_not_passed() -> None:
    """Caption queries with one other language have no rank distance: its required row reads
    n/a and fails the control (a control not run is not passed), with the fix named; mAP and
    the image queries' distance over their two languages are still compared."""
    ranks, _ = planted_ranks(JUDGED)
    table = positive_control(laion_shaped(ranks), "en", JUDGED)
    unmeasured = table[~table["measured"] & (table["fraction"] == PLANTED_FRACTION)]
    kinds = unmeasured[["task", "measure", "query_kind"]].itertuples(index=False, name=None)
    assert sorted(kinds) == [
        ("multilingual", "rank distance", "caption"),
        ("multilingual_seen", "rank distance", "caption"),
    ]
    assert not unmeasured["seen"].any()
    judged = table[table["measured"] & (table["fraction"] == PLANTED_FRACTION)]
    measured = judged.set_index(["task", "query_kind", "measure"])
    assert measured.xs("mAP", level="measure")["seen"].all()
    assert ("multilingual_seen", "image", "rank distance") in measured.index
    with pytest.raises(AssertionError, match=r"(?s)went unseen.*data\.laion\.translate"):
        check_positive_control(table, required=True)
    summary = positive_control_summary(table)
    required = summary[summary["role"] == "required"].set_index("measure")
    assert required.loc["rank distance", "result"] == "n/a"
    assert (required.loc["mAP", "result"] == "pass").all()


def test_the_saved_positive_control_table_reaches_the_landing_page(tmp_path: Path) -> None:
    """What notebook 05 saves is what the landing page reads: the LAION-shaped control's n/a
    rank distance becomes a banner line naming it and the fix; the full control passes and
    gives none."""
    ranks, _ = planted_ranks(JUDGED)
    tables = tmp_path / "tables"
    laion = positive_control(laion_shaped(ranks), "en", JUDGED)
    paths = save_positive_control(laion, tables)
    assert [path.name for path in paths] == [f"{POSITIVE_CONTROL_TABLE}.csv",
                                             f"{POSITIVE_CONTROL_TABLE}.md"]  # fmt: skip
    assert "| n/a" in paths[1].read_text()
    warning = positive_control_warning(tmp_path)
    assert warning is not None
    assert "rank distance (blind, seen languages): not measured" in warning
    assert "data.laion.translate" in warning and "claims reading rank distance" in warning
    save_positive_control(positive_control(ranks, "en", JUDGED), tables)
    assert positive_control_warning(tmp_path) is None


def test_the_positive_control_needs_both_models() -> None:
    ranks, _ = planted_ranks(JUDGED)
    with pytest.raises(ValueError, match="no multilingual ranks of 'zeroshot"):
        positive_control(ranks[ranks["arm"] == "zeroshot"], "en", JUDGED)
    with pytest.raises(ValueError, match="at least one planted dose"):
        positive_control(ranks, "en", [])


def test_the_planted_copy_moves_one_language_only() -> None:
    encoder, eval_set = BlindEncoder(), blind_set()
    embedded = embed_model(encoder, eval_set, LANGS, "all", ("zeroshot", 0, None), None)
    bias = plant_bias(embedded, "de", 0.5, seed=3)
    real = embedded.texts["de"].copy()
    planted = bias.plant(embedded)
    moved = planted.texts["de"]
    np.testing.assert_array_equal(embedded.texts["de"], real)  # a copy moves, not the model
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(moved, _unit(real + bias.size * bias.direction), rtol=1e-6)
    assert bias.size == pytest.approx(0.5 * translation_distance(embedded, "de"))
    for lang in ("en", "fr", "ja"):
        assert planted.texts[lang] is embedded.texts[lang]
    assert planted.images is embedded.images
    assert plant_bias(embedded, "de", 0.0, 3).plant(embedded) is embedded  # dose 0: the model
    with pytest.raises(ValueError, match="'xx' is not embedded"):
        dataclasses.replace(bias, lang="xx").plant(embedded)
    with pytest.raises(ValueError, match=r"blind: the embeddings hold captions 'all'.*'first'"):
        evaluate_arm(
            planted, eval_set, LANGS[:3], LANGS[3:], eval_cfg=EvalSection(captions="first")
        )
    with pytest.raises(ValueError, match="study languages are"):
        evaluate_arm(planted, eval_set, LANGS[:2], LANGS[3:])  # fr embedded, not studied
    away = np.random.default_rng(1).standard_normal((2, DIM))
    direction = unit_direction(DIM, seed=3, away_from=away)
    assert np.abs(away @ direction).max() < 1e-5 and np.linalg.norm(direction) == pytest.approx(1)
    assert planted_language(["hi", "en"]) == "hi"  # the first seen, whatever it is
    assert bias.at(2.0).size == pytest.approx(2 * bias.translation_distance)
    assert bias.at(2.0).direction is bias.direction
    with pytest.raises(ValueError, match="at least 0"):
        bias.at(-1.0)
    assert control_doses([]) == [0.0, PLANTED_FRACTION]
    with pytest.raises(ValueError, match=r"eval\.control_doses.*distinct doses"):
        control_doses([1.0, 1.0000001])
    assert (
        planted_name("en", 2.0) == "zeroshot+en@2" and planted_name("en", 0.5) == "zeroshot+en@0.5"
    )


def test_translation_distance_known_answer() -> None:
    eval_set = blind_set()
    captions = {lang: eval_set.captions_in(lang).reset_index(drop=True) for lang in LANGS[:2]}
    texts = {"en": np.zeros((N_IMAGES, 2), np.float32), "de": np.zeros((N_IMAGES, 2), np.float32)}
    texts["en"][:, 0] = 1.0
    texts["de"][:, 1] = 1.0  # every translation sqrt(2) apart
    embedded = EmbeddedSet(np.eye(N_IMAGES, 2, dtype=np.float32), captions, texts, "all", True)
    assert translation_distance(embedded, "en") == pytest.approx(np.sqrt(2))
    with pytest.raises(ValueError, match="'fr' is not embedded"):
        translation_distance(embedded, "fr")


def test_a_model_whose_translations_coincide_is_refused_saying_why() -> None:
    """Planting a dose of 0 x 0 would fail the control as if the measures were blind."""
    eval_set = blind_set()
    captions = {lang: eval_set.captions_in(lang).reset_index(drop=True) for lang in LANGS[:2]}
    same = np.tile(np.float32([0.6, 0.8]), (N_IMAGES, 1))  # one output whatever the caption
    embedded = EmbeddedSet(np.eye(N_IMAGES, 2, dtype=np.float32), captions,
                           {"en": same, "de": same.copy()}, "all", True)  # fmt: skip
    assert translation_distance(embedded, "en") == 0.0
    with pytest.raises(ValueError, match=r"puts its en captions on their translations.*check the"):
        plant_bias(embedded, "en", PLANTED_FRACTION, seed=0)
    embedded.texts["de"][:, :] = [0.8, 0.6]  # translations apart: planted as before
    assert plant_bias(embedded, "en", PLANTED_FRACTION, seed=0).size > 0


def test_negative_control_compares_the_first_two_seeds_of_each_trained_arm() -> None:
    rng = np.random.default_rng(3)
    runs = [
        rank_distance_per_query(simulated_ranks(rng, arm=arm, seed=seed, base_seed=base))
        for arm in ("mono-full", "cross-full")
        for seed in (0, 1)
        for base in (0, 1, 2)  # one base leaves it not run: the test below
    ]
    runs.append(rank_distance_per_query(simulated_ranks(rng, arm="zeroshot", seed=None)))
    table = negative_control(pd.concat(runs), seeds=[0, 1])
    assert table["arm"].tolist() == ["mono-full", "cross-full"]  # zero-shot has no seeds
    assert table["p_value"].between(0, 1).all()
    expected = ["pass" if p >= 0.05 else "fail" for p in table["p_value"]]
    assert table["result"].tolist() == expected
    assert negative_control(pd.concat(runs), seeds=[0, 1], level=1.0)["result"].eq("fail").all()
    one_seed = negative_control(pd.concat(runs), seeds=[0])
    assert one_seed["p_value"].isna().all() and "two run.seeds" in one_seed["note"].item()
    assert one_seed["result"].item() == "not run"
    # the real study ranks three benchmarks: one row per benchmark and arm, each on its own
    other = pd.concat(runs).assign(benchmark="xm3600")
    both = negative_control(pd.concat([*runs, other]), seeds=[0, 1])
    assert both[["benchmark", "arm"]].values.tolist() == [
        [b, a] for b in ("synthetic", "xm3600") for a in ("mono-full", "cross-full")
    ]
    assert both["p_value"].tolist() == table["p_value"].tolist() * 2
    assert set(both["task"]) == set(table["task"]) and len(set(table["task"])) == 1


def seed_shift_world(
    rng: np.random.Generator, bases: Sequence[int], n_images: int = 500, seed_sd: float = 0.005
) -> pd.DataFrame:
    """Per-query values of one arm's seeds 0 and 1 on each base that differ by training noise
    only: each run shifts all its queries by one draw (SD ``seed_sd``), on top of an image
    difficulty every run shares and per-query noise, in three query languages."""
    difficulty = rng.normal(0.5, 0.2, n_images)
    frames = [
        pd.DataFrame(
            {
                "arm": "mono-full",
                "seed": seed,
                "base_seed": base,
                "benchmark": "synthetic",
                "task": "multilingual_seen",
                "query_idx": i * n_images + np.arange(n_images),
                "query_lang": lang,
                "query_image_id": np.arange(n_images),
                "query_kind": "caption",
                "value": difficulty + shift + rng.normal(0, 0.1, n_images),
            }
        )  # fmt: skip
        for base in bases
        for seed, shift in zip((0, 1), rng.normal(0, seed_sd, 2), strict=True)
        for i, lang in enumerate(("en", "de", "es"))
    ]
    return pd.concat(frames, ignore_index=True).astype({"seed": "Int64"})


def test_fallbacks_that_score_alike_share_one_negative_control_row() -> None:
    """In a seen-language pool an adapter arm's fallbacks are one model: one row, not three, so
    the summary's count of comparisons (and its binomial) weighs it once."""
    rng = np.random.default_rng(5)
    runs = {
        (seed, base): rank_distance_per_query(simulated_ranks(rng, seed=seed, base_seed=base))
        for seed in (0, 1)
        for base in (0, 1, 2)
    }
    alike = [run.assign(arm=f"adapters-{f}") for f in ("base", "nearest") for run in runs.values()]
    moved = [run.assign(arm="adapters-average", value=run["value"] + 1) for run in runs.values()]
    other = [run.assign(arm="mono-full") for run in runs.values()]
    table = negative_control(pd.concat([*alike, *moved, *other]), seeds=[0, 1])
    assert table["arm"].tolist() == ["mono-full", "adapters-base", "adapters-average"]
    notes = table.set_index("arm")["note"]
    assert "the same model here as adapters-nearest" in notes["adapters-base"]
    assert "same model" not in notes["adapters-average"] + notes["mono-full"]
    assert table.loc[1, "p_value"] == table.loc[2, "p_value"]  # a shift of 1 moves both seeds
    assert "of 3 comparisons" in negative_control_summary(table)
    own = negative_control(pd.concat([*other, *(r.assign(arm="my-arm") for r in runs.values())]),
                           seeds=[0, 1])  # fmt: skip
    assert own["arm"].tolist() == ["mono-full", "my-arm"]  # a user's label: a model of its own


def test_one_base_leaves_the_negative_control_not_run() -> None:
    """With one base (the real study's base_seeds: [0]) seeds 0 and 1 give one run of
    differences, whose interval covers image noise only: in worlds where two seeds differ by
    training noise alone, its p-value falls below 0.05 far more often than 5% of the time. That
    is not a test: the control is not run and says why. With three bases the difference has
    replicates, and over 40 such worlds the control fails at about the test level."""
    rng = np.random.default_rng(5)

    def one_base_p_value(world: pd.DataFrame) -> float:
        runs = world.groupby("seed")
        pair = paired_comparison(runs.get_group(0), runs.get_group(1), ["query_idx", "base_seed"])
        assert pair["training_unit"].item() == "none"
        return pair["p_value"].item()

    unjudged = [one_base_p_value(seed_shift_world(rng, bases=[0])) for _ in range(40)]
    assert np.mean(np.array(unjudged) < 0.05) > 0.25
    table = negative_control(seed_shift_world(rng, bases=[0]), seeds=[0, 1])
    assert table["result"].tolist() == ["not run"] and table["p_value"].isna().all()
    assert table["note"].item() == NO_REPLICATE
    assert negative_control_summary(table) == f"negative control not run: {NO_REPLICATE}"
    fails = [
        negative_control(seed_shift_world(rng, bases=[0, 1, 2]), seeds=[0, 1])["result"].item()
        for _ in range(40)
    ]
    assert "not run" not in fails
    assert fails.count("fail") / 40 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 40)


def test_negative_control_summary_weighs_failures_against_chance() -> None:
    """Known answers: 1 failure in 40 at 0.05 is what chance gives (P(>= 1) = 1 - 0.95^40); 10
    in 40 is not (binomial tail below 1e-4)."""
    rows = lambda fails: pd.DataFrame({"p_value": [0.01] * fails + [0.5] * (40 - fails)})  # noqa: E731
    line = negative_control_summary(rows(1))
    assert "1 of 40 comparisons have p < 0.05" in line and "2.0 expected by chance" in line
    assert f"= {1 - 0.95**40:.2g}" in line
    tail = negative_control_summary(rows(10)).rsplit("= ", 1)[1]
    assert float(tail.split()[0]) < 1e-4 and "lower bound" in tail
    assert "0 of 40" in negative_control_summary(rows(1), level=0.005)  # the level it is given
    none = pd.DataFrame({"p_value": [np.nan], "result": ["not run"]})
    assert negative_control_summary(none) == "negative control not run"


def test_the_banner_warns_when_seeds_differ_more_often_than_chance(tmp_path: Path) -> None:
    """Notebook 05 saves the negative control; the landing page reads it back as text. Known
    answers at 0.05 over 20 comparisons: 3 failures have P(>= 3) = 0.0755 by chance (no
    warning), 4 have P(>= 4) = 0.0159 (a warning); rows not run are not counted."""

    def saved(fails: int) -> Path:
        p_values = [0.01] * fails + [0.5] * (20 - fails) + [np.nan]
        table = pd.DataFrame(
            {"benchmark": "b", "task": "t", "arm": "multi", "seed_a": 0, "seed_b": 1,
             "p_value": p_values, "result": ["fail"] * fails + ["pass"] * (20 - fails)
             + ["not run"], "note": ""}
        )  # fmt: skip
        out = tmp_path / str(fails)
        paths = save_negative_control(table, out / "tables")
        assert [p.name for p in paths] == [
            f"{NEGATIVE_CONTROL_TABLE}.csv",
            f"{NEGATIVE_CONTROL_TABLE}.md",
        ]
        return out

    read_back = pd.read_csv(saved(3) / "tables" / f"{NEGATIVE_CONTROL_TABLE}.csv", dtype=str)
    shown = (tmp_path / "3" / "tables" / f"{NEGATIVE_CONTROL_TABLE}.md").read_text()
    assert "| 0.01 " in shown and "| – " in shown and "nan" not in shown and "<NA>" not in shown
    assert chance_pattern(read_back)[:2] == (3, 20)
    assert negative_control_warning(saved(3)) is None
    warning = negative_control_warning(saved(4))
    assert warning is not None and "4 of 20 comparisons" in warning and "P = 0.016" in warning
    assert "chance gives 1.0" in warning
    assert negative_control_warning(tmp_path / "nothing saved") is None
    params = parse_params(
        {"run": {"name": "r", "seeds": [0, 1]}, "data": {"train_langs": ["en", "de"]}}
    )
    assert "Negative control not passed" in banner(params, Path("params/r.yaml"), saved(4))
