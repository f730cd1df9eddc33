"""Captions: each language's word order and agreement over the words of its lexicon file.

Variant ``k`` of a caption follows :data:`TEMPLATES` ``[k]`` in every language, so caption ``k``
of an image is a translation of caption ``k`` in any other language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from xlr.data.synthetic.lexicon import LEXICON_DIR, Lexicon, Section, read_lexicon
from xlr.data.synthetic.scenes import COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, Scene, all_scenes


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
