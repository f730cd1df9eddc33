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
from xlr.paths import project_root

TINY_VOCAB = 400
TINY_IMAGE_SIZE = 32
# The suite's two longest runs (every notebook on the smoke study; the real-architecture
# rehearsal) are collected first by parallel workers (`make test`: one file per worker, in
# collection order), so that each starts at once on its own worker instead of ending the run
# alone.
FIRST_FILES = ("test_notebooks.py", "test_rehearsal.py")
# where params' default paths (run.runs_dir, run.cache_dir, run.reports_dir) point
DEFAULT_OUTPUTS = ("runs", "reports")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, move :data:`FIRST_FILES`' tests to the front (a stable sort: their
    order is kept); a single process keeps the files' order, quick tests first."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.path.name not in FIRST_FILES)


def _default_outputs() -> dict[str, int]:
    """Every file and folder under the default output folders of :func:`project_root` (the
    checkout, or ``$XLR_ROOT``), with its modification time."""
    root = project_root()
    found = {}
    for folder in DEFAULT_OUTPUTS:
        for parent, folders, files in os.walk(root / folder):
            for name in [*folders, *files]:
                path = os.path.join(parent, name)
                found[os.path.relpath(path, root)] = os.stat(path).st_mtime_ns
    return found


@pytest.fixture(scope="session", autouse=True)
def default_outputs_untouched() -> Iterator[None]:
    """Fails the session when a test wrote, changed or removed anything in the project root's
    ``runs/`` or ``reports/`` (the checkout's, or ``$XLR_ROOT``'s).

    Why: a test must write under its own temporary folder (give its params ``runs_dir``,
    ``cache_dir`` and ``reports_dir`` there, or set ``XLR_ROOT``); one that falls back on the
    defaults changes the user's study folders and shares them with parallel workers. A study
    run (``make smoke``) beside the suite trips it too.
    """
    before = _default_outputs()
    yield
    after = _default_outputs()
    changed = sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )
    assert not changed, f"tests changed {project_root()}'s runs/ or reports/: {changed[:10]}"


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
