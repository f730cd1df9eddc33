"""The embedded default corpus: rendered compositional scenes, parallel captions in 14 languages.

Why generate a corpus: the study needs image-text pairs in many languages and scripts, parallel
captions to fine-tune and evaluate cross-lingual retrieval, a LAION-like long-tailed language
mix, and it must run offline in minutes. Scenes are compositional (shape, colour, size,
position, count), so a caption is a real description of its image; captions come from
hand-written lexicons of real words (package data, ``xlr/data/lexicons/{lang}.json``) put in
each language's word order and agreement (code), so related languages share subwords (es/pt/it
cognates, de/nl) and zero-shot transfer is a real effect.

Layout written by :func:`generate_corpus` (LAION's formats, so the real-data path reads it too)::

    manifest.json                     config, counts per pool and language, sha256 of every file
    images/{pool}/{image_id:08d}.jpg  the images, for a loopback HTTP server and img2dataset
    {pool}/metadata.parquet           LAION columns (URL, TEXT, LANGUAGE, similarity, punsafe,
                                      pwatermark, WIDTH, HEIGHT, ENG TEXT) + image_id,
                                      caption_idx, noise: one row per caption
    {pool}/scenes.parquet             image_id, shape, colour, size, position, count
    {pool}/shards/                    webdataset shards exactly as img2dataset writes them
    eval/captions.parquet             image_id, lang, caption_idx, caption (the clean eval set)

Pools: ``pretrain`` (LAION-like: one noisy caption per image in one language drawn from the
LAION-5B mix), ``finetune`` (``captions_per_image`` parallel noisy captions per image in every
language) and ``eval`` (the same, clean). ``image_id`` counts from 0 within each pool and is the
image's position in :func:`load_pool`'s set. The pools never share an image: every image is
rendered with its own background, jitter and pixel noise, so no two images are identical (the
tests check the JPEG hashes). Attribute tuples do repeat, within and across pools: there are
only 1,440 of them, and a held-out image with a seen attribute tuple is exactly the
compositional generalisation a retrieval test on this corpus asks for.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from xlr.config import NoiseSection, SyntheticSection
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.shards import Sample, read_shards, write_shards
from xlr.langs import laion_mix

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
COUNTS: tuple[int, ...] = (1, 2, 3)
POOLS: tuple[str, ...] = ("pretrain", "finetune", "eval")
NOISE_KINDS: tuple[str, ...] = ("clean", "mismatch", "truncate", "boilerplate")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/images"
JPEG_QUALITY = 90
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Scene:
    """What an image shows: ``count`` objects of one shape, colour and size at one position."""

    shape: str
    colour: str
    size: str
    position: str
    count: int


@dataclass(frozen=True)
class Template:
    """How caption variant ``k`` words a scene: which attributes it states and in what order."""

    size: bool  # state the size adjective
    position: bool  # state the position phrase
    position_first: bool  # front the position phrase ("on the left, two red circles")


# Variant k uses TEMPLATES[k] in every language, so caption k of an image is a translation.
TEMPLATES: tuple[Template, ...] = (
    Template(size=True, position=True, position_first=False),
    Template(size=False, position=True, position_first=True),
    Template(size=True, position=False, position_first=False),
    Template(size=False, position=True, position_first=False),
    Template(size=True, position=True, position_first=True),
)

Pieces = list[str]


def _place(noun_phrase: Pieces, position: Pieces, tpl: Template, comma: bool = True) -> Pieces:
    """Put the position phrase after the noun phrase, or front it (with a comma where written)."""
    if not tpl.position:
        return noun_phrase
    if tpl.position_first:
        return [*position, *([","] if comma else []), *noun_phrase]
    return [*noun_phrase, *position]


# --- Lexicon files -----------------------------------------------------------------------------
# Every word a caption uses lives in a per-language JSON file, so a linguist can correct a word
# without reading Python; what stays code is each language's grammar (word order, agreement),
# which reads the words by role: ``nouns.circle.plural``, ``numerals.2``, ``positions.left``.
LEXICON_DIR = Path(__file__).with_name("lexicons")


class LexiconError(ValueError):
    """A lexicon file that is missing or does not fit its grammar; the message names the file,
    the field and the fix."""


@dataclass(frozen=True)
class Section:
    """What one section of a lexicon file holds: for every key, one word or named forms.

    ``what`` says what a key names ("shape", "count") in error messages. ``forms`` is empty when
    each key has a single word. ``choices`` closes a form to the values its grammar handles.
    """

    what: str
    keys: tuple[str, ...]
    forms: tuple[str, ...] = ()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def template(self) -> str:
        """An entry as the file writes it, for error messages: ``{"gender": "m|f", ...}``."""
        if not self.forms:
            return '"..."'
        forms = (f'"{f}": "{"|".join(self.choices.get(f, ("...",)))}"' for f in self.forms)
        return "{" + ", ".join(forms) + "}"


@dataclass(frozen=True)
class Lexicon:
    """One language's words, read from its file and checked against its grammar's sections."""

    lang: str
    path: Path
    sections: Mapping[str, Mapping[str, str | Mapping[str, str]]]

    def word(self, section: str, key: str | int) -> str:
        """The one word ``section`` gives for ``key`` (a count may be passed as a number)."""
        value = self.sections[section][str(key)]
        assert isinstance(value, str), (self.path, section, key)
        return value

    def forms(self, section: str, key: str | int) -> Mapping[str, str]:
        """The named forms ``section`` gives for ``key`` (gender, singular, plural, ...)."""
        value = self.sections[section][str(key)]
        assert not isinstance(value, str), (self.path, section, key)
        return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that gives a key twice is an editing slip json.loads would silently hide."""
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise LexiconError(f"key {', '.join(map(repr, twice))} given twice in one object")
    return dict(pairs)


def _word_problems(value: Any, where: str, choices: tuple[str, ...] = ()) -> list[str]:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        return [f"{where}: {value!r} is not a word; give a non-empty string, no outer spaces"]
    if choices and value not in choices:
        return [
            f"{where}: {value!r} is not one of {', '.join(choices)} (the grammar knows no other)"
        ]
    return []


def _section_problems(name: str, spec: Section, entries: Any) -> list[str]:
    """Every problem in one section: missing or unknown keys, wrong forms, words that aren't."""
    if not isinstance(entries, dict):
        return [f"{name}: expected an object giving each {spec.what} {spec.template()}"]
    problems = [
        f'{name}: no entry for {spec.what} {key!r}; add "{key}": {spec.template()}'
        for key in spec.keys
        if key not in entries
    ]
    problems += [
        f"{name}.{key}: unknown {spec.what}; expected only {', '.join(spec.keys)} (remove it "
        "or correct the spelling)"
        for key in entries
        if key not in spec.keys
    ]
    for key in (k for k in spec.keys if k in entries):
        where, value = f"{name}.{key}", entries[key]
        if not spec.forms:
            problems += _word_problems(value, where)
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}: expected the forms {spec.template()}, got {value!r}")
            continue
        for form in spec.forms:
            if form not in value:
                problems.append(f"{where}: missing form {form!r}; write {spec.template()}")
            else:
                problems += _word_problems(
                    value[form], f"{where}.{form}", spec.choices.get(form, ())
                )
        problems += [
            f"{where}.{form}: unknown form; the grammar reads only {', '.join(spec.forms)}"
            for form in value
            if form not in spec.forms
        ]
    return problems


def _nfc(entry: Any) -> Any:
    """NFC throughout: an editor that saves decomposed accents must not change a caption."""
    if isinstance(entry, str):
        return unicodedata.normalize("NFC", entry)
    return {key: _nfc(value) for key, value in entry.items()}


def read_lexicon(path: Path, lang: str, sections: Mapping[str, Section]) -> Lexicon:
    """Read one lexicon file and check it holds exactly ``sections``: every key, every form.

    Raises :class:`LexiconError` listing every problem, each with the file, the field and the
    fix, so one edit-and-retry round mends them all.
    """
    if not path.is_file():
        raise LexiconError(
            f"{path}: no lexicon file for language {lang!r}; restore it from the xlr sources "
            f"(it ships as package data), or pass the folder that holds {path.name}"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as err:
        raise LexiconError(f"{path}: not UTF-8 ({err}); save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise LexiconError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "fix the syntax there"
        ) from None
    except LexiconError as err:
        raise LexiconError(f"{path}: {err}; keep one of them") from None
    if not isinstance(document, dict):
        raise LexiconError(f"{path}: expected a JSON object with sections {', '.join(sections)}")
    problems = [
        f'missing section "{name}": each {spec.what} {spec.template()}; add it'
        for name, spec in sections.items()
        if name not in document
    ]
    problems += [
        f"unknown section {name!r}; the {lang} grammar reads only {', '.join(sections)} "
        "(remove it or correct the spelling)"
        for name in document
        if name not in sections
    ]
    for name in (n for n in sections if n in document):
        problems += _section_problems(name, sections[name], document[name])
    if problems:
        listed = "\n  ".join(problems)
        raise LexiconError(f"{path}: {len(problems)} problem(s) in the {lang} lexicon:\n  {listed}")
    return Lexicon(lang, path, {name: _nfc(document[name]) for name in sections})


def _per_shape(*forms: str, **choices: tuple[str, ...]) -> Section:
    return Section("shape", SHAPES, forms, choices)


def _per_adjective(*forms: str) -> Section:
    return Section("colour or size", COLOURS + SIZES, forms)


def _per_count(counts: Sequence[int], *forms: str) -> Section:
    return Section("count", tuple(str(count) for count in counts), forms)


_POSITIONS = Section("position", POSITIONS)
_PLURAL_COUNTS = tuple(count for count in COUNTS if count > 1)


def _adjectives(scene: Scene, tpl: Template) -> list[str]:
    """The attributes stated as adjectives: the size (where the template states it), then the
    colour, the order of every language here but Arabic."""
    return ([scene.size] if tpl.size else []) + [scene.colour]


def _number(scene: Scene) -> str:
    return "singular" if scene.count == 1 else "plural"


# --- English -----------------------------------------------------------------------------------
_EN = {
    "nouns": _per_shape("singular", "plural"),
    "adjectives": _per_adjective(),
    "articles": Section("article", ("before_consonant", "before_vowel")),
    "numerals": _per_count(_PLURAL_COUNTS),
    "positions": _POSITIONS,
}


def _english(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """English: numeral or a/an (by the next word's first letter), size, colour, noun, then a
    prepositional phrase."""
    adjectives = [lex.word("adjectives", a) for a in _adjectives(scene, tpl)]
    if scene.count == 1:
        vowel = adjectives[0][0] in "aeiou"
        numeral = lex.word("articles", "before_vowel" if vowel else "before_consonant")
    else:
        numeral = lex.word("numerals", scene.count)
    noun = lex.forms("nouns", scene.shape)[_number(scene)]
    return _place([numeral, *adjectives, noun], [lex.word("positions", scene.position)], tpl)


# --- German ------------------------------------------------------------------------------------
_DE_ENDINGS = {"m": "er", "n": "es"}  # adjective endings after ein; the plural takes -e
_DE = {
    "nouns": _per_shape("gender", "singular", "plural", gender=tuple(_DE_ENDINGS)),
    "adjective_stems": _per_adjective(),
    "numerals": _per_count(COUNTS),
    "positions": _POSITIONS,
}


def _german(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """German: mixed declension after ``ein`` (-er/-es by gender), strong plural -e."""
    noun = lex.forms("nouns", scene.shape)
    ending = _DE_ENDINGS[noun["gender"]] if scene.count == 1 else "e"
    stems = [lex.word("adjective_stems", a) for a in _adjectives(scene, tpl)]
    words = [lex.word("numerals", scene.count), *(s + ending for s in stems), noun[_number(scene)]]
    return _place(words, [lex.word("positions", scene.position)], tpl)


# --- Dutch -------------------------------------------------------------------------------------
_NL = {
    "nouns": _per_shape("article", "singular", "plural", article=("de", "het")),
    "adjectives": _per_adjective("bare", "inflected"),
    "numerals": _per_count(COUNTS),
    "positions": _POSITIONS,
}


def _dutch(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Dutch: adjectives take -e (the inflected form) except after ``een`` with a het-word."""
    noun = lex.forms("nouns", scene.shape)
    form = "bare" if scene.count == 1 and noun["article"] == "het" else "inflected"
    adjectives = [lex.forms("adjectives", a)[form] for a in _adjectives(scene, tpl)]
    words = [lex.word("numerals", scene.count), *adjectives, noun[_number(scene)]]
    return _place(words, [lex.word("positions", scene.position)], tpl)


# --- Romance: French, Spanish, Italian, Portuguese ---------------------------------------------
_ROMANCE = {
    "nouns": _per_shape("gender", "singular", "plural", gender=("m", "f")),
    "adjectives": _per_adjective("m_sg", "f_sg", "m_pl", "f_pl"),
    "numerals": _per_count(COUNTS, "m", "f"),
    "positions": _POSITIONS,
}


def _romance(lex: Lexicon, scene: Scene, tpl: Template, size_before_noun: bool) -> Pieces:
    """Numeral agreeing in gender, noun, colour (and size) after it, agreeing in gender and
    number. ``size_before_noun``: French petit/grand precede the noun; es/it/pt put all after."""
    noun = lex.forms("nouns", scene.shape)
    form = f"{noun['gender']}_{'sg' if scene.count == 1 else 'pl'}"
    colour = lex.forms("adjectives", scene.colour)[form]
    size = [lex.forms("adjectives", scene.size)[form]] if tpl.size else []
    numeral = lex.forms("numerals", scene.count)[noun["gender"]]
    if size_before_noun:
        words = [numeral, *size, noun[_number(scene)], colour]
    else:
        words = [numeral, noun[_number(scene)], colour, *size]
    return _place(words, [lex.word("positions", scene.position)], tpl)


# --- Polish and Russian ------------------------------------------------------------------------
_PL = {
    "nouns": _per_shape("gender", "singular", "plural", gender=("m", "f", "n")),
    "adjectives": _per_adjective("m", "f", "n", "pl"),  # plural: non-masculine-personal
    "numerals": _per_count(_PLURAL_COUNTS, "m", "f", "n"),
    "positions": _POSITIONS,
}


def _polish(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Polish: no article; dwa/dwie by gender; 2-3 take the nominative plural."""
    noun = lex.forms("nouns", scene.shape)
    if scene.count == 1:
        numeral, form = [], noun["gender"]
    else:
        numeral, form = [lex.forms("numerals", scene.count)[noun["gender"]]], "pl"
    adjectives = [lex.forms("adjectives", a)[form] for a in _adjectives(scene, tpl)]
    words = [*numeral, *adjectives, noun[_number(scene)]]
    return _place(words, [lex.word("positions", scene.position)], tpl)


_RU = {
    "nouns": _per_shape("gender", "nom_sg", "gen_sg", gender=("m", "f", "n")),
    "adjectives": _per_adjective("m", "f", "n", "gen_pl", "nom_pl"),
    "numerals": _per_count(_PLURAL_COUNTS, "m", "f", "n"),
    "positions": _POSITIONS,
}


def _russian(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Russian: after два/две/три the noun is genitive singular and the adjective genitive
    plural (nominative plural with feminine nouns, the usual modern form)."""
    noun = lex.forms("nouns", scene.shape)
    gender = noun["gender"]
    if scene.count == 1:
        numeral, form, word = [], gender, noun["nom_sg"]
    else:
        numeral = [lex.forms("numerals", scene.count)[gender]]
        form, word = ("nom_pl" if gender == "f" else "gen_pl"), noun["gen_sg"]
    adjectives = [lex.forms("adjectives", a)[form] for a in _adjectives(scene, tpl)]
    return _place([*numeral, *adjectives, word], [lex.word("positions", scene.position)], tpl)


# --- Turkish, Chinese, Japanese: uninflected words, particles in the grammar's places -----------
_UNINFLECTED = {
    "nouns": _per_shape(),
    "adjectives": _per_adjective(),
    "numerals": _per_count(COUNTS),
    "positions": _POSITIONS,
}


def _turkish(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Turkish: the noun stays singular after a numeral; positions are locative-case nouns,
    either fronted or as the sentence-final predicate (SOV)."""
    adjectives = [lex.word("adjectives", a) for a in _adjectives(scene, tpl)]
    words = [lex.word("numerals", scene.count), *adjectives, lex.word("nouns", scene.shape)]
    return _place(words, [lex.word("positions", scene.position)], tpl, comma=False)


_ZH = {
    **_UNINFLECTED,
    "particles": Section("particle", ("classifier", "attributive", "existential", "locative")),
}


def _chinese(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Chinese: numeral + measure word 个, colour + 的, size fused with the noun; position
    fronted as an existential (左边有...) or as the predicate (...在左边)."""
    size = [lex.word("adjectives", scene.size)] if tpl.size else []
    noun_phrase = [
        lex.word("numerals", scene.count),
        lex.word("particles", "classifier"),
        lex.word("adjectives", scene.colour),
        lex.word("particles", "attributive"),
        *size,
        lex.word("nouns", scene.shape),
    ]
    place = lex.word("positions", scene.position)
    if not tpl.position:
        return noun_phrase
    if tpl.position_first:
        return [place, lex.word("particles", "existential"), *noun_phrase]
    return [*noun_phrase, lex.word("particles", "locative"), place]


_JA = {
    **_UNINFLECTED,
    "particles": Section("particle", ("genitive", "locative", "subject", "existential")),
}


def _japanese(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Japanese: counter つ; 左に赤い丸が二つ (position first), 赤い丸が二つ左にある
    (position as predicate), 二つの赤い丸 (noun phrase alone)."""
    numeral = lex.word("numerals", scene.count)
    noun = [
        *(lex.word("adjectives", a) for a in _adjectives(scene, tpl)),
        lex.word("nouns", scene.shape),
    ]
    place = lex.word("positions", scene.position)
    at, subject = lex.word("particles", "locative"), lex.word("particles", "subject")
    if not tpl.position:
        return [numeral, lex.word("particles", "genitive"), *noun]
    if tpl.position_first:
        return [place, at, *noun, subject, numeral]
    return [*noun, subject, numeral, place, at, lex.word("particles", "existential")]


# --- Arabic ------------------------------------------------------------------------------------
_AR = {
    "nouns": _per_shape("gender", "singular", "dual", "plural", gender=("m", "f")),
    "adjectives": _per_adjective("m", "f", "m_dual", "f_dual"),
    # by the noun's gender: ثلاثة goes with a masculine noun (reversed polarity)
    "numerals": _per_count([count for count in COUNTS if count > 2], "m", "f"),
    "positions": _POSITIONS,
}


def _arabic(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Arabic: adjectives follow the noun; two is the dual (noun and adjectives); three is
    ثلاثة/ثلاث with reversed gender polarity plus the plural, whose (non-human) adjectives
    take the feminine singular."""
    noun = lex.forms("nouns", scene.shape)
    gender = noun["gender"]
    if scene.count == 1:
        numeral, word, form = [], noun["singular"], gender
    elif scene.count == 2:
        numeral, word, form = [], noun["dual"], f"{gender}_dual"
    else:
        numeral, word, form = [lex.forms("numerals", scene.count)[gender]], noun["plural"], "f"
    attributes = [scene.colour] + ([scene.size] if tpl.size else [])
    words = [*numeral, word, *(lex.forms("adjectives", a)[form] for a in attributes)]
    return _place(words, [lex.word("positions", scene.position)], tpl, comma=False)


# --- Hindi -------------------------------------------------------------------------------------
_HI = {
    "nouns": _per_shape("singular", "plural"),  # direct case; every shape noun is masculine
    "adjectives": _per_adjective("singular", "plural"),  # masculine
    "numerals": _per_count(COUNTS),
    "positions": _POSITIONS,
    "particles": Section("particle", ("copula_singular", "copula_plural")),
}


def _hindi(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Hindi: -ā adjectives and nouns inflect to -e in the plural; postpositional place
    phrases, fronted or before the final copula है/हैं (SOV)."""
    number = _number(scene)
    adjectives = [lex.forms("adjectives", a)[number] for a in _adjectives(scene, tpl)]
    words = [
        lex.word("numerals", scene.count),
        *adjectives,
        lex.forms("nouns", scene.shape)[number],
    ]
    place = [lex.word("positions", scene.position)]
    if tpl.position and not tpl.position_first:
        return [*words, *place, lex.word("particles", f"copula_{number}")]
    return _place(words, place, tpl, comma=False)


@dataclass(frozen=True)
class Grammar:
    """One language's word order and agreement, and the lexicon sections it reads."""

    build: Callable[[Lexicon, Scene, Template], Pieces]
    sections: Mapping[str, Section]


GRAMMARS: dict[str, Grammar] = {
    "en": Grammar(_english, _EN),
    "de": Grammar(_german, _DE),
    "nl": Grammar(_dutch, _NL),
    "fr": Grammar(partial(_romance, size_before_noun=True), _ROMANCE),
    "es": Grammar(partial(_romance, size_before_noun=False), _ROMANCE),
    "it": Grammar(partial(_romance, size_before_noun=False), _ROMANCE),
    "pt": Grammar(partial(_romance, size_before_noun=False), _ROMANCE),
    "pl": Grammar(_polish, _PL),
    "ru": Grammar(_russian, _RU),
    "tr": Grammar(_turkish, _UNINFLECTED),
    "zh": Grammar(_chinese, _ZH),
    "ja": Grammar(_japanese, _JA),
    "ar": Grammar(_arabic, _AR),
    "hi": Grammar(_hindi, _HI),
}
UNSPACED: frozenset[str] = frozenset({"zh", "ja"})  # scripts written without word spaces


def _grammar(lang: str) -> Grammar:
    if lang not in GRAMMARS:
        raise ValueError(
            f"no caption lexicon for language {lang!r}; the generated corpus speaks "
            f"{', '.join(GRAMMARS)} (set data.synthetic.langs to a subset of these; a new "
            "language needs its grammar in code as well as its lexicon file)"
        )
    return GRAMMARS[lang]


@cache
def load_lexicon(lang: str, folder: Path = LEXICON_DIR) -> Lexicon:
    """``lang``'s lexicon, ``folder/{lang}.json``, checked against its grammar; read once."""
    return read_lexicon(Path(folder) / f"{lang}.json", lang, _grammar(lang).sections)


def caption_pieces(scene: Scene, lang: str, variant: int) -> Pieces:
    """The words (morphemes for zh/ja) of caption ``variant`` of ``scene`` in ``lang``."""
    if not 0 <= variant < len(TEMPLATES):
        raise ValueError(f"caption variant {variant} out of range 0..{len(TEMPLATES) - 1}")
    return _grammar(lang).build(load_lexicon(lang), scene, TEMPLATES[variant])


def join_pieces(lang: str, pieces: Sequence[str]) -> str:
    """Write pieces as text: no spaces in zh/ja, commas attached to the word before."""
    if lang in UNSPACED:
        return "".join(pieces)
    return " ".join(pieces).replace(" ,", ",")


def describe(scene: Scene, lang: str, variant: int = 0) -> str:
    """Caption ``variant`` of ``scene`` in ``lang``; variant k is parallel across languages."""
    return join_pieces(lang, caption_pieces(scene, lang, variant))


def all_scenes() -> list[Scene]:
    """Every attribute combination (1,440 of them), in a fixed order."""
    return [Scene(*combo) for combo in itertools.product(SHAPES, COLOURS, SIZES, POSITIONS, COUNTS)]


@cache
def _lexicon_words(lang: str) -> tuple[str, ...]:
    words: set[str] = set()
    for scene in all_scenes():
        for variant in range(len(TEMPLATES)):
            for piece in caption_pieces(scene, lang, variant):
                words.update(piece.split())
    words.discard(",")
    return tuple(sorted(words))


def lexicon_words(lang: str) -> list[str]:
    """Every word form the lexicon can emit in ``lang`` (morphemes in zh/ja), sorted.

    Why: the tiny model's tokenizer seeds its vocabulary with these, so no lexicon word is
    split into characters or mapped to the unknown token.
    """
    return list(_lexicon_words(lang))


# --- Rendering ---------------------------------------------------------------------------------
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (240, 220, 40), "orange": (245, 140, 20), "purple": (140, 50, 180),
    "white": (242, 242, 242), "black": (18, 18, 18),
}  # fmt: skip
_RADIUS = {"small": 0.075, "large": 0.13}  # fraction of the image side
_ANCHORS = {  # centre of the group and whether it spreads vertically
    "left": (0.22, 0.5, True), "right": (0.78, 0.5, True), "top": (0.5, 0.22, False),
    "bottom": (0.5, 0.78, False), "centre": (0.5, 0.5, False),
}  # fmt: skip
_SUPERSAMPLE = 4  # draw masks at 4x and box-filter down: antialiased edges at 16-128 px


def sample_scenes(rng: np.random.Generator, n: int) -> list[Scene]:
    """``n`` scenes with every attribute drawn uniformly and independently."""
    attributes = (SHAPES, COLOURS, SIZES, POSITIONS, COUNTS)
    picks = [rng.integers(len(values), size=n) for values in attributes]
    return [
        Scene(*(values[i] for values, i in zip(attributes, row, strict=True)))
        for row in zip(*picks, strict=True)
    ]


def _object_centres(scene: Scene, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Centres (fractions of the side) of the ``count`` objects: a row or column at the anchor."""
    ax, ay, vertical = _ANCHORS[scene.position]
    offsets = (np.arange(scene.count) - (scene.count - 1) / 2) * 2.3 * radius
    centres = np.zeros((scene.count, 2)) + (ax, ay)
    centres[:, 1 if vertical else 0] += offsets
    centres += rng.uniform(-0.03, 0.03, size=centres.shape)
    return np.clip(centres, radius, 1 - radius)


def _star(x: float, y: float, r: float) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
    return list(zip(x + radii * np.cos(angles), y + radii * np.sin(angles), strict=True))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float) -> None:
    """Fill one shape of radius ``r`` px centred at (x, y) into a mask."""
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    elif shape == "square":
        s = 0.85 * r
        draw.rectangle((x - s, y - s, x + s, y + s), fill=255)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x + 0.95 * r, y + 0.8 * r), (x - 0.95 * r, y + 0.8 * r)], 255)
    elif shape == "star":
        draw.polygon(_star(x, y, r), fill=255)
    elif shape == "cross":
        t = 0.33 * r
        draw.rectangle((x - r, y - t, x + r, y + t), fill=255)
        draw.rectangle((x - t, y - r, x + t, y + r), fill=255)
    elif shape == "heart":
        lobe = 0.5 * r
        for cx in (x - lobe, x + lobe):
            draw.ellipse((cx - lobe, y - 0.3 * r - lobe, cx + lobe, y - 0.3 * r + lobe), fill=255)
        draw.polygon([(x - 0.97 * r, y - 0.15 * r), (x + 0.97 * r, y - 0.15 * r), (x, y + r)], 255)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey, slightly tinted linear gradient: varied, and in contrast with every colour."""
    base = rng.uniform(75.0, 175.0) + rng.uniform(-14.0, 14.0, size=3)
    angle, amplitude = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.0, 35.0)
    ramp = np.linspace(-0.5, 0.5, size)
    gradient = amplitude * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    return base[None, None, :] + gradient[:, :, None]


def render_scene(scene: Scene, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as ``uint8 [image_size, image_size, 3]``: antialiased shapes on a varied
    background, colour and size jittered, plus pixel noise, so no two images are identical."""
    big = image_size * _SUPERSAMPLE
    radius = _RADIUS[scene.size] * rng.uniform(0.9, 1.1)
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for cx, cy in _object_centres(scene, radius, rng):
        _draw_shape(draw, scene.shape, cx * big, cy * big, radius * big)
    alpha = np.asarray(mask.reduce(_SUPERSAMPLE), dtype=np.float32)[:, :, None] / 255.0
    colour = np.asarray(PALETTE[scene.colour], dtype=np.float32) + rng.uniform(-12, 12, size=3)
    pixels = _background(image_size, rng) * (1.0 - alpha) + colour * alpha
    pixels += rng.normal(0.0, 4.0, size=pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """JPEG at a fixed quality: Pillow's encoder is deterministic, so bytes are reproducible."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --- Web-like noise ----------------------------------------------------------------------------
BOILERPLATE: tuple[str, ...] = (
    "IMG_{n}.jpg {caption}",
    "{caption} - stock photo",
    "{caption} | royalty free vector illustration",
    "{upper}!!!",
    "DSC{n:05d} {caption}",
    "{caption}, high resolution, free download",
)


@dataclass(frozen=True)
class Caption:
    """One alt-text: the text, its English translation (LAION's ``ENG TEXT``) and its noise."""

    text: str
    eng_text: str
    noise: str  # one of NOISE_KINDS


def _tokens(lang: str, pieces: Sequence[str]) -> list[str]:
    return list(pieces) if lang in UNSPACED else join_pieces(lang, pieces).split()


def _truncated(lang: str, pieces: Sequence[str], fraction: float) -> str:
    """The first ``fraction`` of the caption's words (at least one, never all): cut mid-phrase."""
    tokens = _tokens(lang, pieces)
    keep = min(max(1, round(fraction * len(tokens))), len(tokens) - 1)
    return join_pieces(lang, tokens[:keep]).rstrip(", ")


def _random_other_scene(scene: Scene, rng: np.random.Generator) -> Scene:
    while (other := sample_scenes(rng, 1)[0]) == scene:
        continue
    return other


def noisy_caption(
    scene: Scene, lang: str, variant: int, kind: str, rng: np.random.Generator
) -> Caption:
    """Caption ``variant`` of ``scene`` in ``lang`` with one kind of web noise applied to it and,
    identically, to its English translation (as M2M100 would translate the noisy text)."""
    if kind == "mismatch":
        scene = _random_other_scene(scene, rng)
    pieces, eng = caption_pieces(scene, lang, variant), caption_pieces(scene, "en", variant)
    if kind in ("clean", "mismatch"):
        return Caption(join_pieces(lang, pieces), join_pieces("en", eng), kind)
    if kind == "truncate":
        fraction = rng.uniform(0.25, 0.85)
        return Caption(_truncated(lang, pieces, fraction), _truncated("en", eng, fraction), kind)
    if kind == "boilerplate":
        template = BOILERPLATE[rng.integers(len(BOILERPLATE))]
        number = int(rng.integers(1000, 10000))

        def wrap(text: str) -> str:
            return template.format(caption=text, upper=text.upper(), n=number)

        return Caption(wrap(join_pieces(lang, pieces)), wrap(join_pieces("en", eng)), kind)
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")


def noise_probabilities(noise: NoiseSection) -> np.ndarray:
    """Probabilities of ``NOISE_KINDS`` for one caption; the three noise shares must fit in 1."""
    shares = np.array([noise.mismatch, noise.truncate, noise.boilerplate])
    if shares.sum() > 1.0:
        raise ValueError(
            f"data.synthetic.noise shares sum to {shares.sum():.3f} > 1 (mismatch + truncate + "
            "boilerplate is the share of noisy captions); lower them"
        )
    return np.concatenate([[1.0 - shares.sum()], shares])


# Mean CLIP similarity and its range per noise kind: matching pairs stay above 0.26 (the cut
# LAION-5B applied to laion2B-multi), mismatched ones fall well below it.
_SIMILARITY = {
    "clean": (0.34, 0.26, 0.45),
    "truncate": (0.30, 0.26, 0.40),
    "boilerplate": (0.29, 0.26, 0.40),
    "mismatch": (0.15, 0.05, 0.22),
}


def _scores(kind: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """LAION-like (similarity, punsafe, pwatermark): similarity low for mismatched captions,
    watermark likely for stock-photo boilerplate."""
    mean, low, high = _SIMILARITY[kind]
    similarity = float(np.clip(rng.normal(mean, 0.025), low, high))
    punsafe = float(rng.beta(1.0, 200.0))
    pwatermark = float(rng.beta(4.0, 4.0) if kind == "boilerplate" else rng.beta(1.0, 20.0))
    return round(similarity, 6), round(punsafe, 6), round(pwatermark, 6)


# --- Pools -------------------------------------------------------------------------------------
_STREAMS = {"scenes": 0, "captions": 1, "noise": 2, "render": 3}


def _rng(cfg: SyntheticSection, pool: str, stream: str) -> np.random.Generator:
    """One independent generator per (seed, pool, purpose): changing the pretrain size leaves
    the eval pool unchanged, and rendering never shifts the caption draws."""
    return np.random.default_rng([cfg.seed, POOLS.index(pool), _STREAMS[stream]])


@dataclass(frozen=True)
class CaptionRow:
    """One caption of one image, with LAION's per-pair scores."""

    image_id: int
    lang: str
    caption_idx: int
    caption: Caption
    similarity: float
    punsafe: float
    pwatermark: float


def pool_size(cfg: SyntheticSection, pool: str) -> int:
    """Number of images in a pool."""
    sizes = {
        "pretrain": cfg.pretrain_images,
        "finetune": cfg.finetune_images,
        "eval": cfg.eval_images,
    }
    if pool not in sizes:
        raise ValueError(f"unknown pool {pool!r}; the corpus has pools {', '.join(POOLS)}")
    return sizes[pool]


def pool_captions(cfg: SyntheticSection, pool: str, scenes: Sequence[Scene]) -> list[CaptionRow]:
    """The caption rows of a pool, ordered by image, language (config order) and index.

    ``pretrain``: one caption per image, language drawn from the LAION-5B mix (or uniform),
    template drawn uniformly. ``finetune``/``eval``: caption k in every language uses template k.
    Noise never touches ``eval``.
    """
    langs = list(cfg.langs)
    draws = _rng(cfg, pool, "captions")
    if pool == "pretrain":
        mix = laion_mix(langs) if cfg.mix == "laion" else {lang: 1.0 / len(langs) for lang in langs}
        chosen = draws.choice(len(langs), size=len(scenes), p=[mix[lang] for lang in langs])
        variants = draws.integers(cfg.captions_per_image, size=len(scenes))
        slots = [
            (i, langs[c], int(v)) for i, (c, v) in enumerate(zip(chosen, variants, strict=True))
        ]
    else:
        per_image = list(itertools.product(langs, range(cfg.captions_per_image)))
        slots = [(i, lang, k) for i in range(len(scenes)) for lang, k in per_image]
    noise_rng = _rng(cfg, pool, "noise")
    if pool == "eval":
        kinds = np.zeros(len(slots), dtype=int)
    else:
        kinds = noise_rng.choice(
            len(NOISE_KINDS), size=len(slots), p=noise_probabilities(cfg.noise)
        )
    rows = []
    for (image_id, lang, variant), kind in zip(slots, kinds, strict=True):
        kind_name = NOISE_KINDS[kind]
        caption = noisy_caption(scenes[image_id], lang, variant, kind_name, noise_rng)
        caption_idx = 0 if pool == "pretrain" else variant
        rows.append(
            CaptionRow(image_id, lang, caption_idx, caption, *_scores(kind_name, noise_rng))
        )
    return rows


def _metadata_table(rows: Sequence[CaptionRow], pool: str, size: int, base_url: str) -> pa.Table:
    """LAION's metadata columns (and the translated release's ``ENG TEXT``), one row a caption."""
    return pa.table(
        {
            "URL": [f"{base_url}/{pool}/{r.image_id:08d}.jpg" for r in rows],
            "TEXT": [r.caption.text for r in rows],
            "LANGUAGE": [r.lang for r in rows],
            "similarity": pa.array([r.similarity for r in rows], pa.float64()),
            "punsafe": pa.array([r.punsafe for r in rows], pa.float64()),
            "pwatermark": pa.array([r.pwatermark for r in rows], pa.float64()),
            "WIDTH": pa.array([size] * len(rows), pa.int64()),
            "HEIGHT": pa.array([size] * len(rows), pa.int64()),
            "ENG TEXT": [r.caption.eng_text for r in rows],
            "image_id": pa.array([r.image_id for r in rows], pa.int64()),
            "caption_idx": pa.array([r.caption_idx for r in rows], pa.int64()),
            "noise": [r.caption.noise for r in rows],
        }
    )


def _scenes_table(scenes: Sequence[Scene]) -> pa.Table:
    return pa.table(
        {
            "image_id": pa.array(range(len(scenes)), pa.int64()),
            "shape": [s.shape for s in scenes],
            "colour": [s.colour for s in scenes],
            "size": [s.size for s in scenes],
            "position": [s.position for s in scenes],
            "count": pa.array([s.count for s in scenes], pa.int64()),
        }
    )


def _shard_columns(parallel: bool) -> pa.Schema:
    """Additional columns img2dataset would carry over (``save_additional_columns``)."""
    fields = [
        pa.field("image_id", pa.int64()),
        pa.field("caption_idx", pa.int64()),
        pa.field("LANGUAGE", pa.string()),
        pa.field("ENG TEXT", pa.string()),
        pa.field("similarity", pa.float64()),
        pa.field("punsafe", pa.float64()),
        pa.field("pwatermark", pa.float64()),
    ]
    if parallel:
        fields.append(pa.field("translations", pa.map_(pa.string(), pa.list_(pa.string()))))
    return pa.schema(fields)


def _samples(
    cfg: SyntheticSection,
    pool: str,
    scenes: Sequence[Scene],
    rows: Sequence[CaptionRow],
    image_dir: Path,
    base_url: str,
    progress: bool,
) -> Iterator[Sample]:
    """Render each image, write its file, and yield its shard sample.

    The sample's ``.txt`` is the pretrain caption, or for the parallel pools caption 0 in the
    first configured language; ``translations`` then holds every language's captions.
    """
    by_image: list[list[CaptionRow]] = [[] for _ in scenes]
    for row in rows:
        by_image[row.image_id].append(row)
    render_rng = _rng(cfg, pool, "render")
    for image_id in tqdm(range(len(scenes)), desc=f"render {pool}", disable=not progress):
        jpg = encode_jpeg(render_scene(scenes[image_id], cfg.image_size, render_rng))
        (image_dir / f"{image_id:08d}.jpg").write_bytes(jpg)
        first = by_image[image_id][0]
        columns: dict[str, Any] = {
            "image_id": image_id,
            "caption_idx": first.caption_idx,
            "LANGUAGE": first.lang,
            "ENG TEXT": first.caption.eng_text,
            "similarity": first.similarity,
            "punsafe": first.punsafe,
            "pwatermark": first.pwatermark,
        }
        if pool != "pretrain":
            translations: dict[str, list[str]] = {}
            for row in by_image[image_id]:
                translations.setdefault(row.lang, []).append(row.caption.text)
            columns["translations"] = translations
        url = f"{base_url}/{pool}/{image_id:08d}.jpg"
        yield Sample(url, first.caption.text, jpg, cfg.image_size, cfg.image_size, columns)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _write_pool(
    cfg: SyntheticSection, pool: str, root: Path, base_url: str, progress: bool
) -> dict[str, int]:
    """Write one pool's files under ``root``; returns its caption count per language."""
    scenes = sample_scenes(_rng(cfg, pool, "scenes"), pool_size(cfg, pool))
    rows = pool_captions(cfg, pool, scenes)
    _write_parquet(
        _metadata_table(rows, pool, cfg.image_size, base_url), root / pool / "metadata.parquet"
    )
    _write_parquet(_scenes_table(scenes), root / pool / "scenes.parquet")
    if pool == "eval":
        captions = pa.table(
            {
                "image_id": pa.array([r.image_id for r in rows], pa.int64()),
                "lang": [r.lang for r in rows],
                "caption_idx": pa.array([r.caption_idx for r in rows], pa.int64()),
                "caption": [r.caption.text for r in rows],
            }
        )
        _write_parquet(captions, root / "eval" / "captions.parquet")
    image_dir = root / "images" / pool
    image_dir.mkdir(parents=True, exist_ok=True)
    samples = _samples(cfg, pool, scenes, rows, image_dir, base_url, progress)
    write_shards(
        samples, root / pool / "shards", cfg.shard_size, _shard_columns(pool != "pretrain")
    )
    counts: dict[str, int] = {lang: 0 for lang in cfg.langs}
    for row in rows:
        counts[row.lang] += 1
    return counts


# --- The corpus on disk ------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_config(cfg: SyntheticSection, base_url: str) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "base_url": base_url, **cfg.model_dump(mode="json")}


class CorpusError(ValueError):
    """A corpus directory that is missing, incomplete or not a corpus; the message says the fix."""


def read_manifest(corpus_dir: Path) -> dict[str, Any]:
    """The corpus manifest, or a :class:`CorpusError` naming the path and the fix."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        raise CorpusError(
            f"{path}: no corpus manifest; generate the corpus with "
            f"xlr.data.synthetic.generate_corpus(cfg, {str(corpus_dir)!r}) first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not {"config", "counts", "files"} <= set(manifest):
            raise ValueError("missing config, counts or files")
    except (ValueError, TypeError) as err:
        raise CorpusError(
            f"{path}: corrupt corpus manifest ({err}); delete {corpus_dir} and generate it again"
        ) from None
    return manifest


def _is_complete(corpus_dir: Path, manifest: dict[str, Any]) -> bool:
    """Every listed file present with its recorded size (hashing 100k images per call is not
    worth it; a size mismatch catches truncation, the usual way a copy goes wrong)."""
    return all(
        (corpus_dir / rel).is_file() and (corpus_dir / rel).stat().st_size == entry["bytes"]
        for rel, entry in manifest["files"].items()
    )


def _cached(out_dir: Path, config: dict[str, Any]) -> bool:
    """Whether ``out_dir`` already holds a complete corpus of this exact config."""
    if not out_dir.exists():
        return False
    if not (out_dir / "manifest.json").is_file():
        if any(out_dir.iterdir()):
            raise CorpusError(
                f"{out_dir}: exists, is not empty and holds no corpus manifest; refusing to "
                "overwrite it. Choose another output directory or delete this one"
            )
        return False
    manifest = read_manifest(out_dir)
    return manifest["config"] == config and _is_complete(out_dir, manifest)


def _build(cfg: SyntheticSection, root: Path, config: dict[str, Any], progress: bool) -> None:
    """Write every pool and the manifest into ``root`` (a fresh temporary directory)."""
    counts = {pool: _write_pool(cfg, pool, root, config["base_url"], progress) for pool in POOLS}
    files = {
        path.relative_to(root).as_posix(): {"sha256": _sha256(path), "bytes": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    manifest = {"config": config, "counts": counts, "files": files}
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
    (root / "manifest.json").write_text(text + "\n", encoding="utf-8")


def _replace_dir(built: Path, out_dir: Path) -> None:
    """Move ``built`` to ``out_dir``; an older corpus there is moved aside first, then removed."""
    if not out_dir.exists():
        os.replace(built, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(built, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def generate_corpus(
    cfg: SyntheticSection,
    out_dir: Path,
    progress: bool = True,
    base_url: str = DEFAULT_BASE_URL,
) -> Path:
    """Generate the corpus of ``cfg`` into ``out_dir`` and return ``out_dir``.

    Deterministic: the same config gives byte-identical files. Atomic: the corpus is built in a
    hidden temporary directory next to ``out_dir`` and renamed into place, so a crash never
    leaves half a corpus. Cached: when ``out_dir`` already holds a complete corpus of the same
    config (``manifest.json``), nothing is written. ``base_url`` is the prefix of every URL
    (serve ``out_dir/images`` there to run the img2dataset path offline).
    """
    out_dir = Path(out_dir)
    config = _manifest_config(cfg, base_url.rstrip("/"))
    if _cached(out_dir, config):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _build(cfg, tmp, config, progress)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _decode(jpg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpg)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_pool(corpus_dir: Path, pool: str) -> ImageTextSet:
    """One pool as an :class:`ImageTextSet`, read from its webdataset shards.

    ``pretrain`` has one caption row per image (its language, index 0); ``finetune`` and
    ``eval`` have every language x caption index. Images are decoded into memory
    (:class:`ArrayImages`), ordered by ``image_id``.
    """
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    if pool not in manifest["counts"]:
        raise CorpusError(
            f"{corpus_dir}: unknown pool {pool!r}; this corpus has {', '.join(manifest['counts'])}"
        )
    shard_dir = corpus_dir / pool / "shards"
    size, count = manifest["config"]["image_size"], manifest["config"][f"{pool}_images"]
    pixels = np.zeros((count, size, size, 3), dtype=np.uint8)  # filled in place: one copy
    seen = np.zeros(count, dtype=bool)
    records = []
    for sample in read_shards(shard_dir):
        meta = sample["json"]
        image_id = meta["image_id"]
        if not 0 <= image_id < count or seen[image_id]:
            raise CorpusError(
                f"{shard_dir}: unexpected image_id {image_id} in sample {sample['key']}; "
                f"delete {corpus_dir} and generate it again"
            )
        pixels[image_id], seen[image_id] = _decode(sample["jpg"]), True
        if pool == "pretrain":
            records.append((image_id, meta["LANGUAGE"], 0, sample["txt"]))
        else:
            for lang, captions in meta["translations"].items():
                records.extend((image_id, lang, k, text) for k, text in enumerate(captions))
    expected = sum(manifest["counts"][pool].values())
    if not seen.all() or len(records) != expected:
        raise CorpusError(
            f"{shard_dir}: {seen.sum()} images and {len(records)} captions in the shards, the "
            f"manifest says {count} and {expected}; delete {corpus_dir} and generate it again"
        )
    captions = pd.DataFrame(records, columns=["image_id", "lang", "caption_idx", "caption"])
    captions = captions.sort_values("image_id", kind="stable").reset_index(drop=True)
    keys = [f"{image_id:08d}.jpg" for image_id in range(count)]
    return ImageTextSet(f"synthetic-{pool}", keys, ArrayImages(pixels), captions)
