"""Captions in the corpus's European languages: English, German, Dutch, the four Romance languages,
Polish and Russian. Each reads its words from its lexicon file by role and puts them in its own
order and agreement; the reference object takes the case its preposition governs."""

from __future__ import annotations

from functools import partial

from xlr.data.synthetic.lexicon import Lexicon, Section
from xlr.data.synthetic.phrases import (
    CONJUNCTIONS,
    PLURAL_COUNTS,
    POSITIONS_SECTION,
    RELATIONS_SECTION,
    Grammar,
    Pieces,
    Template,
    attributes,
    caption,
    number,
    per_adjective,
    per_count,
    per_shape,
)
from xlr.data.synthetic.scenes import COUNTS, RELATIONS, Scene, Thing

_PLACES = {
    "positions": POSITIONS_SECTION,
    "relations": RELATIONS_SECTION,
    "conjunctions": CONJUNCTIONS,
}

# --- English -----------------------------------------------------------------------------------
_EN = {
    "nouns": per_shape("singular", "plural"),
    "adjectives": per_adjective(),
    "articles": Section("article", ("before_consonant", "before_vowel")),
    "numerals": per_count(PLURAL_COUNTS),
    **_PLACES,
}


def _english_noun_phrase(lex: Lexicon, thing: Thing, count: int) -> Pieces:
    """Numeral or a/an (by the next word's first letter), size, colour, noun."""
    adjectives = [lex.word("adjectives", a) for a in attributes(thing)]
    if count == 1:
        vowel = adjectives[0][0] in "aeiou"
        numeral = lex.word("articles", "before_vowel" if vowel else "before_consonant")
    else:
        numeral = lex.word("numerals", count)
    return [numeral, *adjectives, lex.forms("nouns", thing.shape)[number(count)]]


def _english(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    phrase = partial(_english_noun_phrase, lex)
    relation = [lex.word("relations", scene.relation), *phrase(scene.reference, 1)]
    return caption(lex, scene, tpl, phrase, relation)


# --- German ------------------------------------------------------------------------------------
_DE_ENDINGS = {"m": "er", "n": "es"}  # adjective endings after ein; the plural takes -e
_DE = {
    "nouns": per_shape("gender", "singular", "plural", "dative", gender=tuple(_DE_ENDINGS)),
    "adjective_stems": per_adjective(),
    "numerals": per_count(COUNTS),
    "articles": Section("article", ("dative",)),  # einem: masculine and neuter alike
    **_PLACES,  # every relation governs the dative: links von, rechts von, über, unter
}


def _german_noun_phrase(lex: Lexicon, thing: Thing, count: int) -> Pieces:
    """Nominative: mixed declension after ``ein`` (-er/-es by gender), strong plural -e."""
    noun = lex.forms("nouns", thing.shape)
    ending = _DE_ENDINGS[noun["gender"]] if count == 1 else "e"
    stems = [lex.word("adjective_stems", a) for a in attributes(thing)]
    return [lex.word("numerals", count), *(s + ending for s in stems), noun[number(count)]]


def _german(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """The reference in the dative after ``einem``: adjectives in -en (mixed declension)."""
    noun = lex.forms("nouns", scene.reference.shape)
    stems = [lex.word("adjective_stems", a) for a in attributes(scene.reference)]
    reference = [lex.word("articles", "dative"), *(s + "en" for s in stems), noun["dative"]]
    relation = [lex.word("relations", scene.relation), *reference]
    return caption(lex, scene, tpl, partial(_german_noun_phrase, lex), relation)


# --- Dutch -------------------------------------------------------------------------------------
_NL = {
    "nouns": per_shape("article", "singular", "plural", article=("de", "het")),
    "adjectives": per_adjective("bare", "inflected"),
    "numerals": per_count(COUNTS),
    **_PLACES,  # Dutch has no case: links van, rechts van, boven, onder + the noun phrase
}


def _dutch_noun_phrase(lex: Lexicon, thing: Thing, count: int) -> Pieces:
    """Adjectives take -e (the inflected form) except after ``een`` with a het-word."""
    noun = lex.forms("nouns", thing.shape)
    form = "bare" if count == 1 and noun["article"] == "het" else "inflected"
    adjectives = [lex.forms("adjectives", a)[form] for a in attributes(thing)]
    return [lex.word("numerals", count), *adjectives, noun[number(count)]]


def _dutch(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    phrase = partial(_dutch_noun_phrase, lex)
    relation = [lex.word("relations", scene.relation), *phrase(scene.reference, 1)]
    return caption(lex, scene, tpl, phrase, relation)


# --- Romance: French, Spanish, Italian, Portuguese ---------------------------------------------
_ROMANCE = {
    "nouns": per_shape("gender", "singular", "plural", gender=("m", "f")),
    "adjectives": per_adjective("m_sg", "f_sg", "m_pl", "f_pl"),
    "numerals": per_count(COUNTS, "m", "f"),
    **_PLACES,  # a la izquierda de, sopra, acima de, au-dessus de ... + the noun phrase
}


def _romance_noun_phrase(lex: Lexicon, thing: Thing, count: int, size_before_noun: bool) -> Pieces:
    """Numeral agreeing in gender, noun, colour (and size) after it, agreeing in gender and
    number. ``size_before_noun``: French petit/grand precede the noun; es/it/pt put all after."""
    noun = lex.forms("nouns", thing.shape)
    form = f"{noun['gender']}_{'sg' if count == 1 else 'pl'}"
    colour = lex.forms("adjectives", thing.colour)[form]
    size = lex.forms("adjectives", thing.size)[form]
    numeral = lex.forms("numerals", count)[noun["gender"]]
    if size_before_noun:
        return [numeral, size, noun[number(count)], colour]
    return [numeral, noun[number(count)], colour, size]


def _elide(preposition: str, word: str) -> list[str]:
    """French elision: ``de`` before a vowel is written ``d'`` joined to it (d'un, d'une)."""
    if (preposition == "de" or preposition.endswith(" de")) and word[0] in "aeiouhéè":
        return [preposition[:-2] + "d'" + word]
    return [preposition, word]


def _romance(
    lex: Lexicon, scene: Scene, tpl: Template, size_before_noun: bool, elision: bool = False
) -> Pieces:
    phrase = partial(_romance_noun_phrase, lex, size_before_noun=size_before_noun)
    first, *rest = phrase(scene.reference, 1)
    preposition = lex.word("relations", scene.relation)
    joined = _elide(preposition, first) if elision else [preposition, first]
    return caption(lex, scene, tpl, phrase, [*joined, *rest])


# --- Polish and Russian ------------------------------------------------------------------------
_PL = {
    "nouns": per_shape("gender", "singular", "plural", "genitive", gender=("m", "f", "n")),
    # plural: non-masculine-personal; gen_*: genitive singular
    "adjectives": per_adjective("m", "f", "n", "pl", "gen_m", "gen_f", "gen_n"),
    "numerals": per_count(PLURAL_COUNTS, "m", "f", "n"),
    **_PLACES,  # every relation governs the genitive: na lewo od, na prawo od, powyżej, poniżej
}


def _polish_noun_phrase(lex: Lexicon, thing: Thing, count: int) -> Pieces:
    """No article; dwa/dwie by gender; 2-3 take the nominative plural."""
    noun = lex.forms("nouns", thing.shape)
    if count == 1:
        numeral, form = [], noun["gender"]
    else:
        numeral, form = [lex.forms("numerals", count)[noun["gender"]]], "pl"
    adjectives = [lex.forms("adjectives", a)[form] for a in attributes(thing)]
    return [*numeral, *adjectives, noun[number(count)]]


def _polish(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    noun = lex.forms("nouns", scene.reference.shape)
    form = f"gen_{noun['gender']}"
    adjectives = [lex.forms("adjectives", a)[form] for a in attributes(scene.reference)]
    relation = [lex.word("relations", scene.relation), *adjectives, noun["genitive"]]
    return caption(lex, scene, tpl, partial(_polish_noun_phrase, lex), relation)


_RU_CASES = ("gen", "ins")
_RU = {
    "nouns": per_shape("gender", "nom_sg", "gen_sg", "ins_sg", gender=("m", "f", "n")),
    "adjectives": per_adjective(
        "m", "f", "n", "gen_pl", "nom_pl", *(f"{c}_{g}" for c in _RU_CASES for g in "mfn")
    ),
    "numerals": per_count(PLURAL_COUNTS, "m", "f", "n"),
    "positions": POSITIONS_SECTION,
    # each preposition with the case it governs: слева от + genitive, над + instrumental
    "relations": Section("relation", RELATIONS, ("preposition", "case"), {"case": _RU_CASES}),
    "conjunctions": CONJUNCTIONS,
}


def _russian_noun_phrase(lex: Lexicon, thing: Thing, count: int) -> Pieces:
    """After два/две/три the noun is genitive singular and the adjective genitive plural
    (nominative plural with feminine nouns, the usual modern form)."""
    noun = lex.forms("nouns", thing.shape)
    gender = noun["gender"]
    if count == 1:
        numeral, form, word = [], gender, noun["nom_sg"]
    else:
        numeral = [lex.forms("numerals", count)[gender]]
        form, word = ("nom_pl" if gender == "f" else "gen_pl"), noun["gen_sg"]
    adjectives = [lex.forms("adjectives", a)[form] for a in attributes(thing)]
    return [*numeral, *adjectives, word]


def _russian(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    relation = lex.forms("relations", scene.relation)
    case, noun = relation["case"], lex.forms("nouns", scene.reference.shape)
    form = f"{case}_{noun['gender']}"
    adjectives = [lex.forms("adjectives", a)[form] for a in attributes(scene.reference)]
    phrase = [relation["preposition"], *adjectives, noun[f"{case}_sg"]]
    return caption(lex, scene, tpl, partial(_russian_noun_phrase, lex), phrase)


GRAMMARS: dict[str, Grammar] = {
    "en": Grammar(_english, _EN),
    "de": Grammar(_german, _DE),
    "nl": Grammar(_dutch, _NL),
    "fr": Grammar(partial(_romance, size_before_noun=True, elision=True), _ROMANCE),
    "es": Grammar(partial(_romance, size_before_noun=False), _ROMANCE),
    "it": Grammar(partial(_romance, size_before_noun=False), _ROMANCE),
    "pt": Grammar(partial(_romance, size_before_noun=False), _ROMANCE),
    "pl": Grammar(_polish, _PL),
    "ru": Grammar(_russian, _RU),
}
