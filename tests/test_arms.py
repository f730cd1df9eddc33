"""The Arm value type: names, parsing, folders, and which arms a params file asks for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from xlr.arms import (
    ZEROSHOT,
    Arm,
    adapter_arms,
    arm_catalogue,
    evaluated_names,
    headline_arms,
    shared_arms,
    study_arms,
    trained_arms,
)
from xlr.config import parse_params

NAMES = [
    (Arm("zeroshot"), "zeroshot", "zeroshot", ""),
    (Arm("mono", trained="full"), "mono-full", "mono", "full"),
    (Arm("cross", trained="lora"), "cross-lora", "cross", "lora"),
    (Arm("hybrid", 0.5, "full"), "hybrid-a0.5-full", "hybrid-a0.5", "full"),
    (Arm("hybrid", 0.25, "lora"), "hybrid-a0.25-lora", "hybrid-a0.25", "lora"),
    (Arm("hybrid", 1e-05, "full"), "hybrid-a1e-05-full", "hybrid-a1e-05", "full"),
    (Arm("adapters"), "adapters", "adapters", ""),
    (Arm("adapters", fallback="nearest"), "adapters-nearest", "adapters", "nearest"),
    (
        Arm("adapters_hybrid", 0.5, fallback="average"),
        "adapters_hybrid-a0.5-average",
        "adapters_hybrid-a0.5",
        "average",
    ),
]


@pytest.mark.parametrize(("arm", "name", "family", "variant"), NAMES)
def test_names_round_trip(arm: Arm, name: str, family: str, variant: str) -> None:
    assert (arm.name, arm.family_name, arm.variant) == (name, family, variant)
    assert Arm.parse(name) == arm
    assert str(arm) == name


def test_adapter_arms_train_adapters_and_route_by_language() -> None:
    assert Arm("adapters").trained == "adapters"
    assert Arm("adapters").strategy == "mono"
    assert Arm("adapters_hybrid", 0.5).strategy == "hybrid"
    assert Arm("cross", trained="full").strategy == "cross"
    assert Arm("mono", trained="full").sweep_alpha == 1.0
    assert Arm("cross", trained="lora").sweep_alpha == 0.0
    assert Arm("hybrid", 0.25, "full").sweep_alpha == 0.25
    with pytest.raises(ValueError, match="no batch strategy"):
        _ = ZEROSHOT.strategy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "hybrid", "trained": "full"}, "alpha belongs"),
        ({"family": "mono", "alpha": 0.5, "trained": "full"}, "alpha belongs"),
        ({"family": "hybrid", "alpha": 1.5, "trained": "full"}, r"in \[0, 1\]"),
        ({"family": "mono"}, "trains"),
        ({"family": "zeroshot", "trained": "full"}, "trains"),
        ({"family": "adapters", "trained": "lora"}, "trains"),
        ({"family": "mono", "trained": "full", "fallback": "base"}, "fallback"),
        ({"family": "adapters", "fallback": "closest"}, "fallback"),
        ({"family": "zeroshot", "seed": 1}, "no fine-tuning seed"),
        ({"family": "bilingual"}, "unknown arm family"),
    ],
)
def test_impossible_arms_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Arm(**kwargs)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "hybrid",
        "mono",
        "mono-half",
        "hybrid-a2-full",
        "adapters-far",
        "my-arm",
        "hybrid-a0.50-full",
        "zeroshot-full",
    ],  # fmt: skip
)
def test_parse_refuses_what_is_not_an_arm_name(name: str) -> None:
    with pytest.raises(ValueError, match="not an arm name"):
        Arm.parse(name)


def params(tmp_path: Path, **sections: dict):
    raw = {
        "run": {"name": "t", "runs_dir": str(tmp_path), "base_seeds": [0, 1], "seeds": [3, 4]},
        "data": {"train_langs": ["en", "de"], "heldout_langs": ["fr"]},
        "train": {
            "arms": ["zeroshot", "mono", "hybrid"],
            "alphas": [0.25, 0.5],
            "trainable": ["full", "lora"],
        },  # fmt: skip
        "adapters": {"enabled": True, "hybrid_alpha": 0.5, "fallbacks": ["base", "nearest"]},
    }
    for key, value in sections.items():
        raw[key] = raw.get(key, {}) | value
    return parse_params(raw, source="test")


def test_study_arms_in_study_order(tmp_path: Path) -> None:
    p = params(tmp_path)
    shared = [a.name for a in shared_arms(p) if a.base_seed == 0 and a.seed in (None, 3)]
    assert shared == ["zeroshot", "mono-full", "mono-lora", "hybrid-a0.25-full",
                      "hybrid-a0.25-lora", "hybrid-a0.5-full", "hybrid-a0.5-lora"]  # fmt: skip
    assert len(shared_arms(p)) == 2 * (1 + 6 * 2)  # bases x (zeroshot + 6 arms x 2 seeds)
    adapters = adapter_arms(p)
    assert [(a.name, a.base_seed, a.seed) for a in adapters[:4]] == [
        ("adapters", 0, 3), ("adapters", 0, 4),
        ("adapters_hybrid-a0.5", 0, 3), ("adapters_hybrid-a0.5", 0, 4),
    ]  # fmt: skip
    assert study_arms(p) == shared_arms(p) + adapters
    assert ZEROSHOT.at(0) not in trained_arms(p) and len(trained_arms(p)) == 24 + 8
    assert evaluated_names(p)[-4:] == [
        "adapters-base", "adapters-nearest",
        "adapters_hybrid-a0.5-base", "adapters_hybrid-a0.5-nearest",
    ]  # fmt: skip


def test_folders(tmp_path: Path) -> None:
    p = params(tmp_path)
    arms = tmp_path / "t" / "arms"
    assert ZEROSHOT.at(1).directory(p) == arms / "zeroshot" / "base1"
    hybrid = Arm("hybrid", 0.5, "lora").at(0, 3)
    assert hybrid.directory(p) == arms / "hybrid-a0.5-lora" / "base0" / "seed3"
    assert hybrid.model_dir(p) == hybrid.directory(p) / "model"
    assert hybrid.lora_dir(p) == hybrid.directory(p) / "lora"
    evaluated = Arm("adapters", fallback="nearest").at(0, 4)
    assert evaluated.directory(p) == arms / "adapters" / "base0" / "seed4"  # the trained folder
    with pytest.raises(ValueError, match="base seed"):
        Arm("mono", trained="full").directory(p)
    with pytest.raises(ValueError, match="no shared LoRA"):
        Arm("mono", trained="full").at(0, 3).lora_dir(p)


def test_stream_seeds_nest_seeds_in_bases() -> None:
    """Seed k of one base shares no random stream with seed k of another (the intervals take
    seeds as nested in bases), and the same base and seed always give the same stream."""
    arm = Arm("hybrid", 0.5, "full")
    seeds = {(b, k): arm.at(b, k).stream_seed for b in range(3) for k in range(3)}
    assert len(set(seeds.values())) == 9
    lora = Arm("hybrid", 0.5, "lora")
    assert arm.at(1, 2).stream_seed == seeds[(1, 2)] == lora.at(1, 2).stream_seed
    for unpinned in (arm, arm.at(0), Arm("zeroshot").at(0)):
        with pytest.raises(ValueError, match="needs its base seed and seed"):
            _ = unpinned.stream_seed


def test_headline_arms(tmp_path: Path) -> None:
    headline = headline_arms(params(tmp_path))
    assert headline.hybrid == Arm("hybrid", 0.5, "full")
    assert headline.adapters == Arm("adapters", fallback="nearest")
    assert headline.shared_lora == Arm("hybrid", 0.5, "lora")  # what the adapters face
    assert headline.adapters_hybrid == Arm("adapters_hybrid", 0.5, fallback="nearest")
    other = params(tmp_path, train={"alphas": [0.25, 0.75, 0.9], "trainable": ["lora"]},
                   adapters={"fallbacks": ["base"]})  # fmt: skip
    assert headline_arms(other).hybrid == Arm("hybrid", 0.75, "lora")  # the middle alpha
    assert headline_arms(other).adapters == Arm("adapters", fallback="base")
    assert headline_arms(other).adapters_hybrid == Arm("adapters_hybrid", 0.5, fallback="base")
    none = params(tmp_path, train={"arms": ["zeroshot", "mono"]},
                  adapters={"enabled": False, "hybrid_alpha": None})  # fmt: skip
    assert headline_arms(none) == (None, None, None, None)


def test_catalogue_places_arms_on_the_sweep(tmp_path: Path) -> None:
    table = arm_catalogue(params(tmp_path)).set_index("arm")
    assert table.loc["mono-full", "alpha"] == 1.0
    assert table.loc["hybrid-a0.25-lora", ["family", "alpha", "trained"]].tolist() == [
        "hybrid",
        0.25,
        "lora",
    ]
    assert table.loc["zeroshot", "trained"] == "none"
    assert table.loc["adapters-nearest", "variant"] == "nearest"


def _string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    }  # fmt: skip


def test_arm_names_are_built_only_in_the_arms_module() -> None:
    """No module but xlr/arms.py (and config.py, the params schema that lists the families)
    spells an arm name or a piece of one. ``adapters`` alone is also a params section."""
    package = Path(__file__).resolve().parents[1] / "xlr"
    names = {name for _, name, _, _ in NAMES} - {"adapters"} | {"adapters_hybrid"}
    pieces = ("-a", "-full", "-lora", "-base", "-nearest", "-average", "adapters-")
    offenders = {}
    for path in package.rglob("*.py"):
        if path.name in ("arms.py", "config.py"):
            continue
        found = {
            s for s in _string_literals(path)
            if not s.startswith("--")  # a command-line option such as xlr train's --base
            and (s in names or s.startswith(pieces) or s.endswith(pieces))
        }  # fmt: skip
        if found:
            offenders[str(path.relative_to(package))] = sorted(found)
    assert not offenders, offenders
