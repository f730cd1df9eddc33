"""What every language's grammar shares: the caption templates, the lexicon sections most of them
read, and the two clause shapes a caption takes.

A caption states every attribute of its scene (both objects' shape, colour and size, the group's
count and the relation), so its text names exactly one composition and a held-out composition
is held-out text. Variety comes from word order instead: :data:`TEMPLATES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from xlr.data.synthetic.lexicon import Lexicon, Section
from xlr.data.synthetic.scenes import (
    COLOURS,
    COUNTS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    Thing,
)

Pieces = list[str]


@dataclass(frozen=True)
class Template:
    """How caption variant ``k`` words a scene.

    ``relative``: the group, then the relation to the reference ("two red circles to the left of
    a blue star"); otherwise each object with its own position, coordinated ("two red circles on
    the left and a blue star on the right"). ``fronted``: the relation phrase comes first
    ("to the left of a blue star, two red circles"), or, coordinated, the reference does.
    """

    relative: bool
    fronted: bool


# Variant k uses TEMPLATES[k] in every language, so caption k of an image is a translation.
TEMPLATES: tuple[Template, ...] = (
    Template(relative=True, fronted=False),
    Template(relative=True, fronted=True),
    Template(relative=False, fronted=False),
    Template(relative=False, fronted=True),
)


@dataclass(frozen=True)
class Grammar:
    """One language's word order and agreement, and the lexicon sections it reads."""

    build: Callable[[Lexicon, Scene, Template], Pieces]
    sections: Mapping[str, Section]


# --- Sections several grammars read ------------------------------------------------------------
def per_shape(*forms: str, **choices: tuple[str, ...]) -> Section:
    return Section("shape", SHAPES, forms, choices)


def per_adjective(*forms: str) -> Section:
    return Section("colour or size", COLOURS + SIZES, forms)


def per_count(counts: Sequence[int], *forms: str) -> Section:
    return Section("count", tuple(str(count) for count in counts), forms)


PLURAL_COUNTS = tuple(count for count in COUNTS if count > 1)
POSITIONS_SECTION = Section("position", POSITIONS)  # an object's own place in the image
RELATIONS_SECTION = Section("relation", RELATIONS)  # the group's place beside the reference
CONJUNCTIONS = Section("conjunction", ("and",))


# --- Words every grammar picks the same way ----------------------------------------------------
def attributes(thing: Thing) -> list[str]:
    """The attributes stated as adjectives, size then colour: the order of every language here
    but Arabic (which puts the colour first, after the noun)."""
    return [thing.size, thing.colour]


def number(count: int) -> str:
    return "singular" if count == 1 else "plural"


# --- The two clause shapes ---------------------------------------------------------------------
def relative(tpl: Template, group: Pieces, relation: Pieces, comma: bool = True) -> Pieces:
    """The group and the relation phrase, the phrase fronted (with a comma where written)."""
    if tpl.fronted:
        return [*relation, *([","] if comma else []), *group]
    return [*group, *relation]


def coordinated(tpl: Template, group: Pieces, reference: Pieces, conjunction: str) -> Pieces:
    """Two located objects joined by "and": the group first, or (fronted) the reference."""
    first, second = (reference, group) if tpl.fronted else (group, reference)
    return [*first, conjunction, *second]


def caption(
    lex: Lexicon,
    scene: Scene,
    tpl: Template,
    noun_phrase: Callable[[Thing, int], Pieces],
    relation: Pieces,
    comma: bool = True,
) -> Pieces:
    """The caption of a language whose noun phrases are followed by their position ("two red
    circles on the left") and joined by a plain "and": the shape of most grammars here.

    ``noun_phrase(thing, count)`` is the nominative noun phrase; ``relation`` the relation
    phrase with the reference in the case its preposition or postposition governs.
    """
    group = noun_phrase(scene.group, scene.count)
    if tpl.relative:
        return relative(tpl, group, relation, comma)
    group_at, reference_at = scene.positions
    return coordinated(
        tpl,
        [*group, lex.word("positions", group_at)],
        [*noun_phrase(scene.reference, 1), lex.word("positions", reference_at)],
        lex.word("conjunctions", "and"),
    )
