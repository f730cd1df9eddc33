"""The notebooks: committed clean, parameterised alike, and runnable both ways users run them.

Each notebook runs (a) under papermill with the smoke params injected, as `xlr reproduce` and CI
run it, and (b) unparameterised with ``notebooks/`` as working directory, as Run All in
JupyterLab does. Artifacts go to a temporary XLR_ROOT so the checkout's ``runs/`` is untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

from xlr.analysis.controls import POSITIVE_CONTROL_TABLE
from xlr.config import load_params
from xlr.eval.planted import planted_name
from xlr.eval.results import MULTILINGUAL, MULTILINGUAL_SEEN, load_val_results
from xlr.eval.runner import base_report
from xlr.kernel import ensure_kernel
from xlr.notebook import SECTIONS
from xlr.report import report_dir

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMOKE = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())


def dirty_cells(notebook: dict) -> list[int]:
    """Indices of code cells that carry outputs or execution counts."""
    return [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


def test_notebooks_exist_in_order() -> None:
    names = [nb.name for nb in NOTEBOOKS]
    assert names and names[0] == "01_data_sampling.ipynb"
    assert [n[:2] for n in names] == [f"{i:02d}" for i in range(1, len(names) + 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    assert dirty_cells(json.loads(path.read_text())) == [], f"strip outputs from {path.name}"


def test_dirty_notebook_is_detected() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.cells[0].execution_count = 1
    assert dirty_cells(nb) == [0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_names_every_section(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    source = tagged[0].source
    assert 'params_file = "../params/smoke.yaml"' in source
    for section in SECTIONS:
        assert f"\n{section} = None" in f"\n{source}", f"{path.name}: no '{section} = None'"


@pytest.fixture(scope="module")
def xlr_root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("xlr_root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLR_ROOT", str(root))
        yield root


def run_every_notebook(out_dir: Path, cwd: Path, **papermill_args: object) -> None:
    """Execute all notebooks in order into ``out_dir`` (one shared run directory), on the
    ``xlr`` kernel they name (registered first, as ``xlr reproduce`` does, so a bare ``pytest``
    on a fresh environment finds it)."""
    out_dir.mkdir(exist_ok=True)
    ensure_kernel()
    for path in NOTEBOOKS:
        papermill.execute_notebook(
            str(path), str(out_dir / path.name), cwd=str(cwd), progress_bar=False, **papermill_args
        )


@pytest.mark.slow
def test_papermill_smoke_run_of_every_notebook(xlr_root: Path) -> None:
    """All notebooks in order on params/smoke.yaml, as `xlr reproduce` and CI run them."""
    run_every_notebook(xlr_root / "executed", ROOT, parameters=SMOKE)
    assert (xlr_root / "runs" / "smoke" / "data" / "data.json").is_file()
    assert_base_behaves_like_a_laion_model()
    assert_zero_dose_is_the_model_itself()


def assert_zero_dose_is_the_model_itself() -> None:
    """The positive control's dose 0 on the smoke base (as the README says): the copy (the
    model's embeddings unchanged) ranks every validation query as the zero-shot model does, bit
    for bit, through the same ranking and pairing, so its judged
    rows pass; notebook 05 drew the dose response."""
    params = load_params(ROOT / "params" / "smoke.yaml")
    _, ranks = load_val_results(params)
    pools = ranks[ranks["task"].isin([MULTILINGUAL, MULTILINGUAL_SEEN])]
    keys = ["task", "query_lang", "query_idx", "relevant_lang", "relevant_idx"]  # one rank each
    real = pools[pools["arm"] == "zeroshot"].set_index(keys)["rank"].sort_index()
    zero = pools[pools["arm"] == planted_name("en", 0)].set_index(keys)["rank"].sort_index()
    assert real.index.is_unique and len(real) > 0
    pd.testing.assert_series_equal(zero, real)
    summary = pd.read_csv(report_dir(params) / "tables" / f"{POSITIVE_CONTROL_TABLE}.csv")
    assert (summary.loc[summary["role"] == "zero dose", "result"] == "pass").sum() == 3
    assert (report_dir(params) / "figures" / "dose_response.png").is_file()


def assert_base_behaves_like_a_laion_model() -> None:
    """The smoke base notebook 02 pretrained: well above chance in English and the frequent
    languages, clearly worse in the rarest (as LAION's long tail makes the real model)."""
    params = load_params(ROOT / "params" / "smoke.yaml")
    table = base_report(params, params.run.base_seeds[0]).set_index("lang")
    chance = table["chance_r1"].iloc[0]
    frequent = table.nlargest(4, "pretrain_share")["r1"]
    rare = table.nsmallest(3, "pretrain_share")["r1"]
    assert table.loc["en", "r1"] > 5 * chance
    assert frequent.mean() > 3 * chance
    assert frequent.mean() > rare.mean() + 0.05


@pytest.mark.slow
def test_notebooks_run_unparameterised_from_notebooks_dir(xlr_root: Path) -> None:
    """Run All in JupyterLab: no injected parameters, working directory notebooks/."""
    run_every_notebook(xlr_root / "as_is", ROOT / "notebooks")
    for path in NOTEBOOKS:
        assert dirty_cells(json.loads(path.read_text())) == []  # the source stays clean
