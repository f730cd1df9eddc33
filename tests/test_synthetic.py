"""The generated corpus: captions (known answers, scripts, parallelism), rendering, noise,
language mix, determinism, caching, atomic writes and loading. The held-out world and the leak
audit: tests/test_world.py."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
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
    Thing,
    covering_scenes,
    describe,
    generate_corpus,
    lexicon_words,
    load_pool,
    pool_captions,
    render_scene,
    sample_scenes,
    scene_of,
)
from xlr.langs import laion_mix

TINY = SyntheticSection(
    pretrain_images=300, finetune_images=40, eval_images=20, image_size=32, shard_size=100
)
LANGS = list(TINY.langs)


def scene(group: str, count: int, relation: str, reference: str) -> Scene:
    """``scene("small red circle", 2, "left_of", "large blue star")``."""
    size, colour, shape = group.split()
    ref_size, ref_colour, ref_shape = reference.split()
    return Scene(
        Thing(shape, colour, size), count, relation, Thing(ref_shape, ref_colour, ref_size)
    )


TWO_RED_CIRCLES = scene("small red circle", 2, "left_of", "large blue star")
KNOWN = {  # variant 0: the group, then the relation with the reference in its case
    "en": "two small red circles to the left of a large blue star",
    "de": "zwei kleine rote Kreise links von einem großen blauen Stern",
    "nl": "twee kleine rode cirkels links van een grote blauwe ster",
    "fr": "deux petits cercles rouges à gauche d'une grande étoile bleue",
    "es": "dos círculos rojos pequeños a la izquierda de una estrella azul grande",
    "it": "due cerchi rossi piccoli a sinistra di una stella blu grande",
    "pt": "dois círculos vermelhos pequenos à esquerda de uma estrela azul grande",
    "pl": "dwa małe czerwone koła na lewo od dużej niebieskiej gwiazdy",
    "ru": "два маленьких красных круга слева от большой синей звезды",
    "tr": "iki küçük kırmızı daire bir büyük mavi yıldızın solunda",
    "zh": "两个红色的小圆形在一个蓝色的大星形的左边",
    "ja": "小さな赤い丸が二つ大きな青い星の左にある",
    "ar": "دائرتان حمراوان صغيرتان على يسار نجمة زرقاء كبيرة",
    "hi": "दो छोटे लाल वृत्त एक बड़े नीले तारे के बाईं ओर हैं",
}
LATIN = r"[A-Za-zÀ-ÿĀ-ſ ,'-]+"
SCRIPTS = {  # a character class every caption of the language must match in full
    **{lang: LATIN for lang in ("en", "de", "nl", "fr", "es", "it", "pt", "pl", "tr")},
    "ru": r"[\u0400-\u04FF ,]+",
    "zh": r"[\u4E00-\u9FFF，]+",
    "ja": r"[\u3040-\u30FF\u4E00-\u9FFF、]+",
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
    assert {lang: describe(TWO_RED_CIRCLES, lang, 0) for lang in LANGS} == KNOWN


def test_grammar_spot_checks() -> None:
    star_above = scene("large orange star", 1, "above", "small white circle")
    assert describe(star_above, "en", 0) == "a large orange star above a small white circle"
    assert describe(star_above, "en", 3) == (
        "a small white circle at the bottom and a large orange star at the top"
    )
    assert describe(scene("large white heart", 1, "right_of", "small black cross"), "de", 0) == (
        "ein großes weißes Herz rechts von einem kleinen schwarzen Kreuz"  # dative after von
    )
    assert describe(scene("small red square", 1, "left_of", "small green heart"), "nl", 2) == (
        "een klein rood vierkant links en een klein groen hart rechts"  # een + het-word: bare
    )
    assert describe(scene("large white cross", 3, "above", "small yellow heart"), "fr", 0) == (
        "trois grandes croix blanches au-dessus d'un petit cœur jaune"  # de + un elides
    )
    assert describe(scene("small red star", 2, "below", "large black square"), "pt", 1) == (
        "abaixo de um quadrado preto grande, duas estrelas vermelhas pequenas"
    )
    assert describe(scene("large yellow star", 2, "above", "small yellow star"), "ru", 0) == (
        "две большие жёлтые звезды над маленькой жёлтой звездой"  # над + instrumental
    )
    assert describe(scene("small red square", 3, "left_of", "large green star"), "ar", 0) == (
        "ثلاثة مربعات حمراء صغيرة على يسار نجمة خضراء كبيرة"
    )
    assert describe(scene("small red circle", 3, "left_of", "large green cross"), "ar", 1) == (
        "على يسار صليب أخضر كبير ثلاث دوائر حمراء صغيرة"
    )
    assert describe(scene("small red circle", 1, "right_of", "large green star"), "hi", 2) == (
        "दाईं ओर एक छोटा लाल वृत्त है और बाईं ओर एक बड़ा हरा तारा है"
    )


def test_scripts_spacing_and_lexicon_cover_every_caption() -> None:
    for lang in LANGS:
        words = set(lexicon_words(lang))
        for shown in sample_scenes(np.random.default_rng(0), 150):
            for variant in range(len(synthetic.TEMPLATES)):
                text = describe(shown, lang, variant)
                assert re.fullmatch(SCRIPTS[lang], text), (lang, text)
                pieces = synthetic.caption_pieces(shown, lang, variant)
                assert {w for p in pieces for w in p.split()} - {","} <= words
    assert re.search(r"[\u3040-\u30FF]", "".join(lexicon_words("ja")))  # kana, not only Han
    assert {"Kreis", "Kreise", "Herz", "Herzen"} <= set(lexicon_words("de"))
    assert {"звезда", "звезды", "звездой"} <= set(lexicon_words("ru"))


def test_variants_are_parallel_translations() -> None:
    """Caption k states every attribute in every language: both colours map via the lexicon,
    the two size words appear in en as in de, and each variant words the scene differently."""
    de_colour = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb",
                 "orange": "orangefarben", "purple": "violett", "white": "weiß",
                 "black": "schwarz"}  # fmt: skip
    for shown in sample_scenes(np.random.default_rng(1), 200):
        colours = {shown.group.colour, shown.reference.colour}
        for variant in range(len(synthetic.TEMPLATES)):
            en, de = describe(shown, "en", variant), describe(shown, "de", variant)
            assert colours <= set(en.split())
            assert all(de_colour[c] in de for c in colours)
            assert not any(de_colour[c] in de for c in COLOURS if c not in colours)
            sizes = [w for w in en.split() if w in ("small", "large")]
            assert len(sizes) == 2 == len(re.findall(r"\b(klein|groß)", de)), (en, de)
    assert len({describe(TWO_RED_CIRCLES, "en", k) for k in range(4)}) == 4


@pytest.mark.parametrize("lang", LANGS)
def test_the_longest_captions_fit_the_tiny_context(lang: str) -> None:
    """Tokens per caption (a word a token, a character a token in zh/ja, as the tokenizer
    seeds and splits them) stay within 30, what a context of 32 leaves after <s> and </s>.
    The longest caption joins the longest group to the longest reference."""

    def tokens(text: str) -> int:
        return len(text) if lang in synthetic.UNSPACED else len(text.replace(",", " ,").split())

    for variant in range(len(synthetic.TEMPLATES)):
        base = TWO_RED_CIRCLES

        def longest(role: str, variant: int = variant, base: Scene = base) -> Thing:
            options = [replace(base, **{role: thing}) for thing in synthetic.all_things()]
            return getattr(max(options, key=lambda s: tokens(describe(s, lang, variant))), role)

        for count in (1, 2, 3):
            worst = Scene(longest("group"), count, "above", longest("reference"))
            assert tokens(describe(worst, lang, variant)) <= 30, describe(worst, lang, variant)


def test_lexicon_words_come_from_a_few_covering_scenes() -> None:
    """covering_scenes uses every word form: sampling many more scenes finds no new word."""
    assert len(covering_scenes()) < 2000
    for lang in ("de", "ru", "ar", "ja"):
        seen = {
            word
            for shown in sample_scenes(np.random.default_rng(2), 500)
            for variant in range(len(synthetic.TEMPLATES))
            for piece in synthetic.caption_pieces(shown, lang, variant)
            for word in piece.split()
        }
        assert seen - {","} <= set(lexicon_words(lang)), lang


def _red_and_blue(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) of the red and of the blue pixels."""
    rgb = pixels.astype(int)
    red = (rgb[..., 0] - rgb[..., 1] > 100) & (rgb[..., 0] - rgb[..., 2] > 100)
    blue = (rgb[..., 2] - rgb[..., 0] > 100) & (rgb[..., 2] - rgb[..., 1] > 60)
    assert red.sum() > 10 and blue.sum() > 10
    return np.argwhere(red).mean(axis=0)[::-1], np.argwhere(blue).mean(axis=0)[::-1]


def test_render_is_deterministic_and_varied() -> None:
    shown = scene("large red star", 2, "left_of", "large blue circle")
    a = render_scene(shown, 32, np.random.default_rng(1))
    b = render_scene(shown, 32, np.random.default_rng(1))
    c = render_scene(shown, 32, np.random.default_rng(2))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("relation", "axis", "sign"), [("left_of", 0, -1), ("right_of", 0, 1), ("above", 1, -1),
                                    ("below", 1, 1)]
)  # fmt: skip
def test_render_draws_what_the_caption_says(relation: str, axis: int, sign: int) -> None:
    """The red group stands on the side the relation names, the blue reference opposite."""
    shown = scene("large red star", 2, relation, "large blue circle")
    red, blue = _red_and_blue(render_scene(shown, 32, np.random.default_rng(3)))
    assert sign * (red[axis] - blue[axis]) > 10, (relation, red, blue)
    assert abs(red[1 - axis] - blue[1 - axis]) < 4


def test_pretrain_language_mix_follows_laion_within_binomial_tolerance() -> None:
    cfg = TINY.model_copy(update={"pretrain_images": 20000})
    scenes = sample_scenes(np.random.default_rng(0), cfg.pretrain_images)
    rows = pool_captions(cfg, "pretrain", scenes)
    assert len(rows) == len(scenes) and {r.caption_idx for r in rows} == {0}
    counts = pd.Series([r.lang for r in rows]).value_counts()
    n = len(rows)
    assert synthetic.pretrain_mix(cfg) == pytest.approx(laion_mix(LANGS))
    for lang, p in laion_mix(LANGS).items():
        assert abs(counts.get(lang, 0) - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1, lang
    assert 0 < counts["hi"] / n <= 0.01  # a rare language, as LAION's long tail has
    assert counts["en"] / n > 0.5


def test_a_language_left_out_of_pretraining_has_no_pretraining_caption() -> None:
    kept = [lang for lang in LANGS if lang not in ("pt", "ar")]
    cfg = TINY.model_copy(update={"pretrain_images": 5000, "pretrain_langs": kept})
    mix = synthetic.pretrain_mix(cfg)
    assert mix["pt"] == mix["ar"] == 0 and sum(mix.values()) == pytest.approx(1)
    assert {lang: mix[lang] for lang in kept} == pytest.approx(laion_mix(kept))
    rows = pool_captions(cfg, "pretrain", sample_scenes(np.random.default_rng(0), 5000))
    assert not {"pt", "ar"} & {r.lang for r in rows}
    finetune = pool_captions(cfg, "finetune", sample_scenes(np.random.default_rng(0), 3))
    assert {"pt", "ar"} <= {r.lang for r in finetune}  # still captioned outside pretraining
    uniform = synthetic.pretrain_mix(cfg.model_copy(update={"mix": "uniform"}))
    assert uniform["pt"] == 0 and uniform["en"] == pytest.approx(1 / len(kept))


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


@pytest.mark.parametrize("pool", ["val", "eval"])
def test_held_out_pools_are_clean_even_with_heavy_noise(pool: str) -> None:
    cfg = TINY.model_copy(update={"noise": NoiseSection(mismatch=0.5, truncate=0.3)})
    scenes = sample_scenes(np.random.default_rng(0), 30)
    rows = pool_captions(cfg, pool, scenes)
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
        "val/captions.parquet",
        "eval/metadata.parquet",
        "eval/captions.parquet",
    } <= differing


def test_manifest_counts_and_layout(corpus: Path) -> None:
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["config"]["base_url"]
    assert sum(manifest["counts"]["pretrain"].values()) == 300
    assert manifest["counts"]["finetune"] == {lang: 40 * 2 for lang in LANGS}
    assert (
        manifest["counts"]["eval"] == manifest["counts"]["val"] == {lang: 20 * 2 for lang in LANGS}
    )
    assert manifest["images"] == {"pretrain": 300, "finetune": 40, "val": 20, "eval": 20}
    assert manifest["compositions"] == {"world": 91200, "train": 91160, "val": 20, "eval": 20}
    for pool in POOLS:
        assert len(list((corpus / "images" / pool).glob("*.jpg"))) == synthetic.pool_size(
            TINY, pool
        )
    meta = pd.read_parquet(corpus / "finetune" / "metadata.parquet")
    laion = ["URL", "TEXT", "LANGUAGE", "similarity", "punsafe", "pwatermark", "WIDTH", "HEIGHT"]
    assert list(meta.columns[:9]) == [*laion, "ENG TEXT"]
    assert meta["URL"].iloc[0] == "http://127.0.0.1:8000/images/finetune/00000000.jpg"
    assert set(meta.groupby("image_id").size()) == {len(LANGS) * 2}


@pytest.mark.parametrize("pool", ["val", "eval"])
def test_held_out_captions_describe_their_scenes_in_every_language(corpus: Path, pool: str) -> None:
    captions = pd.read_parquet(corpus / pool / "captions.parquet")
    scenes = pd.read_parquet(corpus / pool / "scenes.parquet").set_index("image_id")
    assert list(captions.columns) == ["image_id", "lang", "caption_idx", "caption"]
    assert len(captions) == 20 * len(LANGS) * 2
    for row in captions.itertuples():
        shown = scene_of(scenes.loc[row.image_id])
        assert row.caption == describe(shown, row.lang, row.caption_idx)


def test_pools_share_no_image(corpus: Path) -> None:
    hashes = _hashes(corpus)
    images = [h for p, h in hashes.items() if p.startswith("images/")]
    assert len(images) == 380 and len(set(images)) == 380


def test_load_pool_shapes(corpus: Path) -> None:
    pretrain = load_pool(corpus, "pretrain")
    assert isinstance(pretrain, ImageTextSet) and isinstance(pretrain.images, ArrayImages)
    assert pretrain.images.pixels.shape == (300, 32, 32, 3)
    assert len(pretrain.captions) == 300 and pretrain.captions["image_id"].is_unique
    assert set(pretrain.captions["caption_idx"]) == {0}
    finetune = load_pool(corpus, "finetune")
    assert finetune.captions.groupby(["image_id", "lang"]).size().eq(2).all()
    assert len(finetune.captions) == 40 * len(LANGS) * 2
    for pool in ("val", "eval"):
        held_out = load_pool(corpus, pool)
        expected = pd.read_parquet(corpus / pool / "captions.parquet")
        cols = ["image_id", "lang", "caption_idx"]
        merged = held_out.captions.merge(expected, on=cols, suffixes=("", "_file"))
        assert len(merged) == len(expected) and (merged["caption"] == merged["caption_file"]).all()
        assert held_out.image_keys[3] == "00000003.jpg" and held_out.name == f"synthetic-{pool}"


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
        describe(TWO_RED_CIRCLES, "sv")
    old = tmp_path / "old"
    shutil.copytree(corpus, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["config"]["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorpusError, match="corpus format 1, this xlr reads format 2; delete"):
        load_pool(old, "eval")


def test_missing_shard_is_reported(tmp_path: Path) -> None:
    small = TINY.model_copy(
        update={"pretrain_images": 50, "finetune_images": 5, "eval_images": 5, "shard_size": 20}
    )
    out = generate_corpus(small, tmp_path / "c", progress=False)
    (out / "pretrain" / "shards" / "00001.tar").unlink()
    with pytest.raises(CorpusError, match=r"30 images .* manifest says 50"):
        load_pool(out, "pretrain")
