"""`xlr reproduce`: order, skipping, failure handling, HTML export, escaping, index links."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from xlr import report, report_banner, report_index
from xlr.analysis.positive_control import POSITIVE_CONTROL_TABLE
from xlr.analysis.tables import CLAIMS_COLUMNS
from xlr.cli import main
from xlr.config import load_params, parse_params
from xlr.report import NotebookFailed, NotebookRun, reproduce
from xlr.report_banner import few_images_warning, positive_control_warning
from xlr.report_index import FIGURE_CAPTIONS, figure_caption, write_index

ROOT = Path(__file__).resolve().parents[1]

PAYLOAD = "<script>alert('xss')</script>"


def write_notebook(path: Path, *sources: str) -> Path:
    """A notebook of a parameters cell and ``sources``, naming the ``xlr`` kernel as the study's
    notebooks do."""
    cells = [nbformat.v4.new_code_cell("run = None\ndata = None")]
    cells[0].metadata["tags"] = ["parameters"]
    cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "xlr",
        "display_name": "Python (xlr)",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def study(tmp_path: Path) -> tuple[Path, Path]:
    params = tmp_path / "p.yaml"
    params.write_text(
        f"run: {{name: t, reports_dir: {tmp_path / 'reports'}}}\ndata: {{train_langs: [en, de]}}\n"
    )
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    return params, nbs


def test_runs_in_order_exports_html_and_skips_on_rerun(study) -> None:
    params, nbs = study
    gallery = (
        "from IPython.display import HTML, display\n"
        "import pandas as pd\n"
        "from xlr.data.imagetext import ArrayImages, ImageTextSet\n"
        "from xlr.data.gallery import caption_gallery_html\n"
        "import numpy as np\n"
        "caps = pd.DataFrame({'image_id': [0], 'lang': ['en'], 'caption_idx': [0],\n"
        f"                     'caption': [{PAYLOAD!r}]}})\n"
        "s = ImageTextSet('t', ['a'], ArrayImages(np.zeros((1, 4, 4, 3), np.uint8)), caps)\n"
        "display(HTML(caption_gallery_html(s, [0], ['en'])))\n"
        "display(caps)\n"
        "from IPython.display import Markdown\n"
        f"display(Markdown('| caption |\\n|---|\\n| ' + {PAYLOAD!r} + ' |'))\n"
        "display(Markdown('[a link](javascript:alert(1))'))"
    )
    notebooks = [
        write_notebook(nbs / "01_a.ipynb", "print(run['name'], data['train_langs'])"),
        write_notebook(nbs / "02_b.ipynb", gallery),
    ]
    runs = reproduce(params, notebooks=notebooks)
    assert [(r.name, r.status) for r in runs] == [("01_a.ipynb", "ran"), ("02_b.ipynb", "ran")]
    out = params.parent / "reports" / "t"
    assert "t ['en', 'de']" in (out / "01_a.html").read_text()
    for page in ("02_b.html", "02_b.nocode.html"):
        text = (out / page).read_text()
        assert PAYLOAD not in text and "&lt;script&gt;alert(" in text
        assert 'href="javascript:' not in text and "#harmful-link" in text
    assert "print(run" not in (out / "01_a.nocode.html").read_text()
    again = reproduce(params, notebooks=notebooks)
    assert [r.status for r in again] == ["skipped", "skipped"]
    forced = reproduce(params, force=True, notebooks=notebooks[:1])
    assert [r.status for r in forced] == ["ran"]
    (out / "01_a.ipynb").unlink()  # 01 is no longer done: it runs, and 02, which reads it, too
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["ran", "ran"]
    (out / "02_b.ipynb").unlink()  # a later notebook alone reruns without its predecessors
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["skipped", "ran"]
    write_notebook(notebooks[0], "print('edited', run['name'])")  # a changed notebook reruns
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["ran", "ran"]
    assert "edited t" in (out / "01_a.html").read_text()
    with pytest.MonkeyPatch.context() as patch:  # an edit to xlr/ re-runs, committed or not
        patch.setattr(report, "code_digest", lambda: "0" * 64)
        assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["ran", "ran"]
    assert report.code_digest() != "0" * 64 and len(report.code_digest()) == 64
    before = json.loads((out / "status.json").read_text())["01_a.ipynb"]["params"]
    params.write_text(params.read_text().replace("[en, de]", "[en, fr]"))  # changed parameters
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["ran", "ran"]
    assert json.loads((out / "status.json").read_text())["01_a.ipynb"]["params"] != before
    params.write_text(params.read_text() + "# a comment changes the file, not the parameters\n")
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["skipped", "skipped"]
    index = (out / "index.html").read_text()
    links = re.findall(r'(?:href|src)="([^"]+)"', index)
    assert len(links) == 6 and all((out / link).is_file() for link in links)
    for row in (
        "git commit",
        "uncommitted changes",
        "params file sha256",
        "validated params digest",
        "packages",
        "device",
        "fine-tuning seeds",
        "base seeds",
        "wall time per notebook",
    ):
        assert f"<th>{row}</th>" in index
    status = json.loads((out / "status.json").read_text())
    assert (
        status["01_a.ipynb"]["params"] in index and "validated params" in status["about"]["params"]
    )


def test_failing_notebook_stops_and_keeps_earlier_reports(study) -> None:
    params, nbs = study
    notebooks = [
        write_notebook(nbs / "01_ok.ipynb", "x = 1"),
        write_notebook(nbs / "02_bad.ipynb", "y = 2", "raise ValueError('planted failure')"),
        write_notebook(nbs / "03_never.ipynb", "z = 3"),
    ]
    with pytest.raises(NotebookFailed) as info:
        reproduce(params, notebooks=notebooks)
    message = str(info.value)
    assert "02_bad.ipynb" in message and "planted failure" in message and "cell" in message
    out = params.parent / "reports" / "t"
    assert (out / "01_ok.html").is_file() and (out / "02_bad.failed.ipynb").is_file()
    assert not (out / "02_bad.ipynb").exists() and not (out / "03_never.ipynb").exists()


def test_notebooks_after_one_that_reran_still_run_after_an_interrupted_call(study) -> None:
    """Notebook 02 re-runs (edited) and 03 fails: the next call must run 03 although its old
    entry's inputs still match, since 02 changed what it reads; the failed call's stale landing
    page is gone, and a report without its pages is not done."""
    params, nbs = study
    shared = nbs / "shared.txt"
    notebooks = [
        write_notebook(nbs / "01_a.ipynb", "x = 1"),
        write_notebook(nbs / "02_b.ipynb", f"open({str(shared)!r}, 'w').write('v1')"),
        write_notebook(nbs / "03_c.ipynb", f"print('read', open({str(shared)!r}).read())"),
    ]
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["ran"] * 3
    out = params.parent / "reports" / "t"
    assert (out / "index.html").is_file()
    write_notebook(notebooks[1], f"open({str(shared)!r}, 'w').write('v2')")
    with pytest.MonkeyPatch.context() as patch:  # 03 fails once (a transient error)
        patch.setattr(report, "_execute", failing_on("03_c.ipynb", report._execute))
        with pytest.raises(NotebookFailed):
            reproduce(params, notebooks=notebooks)
    assert not (out / "index.html").exists()  # no earlier run's page beside the new reports
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == [
        "skipped",
        "skipped",
        "ran",
    ]
    assert "read v2" in (out / "03_c.html").read_text()
    (out / "01_a.nocode.html").unlink()  # a page is missing: 01 is not done
    assert [r.status for r in reproduce(params, notebooks=notebooks)] == ["ran"] * 3


def test_a_rerun_removes_the_tables_its_notebook_wrote_before(study) -> None:
    """A table of a benchmark the params no longer evaluate must not stay on the landing page:
    what a notebook wrote is removed before it runs again; other files are left alone."""
    params, nbs = study
    out = params.parent / "reports" / "t"
    table = (
        "from pathlib import Path\n"
        f"tables = Path({str(out)!r}) / 'tables'\n"
        "tables.mkdir(parents=True, exist_ok=True)\n"
        "name = f\"headline_{data['train_langs'][1]}.md\"\n"
        "(tables / name).write_text('| a |\\n|---|\\n| 1 |\\n')"
    )
    notebooks = [write_notebook(nbs / "01_t.ipynb", table)]
    reproduce(params, notebooks=notebooks)
    (out / "tables" / "mine.md").write_text("| kept |\n|---|\n| 1 |\n")  # not the notebook's
    assert json.loads((out / "status.json").read_text())["01_t.ipynb"]["outputs"] == [
        "tables/headline_de.md"
    ]
    params.write_text(params.read_text().replace("[en, de]", "[en, fr]"))
    reproduce(params, notebooks=notebooks)
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["headline_fr.md", "mine.md"]
    assert "headline_de" not in (out / "index.html").read_text()
    # a run that fails after writing: what it wrote is still removed before the next
    write_notebook(notebooks[0], table, "assert data['train_langs'][1] != 'es'")
    params.write_text(params.read_text().replace("[en, fr]", "[en, es]"))
    with pytest.raises(NotebookFailed):
        reproduce(params, notebooks=notebooks)
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["headline_es.md", "mine.md"]
    params.write_text(params.read_text().replace("[en, es]", "[en, it]"))
    reproduce(params, notebooks=notebooks)
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["headline_it.md", "mine.md"]


def failing_on(name: str, execute):
    """``execute`` that raises NotebookFailed for the notebook ``name``."""

    def run(notebook: Path, out: Path, params) -> None:
        if notebook.name == name:
            raise NotebookFailed(f"{name}: planted failure")
        execute(notebook, out, params)

    return run


def test_cli_reports_a_failure_with_exit_code(study, capsys, monkeypatch) -> None:
    params, nbs = study
    bad = write_notebook(nbs / "01_bad.ipynb", "1 / 0")
    monkeypatch.setattr("xlr.report.NOTEBOOK_DIR", nbs)
    assert bad.exists()
    assert main(["reproduce", str(params)]) == 1
    assert "01_bad.ipynb" in capsys.readouterr().err


def test_index_renders_tables_escaped_and_links_their_files(study) -> None:
    params, nbs = study
    out = params.parent / "reports" / "t"
    writer = (
        "from pathlib import Path\n"
        "import pandas as pd\n"
        "from xlr.analysis.tables import markdown_table, save_table\n"
        f"out = Path({str(out)!r})\n"
        f"frame = pd.DataFrame({{'arm': [{PAYLOAD!r}], 'estimate': ['0.500 [0.4, 0.6]']}})\n"
        "save_table(frame, out, 'claims', markdown_table(frame))\n"
        "save_table(frame, out / 'tables', 'headline', markdown_table(frame))\n"
    )
    reproduce(params, notebooks=[write_notebook(nbs / "06_tables.ipynb", writer)])
    index = (out / "index.html").read_text()
    assert index.count('<div class="table-wrap" data-table=') == 2 and PAYLOAD not in index
    assert "&lt;script&gt;alert(" in index
    assert index.index("claims") < index.index("headline")  # the claims table comes first
    explained = index[index.index("The columns:") : index.index("headline")]
    for name, text in CLAIMS_COLUMNS.items():  # one line each, the source notebook 06 shows
        line = f"<strong>{html.escape(name)}</strong>: {html.escape(text, quote=False)}"
        assert line in explained
    links = re.findall(r'(?:href|src)="([^"]+)"', index)
    for name in ("claims.md", "claims.csv", "tables/headline.md", "tables/headline.csv"):
        assert name in links
    assert all((out / link).is_file() for link in links)


def test_index_says_what_the_study_is_and_what_its_numbers_are(tmp_path: Path) -> None:
    """The smoke study's landing page: question, data, arms, the smoke and synthetic banners,
    the claims table explained, readable captioned figures linked to full size, provenance as a
    table, inline CSS and nothing fetched."""
    from PIL import Image

    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    for stem in ("per_language_t2i_r1", "odd_extra-plot"):
        Image.new("RGB", (1200, 600), "white").save(out / "figures" / f"{stem}.png")
    (out / "figures" / "per_language_t2i_r1.svg").write_text("<svg/>")
    (out / "claims.md").write_text(
        "| claim | verdict |\n| --- | --- |\n"
        "| hybrid beats multi | not run (multi-full missing) |\n"
    )
    params_file = ROOT / "params" / "smoke.yaml"
    params = load_params(params_file)
    runs = [NotebookRun("01_data_sampling.ipynb", "skipped", 12.5)]
    index = write_index(out, params, params_file, "d" * 64, runs).read_text()
    assert "numbers are checks, not findings" in index and "Synthetic data" in index
    assert "Question." in index and "hybrid batch training" in index
    for lang in params.data.train_langs + params.data.heldout_langs:
        assert lang in index
    assert "zeroshot, mono, cross, hybrid" in index and "tiny open_clip model" in index
    assert 'width="480"' not in index and "max-width: 100%" in index
    caption = html.escape(FIGURE_CAPTIONS["per_language_t2i_r1"])
    assert f"<figcaption>{caption}" in index
    assert "<figcaption>Odd extra plot" in index  # an unknown figure gets a readable name
    assert (
        '<a href="figures/per_language_t2i_r1.png"><img src="figures/per_language_t2i_r1.png"'
        in index
    )
    assert 'href="figures/per_language_t2i_r1.svg"' in index
    (out / "figures" / "vector_only.svg").write_text("<svg/>")  # report.figure_formats: [svg]
    (out / "figures" / "print_only.pdf").write_bytes(b"%PDF-1.4")  # [pdf]
    index = write_index(out, params, params_file, "d" * 64, runs).read_text()
    assert '<img src="figures/vector_only.svg"' in index
    assert (
        '<a href="figures/print_only.pdf">PDF</a>' in index and 'print_only.pdf"><img' not in index
    )
    assert index.count('id="fig-per_language_t2i_r1"') == 1  # one figure, two formats
    (out / "01_data_sampling.ipynb").write_text("{}")
    (out / "logs").mkdir()
    (out / "logs" / "01_data_sampling.log").write_text("UserWarning: ...\n")
    index = write_index(out, params, params_file, "d" * 64, runs).read_text()
    assert '<a href="logs/01_data_sampling.log">warnings and logs</a>' in index
    assert "is no failure" in index  # a claim whose arm did not run is explained
    rows = ["git commit", "uncommitted changes", "date (UTC)", "params file sha256"]
    rows += ["validated params digest", "Python", "packages", "device", "data source"]
    rows += ["model kind", "fine-tuning seeds", "base seeds", "wall time per notebook"]
    for row in rows:
        assert f"<th>{row}</th>" in index
    assert "d" * 64 in index and "01_data_sampling.ipynb 12.5 s (skipped)" in index
    assert "<script" not in index and "<link" not in index and "http" not in index


def test_a_figure_of_one_benchmark_gets_its_figures_caption() -> None:
    """With several benchmarks notebook 06 names a figure ``<figure>_<benchmark>``: it keeps the
    figure's caption (the longest name it extends) and names the benchmark."""
    assert figure_caption("xt2t_r1_hybrid") == FIGURE_CAPTIONS["xt2t_r1_hybrid"]
    assert figure_caption("xt2t_r1_hybrid_xtd10") == (
        f"{FIGURE_CAPTIONS['xt2t_r1_hybrid']} Benchmark: xtd10."
    )
    assert figure_caption("xt2t_r1_hybrid_minus_zeroshot_multi30k").startswith(
        FIGURE_CAPTIONS["xt2t_r1_hybrid_minus_zeroshot"]
    )
    assert figure_caption("loss_curves") == "Loss curves"


def test_a_real_study_gets_no_smoke_banner(tmp_path: Path) -> None:
    params_file = ROOT / "params" / "synthetic.yaml"
    index = write_index(tmp_path, load_params(params_file), params_file, "0" * 64, []).read_text()
    assert "not findings" not in index and "Synthetic data" in index
    assert "One run" not in index  # 3 bases x 2 seeds
    # any name, one base x one seed: the rehearsal's, less the translation model only its
    # test builds
    raw = yaml.safe_load((ROOT / "params" / "rehearsal.yaml").read_text(encoding="utf-8"))
    del raw["data"]["laion"]["translate"]
    one_run = parse_params(raw)
    index = write_index(tmp_path, one_run, params_file, "0" * 64, []).read_text()
    assert "One run (one base seed, one fine-tuning seed)" in index
    assert "the weights in that model folder" in index and "pretrained None" not in index
    assert "No figures yet" in index and "No tables yet" in index


POSITIVE_CONTROL_CSV = """\
benchmark,pool,queries,measure,dose,"if seen, it",difference,p_value,role,result
synthetic-val,seen languages,caption,mAP,2x,falls,"-0.052 [-0.081, -0.023]",0.001,required,pass
synthetic-val,all languages,caption,mAP,2x,falls,"-0.031 [-0.050, -0.012]",0.002,required,pass
synthetic-val,seen languages,caption,rank distance,2x,rises,{seen},{p},required,{result}
synthetic-val,seen languages,caption,mAP,0x,falls,"{zero}",0.9,zero dose,{zero_result}
synthetic-val,all languages,caption,rank distance,2x,rises,"-4.8 [-86.0, +76.0]",0.9,shown,not seen
"""


ZERO_PASS = {"zero": "+0.000 [-0.001, +0.001]", "zero_result": "pass"}


def test_index_warns_when_the_positive_control_missed_a_required_comparison(
    tmp_path: Path,
) -> None:
    """A hand-written positive control table: every judged row passed, no banner line; the
    seen pool's rank distance n/a (a LAION split without translation) or FAIL, a banner line
    naming it and the claims it concerns; a zero-dose row that saw a bias, a line saying so; a
    shown row that failed is no reason to warn."""
    params_file = ROOT / "params" / "synthetic.yaml"
    params = load_params(params_file)
    tables = tmp_path / "tables"
    tables.mkdir()
    csv = tables / f"{POSITIVE_CONTROL_TABLE}.csv"
    assert positive_control_warning(tmp_path) is None  # notebook 05 has not saved it
    csv.write_text(
        POSITIVE_CONTROL_CSV.format(
            **ZERO_PASS, seen='"+9.1 [+3.2, +15.0]"', p="0.004", result="pass"
        )
    )
    assert positive_control_warning(tmp_path) is None
    index = write_index(tmp_path, params, params_file, "0" * 64, []).read_text()
    assert "Positive control not passed" not in index
    unmeasured = "no caption query has relevant items in two languages (translate: a|b)"
    csv.write_text(
        POSITIVE_CONTROL_CSV.format(**ZERO_PASS, seen=f'"{unmeasured}"', p="", result="n/a")
    )
    index = write_index(tmp_path, params, params_file, "0" * 64, []).read_text()
    warning = positive_control_warning(tmp_path)
    assert warning is not None and f"<p>{warning}</p>" in index
    assert "Positive control not passed" in warning
    assert "rank distance (synthetic-val, seen languages): not measured" in warning
    assert "translate: a|b" in warning and "mAP" not in warning and "all languages" not in warning
    assert "claims reading rank distance rest on a measure not shown to see a planted bias" in (
        warning
    )
    csv.write_text(
        POSITIVE_CONTROL_CSV.format(**ZERO_PASS, seen='"-1.5 [-7.0, +4.0]"', p="0.6", result="FAIL")
    )
    warning = positive_control_warning(tmp_path)
    assert warning is not None
    assert "rank distance (synthetic-val, seen languages): not seen, planted - real -1.5" in warning
    assert "(if seen, it rises)" in warning
    csv.write_text(
        POSITIVE_CONTROL_CSV.format(
            **ZERO_PASS, seen='"+9.1 [+3.2, +15.0]"', p="0.004", result="pass"
        )
        .replace("synthetic-val,seen", "<b>x</b>,seen", 1)
        .replace("required,pass", "required,FAIL", 1)
    )
    warning = positive_control_warning(tmp_path)
    assert warning is not None and "&lt;b&gt;x&lt;/b&gt;" in warning and "<b>" not in warning
    zero_seen = {"zero": "-0.030 [-0.041, -0.019]", "zero_result": "FAIL"}
    csv.write_text(POSITIVE_CONTROL_CSV.format(**zero_seen, seen='"+9.1 [+3.2, +15.0]"', p="0.004",
                                               result="pass"))  # fmt: skip
    warning = positive_control_warning(tmp_path)
    assert warning is not None
    zero_line = "mAP (synthetic-val, seen languages): a difference where nothing was planted"
    assert f"{zero_line} (dose 0x)" in warning
    assert "rank distance" not in warning and "not shown to see" not in warning
    assert "A comparison found a difference between the zero-shot model and itself" in warning


def test_index_names_the_benchmarks_too_small_to_judge(tmp_path: Path) -> None:
    """A hand-written claims table: benchmarks under MIN_IMAGES images are named, with their
    fewest images, once each (escaped); larger ones and claims not run are not."""
    params_file = ROOT / "params" / "synthetic.yaml"
    params = load_params(params_file)
    assert few_images_warning(tmp_path) is None  # notebook 06 has not saved it
    claims = pd.DataFrame(
        {
            "key": ["a", "b", "a", "a", "b"],
            "benchmark": ["xtd10", "xtd10", "<i>m30k</i>", "xm3600", "xm3600"],
            "n_images": [2, 3, 19, 3600, None],
            "verdict": ["inconclusive"] * 4 + ["not run (no held-out language in xm3600)"],
        }
    )
    claims.to_csv(tmp_path / "claims.csv", index=False)
    warning = few_images_warning(tmp_path)
    assert warning is not None
    named = "xtd10 (2 images), &lt;i&gt;m30k&lt;/i&gt; (19 images): claims measured there on"
    assert f"{named} fewer than 20" in warning
    assert "xm3600" not in warning and "<i>" not in warning
    index = write_index(tmp_path, params, params_file, "0" * 64, []).read_text()
    assert f"<p>{warning}</p>" in index
    claims.assign(n_images=[20, 20, 20, 3600, None]).to_csv(tmp_path / "claims.csv", index=False)
    assert few_images_warning(tmp_path) is None
    claims[["key", "benchmark", "verdict"]].to_csv(tmp_path / "claims.csv", index=False)
    assert few_images_warning(tmp_path) is None


def test_widget_outputs_become_the_text_their_saved_state_shows() -> None:
    """Known answers: a finished tqdm box reads as in a terminal; a bar closed before the
    notebook ended (no saved state) keeps its plain-text form; one without any text goes."""
    from xlr.export import WIDGET_STATE, WIDGET_VIEW, flatten_widgets

    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_b"]}},
        "l": {"model_name": "HTMLModel", "state": {"value": "steps:\u2007100%"}},
        "b": {"model_name": "FloatProgressModel", "state": {"value": 3, "max": 10, "min": 0}},
        "x": {"model_name": "HTMLModel", "state": {"value": "&lt;b&gt;"}},
    }
    views = [
        {WIDGET_VIEW: {"model_id": "box"}, "text/plain": "steps: 0%"},
        {WIDGET_VIEW: {"model_id": "gone"}, "text/plain": "closed: 0%"},
        {WIDGET_VIEW: {"model_id": "gone"}},
        {WIDGET_VIEW: {"model_id": "x"}},
    ]
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data) for data in views]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": state}}
    flat = flatten_widgets(notebook)
    assert [o["data"] for o in flat.cells[0].outputs] == [
        {"text/plain": "steps: 100%|███       |"},
        {"text/plain": "closed: 0%"},
        {"text/plain": "<b>"},  # text, escaped when the page is written
    ]
    assert "widgets" not in flat.metadata


def test_provenance_counts_a_new_module_as_uncommitted_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An uncommitted module runs as surely as an edited one; notes outside the code do not."""

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "xlr").mkdir()
    (tmp_path / "xlr" / "a.py").write_text("A = 1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    monkeypatch.setattr(report_index, "CHECKOUT", tmp_path)
    assert report_index._dirty() == "no: the commit is the code that ran"
    (tmp_path / "notes.txt").write_text("not code\n")
    assert report_index._dirty() == "no: the commit is the code that ran"
    (tmp_path / "xlr" / "b.py").write_text("B = 2\n")
    assert report_index._dirty().startswith("yes: 1 file(s)")
    (tmp_path / "xlr" / "a.py").write_text("A = 3\n")
    assert report_index._dirty().startswith("yes: 2 file(s)")


def test_a_page_fetching_from_another_host_is_refused() -> None:
    """Known answers: scripts, stylesheets, fonts, images and frames from another host are
    fetches an offline page must not need; a link to follow, or an inline image, is none. A
    notebook output with a remote image stops the export, naming what to remove."""
    from xlr.export import external_fetches, offline_html

    fetching = [
        '<script src="https://cdn.example/x.js">',
        "<link rel=stylesheet href=//fonts.example/f.css>",
        "<style>@import url('https://fonts.example/f.css');</style>",
        '<img alt="x" src="http://example.org/a.png">',
        '<iframe src="https://example.org/">',
        "<div style=\"background: url( 'https://example.org/b.png')\">",
        '<img src="a.png" srcset="https://example.org/a2.png 2x">',
        '<video poster="https://example.org/p.png">',
        '<object data="https://example.org/o.svg">',
        '<svg><image xlink:href="https://example.org/i.png"/></svg>',
    ]
    for page in fetching:
        assert len(external_fetches(page)) == 1, page
    local = '<a href="https://example.org/">paper</a><img src="data:image/png;base64,AA==">'
    assert external_fetches(local + '<img src="figures/a.png">') == []
    assert external_fetches('<img data-src-note="x" src="figures/a.png">') == []
    cell = nbformat.v4.new_code_cell("")
    remote = {"text/html": '<img src="https://example.org/a.png">'}
    cell.outputs = [nbformat.v4.new_output("display_data", data=remote)]
    with pytest.raises(RuntimeError, match="fetches from another host.*that output"):
        offline_html(nbformat.v4.new_notebook(cells=[cell]))


def test_a_page_without_code_shows_no_prompts() -> None:
    """``In [3]:`` and ``Out[3]:`` number code the no-code page does not show."""
    from xlr.export import offline_html

    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "2"},
                                           execution_count=3)]  # fmt: skip
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert "Out[3]" in offline_html(notebook, with_code=True)
    bare = offline_html(notebook, with_code=False)
    assert "Out[3]" not in bare


def test_the_code_digest_follows_code_files_only(tmp_path: Path) -> None:
    """An edit or a new module changes it; an editor backup or a byte-code cache does not."""
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "a.py"
    module.write_text("x = 1\n")
    first = report.code_digest(tmp_path)
    (tmp_path / "a.py~").write_text("x = 0\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert report.code_digest(tmp_path) == first
    module.write_text("x = 2\n")
    edited = report.code_digest(tmp_path)
    assert edited != first
    (tmp_path / "pkg" / "b.py").write_text("")
    assert report.code_digest(tmp_path) not in (first, edited)


def test_a_laion_study_without_round_trips_is_told_its_mono_batches_lack_a_target() -> None:
    """On LAION without ``paraphrase_via`` the claims between mono and pair batches compare
    objectives too: the index's banner says so, naming the arms; with round trips, with no arm
    that trains mono batches, or on generated data (paraphrases of its own) it says nothing."""
    path = ROOT / "params" / "laion5b_xlmr_b32.yaml"
    assert report_banner.text_text_warning(load_params(path)) is None  # it makes round trips
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    del raw["data"]["laion"]["translate"]["paraphrase_via"]
    warned = report_banner.text_text_warning(parse_params(raw))
    assert warned is not None and "Mono batches had no text-text target" in warned
    assert "mono-full, mono-lora, hybrid-a0.4-full" in warned
    assert "adapters, adapters_hybrid-a0.5" in warned and "cross" not in warned
    raw["train"]["arms"] = ["zeroshot", "cross", "multi"]
    raw["adapters"] = {"enabled": False, "hybrid_alpha": None}
    assert report_banner.text_text_warning(parse_params(raw)) is None
    assert report_banner.text_text_warning(load_params(ROOT / "params" / "synthetic.yaml")) is None
