"""Web-like alt-text noise: mismatched, truncated and boilerplate captions, LAION-like scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xlr.config import NoiseSection
from xlr.data.synthetic.grammar import UNSPACED, caption_pieces, join_pieces
from xlr.data.synthetic.scenes import Scene, sample_scenes

NOISE_KINDS: tuple[str, ...] = ("clean", "mismatch", "truncate", "boilerplate")
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


def _random_other_scene(
    scene: Scene, rng: np.random.Generator, others: Sequence[int] | np.ndarray | None
) -> Scene:
    while (other := sample_scenes(rng, 1, others)[0]) == scene:
        continue
    return other


def noisy_caption(
    scene: Scene,
    lang: str,
    variant: int,
    kind: str,
    rng: np.random.Generator,
    others: Sequence[int] | np.ndarray | None = None,
) -> Caption:
    """Caption ``variant`` of ``scene`` in ``lang`` with one kind of web noise applied to it and,
    identically, to its English translation (as M2M100 would translate the noisy text).

    A ``mismatch`` caption describes another scene drawn from ``others`` (indices into
    :func:`~xlr.data.synthetic.scenes.all_scenes`; default the whole world): the training pools
    pass their own compositions, so no mismatched caption ever names a held-out one.
    """
    if kind == "mismatch":
        scene = _random_other_scene(scene, rng, others)
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


def pair_scores(kind: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """LAION-like (similarity, punsafe, pwatermark): similarity low for mismatched captions,
    watermark likely for stock-photo boilerplate."""
    mean, low, high = _SIMILARITY[kind]
    similarity = float(np.clip(rng.normal(mean, 0.025), low, high))
    punsafe = float(rng.beta(1.0, 200.0))
    pwatermark = float(rng.beta(4.0, 4.0) if kind == "boilerplate" else rng.beta(1.0, 20.0))
    return round(similarity, 6), round(punsafe, 6), round(pwatermark, 6)
