"""The lexicon files: what they make ``describe`` say (known answers, a digest of every caption),
and the validator's errors for broken copies (each names the file, the field and the fix)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
import unicodedata
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

import xlr
from xlr.config import parse_params
from xlr.data.prepare import corpus_dir
from xlr.data.synthetic import (
    GRAMMARS,
    LEXICON_DIR,
    TEMPLATES,
    LexiconError,
    Scene,
    Thing,
    corpus_key,
    covering_scenes,
    describe,
    lexicon_digest,
    load_lexicon,
)
from xlr.data.synthetic import corpus as corpus_module
from xlr.models.bases import base_key, tokenizer_dir

# Four scenes through the four templates, one caption per language: plural, singular and dual
# groups, the reference in the case its preposition or postposition governs (dative, genitive,
# instrumental, oblique), the relation after the group, fronted, and as two coordinated
# positions either way round, in Latin, Cyrillic, Han, kana, Arabic and Devanagari.
KNOWN: dict[tuple[Scene, int], dict[str, str]] = {
    (Scene(Thing("heart", "purple", "large"), 3, "below", Thing("square", "white", "small")), 0): {
        "en": "three large purple hearts below a small white square",
        "de": "drei große violette Herzen unter einem kleinen weißen Quadrat",
        "nl": "drie grote paarse harten onder een klein wit vierkant",
        "fr": "trois grands cœurs violets au-dessous d'un petit carré blanc",
        "es": "tres corazones morados grandes debajo de un cuadrado blanco pequeño",
        "it": "tre cuori viola grandi sotto un quadrato bianco piccolo",
        "pt": "três corações roxos grandes abaixo de um quadrado branco pequeno",
        "pl": "trzy duże fioletowe serca poniżej małego białego kwadratu",
        "ru": "три больших фиолетовых сердца под маленьким белым квадратом",
        "tr": "üç büyük mor kalp bir küçük beyaz karenin altında",
        "zh": "三个紫色的大心形在一个白色的小正方形的下方",
        "ja": "大きな紫のハートが三つ小さな白い四角の下にある",
        "ar": "ثلاثة قلوب بنفسجية كبيرة تحت مربع أبيض صغير",
        "hi": "तीन बड़े बैंगनी दिल एक छोटे सफ़ेद वर्ग के नीचे हैं",
    },
    (Scene(Thing("square", "white", "small"), 1, "above", Thing("star", "black", "large")), 1): {
        "en": "above a large black star, a small white square",
        "de": "über einem großen schwarzen Stern, ein kleines weißes Quadrat",
        "nl": "boven een grote zwarte ster, een klein wit vierkant",
        "fr": "au-dessus d'une grande étoile noire, un petit carré blanc",
        "es": "encima de una estrella negra grande, un cuadrado blanco pequeño",
        "it": "sopra una stella nera grande, un quadrato bianco piccolo",
        "pt": "acima de uma estrela preta grande, um quadrado branco pequeno",
        "pl": "powyżej dużej czarnej gwiazdy, mały biały kwadrat",
        "ru": "над большой чёрной звездой, маленький белый квадрат",
        "tr": "bir büyük siyah yıldızın üstünde bir küçük beyaz kare",
        "zh": "一个黑色的大星形的上方有一个白色的小正方形",
        "ja": "大きな黒い星の上に小さな白い四角が一つ",
        "ar": "فوق نجمة سوداء كبيرة مربع أبيض صغير",
        "hi": "एक बड़े काले तारे के ऊपर एक छोटा सफ़ेद वर्ग",
    },
    (
        Scene(Thing("cross", "orange", "small"), 2, "right_of", Thing("circle", "green", "large")),
        2,
    ): {
        "en": "two small orange crosses on the right and a large green circle on the left",
        "de": "zwei kleine orangefarbene Kreuze rechts und ein großer grüner Kreis links",
        "nl": "twee kleine oranje kruisen rechts en een grote groene cirkel links",
        "fr": "deux petites croix orange à droite et un grand cercle vert à gauche",
        "es": "dos cruces naranja pequeñas a la derecha y un círculo verde grande a la izquierda",
        "it": "due croci arancioni piccole a destra e un cerchio verde grande a sinistra",
        "pt": "duas cruzes laranja pequenas à direita e um círculo verde grande à esquerda",
        "pl": "dwa małe pomarańczowe krzyże po prawej i duże zielone koło po lewej",
        "ru": "два маленьких оранжевых креста справа и большой зелёный круг слева",
        "tr": "iki küçük turuncu haç sağda ve bir büyük yeşil daire solda",
        "zh": "右边有两个橙色的小十字，左边有一个绿色的大圆形",
        "ja": "右に小さなオレンジの十字が二つ、左に大きな緑の丸",
        "ar": "صليبان برتقاليان صغيران على اليمين ودائرة خضراء كبيرة على اليسار",
        "hi": "दाईं ओर दो छोटे नारंगी क्रॉस हैं और बाईं ओर एक बड़ा हरा वृत्त है",
    },
    (
        Scene(
            Thing("circle", "yellow", "small"), 1, "left_of", Thing("triangle", "black", "large")
        ),
        3,
    ): {
        "en": "a large black triangle on the right and a small yellow circle on the left",
        "de": "ein großes schwarzes Dreieck rechts und ein kleiner gelber Kreis links",
        "nl": "een grote zwarte driehoek rechts en een kleine gele cirkel links",
        "fr": "un grand triangle noir à droite et un petit cercle jaune à gauche",
        "es": "un triángulo negro grande a la derecha y un círculo amarillo pequeño a la izquierda",
        "it": "un triangolo nero grande a destra e un cerchio giallo piccolo a sinistra",
        "pt": "um triângulo preto grande à direita e um círculo amarelo pequeno à esquerda",
        "pl": "duży czarny trójkąt po prawej i małe żółte koło po lewej",
        "ru": "большой чёрный треугольник справа и маленький жёлтый круг слева",
        "tr": "bir büyük siyah üçgen sağda ve bir küçük sarı daire solda",
        "zh": "右边有一个黑色的大三角形，左边有一个黄色的小圆形",
        "ja": "右に大きな黒い三角、左に小さな黄色い丸が一つ",
        "ar": "مثلث أسود كبير على اليمين ودائرة صفراء صغيرة على اليسار",
        "hi": "दाईं ओर एक बड़ा काला त्रिभुज है और बाईं ओर एक छोटा पीला वृत्त है",
    },
}

# sha256 (first 16 hex digits) of a language's 6,144 captions (every covering scene, every
# template, in covering_scenes order, joined by newlines): every word form the lexicon can emit.
# A lexicon edit that changes any caption changes its digest, and with it every corpus hash:
# update the digest only when that is the intent.
DIGESTS = {
    "en": "2f30d5b08d18c2fd", "de": "e596151aecc0b5c2", "nl": "0e20cf65976404d6",
    "fr": "4805d9080042b5b4", "es": "a52d36acfc8b3d98", "it": "14a59ab65f0a04fb",
    "pt": "75a68e045c1b22db", "pl": "068c9387db3282e4", "ru": "e19feadd9ce98ab3",
    "tr": "bde3b47fb6f518de", "zh": "c440550c85f2c3be", "ja": "98ed82c95aeabba3",
    "ar": "cc62c3ff5f69a7bd", "hi": "a83bc4f30016b929",
}  # fmt: skip


@pytest.mark.parametrize(("scene", "variant"), list(KNOWN))
def test_known_captions_in_every_script(scene: Scene, variant: int) -> None:
    assert {lang: describe(scene, lang, variant) for lang in GRAMMARS} == KNOWN[scene, variant]


@pytest.mark.parametrize("lang", list(DIGESTS))
def test_every_caption_matches_its_digest(lang: str) -> None:
    captions = [describe(s, lang, k) for s in covering_scenes() for k in range(len(TEMPLATES))]
    digest = hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()[:16]
    assert digest == DIGESTS[lang], f"the {lang} captions changed (see DIGESTS)"


def test_one_shipped_file_per_grammar_loaded_once() -> None:
    assert sorted(p.stem for p in LEXICON_DIR.glob("*.json")) == sorted(GRAMMARS)
    for lang in GRAMMARS:
        assert load_lexicon(lang) is load_lexicon(lang)


def test_lexicons_are_package_data() -> None:
    """A non-editable install carries only what package-data names: every file must match."""
    pyproject = Path(xlr.__file__).parents[1] / "pyproject.toml"
    setuptools = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = setuptools["package-data"]["xlr"]
    package = Path(xlr.__file__).parent
    for path in LEXICON_DIR.glob("*.json"):
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A private copy of the shipped lexicons to break."""
    return Path(shutil.copytree(LEXICON_DIR, tmp_path / "lexicons"))


def _edit(folder: Path, lang: str, change: Any) -> None:
    path = folder / f"{lang}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")


def test_the_copy_loads_like_the_shipped_files(folder: Path) -> None:
    for lang in GRAMMARS:
        assert load_lexicon(lang, folder).sections == load_lexicon(lang).sections


def test_the_digest_keys_every_cache_on_the_lexicons_bytes(folder: Path) -> None:
    """A corrected word must rebuild the corpus, its tokenizer and the bases built on it."""
    assert lexicon_digest(folder) == lexicon_digest()
    edited = folder / "de.json"
    edited.write_bytes(edited.read_bytes().replace(b"rot", b"rott", 1))
    assert lexicon_digest(folder) != lexicon_digest()
    (folder / "de.json").unlink()
    assert lexicon_digest(folder) != lexicon_digest()


def test_a_corrected_word_rekeys_the_corpus_its_tokenizer_and_the_bases(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's promise that a corrected word regenerates the corpus and retrains the bases:
    the digest alone is not enough, the cache keys must read it. With the digest taken from the
    private copy, equal bytes give the shipped keys and an edited word gives new ones, for the
    corpus (its key and cache folder), its tokenizer and every base seed."""
    params = parse_params({"run": {"name": "t"}, "data": {"train_langs": ["en", "de"]}})
    assert params.model.kind == "tiny"  # the real model's base does not read the corpus

    def keys() -> list[str]:
        return [
            corpus_key(params.data.synthetic),
            corpus_dir(params).name,
            tokenizer_dir(params).name,
            base_key(params, 0),
            base_key(params, 1),
        ]

    shipped = keys()
    monkeypatch.setattr(corpus_module, "lexicon_digest", lambda: lexicon_digest(folder))
    assert keys() == shipped  # the same bytes: every cache is reused
    edited = folder / "de.json"
    edited.write_bytes(edited.read_bytes().replace(b"rot", b"rott", 1))
    rekeyed = keys()
    assert [new != old for new, old in zip(rekeyed, shipped, strict=True)] == [True] * 5
    assert keys() == rekeyed  # and the new keys are stable


def test_missing_file_names_it_and_the_fix(folder: Path) -> None:
    (folder / "de.json").unlink()
    with pytest.raises(LexiconError, match=r"de\.json: no lexicon file for language 'de'; restore"):
        load_lexicon("de", folder)


@pytest.mark.parametrize(
    ("lang", "section", "key", "what"),
    [
        ("en", "nouns", "heart", "shape"),
        ("en", "adjectives", "purple", "colour or size"),
        ("ru", "adjectives", "small", "colour or size"),
        ("zh", "positions", "top", "position"),
        ("de", "numerals", "2", "count"),
        ("hi", "particles", "copula_plural", "particle"),
        ("pl", "relations", "below", "relation"),
        ("ar", "conjunctions", "and", "conjunction"),
    ],
)
def test_attribute_without_its_word(
    folder: Path, lang: str, section: str, key: str, what: str
) -> None:
    _edit(folder, lang, lambda doc: doc[section].pop(key))
    with pytest.raises(LexiconError) as err:
        load_lexicon(lang, folder)
    message = str(err.value)
    assert message.startswith(f"{folder / lang}.json: 1 problem(s)")
    assert f'{section}: no entry for {what} {key!r}; add "{key}": ' in message


def test_wrong_arity_names_the_form_and_shows_the_entry(folder: Path) -> None:
    _edit(folder, "de", lambda doc: doc["nouns"]["circle"].pop("plural"))
    with pytest.raises(LexiconError, match="de.json") as err:
        load_lexicon("de", folder)
    assert (
        "nouns.circle: missing form 'plural'; write "
        '{"gender": "m|n", "singular": "...", "plural": "...", "dative": "..."}'
    ) in str(err.value)


def test_two_attributes_with_one_word_are_refused(folder: Path) -> None:
    """A caption must tell its attributes apart, else a held-out scene reads like a trained
    one; forms with closed choices (gender) repeat by design and are not checked."""

    def merge(doc: dict[str, Any]) -> None:
        doc["adjectives"]["green"]["m_sg"] = "azul"
        doc["relations"]["below"] = "encima de"

    _edit(folder, "es", merge)
    with pytest.raises(LexiconError) as err:
        load_lexicon("es", folder)
    message = str(err.value)
    assert "2 problem(s)" in message
    assert "adjectives: green and blue share the word 'azul' (form 'm_sg'); captions could " in (
        message
    )
    assert "relations: above and below share the word 'encima de'; captions" in message


def test_a_relation_names_a_case_its_grammar_declines(folder: Path) -> None:
    """Russian relations say which case they govern; the grammar declines only two."""
    _edit(folder, "ru", lambda doc: doc["relations"]["above"].update(case="dat"))
    with pytest.raises(LexiconError, match=r"relations\.above\.case: 'dat' is not one of gen, ins"):
        load_lexicon("ru", folder)


def test_every_problem_is_listed_at_once(folder: Path) -> None:
    def damage(doc: dict[str, Any]) -> None:
        doc["nouns"]["hexagon"] = {"gender": "m", "singular": "sechseck", "plural": "sechsecke"}
        doc["nouns"]["star"]["gender"] = "f"  # the German grammar declines m and n only
        doc["nouns"]["cross"]["genitive"] = "Kreuzes"
        doc["nouns"]["heart"] = ["n", "Herz", "Herzen"]
        doc["adjective_stems"]["red"] = " rot"
        doc["adjective_stems"]["blue"] = 7
        doc["positions"]["left"] = ""
        del doc["numerals"]
        doc["colours"] = {}

    _edit(folder, "de", damage)
    with pytest.raises(LexiconError) as err:
        load_lexicon("de", folder)
    message = str(err.value)
    assert "9 problem(s) in the de lexicon" in message
    for expected in (
        'missing section "numerals": each count "..."; add it',
        "unknown section 'colours'; the de grammar reads only nouns, adjective_stems, numerals",
        "nouns.hexagon: unknown shape; expected only circle, square, triangle, star, cross, heart",
        "nouns.star.gender: 'f' is not one of m, n",
        "nouns.cross.genitive: unknown form; the grammar reads only gender, singular, plural, "
        "dative",
        'nouns.heart: expected the forms {"gender": "m|n"',
        "adjective_stems.red: ' rot' is not a word",
        "adjective_stems.blue: 7 is not a word",
        "positions.left: '' is not a word",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"nouns": {"circle": "daire",}}', r"not valid JSON \(.* line 1, column 30\)"),
        ('{"nouns": {}, "nouns": {}}', r"key 'nouns' given twice in one object; keep one"),
        ('["nouns"]', "expected a JSON object with sections nouns, adjectives"),
    ],
)
def test_unreadable_files(folder: Path, text: str, error: str) -> None:
    (folder / "tr.json").write_text(text, encoding="utf-8")
    with pytest.raises(LexiconError, match=rf"tr\.json: {error}"):
        load_lexicon("tr", folder)


def test_decomposed_accents_load_as_nfc(folder: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "grün")
    _edit(folder, "de", lambda doc: doc["adjective_stems"].update(green=decomposed))
    assert load_lexicon("de", folder).word("adjective_stems", "green") == "grün"


def test_language_without_grammar_says_a_file_is_not_enough() -> None:
    with pytest.raises(ValueError, match="a new language needs its grammar in code"):
        describe(
            Scene(Thing("star", "red", "small"), 1, "above", Thing("heart", "red", "small")), "sv"
        )
