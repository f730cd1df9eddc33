"""The package's layout rules (README, Architecture): stages import only earlier stages, no module
imports another's private names, no module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xlr"
# What each stage may import from xlr, besides the top-level modules. Models are shared by
# training and evaluation (like open_clip's library beside its trainer), so they sit before both.
ALLOWED: dict[str, set[str]] = {
    "data": {"data"},
    "models": {"models"},
    "train": {"data", "models", "train"},
    "eval": {"data", "models", "eval"},
    "analysis": {"data", "models", "train", "eval", "analysis"},
}
# Top-level modules every stage shares: they reach into no stage. (``config`` validates the LAION
# sampling specs that live beside the sampler in ``data``; ``report`` and ``cli`` drive stages.)
TOP_LEVEL_ONLY = {"langs", "io", "runtime", "arms", "workers", "notebook"}
MAX_LINES = 500


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def xlr_targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The xlr modules an import statement names (``xlr.eval.tasks``, ...)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "xlr"]
    if node.module and node.module.split(".")[0] == "xlr":
        return [node.module]
    return []


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or parts[1] in ALLOWED else None


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_stage_imports_only_earlier_stages(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts
    stage = own[0] if len(own) > 1 else None
    for node in imports(path):
        for target in xlr_targets(node):
            other = stage_of(target)
            if stage is None:  # top level: the shared modules must not reach into any stage
                if path.stem in TOP_LEVEL_ONLY:
                    assert other is None, f"{path.name} (top level) imports {target}"
            elif other is not None:
                assert other in ALLOWED[stage], f"{'/'.join(own)} ({stage}) imports {target}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_crosses_a_module(path: Path) -> None:
    for node in imports(path):
        if isinstance(node, ast.ImportFrom) and xlr_targets(node):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports private {private} from {node.module}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by what it holds"


def test_the_rules_can_fail(tmp_path: Path) -> None:
    """The checks above see a forbidden import when there is one."""
    bad = tmp_path / "bad.py"
    bad.write_text("from xlr.eval.tasks import TASKS\nfrom xlr.train.loop import _private\n")
    targets = [t for node in imports(bad) for t in xlr_targets(node)]
    assert [stage_of(t) for t in targets] == ["eval", "train"]
    assert "eval" not in ALLOWED["train"] and "train" not in ALLOWED["eval"]
    names = [a.name for node in imports(bad) for a in node.names]
    assert "_private" in names
