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
from xlr.data.synthetic import (
    GRAMMARS,
    LEXICON_DIR,
    TEMPLATES,
    LexiconError,
    Scene,
    all_scenes,
    describe,
    load_lexicon,
)

# Four scenes through four templates, one caption per language: plural and singular, dual,
# position fronted, as predicate and left out, in Latin, Cyrillic, Han, kana, Arabic, Devanagari.
KNOWN: dict[tuple[Scene, int], dict[str, str]] = {
    (Scene("heart", "purple", "large", "bottom", 3), 4): {
        "en": "at the bottom, three large purple hearts",
        "de": "unten, drei große violette Herzen",
        "nl": "onderaan, drie grote paarse harten",
        "fr": "en bas, trois grands cœurs violets",
        "es": "abajo, tres corazones morados grandes",
        "it": "in basso, tre cuori viola grandi",
        "pt": "em baixo, três corações roxos grandes",
        "pl": "na dole, trzy duże fioletowe serca",
        "ru": "снизу, три больших фиолетовых сердца",
        "tr": "altta üç büyük mor kalp",
        "zh": "下方有三个紫色的大心形",
        "ja": "下に大きな紫のハートが三つ",
        "ar": "في الأسفل ثلاثة قلوب بنفسجية كبيرة",
        "hi": "नीचे तीन बड़े बैंगनी दिल",
    },
    (Scene("square", "white", "small", "centre", 1), 1): {
        "en": "in the middle, a white square",
        "de": "in der Mitte, ein weißes Quadrat",
        "nl": "in het midden, een wit vierkant",
        "fr": "au centre, un carré blanc",
        "es": "en el centro, un cuadrado blanco",
        "it": "al centro, un quadrato bianco",
        "pt": "no centro, um quadrado branco",
        "pl": "na środku, biały kwadrat",
        "ru": "в центре, белый квадрат",
        "tr": "ortada bir beyaz kare",
        "zh": "中间有一个白色的正方形",
        "ja": "中央に白い四角が一つ",
        "ar": "في الوسط مربع أبيض",
        "hi": "बीच में एक सफ़ेद वर्ग",
    },
    (Scene("cross", "orange", "small", "right", 2), 2): {
        "en": "two small orange crosses",
        "de": "zwei kleine orangefarbene Kreuze",
        "nl": "twee kleine oranje kruisen",
        "fr": "deux petites croix orange",
        "es": "dos cruces naranja pequeñas",
        "it": "due croci arancioni piccole",
        "pt": "duas cruzes laranja pequenas",
        "pl": "dwa małe pomarańczowe krzyże",
        "ru": "два маленьких оранжевых креста",
        "tr": "iki küçük turuncu haç",
        "zh": "两个橙色的小十字",
        "ja": "二つの小さなオレンジ色の十字",
        "ar": "صليبان برتقاليان صغيران",
        "hi": "दो छोटे नारंगी क्रॉस",
    },
    (Scene("star", "black", "large", "top", 1), 3): {
        "en": "a black star at the top",
        "de": "ein schwarzer Stern oben",
        "nl": "een zwarte ster bovenaan",
        "fr": "une étoile noire en haut",
        "es": "una estrella negra arriba",
        "it": "una stella nera in alto",
        "pt": "uma estrela preta em cima",
        "pl": "czarna gwiazda na górze",
        "ru": "чёрная звезда сверху",
        "tr": "bir siyah yıldız üstte",
        "zh": "一个黑色的星形在上方",
        "ja": "黒い星が一つ上にある",
        "ar": "نجمة سوداء في الأعلى",
        "hi": "एक काला तारा ऊपर है",
    },
}

# sha256 (first 16 hex digits) of a language's 7,200 captions (every scene, every template, in
# all_scenes order, joined by newlines). A lexicon edit that changes any caption changes its
# digest, and with it every corpus hash: update the digest only when that is the intent.
DIGESTS = {
    "en": "a9381b711b40feb7", "de": "cd9d66d0ed190015", "nl": "471b6ac599ae7d42",
    "fr": "e2d765f124cbc152", "es": "cb9c89f8849f1b67", "it": "8f96c0b97293bf3d",
    "pt": "5cdc2c4c026e1476", "pl": "b03ac15a5f11cd11", "ru": "47089fb78540077a",
    "tr": "dfcb9300bde47b13", "zh": "6f6624b9c24c4dd1", "ja": "ac49d5bd05cf96ca",
    "ar": "e4e5f6607395e3d2", "hi": "8b8394f7195a10d1",
}  # fmt: skip


@pytest.mark.parametrize(("scene", "variant"), list(KNOWN))
def test_known_captions_in_every_script(scene: Scene, variant: int) -> None:
    assert {lang: describe(scene, lang, variant) for lang in GRAMMARS} == KNOWN[scene, variant]


@pytest.mark.parametrize("lang", list(DIGESTS))
def test_every_caption_matches_its_digest(lang: str) -> None:
    captions = [describe(s, lang, k) for s in all_scenes() for k in range(len(TEMPLATES))]
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
        ("zh", "positions", "centre", "position"),
        ("de", "numerals", "2", "count"),
        ("hi", "particles", "copula_plural", "particle"),
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
        '{"gender": "m|n", "singular": "...", "plural": "..."}'
    ) in str(err.value)


def test_every_problem_is_listed_at_once(folder: Path) -> None:
    def damage(doc: dict[str, Any]) -> None:
        doc["nouns"]["hexagon"] = {"gender": "m", "singular": "sechseck", "plural": "sechsecke"}
        doc["nouns"]["star"]["gender"] = "f"  # the German grammar declines m and n only
        doc["nouns"]["cross"]["dative"] = "Kreuz"
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
        "nouns.cross.dative: unknown form; the grammar reads only gender, singular, plural",
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
        describe(Scene("star", "red", "small", "top", 1), "sv")
