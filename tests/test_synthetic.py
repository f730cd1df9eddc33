"""The generated corpus: captions (known answers, scripts, parallelism), noise, language mix,
determinism, caching, atomic writes and loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlr.config import NoiseSection, SyntheticSection
from xlr.data import synthetic
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.synthetic import (
    COLOURS,
    POOLS,
    CorpusError,
    Scene,
    all_scenes,
    describe,
    generate_corpus,
    lexicon_words,
    load_pool,
    pool_captions,
    render_scene,
    sample_scenes,
)
from xlr.langs import laion_mix

TINY = SyntheticSection(
    pretrain_images=300, finetune_images=40, eval_images=20, image_size=32, shard_size=100
)
LANGS = list(TINY.langs)

KNOWN = {  # two small red circles on the left, variant 0 (size, colour, position after)
    "en": "two small red circles on the left",
    "de": "zwei kleine rote Kreise links",
    "nl": "twee kleine rode cirkels links",
    "fr": "deux petits cercles rouges à gauche",
    "es": "dos círculos rojos pequeños a la izquierda",
    "it": "due cerchi rossi piccoli a sinistra",
    "pt": "dois círculos vermelhos pequenos à esquerda",
    "pl": "dwa małe czerwone koła po lewej",
    "ru": "два маленьких красных круга слева",
    "tr": "iki küçük kırmızı daire solda",
    "zh": "两个红色的小圆形在左边",
    "ja": "小さな赤い丸が二つ左にある",
    "ar": "دائرتان حمراوان صغيرتان على اليسار",
    "hi": "दो छोटे लाल वृत्त बाईं ओर हैं",
}
LATIN = r"[A-Za-zÀ-ÿĀ-ſ ,]+"
SCRIPTS = {  # a character class every caption of the language must match in full
    **{lang: LATIN for lang in ("en", "de", "nl", "fr", "es", "it", "pt", "pl", "tr")},
    "ru": r"[\u0400-\u04FF ,]+",
    "zh": r"[\u4E00-\u9FFF]+",
    "ja": r"[\u3040-\u30FF\u4E00-\u9FFF]+",
    "ar": r"[\u0600-\u06FF ]+",
    "hi": r"[\u0900-\u097F ]+",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_corpus(TINY, tmp_path_factory.mktemp("corpus") / "c", progress=False)


def _hashes(corpus_dir: Path) -> dict[str, str]:
    files = json.loads((corpus_dir / "manifest.json").read_text())["files"]
    return {path: entry["sha256"] for path, entry in files.items()}


def test_known_captions_in_every_language() -> None:
    scene = Scene("circle", "red", "small", "left", 2)
    assert {lang: describe(scene, lang, 0) for lang in LANGS} == KNOWN


def test_grammar_spot_checks() -> None:
    assert describe(Scene("star", "orange", "large", "top", 1), "en", 0) == (
        "a large orange star at the top"
    )
    assert describe(Scene("star", "orange", "small", "top", 1), "en", 1) == (
        "at the top, an orange star"
    )
    assert describe(Scene("heart", "white", "large", "centre", 1), "de", 0) == (
        "ein großes weißes Herz in der Mitte"
    )
    assert (
        describe(Scene("square", "red", "small", "left", 1), "nl", 2) == "een klein rood vierkant"
    )
    assert describe(Scene("cross", "white", "large", "top", 3), "fr", 2) == (
        "trois grandes croix blanches"
    )
    assert describe(Scene("star", "red", "small", "top", 2), "pt", 2) == (
        "duas estrelas vermelhas pequenas"
    )
    assert describe(Scene("star", "yellow", "large", "top", 2), "ru", 2) == (
        "две большие жёлтые звезды"
    )
    assert (
        describe(Scene("square", "red", "small", "top", 3), "ar", 2) == "ثلاثة مربعات حمراء صغيرة"
    )
    assert describe(Scene("circle", "red", "small", "top", 3), "ar", 2) == "ثلاث دوائر حمراء صغيرة"


def test_scripts_spacing_and_lexicon_cover_every_caption() -> None:
    for lang in LANGS:
        words = set(lexicon_words(lang))
        for scene in all_scenes()[::7]:
            for variant in range(len(synthetic.TEMPLATES)):
                text = describe(scene, lang, variant)
                assert re.fullmatch(SCRIPTS[lang], text), (lang, text)
                pieces = synthetic.caption_pieces(scene, lang, variant)
                assert {w for p in pieces for w in p.split()} - {","} <= words
    assert re.search(r"[\u3040-\u30FF]", "".join(lexicon_words("ja")))  # kana, not only Han
    assert "Kreis" in lexicon_words("de") and "Kreise" in lexicon_words("de")


def test_variants_are_parallel_translations() -> None:
    """Caption k states the same attributes in every language: colour words map via the
    lexicon, and the size word appears in en exactly when it does in de."""
    de_colour = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb",
                 "orange": "orangefarben", "purple": "violett", "white": "weiß",
                 "black": "schwarz"}  # fmt: skip
    for scene in all_scenes()[::11]:
        for variant in range(len(synthetic.TEMPLATES)):
            en, de = describe(scene, "en", variant), describe(scene, "de", variant)
            assert scene.colour in en.split()
            assert de_colour[scene.colour] in de
            assert not any(de_colour[c] in de for c in COLOURS if c != scene.colour)
            assert (scene.size in en) == any(w in de for w in ("klein", "groß"))
    assert len({describe(Scene("star", "red", "small", "top", 2), "en", k) for k in range(5)}) == 5


def test_render_is_deterministic_and_varied() -> None:
    scene = Scene("star", "red", "large", "centre", 2)
    a = render_scene(scene, 32, np.random.default_rng(1))
    b = render_scene(scene, 32, np.random.default_rng(1))
    c = render_scene(scene, 32, np.random.default_rng(2))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    red = (a[..., 0].astype(int) - a[..., 1]) > 100  # the red star is visible and central
    ys, xs = np.nonzero(red)
    assert red.sum() > 20 and abs(xs.mean() - 15.5) < 4 and abs(ys.mean() - 15.5) < 4


def test_pretrain_language_mix_follows_laion_within_binomial_tolerance() -> None:
    cfg = TINY.model_copy(update={"pretrain_images": 20000})
    scenes = sample_scenes(np.random.default_rng(0), cfg.pretrain_images)
    rows = pool_captions(cfg, "pretrain", scenes)
    assert len(rows) == len(scenes) and {r.caption_idx for r in rows} == {0}
    counts = pd.Series([r.lang for r in rows]).value_counts()
    n = len(rows)
    for lang, p in laion_mix(LANGS).items():
        assert abs(counts.get(lang, 0) - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1, lang
    assert 0 < counts["hi"] / n <= 0.01  # a rare language, as LAION's long tail has
    assert counts["en"] / n > 0.5


def test_noise_rates_and_kinds() -> None:
    noise = NoiseSection(mismatch=0.1, truncate=0.1, boilerplate=0.1)
    cfg = TINY.model_copy(update={"noise": noise})
    scenes = sample_scenes(np.random.default_rng(0), 300)
    rows = pool_captions(cfg, "finetune", scenes)  # 300 images x 14 languages x 2 captions
    n = len(rows)
    kinds = pd.Series([r.caption.noise for r in rows]).value_counts()
    for kind in ("mismatch", "truncate", "boilerplate"):
        assert abs(kinds[kind] - 0.1 * n) <= 4 * np.sqrt(n * 0.09), kind
    for row in rows:
        clean = describe(scenes[row.image_id], row.lang, row.caption_idx)
        text = row.caption.text
        if row.caption.noise == "clean":
            assert text == clean
        elif row.caption.noise == "truncate":
            assert clean.startswith(text) and 0 < len(text) < len(clean)
        elif row.caption.noise == "boilerplate":
            assert text != clean and (clean in text or clean.upper() in text)
        else:
            assert text != clean and row.similarity < 0.25
    clean_sims = [r.similarity for r in rows if r.caption.noise == "clean"]
    assert min(clean_sims) > 0.25
    en_rows = [r for r in rows if r.lang == "en"]
    assert all(r.caption.text == r.caption.eng_text for r in en_rows)


def test_eval_pool_is_clean_even_with_heavy_noise() -> None:
    cfg = TINY.model_copy(update={"noise": NoiseSection(mismatch=0.5, truncate=0.3)})
    scenes = sample_scenes(np.random.default_rng(0), 30)
    rows = pool_captions(cfg, "eval", scenes)
    assert {r.caption.noise for r in rows} == {"clean"}
    assert all(r.caption.text == describe(scenes[r.image_id], r.lang, r.caption_idx) for r in rows)


def test_noise_shares_over_one_are_an_error() -> None:
    cfg = TINY.model_copy(update={"noise": NoiseSection(mismatch=0.6, truncate=0.6)})
    with pytest.raises(ValueError, match="noise shares sum"):
        pool_captions(cfg, "pretrain", sample_scenes(np.random.default_rng(0), 5))


def test_same_seed_identical_files_other_seed_different(corpus: Path, tmp_path: Path) -> None:
    again = generate_corpus(TINY, tmp_path / "again", progress=False)
    assert _hashes(again) == _hashes(corpus)
    for path in ("manifest.json", "pretrain/shards/00000.tar", "pretrain/shards/00000.parquet"):
        assert (again / path).read_bytes() == (corpus / path).read_bytes()
    other = generate_corpus(TINY.model_copy(update={"seed": 1}), tmp_path / "b", progress=False)
    differing = {p for p, h in _hashes(other).items() if _hashes(corpus).get(p) != h}
    assert {
        "pretrain/shards/00000.tar",
        "eval/metadata.parquet",
        "eval/captions.parquet",
    } <= differing


def test_manifest_counts_and_layout(corpus: Path) -> None:
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["config"]["base_url"]
    assert sum(manifest["counts"]["pretrain"].values()) == 300
    assert manifest["counts"]["finetune"] == {lang: 40 * 2 for lang in LANGS}
    assert manifest["counts"]["eval"] == {lang: 20 * 2 for lang in LANGS}
    for pool in POOLS:
        assert len(list((corpus / "images" / pool).glob("*.jpg"))) == synthetic.pool_size(
            TINY, pool
        )
    meta = pd.read_parquet(corpus / "finetune" / "metadata.parquet")
    laion = ["URL", "TEXT", "LANGUAGE", "similarity", "punsafe", "pwatermark", "WIDTH", "HEIGHT"]
    assert list(meta.columns[:9]) == [*laion, "ENG TEXT"]
    assert meta["URL"].iloc[0] == "http://127.0.0.1:8000/images/finetune/00000000.jpg"
    assert set(meta.groupby("image_id").size()) == {len(LANGS) * 2}


def test_eval_captions_describe_their_scenes_in_every_language(corpus: Path) -> None:
    captions = pd.read_parquet(corpus / "eval" / "captions.parquet")
    scenes = pd.read_parquet(corpus / "eval" / "scenes.parquet").set_index("image_id")
    assert list(captions.columns) == ["image_id", "lang", "caption_idx", "caption"]
    assert len(captions) == 20 * len(LANGS) * 2
    for row in captions.itertuples():
        s = scenes.loc[row.image_id]
        scene = Scene(s["shape"], s["colour"], s["size"], s["position"], int(s["count"]))
        assert row.caption == describe(scene, row.lang, row.caption_idx)


def test_pools_share_no_image(corpus: Path) -> None:
    hashes = _hashes(corpus)
    images = [h for p, h in hashes.items() if p.startswith("images/")]
    assert len(images) == 360 and len(set(images)) == 360


def test_load_pool_shapes(corpus: Path) -> None:
    pretrain = load_pool(corpus, "pretrain")
    assert isinstance(pretrain, ImageTextSet) and isinstance(pretrain.images, ArrayImages)
    assert pretrain.images.pixels.shape == (300, 32, 32, 3)
    assert len(pretrain.captions) == 300 and pretrain.captions["image_id"].is_unique
    assert set(pretrain.captions["caption_idx"]) == {0}
    finetune = load_pool(corpus, "finetune")
    assert finetune.captions.groupby(["image_id", "lang"]).size().eq(2).all()
    assert len(finetune.captions) == 40 * len(LANGS) * 2
    evaluation = load_pool(corpus, "eval")
    expected = pd.read_parquet(corpus / "eval" / "captions.parquet")
    cols = ["image_id", "lang", "caption_idx"]
    merged = evaluation.captions.merge(expected, on=cols, suffixes=("", "_file"))
    assert len(merged) == len(expected) and (merged["caption"] == merged["caption_file"]).all()
    assert evaluation.image_keys[3] == "00000003.jpg"


def test_second_call_is_a_cache_hit(corpus: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    assert generate_corpus(TINY, corpus, progress=False) == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_failure_mid_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = synthetic.render_scene

    def flaky(*args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > 150:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr("xlr.data.synthetic.corpus.render_scene", flaky)  # where pools call it
    with pytest.raises(RuntimeError, match="disk full"):
        generate_corpus(TINY, tmp_path / "c", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_changed_config_replaces_the_old_corpus(tmp_path: Path) -> None:
    small = TINY.model_copy(update={"pretrain_images": 50, "finetune_images": 5, "eval_images": 5})
    out = generate_corpus(small, tmp_path / "c", progress=False)
    generate_corpus(small.model_copy(update={"seed": 3}), out, progress=False)
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_bad_inputs_name_the_path_and_the_fix(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="generate_corpus"):
        load_pool(tmp_path / "missing", "eval")
    with pytest.raises(CorpusError, match="unknown pool 'test'"):
        load_pool(corpus, "test")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(CorpusError, match=r"broken.*corrupt.*delete"):
        load_pool(broken, "eval")
    with pytest.raises(CorpusError, match="corrupt"):
        generate_corpus(TINY, broken, progress=False)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="refusing to overwrite"):
        generate_corpus(TINY, stranger, progress=False)
    with pytest.raises(ValueError, match="no caption lexicon for language 'sv'"):
        describe(Scene("star", "red", "small", "top", 1), "sv")


def test_missing_shard_is_reported(tmp_path: Path) -> None:
    small = TINY.model_copy(
        update={"pretrain_images": 50, "finetune_images": 5, "eval_images": 5, "shard_size": 20}
    )
    out = generate_corpus(small, tmp_path / "c", progress=False)
    (out / "pretrain" / "shards" / "00001.tar").unlink()
    with pytest.raises(CorpusError, match=r"30 images .* manifest says 50"):
        load_pool(out, "pretrain")
