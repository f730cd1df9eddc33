"""A language bias planted in a model, for the positive control of notebook 05.

The control asks whether the rank distance sees a language bias *in a model*, so the bias is
planted where a model's would be: in one language's caption embeddings. Every caption of the
planted language moves along one fixed, seeded unit direction ``u`` and is re-normalised,
``t' = (t + size u) / |t + size u|``, as if the model encoded a component of that language that
no other language shares; images and the other languages keep their embeddings. The planted
model's embeddings then go through the study's own retrieval tasks
(:func:`xlr.eval.tasks.evaluate_arm`), so its ranks come from the same code as every arm's.

The size is stated relative to the model: ``fraction`` times the median distance between a
caption and its translations in the real model (:func:`translation_distance`), so it means the
same for a tiny base as for a ViT-B-32. The control is judged at :data:`PLANTED_FRACTION`; the
other doses of ``eval.control_doses`` show how the measures respond to the size, and a dose of 0
(the real model's embeddings, unchanged: its ranks are the real model's, bit for bit) checks the
comparison itself: the copy goes through the same ranking and pairing as every dose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from xlr.arms import ZEROSHOT
from xlr.eval.embedded import EmbeddedSet

# Twice the typical translation distance. A rank distance (max - min) sees a language only once
# it moves past the query's current extremes: on the smoke study's base (validation split),
# plants of 0.5x and 1x in the first seen language, which that base finds first, moved it to the
# middle and *lowered* the caption rank distance in the all-language pool while mAP fell; 2x
# moves it past the rare seen language the base finds last. Set from those validation numbers,
# never from the evaluation split.
PLANTED_FRACTION = 2.0

# Below this median translation distance (embedding units) a model puts its captions on their
# translations, so every dose sized from it plants next to nothing: float32 unit vectors resolve
# about 1e-7 a component, and identical outputs give exactly 0.
MIN_TRANSLATION_DISTANCE = 1e-6


def planted_language(seen: Sequence[str]) -> str:
    """The language the positive control plants its bias in: the first seen language.

    Fixed by the params before any result exists (English in every params file of the study),
    so the choice cannot follow the results. A seen language sits in both multilingual pools,
    so the control checks the rank distance of each; and the best-resourced language is where a
    model's own bias against a language is smallest, so what is seen is the planted bias, not
    an existing weakness made larger.
    """
    if not seen:
        raise ValueError("no seen language to plant a bias in: data.train_langs is empty")
    return seen[0]


def planted_name(lang: str, fraction: float) -> str:
    """The ``arm`` a planted zero-shot model's results are filed under:
    ``zeroshot+<lang>@<fraction>`` (a model of the control, not an arm of the study)."""
    return f"{ZEROSHOT.name}+{lang}@{fraction:g}"


def control_doses(extra: Sequence[float]) -> list[float]:
    """The fractions the positive control plants, ascending: 0 (nothing planted: the check of
    the comparison itself), :data:`PLANTED_FRACTION` (the dose it is judged at) and the
    ``extra`` doses shown beside them (``eval.control_doses``). Doses whose arm names
    (:func:`planted_name`) would coincide are refused: their ranks would share one file."""
    doses = sorted({0.0, PLANTED_FRACTION, *map(float, extra)})
    names = [planted_name("", dose) for dose in doses]
    if len(set(names)) != len(names):
        raise ValueError(
            f"eval.control_doses: {list(extra)} holds doses equal to 6 significant digits to "
            f"another or to the judged dose {PLANTED_FRACTION:g} (planted models {names}); give "
            "distinct doses"
        )
    return doses


def unit_direction(dim: int, seed: int, away_from: np.ndarray | None = None) -> np.ndarray:
    """A seeded random unit vector of ``dim`` float32 components, orthogonal to the rows of
    ``away_from`` (``[m, dim]``, m < dim) when given."""
    if dim < 1:
        raise ValueError(f"a direction needs at least one dimension, got {dim}")
    direction = np.random.default_rng(seed).standard_normal(dim)
    if away_from is not None:
        basis, _ = np.linalg.qr(np.asarray(away_from, dtype=np.float64).T)
        direction -= basis @ (basis.T @ direction)
    return (direction / np.linalg.norm(direction)).astype(np.float32)


def translation_distance(embedded: EmbeddedSet, lang: str) -> float:
    """Median Euclidean distance between a ``lang`` caption and its translations, in embedding
    units (0 to 2 for unit vectors): the typical gap a language bias would widen.

    Translations are the captions of the same image and caption index in every other language of
    ``embedded`` (of the same image on a set whose captions are independent).
    """
    if lang not in embedded.captions:
        raise ValueError(f"{lang!r} is not embedded (languages: {sorted(embedded.captions)})")
    keys = ["image_id", "caption_idx"] if embedded.parallel else ["image_id"]
    left = embedded.captions[lang][keys].assign(row_a=np.arange(len(embedded.captions[lang])))
    distances = []
    for other, table in embedded.captions.items():
        if other == lang:
            continue
        pairs = left.merge(table[keys].assign(row_b=np.arange(len(table))), on=keys)
        gaps = embedded.texts[lang][pairs["row_a"]] - embedded.texts[other][pairs["row_b"]]
        distances.append(np.linalg.norm(gaps, axis=1))
    if not distances or not sum(map(len, distances)):
        raise ValueError(f"no {lang} caption has a translation in the set: nothing to measure")
    return float(np.median(np.concatenate(distances)))


@dataclass(frozen=True)
class PlantedBias:
    """What is planted in one base's zero-shot model: ``direction`` (a unit vector), in
    ``lang``, of ``size`` = ``fraction`` x ``translation_distance`` (embedding units), drawn
    from ``seed``."""

    lang: str
    fraction: float
    translation_distance: float
    size: float
    seed: int
    direction: np.ndarray

    def at(self, fraction: float) -> PlantedBias:
        """The same bias (language, direction, translation distance) at another dose."""
        if fraction < 0:
            raise ValueError(f"fraction is a size, at least 0; got {fraction}")
        return dataclasses.replace(
            self, fraction=fraction, size=fraction * self.translation_distance
        )

    def plant(self, embedded: EmbeddedSet) -> EmbeddedSet:
        """``embedded`` with every ``lang`` caption moved by ``size`` along ``direction`` and
        re-normalised, ``t' = (t + size u) / |t + size u|``; images and the other languages
        keep their embeddings (the same arrays). At size 0, ``embedded`` itself: re-normalising
        alone could flip near-tied ranks (1 of 88,800 on one synthetic base), a difference the
        zero dose would report as an error of the comparison."""
        if self.lang not in embedded.texts:
            raise ValueError(f"{self.lang!r} is not embedded (languages: {sorted(embedded.texts)})")
        texts = embedded.texts[self.lang]
        if texts.shape[1] != len(self.direction):
            raise ValueError(
                f"the bias has {len(self.direction)} dimensions, the embeddings {texts.shape[1]}"
            )
        if self.size == 0:  # the real model itself: its ranks are the real model's, bit for bit
            return embedded
        moved = texts + (self.size * self.direction).astype(texts.dtype)
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        return dataclasses.replace(embedded, texts={**embedded.texts, self.lang: moved})

    def record(self) -> dict[str, Any]:
        """The bias as a table row (the direction is the seed's)."""
        return {key: value for key, value in vars(self).items() if key != "direction"}


def plant_bias(embedded: EmbeddedSet, lang: str, fraction: float, seed: int) -> PlantedBias:
    """The bias of ``fraction`` times the real model's translation distance in ``lang``, from
    ``embedded`` (the real model's embeddings of the set the control ranks).

    The direction is seeded and orthogonal to the mean image and the mean caption of the set.
    A weak model puts every embedding near one common centre, and a random direction's share of
    that centre would move the planted language toward (or away from) every item alike: a shift
    that can make the language found *first*. Orthogonal to it, the offset only pulls the
    language apart from the others, as a language a model keeps to itself.

    A model whose translations coincide (:data:`MIN_TRANSLATION_DISTANCE`) is refused, saying
    why, rather than planting nothing and failing the control as if the measures were blind.
    """
    distance = translation_distance(embedded, lang)
    if distance < MIN_TRANSLATION_DISTANCE:
        raise ValueError(
            f"positive control: the zero-shot model puts its {lang} captions on their "
            f"translations (median distance {distance:.3g}), so a bias sized from that distance "
            "plants nothing at any dose and the control would read as a measure that cannot see "
            "one. A text tower whose output does not depend on the caption does this: check the "
            "base model (notebook 02's pretraining, or the checkpoint of model.pretrained)"
        )
    centres = np.stack(
        [embedded.images.mean(0), np.concatenate(list(embedded.texts.values())).mean(0)]
    )
    direction = unit_direction(embedded.images.shape[1], seed, away_from=centres)
    return PlantedBias(lang, 1.0, distance, distance, seed, direction).at(fraction)


def planted_table(biases: Sequence[tuple[int, str, PlantedBias]]) -> pd.DataFrame:
    """One row per ``(base_seed, benchmark, bias)``: what was planted in that base's zero-shot
    model on that set."""
    rows = [{"base_seed": base, "benchmark": name, **bias.record()} for base, name, bias in biases]
    return pd.DataFrame(rows)
