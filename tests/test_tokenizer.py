"""The offline XLM-R tokenizer: XLM-R's ids, NFKC kept on reload, sane pieces in every language."""

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.tokenizer import HFTokenizer

from xlr.config import SYNTHETIC_LANGS
from xlr.models.tokenizer import MASK_TOKEN, build_tokenizer, load_tokenizer, tokenization_stats

# Real captions of the kind the generator writes, eight per language; zh and ja have no spaces.
SAMPLE: dict[str, list[str]] = {
    "en": [
        "a small red circle on the left", "a large blue square in the middle",
        "two green triangles at the top", "a yellow star next to a black circle",
        "a photo of a big white square on the right", "three small purple circles at the bottom",
        "an orange triangle above a blue star", "a tiny grey square in the corner",
    ],
    "de": [
        "ein kleiner roter Kreis auf der linken Seite", "ein großes blaues Quadrat in der Mitte",
        "zwei grüne Dreiecke oben", "ein gelber Stern neben einem schwarzen Kreis",
        "ein Foto eines großen weißen Quadrats rechts", "drei kleine lila Kreise unten",
        "ein orangefarbenes Dreieck über einem blauen Stern",
        "ein winziges graues Quadrat in der Ecke",
    ],
    "nl": [
        "een kleine rode cirkel aan de linkerkant", "een groot blauw vierkant in het midden",
        "twee groene driehoeken bovenaan", "een gele ster naast een zwarte cirkel",
        "een foto van een groot wit vierkant aan de rechterkant",
        "drie kleine paarse cirkels onderaan", "een oranje driehoek boven een blauwe ster",
        "een heel klein grijs vierkant in de hoek",
    ],
    "fr": [
        "un petit cercle rouge à gauche", "un grand carré bleu au milieu",
        "deux triangles verts en haut", "une étoile jaune à côté d'un cercle noir",
        "une photo d'un grand carré blanc à droite", "trois petits cercles violets en bas",
        "un triangle orange au-dessus d'une étoile bleue", "un minuscule carré gris dans le coin",
    ],
    "es": [
        "un pequeño círculo rojo a la izquierda", "un gran cuadrado azul en el centro",
        "dos triángulos verdes arriba", "una estrella amarilla junto a un círculo negro",
        "una foto de un gran cuadrado blanco a la derecha", "tres pequeños círculos morados abajo",
        "un triángulo naranja encima de una estrella azul",
        "un cuadrado gris diminuto en la esquina",
    ],
    "it": [
        "un piccolo cerchio rosso a sinistra", "un grande quadrato blu al centro",
        "due triangoli verdi in alto", "una stella gialla accanto a un cerchio nero",
        "una foto di un grande quadrato bianco a destra", "tre piccoli cerchi viola in basso",
        "un triangolo arancione sopra una stella blu", "un minuscolo quadrato grigio nell'angolo",
    ],
    "pt": [
        "um pequeno círculo vermelho à esquerda", "um grande quadrado azul no meio",
        "dois triângulos verdes em cima", "uma estrela amarela ao lado de um círculo preto",
        "uma foto de um grande quadrado branco à direita", "três pequenos círculos roxos embaixo",
        "um triângulo laranja acima de uma estrela azul", "um quadrado cinza minúsculo no canto",
    ],
    "pl": [
        "małe czerwone koło po lewej stronie", "duży niebieski kwadrat na środku",
        "dwa zielone trójkąty na górze", "żółta gwiazda obok czarnego koła",
        "zdjęcie dużego białego kwadratu po prawej", "trzy małe fioletowe koła na dole",
        "pomarańczowy trójkąt nad niebieską gwiazdą", "malutki szary kwadrat w rogu",
    ],
    "ru": [
        "маленький красный круг слева", "большой синий квадрат в центре",
        "два зелёных треугольника сверху", "жёлтая звезда рядом с чёрным кругом",
        "фотография большого белого квадрата справа", "три маленьких фиолетовых круга внизу",
        "оранжевый треугольник над синей звездой", "крошечный серый квадрат в углу",
    ],
    "tr": [
        "solda küçük kırmızı bir daire", "ortada büyük mavi bir kare", "üstte iki yeşil üçgen",
        "siyah bir dairenin yanında sarı bir yıldız", "sağda büyük beyaz bir karenin fotoğrafı",
        "altta üç küçük mor daire", "mavi bir yıldızın üstünde turuncu bir üçgen",
        "köşede minicik gri bir kare",
    ],
    "zh": [
        "左边有一个红色的小圆", "中间有一个蓝色的大正方形", "上面有两个绿色的三角形",
        "黑色圆圈旁边有一颗黄色的星星", "右边一个白色大正方形的照片", "下面有三个紫色的小圆",
        "蓝色星星上方有一个橙色三角形", "角落里有一个灰色的小正方形",
    ],
    "ja": [
        "左側にある小さな赤い円", "中央にある大きな青い正方形", "上にある二つの緑の三角形",
        "黒い円の隣にある黄色い星", "右側にある大きな白い正方形の写真",
        "下にある三つの小さな紫の円", "青い星の上にあるオレンジ色の三角形",
        "隅にある小さな灰色の正方形",
    ],
    "ar": [
        "دائرة حمراء صغيرة على اليسار", "مربع أزرق كبير في المنتصف", "مثلثان أخضران في الأعلى",
        "نجمة صفراء بجانب دائرة سوداء", "صورة مربع أبيض كبير على اليمين",
        "ثلاث دوائر بنفسجية صغيرة في الأسفل", "مثلث برتقالي فوق نجمة زرقاء",
        "مربع رمادي صغير جدا في الزاوية",
    ],
    "hi": [
        "बाईं ओर एक छोटा लाल वृत्त", "बीच में एक बड़ा नीला वर्ग", "ऊपर दो हरे त्रिकोण",
        "काले वृत्त के पास एक पीला तारा", "दाईं ओर एक बड़े सफ़ेद वर्ग की तस्वीर",
        "नीचे तीन छोटे बैंगनी वृत्त", "नीले तारे के ऊपर एक नारंगी त्रिकोण",
        "कोने में एक छोटा सा धूसर वर्ग",
    ],
}  # fmt: skip
# New combinations of seen words (and, for zh, seen characters): held out from training.
HELDOUT: dict[str, list[str]] = {
    "en": ["a blue star on the left", "two small white triangles in the corner"],
    "de": ["ein blauer Stern oben", "drei graue Kreise in der Mitte"],
    "ru": ["синий круг справа", "маленький белый квадрат внизу"],
    "zh": ["右边有一个红色的星星", "左边有两个小三角形"],
    "ja": ["左側にある青い星", "中央にある小さな緑の円"],
}  # fmt: skip
TEXTS = [text for texts in SAMPLE.values() for text in texts]
UNSPACED = ("zh", "ja")
# A lexicon's word forms: whitespace words, and characters where the script has no spaces.
WORDS = sorted(
    {
        word
        for lang, texts in SAMPLE.items()
        if lang not in UNSPACED
        for t in texts
        for word in t.split()
    }
    | {char for lang in UNSPACED for text in SAMPLE[lang] for char in text}
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer(TEXTS, tmp_path_factory.mktemp("tok") / "xlmr", 1000, WORDS)


@pytest.fixture(scope="module")
def tokenizer(folder: Path):
    return load_tokenizer(folder)


def test_sample_covers_every_generated_language() -> None:
    assert set(SAMPLE) == set(SYNTHETIC_LANGS)


def test_special_token_ids_follow_xlm_r(tokenizer) -> None:
    ids = tokenizer.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>"])
    assert ids == [0, 1, 2, 3]
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id) == (0, 1)
    assert (tokenizer.eos_token_id, tokenizer.unk_token_id) == (2, 3)
    assert tokenizer.mask_token == MASK_TOKEN and tokenizer.mask_token_id == len(tokenizer) - 1
    ids = tokenizer("a red circle")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) == 5
    pair = tokenizer("a red circle", "ein Kreis")["input_ids"]
    assert pair.count(2) == 3  # <s> A </s> </s> B </s>, as XLM-R frames pairs


def test_reload_keeps_normaliser_and_pre_tokenizer(folder: Path, tokenizer) -> None:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    assert backend["normalizer"]["type"] == "NFKC"
    kinds = [step["type"] for step in backend["pre_tokenizer"]["pretokenizers"]]
    assert kinds == ["WhitespaceSplit", "Metaspace", "Split"]
    assert json.loads((folder / "tokenizer.json").read_text())["normalizer"]["type"] == "NFKC"
    for styled in ("ｒｅｄ ｃｉｒｃｌｅ", "ﬁoletowe", "ｄｒｅｉ ｋｌｅｉｎｅ"):
        plain = unicodedata.normalize("NFKC", styled)
        assert plain != styled
        assert tokenizer(styled)["input_ids"] == tokenizer(plain)["input_ids"]
        assert tokenizer.unk_token_id not in tokenizer(styled)["input_ids"]


def test_quality_in_every_language(tokenizer) -> None:
    stats = tokenization_stats(tokenizer, SAMPLE).set_index("lang")
    assert (stats["unk_rate"] < 0.01).all(), stats
    assert stats["tokens_per_text"].between(3, 20).all(), stats
    assert (stats["max_tokens"] <= 30).all(), stats  # fits context 32 with <s> and </s>
    english_words = sum(len(text.split()) for text in SAMPLE["en"])
    assert stats.loc["en", "tokens_per_text"] * len(SAMPLE["en"]) / english_words < 2
    for lang in ("zh", "ja"):  # isolated characters: never a whole clause as one piece
        chars = sum(len(text) for text in SAMPLE[lang]) / len(SAMPLE[lang])
        assert chars <= stats.loc[lang, "tokens_per_text"] <= chars + 1


def test_lexicon_words_are_single_tokens(tokenizer) -> None:
    split = [word for word in WORDS if len(tokenizer.tokenize(word)) != 1]
    assert not split


def test_new_combinations_tokenise_without_unknowns(tokenizer) -> None:
    stats = tokenization_stats(tokenizer, HELDOUT).set_index("lang")
    assert (stats["unk_rate"] == 0).all(), stats
    assert (
        tokenizer.decode(tokenizer(HELDOUT["zh"][0])["input_ids"], skip_special_tokens=True)
        == (HELDOUT["zh"][0])
    )
    assert tokenizer.tokenize("a blue star") == ["▁a", "▁blue", "▁star"]


def test_unseen_characters_are_unknown_not_errors(tokenizer) -> None:
    ids = tokenizer("a red 🦜")["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 1


def test_open_clip_hf_tokenizer_pads_and_truncates(folder: Path) -> None:
    tokenize = HFTokenizer(str(folder), context_length=12)
    ids = tokenize(["a red circle", " ".join(["a small red circle on the left"] * 5)])
    assert ids.shape == (2, 12)
    assert ids[0, :5].tolist() == [0, *ids[0, 1:4].tolist(), 2] and (ids[0, 5:] == 1).all()
    assert ids[1, 0] == 0 and ids[1, -1] == 2 and 1 not in ids[1].tolist()


def test_build_is_deterministic_and_replaces_atomically(folder: Path, tmp_path: Path) -> None:
    out = build_tokenizer(TEXTS, tmp_path / "tok", 1000, WORDS)
    assert (out / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    build_tokenizer(SAMPLE["en"], out, 300)
    assert len(load_tokenizer(out)) < len(load_tokenizer(folder))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tok"]  # no temporary left


def test_vocab_size_is_a_cap_except_for_seeds_and_characters(tmp_path: Path) -> None:
    assert len(load_tokenizer(build_tokenizer(TEXTS, tmp_path / "a", 400))) <= 400
    seeded = load_tokenizer(build_tokenizer(TEXTS, tmp_path / "b", 300, WORDS))
    assert len(seeded) > 300
    assert all(len(seeded.tokenize(word)) == 1 for word in WORDS)
    assert tokenization_stats(seeded, SAMPLE)["unk_rate"].max() == 0


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no non-empty texts"):
        build_tokenizer(["", "  "], tmp_path / "tok", 100)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json; build one"):
        load_tokenizer(tmp_path / "missing")


def test_generated_captions_tokenise_well(tmp_path: Path) -> None:
    """The real corpus: every lexicon word one piece, no unknowns, captions fit the context."""
    from xlr.data.synthetic import TEMPLATES, all_scenes, describe, lexicon_words, noisy_caption

    rng = np.random.default_rng(0)
    scenes = all_scenes()[::600]  # 152 of the 91,200 compositions, all four templates
    by_lang = {
        lang: [describe(scene, lang, v) for scene in scenes for v in range(len(TEMPLATES))]
        for lang in SYNTHETIC_LANGS
    }
    noisy = [
        noisy_caption(scene, lang, 0, "boilerplate", rng).text
        for scene in scenes[:20]
        for lang in SYNTHETIC_LANGS
    ]
    lexicon = [word for lang in SYNTHETIC_LANGS for word in lexicon_words(lang)]
    corpus = [text for texts in by_lang.values() for text in texts] + noisy
    tokenizer = load_tokenizer(build_tokenizer(corpus, tmp_path / "tok", 4000, lexicon))
    stats = tokenization_stats(tokenizer, by_lang | {"boilerplate": noisy}).set_index("lang")
    assert (stats["unk_rate"] == 0).all(), stats
    assert (stats.drop(index="boilerplate")["max_tokens"] <= 30).all(), stats
    words = sum(len(text.split()) for text in by_lang["en"])
    assert stats.loc["en", "tokens_per_text"] * len(by_lang["en"]) / words < 1.3, stats
    spaced = [
        word for lang in SYNTHETIC_LANGS if lang not in UNSPACED for word in lexicon_words(lang)
    ]
    assert [word for word in spaced if len(tokenizer.tokenize(word)) != 1] == []


def test_token_cache_returns_what_the_tokenizer_gives(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xlr.train import tokens

    tokenize = HFTokenizer(str(folder), context_length=12)
    texts = ["a red circle", "ein roter Kreis", "一个红色的圆"]
    fresh = tokens.cached_tokens(tokenize, texts, tmp_path)
    assert torch.equal(fresh, tokens.tokenize_texts(tokenize, texts))
    assert fresh.dtype == torch.int64 and len(list(tmp_path.glob("*.npy"))) == 1

    def no_tokenizing(*_: object) -> None:
        raise AssertionError("tokenised again despite the cache")

    monkeypatch.setattr(tokens, "tokenize_texts", no_tokenizing)
    assert torch.equal(tokens.cached_tokens(tokenize, texts, tmp_path), fresh)
    monkeypatch.undo()

    # other captions, another context length: other files, never the cached ids
    tokens.cached_tokens(tokenize, texts[:2], tmp_path)
    longer = tokens.cached_tokens(HFTokenizer(str(folder), context_length=16), texts, tmp_path)
    assert longer.shape == (3, 16) and len(list(tmp_path.glob("*.npy"))) == 3


def test_token_cache_replaces_a_bad_file_and_skips_unknown_tokenizers(
    folder: Path, tmp_path: Path
) -> None:
    from xlr.train import tokens

    tokenize = HFTokenizer(str(folder), context_length=12)
    texts = ["a red circle", "a blue square"]
    tokens.cached_tokens(tokenize, texts, tmp_path)
    (path,) = tmp_path.glob("*.npy")
    np.save(path, np.zeros((1, 12), dtype=np.int32))  # wrong row count: a hand-edited cache
    assert torch.equal(
        tokens.cached_tokens(tokenize, texts, tmp_path), tokens.tokenize_texts(tokenize, texts)
    )
    assert np.load(path).shape == (2, 12)

    def plain(texts: list[str]) -> torch.Tensor:  # a tokenizer with nothing to fingerprint
        return torch.ones(len(texts), 4, dtype=torch.int64)

    assert tokens.tokenizer_fingerprint(plain) is None
    assert tokens.cached_tokens(plain, texts, tmp_path / "other").shape == (2, 4)
    assert not (tmp_path / "other").exists()
