"""What an image shows, the world of every composition, and its held-out split.

A scene is a *group* of one to three identical objects beside a single *reference* object: "two
small red circles to the left of a large blue star". An object is a shape, a colour and a size;
the relation says on which side of the reference the group stands. Two objects and a relation
give a world of 91,200 compositions (the earlier one-group world had 1,440), large enough to hold
out whole compositions for evaluation and validation while training still sees every word.

Held out, honestly (:func:`split_world`): the eval and validation pools draw their compositions
without replacement from a seeded permutation of the world, eval from its front and validation
from its back; pretraining and fine-tuning draw only from the compositions in between. Every
caption states every attribute of its composition (:mod:`~xlr.data.synthetic.grammar`), so a
held-out composition also means held-out caption text.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SIZES: tuple[str, ...] = ("small", "large")
COUNTS: tuple[int, ...] = (1, 2, 3)
# Where the group stands relative to the reference; each implies both objects' positions.
RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
PLACES: dict[str, tuple[str, str]] = {  # relation -> (group's position, reference's position)
    "left_of": ("left", "right"), "right_of": ("right", "left"),
    "above": ("top", "bottom"), "below": ("bottom", "top"),
}  # fmt: skip


@dataclass(frozen=True, order=True)
class Thing:
    """One object: a shape in a colour and a size."""

    shape: str
    colour: str
    size: str


@dataclass(frozen=True)
class Scene:
    """What an image shows: ``count`` copies of ``group`` on the ``relation`` side of one
    ``reference`` object ("two small red circles" ``left_of`` "a large blue star")."""

    group: Thing
    count: int
    relation: str
    reference: Thing

    @property
    def positions(self) -> tuple[str, str]:
        """Where the group and the reference stand in the image: ``("left", "right")``, ..."""
        return PLACES[self.relation]


@cache
def all_things() -> tuple[Thing, ...]:
    """Every object (96), in a fixed order."""
    return tuple(Thing(*combo) for combo in itertools.product(SHAPES, COLOURS, SIZES))


def is_canonical(scene: Scene) -> bool:
    """Whether ``scene`` is the one name of its picture.

    The group never equals the reference (no "a red circle left of a red circle"). A group of one
    is just another single object, so "a red circle left of a blue star" and "a blue star right
    of a red circle" are one picture: only the spelling whose group sorts first (by shape, then
    colour, then size name) is a composition, else one picture could be both held out and
    trained on.
    """
    if scene.group == scene.reference:
        return False
    return scene.count > 1 or scene.group < scene.reference


@cache
def all_scenes() -> tuple[Scene, ...]:
    """Every composition of the world (91,200), in a fixed order."""
    things = all_things()
    combos = itertools.product(things, COUNTS, RELATIONS, things)
    return tuple(scene for scene in itertools.starmap(Scene, combos) if is_canonical(scene))


@cache
def covering_scenes() -> tuple[Scene, ...]:
    """A few hundred scenes that between them use every word form a caption can: every object as
    the group at every count and relation, and as the reference at every relation. Enumerating
    a lexicon's words (or hashing its captions) over these is 60x cheaper than over the world;
    some are not canonical (:func:`is_canonical`), which a caption does not mind."""
    things = all_things()
    scenes = []
    for thing, relation in itertools.product(things, RELATIONS):
        other = things[-1] if thing == things[0] else things[0]
        scenes += [Scene(thing, count, relation, other) for count in COUNTS]
        scenes.append(Scene(other, 2, relation, thing))
    return tuple(scenes)


@dataclass(frozen=True)
class WorldSplit:
    """Indices into :func:`all_scenes`: compositions held out for eval and for validation (each
    in draw order, no repeats) and the rest, which pretraining and fine-tuning draw from."""

    eval: np.ndarray
    val: np.ndarray
    train: np.ndarray


def split_world(seed: int, eval_images: int, val_images: int) -> WorldSplit:
    """Hold out ``eval_images`` + ``val_images`` compositions, drawn without replacement.

    One seeded permutation of the world: eval takes its front, validation its back (so the size
    of one never moves the other), training keeps the middle. At most half the world may be held
    out, so training still covers every attribute value in every role many times over.
    """
    world = len(all_scenes())
    if eval_images + val_images > world // 2:
        raise ValueError(
            f"data.synthetic.eval_images + val_images = {eval_images + val_images} would hold out "
            f"more than half of the {world:,} compositions; lower them"
        )
    order = np.random.default_rng([seed, 0x5EED]).permutation(world)
    return WorldSplit(
        eval=order[:eval_images],
        val=order[world - val_images :][::-1],
        train=np.sort(order[eval_images : world - val_images]),
    )


def sample_scenes(
    rng: np.random.Generator, n: int, compositions: Sequence[int] | np.ndarray | None = None
) -> list[Scene]:
    """``n`` scenes drawn uniformly, with replacement, from ``compositions`` (indices into
    :func:`all_scenes`; default: the whole world)."""
    world = all_scenes()
    pool = np.arange(len(world)) if compositions is None else np.asarray(compositions)
    return [world[i] for i in pool[rng.integers(len(pool), size=n)]]
