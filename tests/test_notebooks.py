"""The notebooks: committed clean, parameterised alike, and runnable both ways users run them.

Every notebook runs unparameterised with ``notebooks/`` as working directory, as Run All in
JupyterLab does (through papermill), on the smoke study; their parameters cells read what
papermill injects (as ``papermill -f`` and ``xlr reproduce`` give it) over that default.
Artifacts go to a temporary XLR_ROOT so the checkout's ``runs/`` is untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

from xlr.analysis.negative_control import NEGATIVE_CONTROL_TABLE
from xlr.analysis.positive_control import POSITIVE_CONTROL_TABLE
from xlr.config import Params, load_params
from xlr.eval.planted import planted_name
from xlr.eval.results import MULTILINGUAL, MULTILINGUAL_SEEN, load_val_results, read_ranks
from xlr.eval.runner import base_report
from xlr.kernel import ensure_kernel
from xlr.notebook import SECTIONS, notebook_params
from xlr.paths import report_dir

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
def test_every_notebook_runs_all_from_the_notebooks_dir(xlr_root: Path) -> None:
    """Run All in JupyterLab, through papermill: no injected parameters, working directory
    notebooks/, so the smoke study (the parameters cell's default). Injected parameters, as
    `xlr reproduce` gives them, run every notebook in tests/test_rehearsal.py;
    :func:`test_injected_params_win_over_the_smoke_default` shows that notebooks read what is
    injected (``papermill -f``'s form too), and these defaults otherwise."""
    run_every_notebook(xlr_root / "as_is", ROOT / "notebooks")
    for path in NOTEBOOKS:
        assert dirty_cells(json.loads(path.read_text())) == []  # the source stays clean
    assert (xlr_root / "runs" / "smoke" / "data" / "data.json").is_file()
    tables = report_dir(load_params(ROOT / "params" / "smoke.yaml")) / "tables"
    assert (tables / f"{NEGATIVE_CONTROL_TABLE}.csv").is_file()  # the banner reads it (README)
    assert_base_behaves_like_a_laion_model()
    assert_zero_dose_is_the_model_itself()


def _notebook_params(notebook: nbformat.NotebookNode, name: str) -> Params:
    """Run the notebook's cell tagged ``parameters`` (and papermill's injected cell after it,
    if any) and its own ``params = notebook_params(...)`` call; return the params it reads."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    given = [
        cell.source
        for cell in code
        if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", []))
    ]
    reads = next(cell.source for cell in code if "notebook_params(" in cell.source)
    call = reads[reads.index("params = notebook_params(") :].split("\n)\n")[0] + "\n)"
    for section in SECTIONS:
        assert f"{section}={section}" in call, f"{name}: pass {section}={section}"
    namespace: dict = {"notebook_params": notebook_params}
    exec("\n".join([*given, call]), namespace)  # the notebook's own committed source
    return namespace["params"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_injected_params_win_over_the_smoke_default(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run All's default is params/smoke.yaml, and what papermill injects wins over it in both
    forms users give: a params file's own sections (``papermill -f``) and every validated
    section (``xlr reproduce``). Each injection renames the run, so a notebook that ignored it
    fails here. Runs each notebook's parameters cells and its own ``notebook_params`` call from
    notebooks/ (the full Run All is the slow test above)."""
    monkeypatch.chdir(ROOT / "notebooks")
    smoke = load_params(ROOT / "params" / "smoke.yaml")
    renamed = smoke.model_dump(mode="json")
    renamed["run"]["name"] = "injected"
    injections = {
        "Run All": None,
        "papermill -f": SMOKE | {"run": SMOKE["run"] | {"name": "injected"}},
        "xlr reproduce": renamed,
    }
    for form, injected in injections.items():
        notebook = papermill.iorw.load_notebook_node(str(path))  # as papermill reads it (tags)
        if injected is not None:  # papermill adds its cell to the notebook it is given
            notebook = papermill.parameterize.parameterize_notebook(notebook, injected)
        params = _notebook_params(notebook, path.name)
        expected = smoke.model_dump(mode="json") if injected is None else renamed
        assert params.model_dump(mode="json") == expected, f"{path.name}, {form}"


def assert_zero_dose_is_the_model_itself() -> None:
    """The positive control's dose 0 on the smoke base (as the README says): the copy (the
    model's embeddings unchanged) ranks every validation query as the zero-shot model does, bit
    for bit, through the same ranking and pairing, so its judged
    rows pass; notebook 05 drew the dose response."""
    params = load_params(ROOT / "params" / "smoke.yaml")
    _, files = load_val_results(params)
    ranks = read_ranks(files)
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
