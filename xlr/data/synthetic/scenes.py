"""What an image shows: the five attributes of a scene, their values, and how scenes are drawn."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
COUNTS: tuple[int, ...] = (1, 2, 3)


@dataclass(frozen=True)
class Scene:
    """What an image shows: ``count`` objects of one shape, colour and size at one position."""

    shape: str
    colour: str
    size: str
    position: str
    count: int


def all_scenes() -> list[Scene]:
    """Every attribute combination (1,440 of them), in a fixed order."""
    return [Scene(*combo) for combo in itertools.product(SHAPES, COLOURS, SIZES, POSITIONS, COUNTS)]


def sample_scenes(rng: np.random.Generator, n: int) -> list[Scene]:
    """``n`` scenes with every attribute drawn uniformly and independently."""
    attributes = (SHAPES, COLOURS, SIZES, POSITIONS, COUNTS)
    picks = [rng.integers(len(values), size=n) for values in attributes]
    return [
        Scene(*(values[i] for values, i in zip(attributes, row, strict=True)))
        for row in zip(*picks, strict=True)
    ]
