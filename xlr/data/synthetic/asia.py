"""Captions in Turkish, Chinese, Japanese, Arabic and Hindi: postpositions and locative nouns
after the reference (tr, zh, ja, hi), verb-final clauses (ja, hi), unspaced scripts (zh, ja) and
a conjunction written joined to the next word (ar)."""

from __future__ import annotations

from xlr.data.synthetic.lexicon import Lexicon, Section
from xlr.data.synthetic.phrases import (
    CONJUNCTIONS,
    POSITIONS_SECTION,
    RELATIONS_SECTION,
    Grammar,
    Pieces,
    Template,
    attributes,
    caption,
    coordinated,
    number,
    per_adjective,
    per_count,
    per_shape,
    relative,
)
from xlr.data.synthetic.scenes import COUNTS, Scene, Thing

# --- Turkish -----------------------------------------------------------------------------------
_TR = {
    "nouns": per_shape("nominative", "genitive"),
    "adjectives": per_adjective(),
    "numerals": per_count(COUNTS),
    "positions": POSITIONS_SECTION,  # locative nouns: solda, sağda, üstte, altta
    "relations": RELATIONS_SECTION,  # possessed locatives after a genitive: yıldızın solunda
    "conjunctions": CONJUNCTIONS,
}


def _turkish(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Turkish: the noun stays singular after a numeral; the reference in the genitive before
    the possessed locative (bir yıldızın solunda), fronted or as the sentence-final predicate
    (SOV), no comma."""

    def phrase(thing: Thing, count: int, case: str = "nominative") -> Pieces:
        adjectives = [lex.word("adjectives", a) for a in attributes(thing)]
        return [lex.word("numerals", count), *adjectives, lex.forms("nouns", thing.shape)[case]]

    relation = [*phrase(scene.reference, 1, "genitive"), lex.word("relations", scene.relation)]
    return caption(lex, scene, tpl, phrase, relation, comma=False)


# --- Chinese -----------------------------------------------------------------------------------
_ZH = {
    "nouns": per_shape(),
    "adjectives": per_adjective(),
    "numerals": per_count(COUNTS),
    "positions": POSITIONS_SECTION,  # also the locative nouns after the reference (...的左边)
    "particles": Section(
        "particle", ("classifier", "attributive", "existential", "locative", "comma")
    ),
}


def _chinese(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Chinese: numeral + measure word 个, colour + 的, size fused with the noun; 圆形在星形的左边
    (relation as predicate), 星形的左边有圆形 (fronted, existential), 左边有..., 右边有...
    (coordinated by a comma)."""

    def phrase(thing: Thing, count: int) -> Pieces:
        return [
            lex.word("numerals", count),
            lex.word("particles", "classifier"),
            lex.word("adjectives", thing.colour),
            lex.word("particles", "attributive"),
            lex.word("adjectives", thing.size),
            lex.word("nouns", thing.shape),
        ]

    group, reference = phrase(scene.group, scene.count), phrase(scene.reference, 1)
    group_at, reference_at = scene.positions
    of, there_is = lex.word("particles", "attributive"), lex.word("particles", "existential")
    if tpl.relative:
        side = [*reference, of, lex.word("positions", group_at)]
        if tpl.fronted:
            return [*side, there_is, *group]
        return [*group, lex.word("particles", "locative"), *side]
    return coordinated(
        tpl,
        [lex.word("positions", group_at), there_is, *group],
        [lex.word("positions", reference_at), there_is, *reference],
        lex.word("particles", "comma"),
    )


# --- Japanese ----------------------------------------------------------------------------------
_JA = {
    "nouns": per_shape(),
    "adjectives": per_adjective(),
    "numerals": per_count(COUNTS),  # with the counter つ: 一つ, 二つ, 三つ
    "positions": POSITIONS_SECTION,
    "particles": Section("particle", ("genitive", "locative", "subject", "existential", "comma")),
}


def _japanese(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Japanese: 赤い丸が二つ青い星の左にある (relation as predicate), 青い星の左に赤い丸が二つ
    (fronted), 左に赤い丸が二つ、右に青い星 (coordinated by a comma; a bare noun is one object,
    and leaving out its が一つ keeps every caption within 30 characters, one token each)."""

    def phrase(thing: Thing) -> Pieces:
        adjectives = [lex.word("adjectives", a) for a in attributes(thing)]
        return [*adjectives, lex.word("nouns", thing.shape)]

    particle = {name: lex.word("particles", name) for name in _JA["particles"].keys}
    counted = [*phrase(scene.group), particle["subject"], lex.word("numerals", scene.count)]
    group_at, reference_at = scene.positions
    if tpl.relative:
        side = [*phrase(scene.reference), particle["genitive"], lex.word("positions", group_at)]
        if tpl.fronted:
            return [*side, particle["locative"], *counted]
        return [*counted, *side, particle["locative"], particle["existential"]]
    return coordinated(
        tpl,
        [lex.word("positions", group_at), particle["locative"], *counted],
        [lex.word("positions", reference_at), particle["locative"], *phrase(scene.reference)],
        particle["comma"],
    )


# --- Arabic ------------------------------------------------------------------------------------
_AR = {
    "nouns": per_shape("gender", "singular", "dual", "plural", gender=("m", "f")),
    "adjectives": per_adjective("m", "f", "m_dual", "f_dual"),
    # by the noun's gender: ثلاثة goes with a masculine noun (reversed polarity)
    "numerals": per_count([count for count in COUNTS if count > 2], "m", "f"),
    "positions": POSITIONS_SECTION,
    # على يسار, فوق ... + the reference in the genitive, which unvocalised script writes as the
    # nominative for an indefinite singular
    "relations": RELATIONS_SECTION,
    "conjunctions": CONJUNCTIONS,  # و, written joined to the next word
}


def _arabic_noun_phrase(lex: Lexicon, thing: Thing, count: int) -> Pieces:
    """Adjectives follow the noun, colour first; two is the dual (noun and adjectives); three is
    ثلاثة/ثلاث with reversed gender polarity plus the plural, whose (non-human) adjectives take
    the feminine singular."""
    noun = lex.forms("nouns", thing.shape)
    gender = noun["gender"]
    if count == 1:
        numeral, word, form = [], noun["singular"], gender
    elif count == 2:
        numeral, word, form = [], noun["dual"], f"{gender}_dual"
    else:
        numeral, word, form = [lex.forms("numerals", count)[gender]], noun["plural"], "f"
    attributes_first_colour = [thing.colour, thing.size]
    return [*numeral, word, *(lex.forms("adjectives", a)[form] for a in attributes_first_colour)]


def _arabic(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Arabic: the relation phrase after the group or fronted (a nominal sentence with its
    predicate first); coordinated objects joined by و prefixed to the second."""
    group = _arabic_noun_phrase(lex, scene.group, scene.count)
    reference = _arabic_noun_phrase(lex, scene.reference, 1)
    if tpl.relative:
        return relative(tpl, group, [lex.word("relations", scene.relation), *reference], False)
    group_at, reference_at = scene.positions
    located_group = [*group, lex.word("positions", group_at)]
    located_reference = [*reference, lex.word("positions", reference_at)]
    first, second = (
        (located_reference, located_group) if tpl.fronted else (located_group, located_reference)
    )
    return [*first, lex.word("conjunctions", "and") + second[0], *second[1:]]


# --- Hindi -------------------------------------------------------------------------------------
_HI = {
    # every shape noun is masculine; oblique: the singular before a postposition (तारा -> तारे)
    "nouns": per_shape("singular", "plural", "oblique"),
    "adjectives": per_adjective("singular", "plural", "oblique"),  # masculine
    "numerals": per_count(COUNTS),
    "positions": POSITIONS_SECTION,
    "relations": RELATIONS_SECTION,  # compound postpositions: के बाईं ओर, के ऊपर
    "particles": Section("particle", ("copula_singular", "copula_plural")),
    "conjunctions": CONJUNCTIONS,
}


def _hindi(lex: Lexicon, scene: Scene, tpl: Template) -> Pieces:
    """Hindi (SOV): -ā adjectives and nouns inflect to -e in the plural and the oblique; the
    relation as a postposition after the oblique reference, before the final copula है/हैं, or
    fronted; coordinated clauses each with its own place first and copula last."""

    def phrase(thing: Thing, count: int, form: str) -> Pieces:
        adjectives = [lex.forms("adjectives", a)[form] for a in attributes(thing)]
        return [lex.word("numerals", count), *adjectives, lex.forms("nouns", thing.shape)[form]]

    def copula(count: int) -> str:
        return lex.word("particles", f"copula_{number(count)}")

    group = phrase(scene.group, scene.count, number(scene.count))
    if tpl.relative:
        side = [*phrase(scene.reference, 1, "oblique"), lex.word("relations", scene.relation)]
        if tpl.fronted:
            return [*side, *group]
        return [*group, *side, copula(scene.count)]
    group_at, reference_at = scene.positions
    return coordinated(
        tpl,
        [lex.word("positions", group_at), *group, copula(scene.count)],
        [lex.word("positions", reference_at), *phrase(scene.reference, 1, "singular"), copula(1)],
        lex.word("conjunctions", "and"),
    )


GRAMMARS: dict[str, Grammar] = {
    "tr": Grammar(_turkish, _TR),
    "zh": Grammar(_chinese, _ZH),
    "ja": Grammar(_japanese, _JA),
    "ar": Grammar(_arabic, _AR),
    "hi": Grammar(_hindi, _HI),
}
