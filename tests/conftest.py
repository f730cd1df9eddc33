"""Shared test fixtures: the tiny offline world (a generated corpus, a tokenizer trained on it
and a tiny open_clip model folder) that the training, adapter and evaluation tests build on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from xlr.config import Params, parse_params
from xlr.data.imagetext import ImageTextSet
from xlr.data.synthetic import generate_corpus, load_pool
from xlr.models.factory import write_tiny_model_dir
from xlr.models.tokenizer import build_tokenizer

TINY_VOCAB = 400
TINY_IMAGE_SIZE = 32
CHECKOUT = Path(__file__).resolve().parents[1]
# The suite's two longest runs (every notebook on the smoke study; the real-architecture
# rehearsal) are collected first, so that under `make test`'s parallel workers (one file per
# worker, in collection order) each starts at once on its own worker instead of ending the run
# alone.
FIRST_FILES = ("test_notebooks.py", "test_rehearsal.py")
# where params' default paths (run.runs_dir, run.cache_dir, run.reports_dir) point
CHECKOUT_OUTPUTS = ("runs", "reports")


def _checkout_outputs() -> dict[str, int]:
    """Every file under the checkout's default output folders, with its modification time."""
    found = {}
    for folder in CHECKOUT_OUTPUTS:
        for parent, _, names in os.walk(CHECKOUT / folder):
            for name in names:
                path = os.path.join(parent, name)
                found[os.path.relpath(path, CHECKOUT)] = os.stat(path).st_mtime_ns
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move :data:`FIRST_FILES`' tests to the front (a stable sort: their order is kept)."""
    items.sort(key=lambda item: item.path.name not in FIRST_FILES)


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """Fails the session when a test wrote into the checkout's ``runs/`` or ``reports/``.

    Why: a test must write under its own temporary folder (give its params ``runs_dir``,
    ``cache_dir`` and ``reports_dir`` there, or set ``XLR_ROOT``); one that falls back on the
    defaults leaves files in the user's study folders and shares them with parallel workers.
    """
    before = _checkout_outputs()
    yield
    after = _checkout_outputs()
    written = sorted(path for path, mtime in after.items() if before.get(path) != mtime)
    assert not written, f"tests wrote into the checkout (give them a tmp_path): {written[:10]}"


def tiny_raw_params(
    runs: Path,
    langs: list[str],
    train_langs: list[str],
    heldout_langs: list[str],
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """Params of a tiny study on a small generated corpus of ``langs``; ``sections`` (``train``,
    ``adapters``, ...) are merged into the defaults key by key."""
    raw: dict[str, Any] = {
        "run": {
            "name": "t",
            "runs_dir": str(runs),
            "cache_dir": str(runs / "cache"),
            "device": "cpu",
        },
        "data": {
            "train_langs": train_langs,
            "heldout_langs": heldout_langs,
            "synthetic": {
                "langs": langs,
                "pretrain_images": 20,
                "finetune_images": 48,
                "eval_images": 10,
                "shard_size": 100,
            },
        },
        "model": {"tiny": {"vocab_size": TINY_VOCAB}},
    }
    for name, values in sections.items():
        raw[name] = raw.get(name, {}) | values
    return raw


@dataclass(frozen=True)
class TinyWorld:
    """A generated corpus, its fine-tuning pool, a tokenizer and a tiny model folder (seed 0)."""

    root: Path
    raw: dict[str, Any]
    corpus: Path
    pool: ImageTextSet
    tokenizer: Path
    model_dir: Path

    def params(self, **sections: dict[str, Any]) -> Params:
        """The world's params with ``sections`` merged in key by key."""
        raw = {name: dict(values) for name, values in self.raw.items()}
        for name, values in sections.items():
            raw[name] = raw.get(name, {}) | values
        return parse_params(raw)


def build_tiny_world(root: Path, raw: dict[str, Any]) -> TinyWorld:
    """Generate the corpus of ``raw`` under ``root``, train a tokenizer on its fine-tuning
    captions and write an untrained tiny model folder."""
    params = parse_params(raw)
    corpus = generate_corpus(params.data.synthetic, root / "corpus", progress=False)
    pool = load_pool(corpus, "finetune")
    captions = pool.captions["caption"].tolist()
    tokenizer = build_tokenizer(captions, root / "tokenizer", TINY_VOCAB)
    model_dir = write_tiny_model_dir(
        params.model.tiny, tokenizer, TINY_IMAGE_SIZE, root / "model", seed=0
    )
    return TinyWorld(root, raw, corpus, pool, tokenizer, model_dir)


def record_optimizers(monkeypatch: Any, module: ModuleType) -> list[tuple[Any, Any]]:
    """Wrap ``module.make_optimizer`` so that each (model, optimizer) it makes is kept."""
    made: list[tuple[Any, Any]] = []
    original = module.make_optimizer

    def recording(model: Any, *args: Any, **kwargs: Any) -> Any:
        optimizer = original(model, *args, **kwargs)
        made.append((model, optimizer))
        return optimizer

    monkeypatch.setattr(module, "make_optimizer", recording)
    return made


def logit_scale_rates(model: Any, optimizer: Any) -> tuple[list[float], list[float]]:
    """Scheduled (initial) rates of the optimizer's groups holding ``model.logit_scale``, and of
    the other groups."""
    groups = optimizer.param_groups
    holds = [any(p is model.logit_scale for p in group["params"]) for group in groups]
    rates = [group["initial_lr"] for group in groups]
    scale = [rate for rate, held in zip(rates, holds, strict=True) if held]
    return scale, [rate for rate, held in zip(rates, holds, strict=True) if not held]
