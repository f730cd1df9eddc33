"""Leak audit: does anything a held-out pool shows or says also occur in training?

For each held-out pool (``val``, ``eval``) against each training pool (``pretrain``,
``finetune``) and against the other held-out pool: how many of its compositions the other pool
also renders, how many of its distinct caption texts occur there word for word, and how many
occur inside a longer text there (a boilerplate wrap, say). Against itself: how many images
repeat an earlier image's composition and how many captions repeat an earlier caption's text
(a repeated text gives a retrieval query an identical twin). A corpus of the held-out world has
zeros throughout; the audit reads any corpus on disk, older ones included (every column of
``scenes.parquet`` but ``image_id`` is the composition).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from xlr.data.synthetic.corpus import read_manifest

HELD_OUT = ("val", "eval")
TRAINING = ("pretrain", "finetune")
COLUMNS = [
    "pool", "against", "compositions", "shared_compositions", "texts", "shared_texts",
    "texts_inside",
]  # fmt: skip


def _inside(texts: set[str], others: Sequence[str]) -> set[str]:
    """Those of ``texts`` that occur inside some text of ``others`` (equal ones included).

    Indexed by each text's first few characters and scanned once over ``others``: searching
    the joined ``others`` once per text took 150 s at the synthetic study's size, this 3 s.
    """
    if not texts:
        return set()
    width = min(8, *(len(text) for text in texts))
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for text in texts:
        by_prefix[text[:width]].append(text)
    found: set[str] = set()
    for other in others:
        for start in range(len(other) - width + 1):
            candidates = by_prefix.get(other[start : start + width])
            if candidates:
                found.update(text for text in candidates if other.startswith(text, start))
    return found


def overlaps(
    compositions: Mapping[str, Sequence[Hashable]], texts: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """The audit table of pools given as one composition per image and their caption texts.

    One row per (held-out pool, other pool) in :data:`COLUMNS`, the training pools together
    (``pretrain+finetune``) last; ``compositions`` and ``texts`` count the held-out pool's
    distinct ones, ``shared_*`` and ``texts_inside`` those the other pool has too. The row
    against the pool itself counts repeats: images beyond the first of each composition and
    captions beyond the first of each text (``texts_inside`` is then empty).
    """
    rows = []
    for pool in (p for p in HELD_OUT if p in compositions):
        scenes, captions = set(compositions[pool]), set(texts[pool])
        rows.append(
            (pool, pool, len(scenes), len(compositions[pool]) - len(scenes),
             len(captions), len(texts[pool]) - len(captions), None)
        )  # fmt: skip
        found = {
            other: (
                scenes & set(compositions[other]),
                captions & set(texts[other]),
                _inside(captions, texts[other]),
            )
            for other in (*TRAINING, *HELD_OUT)
            if other in compositions and other != pool
        }
        training = [p for p in TRAINING if p in found]
        if len(training) > 1:
            found["+".join(training)] = (
                set().union(*(found[p][0] for p in training)),
                set().union(*(found[p][1] for p in training)),
                set().union(*(found[p][2] for p in training)),
            )
        rows += [
            (pool, other, len(scenes), len(shared), len(captions), len(equal), len(inside))
            for other, (shared, equal, inside) in found.items()
        ]
    return pd.DataFrame(rows, columns=COLUMNS).astype({"texts_inside": "Int64"})


def corpus_overlaps(corpus_dir: Path) -> pd.DataFrame:
    """:func:`overlaps` of a corpus on disk: compositions from ``{pool}/scenes.parquet``, every
    caption text (``TEXT``, noisy ones as written) from ``{pool}/metadata.parquet``."""
    corpus_dir = Path(corpus_dir)
    compositions, texts = {}, {}
    for pool in read_manifest(corpus_dir)["counts"]:
        scenes = pd.read_parquet(corpus_dir / pool / "scenes.parquet").drop(columns="image_id")
        compositions[pool] = list(scenes.itertuples(index=False, name=None))
        texts[pool] = pd.read_parquet(corpus_dir / pool / "metadata.parquet")["TEXT"].tolist()
    return overlaps(compositions, texts)


LEAK_COLUMNS = ("shared_compositions", "shared_texts", "texts_inside")


def check_held_out(audit: pd.DataFrame, corpus_dir: Path) -> None:
    """Raise when the :func:`corpus_overlaps` table of ``corpus_dir`` is not zero throughout:
    a held-out image or caption that training (or the other held-out pool) also shows makes
    every held-out number optimistic, so no study runs on such a corpus."""
    counts = audit[list(LEAK_COLUMNS)].fillna(0).astype(int)
    leaking = counts.gt(0).any(axis=1)
    if not leaking.any():
        return
    found = "; ".join(
        f"{audit.at[i, 'pool']} vs {audit.at[i, 'against']}: "
        + ", ".join(f"{col} {n}" for col, n in counts.loc[i].items() if n)
        for i in counts.index[leaking]
    )
    raise ValueError(
        f"{corpus_dir}: the held-out pools leak ({found}); this corpus was not generated by "
        "this xlr's held-out world: delete the folder and run `xlr prepare` again"
    )
