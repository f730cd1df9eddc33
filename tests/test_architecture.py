"""The package's layout rules (README, Architecture): stages import only earlier stages, no module
imports another's private names, no module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xlr"
# What each stage may import from xlr, besides the top-level modules. Models are shared by
# training and evaluation (like open_clip's library beside its trainer), so they sit before both;
# they come after the data, whose corpus key names the cached bases built on it.
ALLOWED: dict[str, set[str]] = {
    "data": {"data"},
    "models": {"data", "models"},
    "train": {"data", "models", "train"},
    "eval": {"data", "models", "eval"},
    "analysis": {"data", "models", "train", "eval", "analysis"},
}
# Top-level modules every stage shares: they reach into no stage. (``config`` validates the LAION
# sampling specs that live beside the sampler in ``data``; ``report`` and ``cli`` drive stages.)
TOP_LEVEL_ONLY = {"langs", "io", "paths", "runtime", "arms", "workers", "notebook"}
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


def stage_violations(path: Path, package: Path = PACKAGE) -> list[str]:
    """The imports of ``path`` that climb from a stage into a later one (or from a shared
    top-level module into any stage)."""
    own = path.relative_to(package).parts
    stage = own[0] if len(own) > 1 else None
    found = []
    for node in imports(path):
        for target in xlr_targets(node):
            other = stage_of(target)
            if stage is None:
                if path.stem in TOP_LEVEL_ONLY and other is not None:
                    found.append(f"{path.name} (top level) imports {target}")
            elif other is not None and other not in ALLOWED[stage]:
                found.append(f"{'/'.join(own)} ({stage}) imports {target}")
    return found


def private_imports(path: Path) -> list[str]:
    """Underscore names ``path`` imports from another xlr module."""
    return [
        f"{path.name} imports private {a.name} from {node.module}"
        for node in imports(path)
        if isinstance(node, ast.ImportFrom) and xlr_targets(node)
        for a in node.names
        if a.name.startswith("_")
    ]


def too_long(path: Path) -> list[str]:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    return (
        [f"{path.name} has {lines} lines: split it by what it holds"] if lines > MAX_LINES else []
    )


@pytest.mark.parametrize("rule", [stage_violations, private_imports, too_long])
@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_keeps_its_layout(path: Path, rule) -> None:
    assert not rule(path)


def test_the_rules_can_fail(tmp_path: Path) -> None:
    """Each rule reports a planted violation."""
    package = tmp_path / "xlr"
    (package / "train").mkdir(parents=True)
    bad = package / "train" / "bad.py"
    bad.write_text(
        "from xlr.eval.tasks import TASKS\nfrom xlr.train.loop import _private\n"
        + "x = 1\n" * MAX_LINES
    )
    assert stage_violations(bad, package) == ["train/bad.py (train) imports xlr.eval.tasks"]
    assert private_imports(bad) == ["bad.py imports private _private from xlr.train.loop"]
    assert too_long(bad)
    shared = package / "runtime.py"
    shared.write_text("from xlr.data.prepare import run_dir\n")
    assert stage_violations(shared, package) == ["runtime.py (top level) imports xlr.data.prepare"]
