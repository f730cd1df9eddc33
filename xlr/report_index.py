"""``index.html``, the page a reviewer opens first: what the study asks and on what data, whether
its numbers are findings, the claims and headline tables, the figures and where it all came from.

The page is one file with its stylesheet inline and no script, so it reads offline; every
table's Markdown is rendered with raw HTML escaped (an arm name or caption stays text).
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

from xlr.analysis.tables import claims_columns_markdown
from xlr.config import FigureFormat, Params
from xlr.export import page_css, safe_markdown
from xlr.faiss_builds import installed_faiss
from xlr.io import atomic_write_text, file_sha256
from xlr.report_banner import banner, is_smoke

INDEX_FILE = "index.html"  # the landing page, in the report folder
CHECKOUT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "xlr",
    "torch",
    "open_clip_torch",
    "transformers",
    "peft",
    "numpy",
    "pandas",
    "papermill",
    "nbconvert",
)
QUESTION = (
    "For a multilingual CLIP, which gives better zero-shot cross-lingual retrieval and less "
    "language bias: <strong>hybrid batch training</strong> (mixing monolingual and cross-lingual "
    "batches) or <strong>language-specific adapters</strong> (one LoRA per language)?"
)
# What each notebook of the study does (the README's table, in a line each).
NOTEBOOK_ROLES: dict[str, str] = {
    "01_data_sampling": "the data: corpus, evaluation sets, language mix, sample captions",
    "02_hybrid_training": "the base model and the mono / cross / multi / hybrid arms",
    "03_adapter_training": "one LoRA per seen language, routing and cost",
    "04_retrieval_eval": "every arm on every evaluation set and task",
    "05_bias_analysis": "rank distance, language preference, controls, calibration",
    "06_paper_figures": "figures, tables and the computed claims",
}
# What each figure the notebooks save shows; a figure not listed gets its humanised file name.
FIGURE_CAPTIONS: dict[str, str] = {
    "per_language_t2i_r1": "Text-to-image R@1 per caption language and arm, with error bars; "
    "seen and held-out languages apart, so the gain from fine-tuning and how far it reaches "
    "held-out languages can be read per language.",
    "xt2t_r1_hybrid": "Cross-lingual text-to-text R@1 of the hybrid arm for every ordered pair "
    "of query and target language.",
    "xt2t_r1_hybrid_minus_zeroshot": "The hybrid arm's cross-lingual text-to-text R@1 minus the "
    "zero-shot base's, per language pair: where fine-tuning helped (positive) or hurt; hatched "
    "where the paired interval contains 0.",
    "alpha_sweep_multilingual_map": "Multilingual mAP against the hybrid mix alpha (the share "
    "of monolingual batches), a line per what trains (full or LoRA).",
    "map_vs_trainable_params": "Multilingual mAP against the number of trainable parameters "
    "(log scale), one point per arm: what full fine-tuning, a shared LoRA and per-language "
    "adapters buy per parameter trained.",
    "seen_vs_heldout_t2i_r1": "Text-to-image R@1 on the seen and the held-out languages, side "
    "by side per arm: whether the gain on the trained languages transfers.",
    "rank_distance_seen_pool": "Language bias per arm: the distribution of each query's maximum "
    "rank distance between its relevant captions in the seen languages' pool (box: quartiles; "
    "diamond: the mean the claims compare; lower is less biased).",
    "calibration": "Calibration of the claims' verdicts on resamples: how often a verdict is "
    "reached when there is no true effect (A/A, left) and how often zero is excluded when the "
    "minimum effect is planted (power, right).",
    "dose_response": "Positive control on the validation split: the planted - real difference "
    "of mAP (left) and of the maximum rank distance (right) as a language bias of growing size "
    "is planted in the zero-shot model; the control is judged at the dotted dose, and at dose "
    "0 (nothing planted) the comparisons it judges must show no difference.",
}
DIGESTS_EXPLAINED = (
    "Two hashes name the parameters. The <em>params file sha256</em> is the hash of the YAML "
    "file's bytes (a comment edit changes it). The <em>validated params digest</em> is the "
    "sha256 of every section after validation and defaults, as sorted JSON: status.json "
    "stores it per notebook as <code>params</code> and a re-run compares it to decide what to "
    "skip, so it changes only when a value does."
)


@dataclass(frozen=True)
class NotebookRun:
    """What happened to one notebook in a reproduction."""

    name: str
    status: str  # "ran" or "skipped"
    wall_s: float


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=CHECKOUT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


CODE_PATHS = ("xlr", "notebooks", "params", "pyproject.toml")  # what decides a run's numbers


def _dirty() -> str:
    """Whether the code that ran is the commit: changed tracked files anywhere, and new files
    (not ignored) where code lives, since an uncommitted module can run as well as an edit."""
    tracked = _git("status", "--porcelain", "--untracked-files=no")
    new = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    if tracked is None or new is None:
        return "unknown (not a git checkout)"
    changes = set(tracked.splitlines()) | {line for line in new.splitlines() if line[:2] == "??"}
    if not changes:
        return "no: the commit is the code that ran"
    return f"yes: {len(changes)} file(s) differ from the commit or are not in it"


def _package_versions() -> str:
    """The versions of :data:`PACKAGES` and of the faiss build that ran (cpu or gpu)."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    faiss = installed_faiss() or {"faiss": "not installed"}
    versions += [f"{name} {version}" for name, version in faiss.items()]
    return ", ".join(versions)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def data_source(params: Params) -> str:
    """Where the study's images and captions come from, in a phrase."""
    if params.data.source == "synthetic":
        synthetic = params.data.synthetic
        return (
            f"synthetic: a generated corpus (xlr.data.synthetic, seed {synthetic.seed}) of "
            f"rendered scenes with parallel captions; {synthetic.pretrain_images} pretraining, "
            f"{synthetic.finetune_images} fine-tuning, {synthetic.eval_images} evaluation images"
        )
    laion = params.data.laion
    snapshot = laion.snapshot if laion is not None else "unset"
    return (
        f"LAION-5B subset (snapshot {snapshot}), evaluated on {', '.join(params.eval.benchmarks)}"
    )


def model_kind(params: Params) -> str:
    """Which CLIP the arms fine-tune, in a phrase."""
    if params.model.kind == "tiny":
        return (
            "tiny open_clip model (XLM-R text tower) pretrained here on the generated corpus, "
            f"one per base seed {params.run.base_seeds}"
        )
    from xlr.models.factory import HF_HUB, LOCAL_DIR  # here: importing it loads torch (3 s)

    name = params.model.name
    if name.startswith((LOCAL_DIR, HF_HUB)):  # open_clip loads the folder's own weights
        return f"open_clip {name} (the weights in that model folder; random where it has none)"
    weights = params.model.pretrained
    return f"open_clip {name} ({'random weights' if weights is None else f'pretrained {weights}'})"


def provenance(
    params: Params, params_file: Path, params_digest: str, runs: Sequence[NotebookRun]
) -> dict[str, str]:
    """Where the report came from: code, parameters, libraries, machine, data, seeds, time."""
    walls = ", ".join(f"{run.name} {run.wall_s:.1f} s ({run.status})" for run in runs)
    return {
        "git commit": _git("rev-parse", "HEAD") or "unknown (not a git checkout)",
        "uncommitted changes": _dirty(),
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "params file": str(params_file),
        "params file sha256": file_sha256(params_file),
        "validated params digest": params_digest,
        "Python": f"{platform.python_version()} ({sys.executable})",
        "packages": _package_versions(),
        "device": _device(),
        "data source": data_source(params),
        "model kind": model_kind(params),
        "fine-tuning seeds": ", ".join(map(str, params.run.seeds)),
        "base seeds": ", ".join(map(str, params.run.base_seeds)),
        "wall time per notebook": walls or "no notebook ran",
    }


def summary(params: Params) -> str:
    """The question, data, model and arms in a short paragraph."""
    esc = html.escape
    train, adapters = params.train, params.adapters
    arms = ", ".join(train.arms)
    if "hybrid" in train.arms:
        arms += f" (hybrid alpha {', '.join(f'{a:g}' for a in train.alphas)})"
    arms += f"; trained: {' and '.join(train.trainable)}"
    if adapters.enabled:
        arms += (
            f"; per-language adapters (one LoRA per seen language, held-out fallback "
            f"{', '.join(adapters.fallbacks)})"
        )
        if adapters.hybrid_alpha is not None:
            arms += f" and adapters trained with hybrid batches (alpha {adapters.hybrid_alpha:g})"
    heldout = ", ".join(params.data.heldout_langs) or "none"
    return (
        f"<p><strong>Question.</strong> {QUESTION}</p>"
        f"<p><strong>Data.</strong> {esc(data_source(params))}. Seen languages (fine-tuned on): "
        f"{esc(', '.join(params.data.train_langs))}; held out (never fine-tuned on): "
        f"{esc(heldout)}. <strong>Model.</strong> {esc(model_kind(params))}. "
        f"<strong>Arms.</strong> {esc(arms)}; {train.steps} steps of {train.batch_size} "
        f"examples each. <strong>Seeds.</strong> {len(params.run.base_seeds)} base seed(s) "
        f"{esc(str(params.run.base_seeds))} x {len(params.run.seeds)} fine-tuning seed(s) "
        f"{esc(str(params.run.seeds))}.</p>"
    )


def _links(out: Path) -> str:
    rows = []
    for executed in sorted(out.glob("[0-9][0-9]_*.ipynb")):
        if executed.name.endswith(".failed.ipynb"):
            continue
        stem = html.escape(executed.stem)
        role = html.escape(NOTEBOOK_ROLES.get(executed.stem, ""))
        rows.append(
            f"<tr><td>{stem}</td><td>{role}</td><td>"
            f'<a href="{stem}.nocode.html">without code</a> · '
            f'<a href="{stem}.html">with code</a> · '
            f'<a href="{html.escape(executed.name)}">notebook</a>{_log_link(out, executed)}'
            "</td></tr>"
        )
    if not rows:
        return "<p>No notebook has run yet.</p>"
    head = "<tr><th>notebook</th><th>what it does</th><th>read it</th></tr>"
    body = "".join(rows)
    return (
        f'<div class="table-wrap"><table><thead>{head}</thead><tbody>{body}</tbody></table></div>'
    )


def _log_link(out: Path, executed: Path) -> str:
    """A link to the notebook's warnings and library logs (:func:`xlr.notebook.notebook_log`),
    which its pages leave out: a reader must be able to find a warning that flags a result."""
    log = out / "logs" / f"{executed.stem}.log"
    return f' · <a href="{_href(out, log)}">warnings and logs</a>' if log.is_file() else ""


def humanise(stem: str) -> str:
    """``xt2t_r1_hybrid`` -> ``Xt2t r1 hybrid``: a readable name for a figure without a caption."""
    words = stem.replace("_", " ").replace("-", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def figure_caption(stem: str) -> str:
    """The caption of a saved figure: its :data:`FIGURE_CAPTIONS` entry, or that of the figure
    it is one benchmark of (``<figure>_<benchmark>``, as notebook 06 names them when a study has
    several benchmarks) naming the benchmark, else the humanised file name."""
    if stem in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[stem]
    for name in sorted(FIGURE_CAPTIONS, key=len, reverse=True):  # xt2t_r1_hybrid_minus_... first
        if stem.startswith(f"{name}_"):
            return f"{FIGURE_CAPTIONS[name]} Benchmark: {stem[len(name) + 1 :]}."
    return humanise(stem)


FIGURE_SUFFIXES: tuple[str, ...] = tuple(f".{fmt}" for fmt in get_args(FigureFormat))


def _figures(out: Path) -> str:
    """Each figure once, whatever ``report.figure_formats`` wrote: shown from its PNG (else its
    SVG), linked in every format; a PDF-only figure is a link."""
    folder = out / "figures"
    files = (
        [f for f in sorted(folder.iterdir()) if f.suffix in FIGURE_SUFFIXES]
        if folder.is_dir()
        else []
    )
    stems = list(dict.fromkeys(f.stem for f in files))
    if not stems:
        return "<p>No figures yet (notebooks 05 and 06 write them).</p>"
    parts = []
    for stem in stems:
        formats = [suffix for suffix in FIGURE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
        hrefs = {suffix: html.escape(f"figures/{stem}{suffix}") for suffix in formats}
        caption = html.escape(figure_caption(stem))
        links = " · ".join(
            f'<a href="{href}">{suffix[1:].upper()}</a>' for suffix, href in hrefs.items()
        )
        shown = next((hrefs[suffix] for suffix in (".png", ".svg") if suffix in hrefs), None)
        image = f'<a href="{shown}"><img src="{shown}" alt="{caption}"></a>' if shown else ""
        parts.append(
            f'<figure id="fig-{html.escape(stem)}">{image}'
            f"<figcaption>{caption} ({links})</figcaption></figure>"
        )
    return "".join(parts)


def _href(out: Path, path: Path) -> str:
    """``path`` relative to the report folder, escaped for an HTML attribute."""
    return html.escape(path.relative_to(out).as_posix())


def _wrap_tables(rendered: str, name: str) -> str:
    """Each table in a box named ``data-table=name`` that scrolls, so a wide table never pushes
    the page sideways."""
    box = f'<div class="table-wrap" data-table="{html.escape(name)}"><table>'
    return rendered.replace("<table>", box).replace("</table>", "</table></div>")


def _tables(out: Path) -> str:
    """The claims table with its columns explained (:data:`xlr.analysis.tables.CLAIMS_COLUMNS`,
    as notebook 06 shows them), then every table under ``tables/``, each linked with its
    Markdown and CSV files."""
    files = [out / "claims.md", *sorted((out / "tables").glob("*.md"))]
    files = [path for path in files if path.is_file()]
    if not files:
        return "<p>No tables yet (notebook 06 writes them).</p>"
    parts = []
    for path in files:
        links = [f'<a href="{_href(out, path)}">Markdown</a>']
        if path.with_suffix(".csv").is_file():
            links.append(f'<a href="{_href(out, path.with_suffix(".csv"))}">CSV</a>')
        name = "claims" if path.name == "claims.md" else humanise(path.stem)
        text = path.read_text(encoding="utf-8")
        heading = f'<h3 id="table-{html.escape(path.stem)}">{html.escape(name)}</h3>'
        parts.append(
            f"{heading}<p>{' · '.join(links)}</p>{_wrap_tables(safe_markdown(text), path.stem)}"
        )
        if path.name == "claims.md":
            parts.append(
                '<p class="note">The columns:</p>' + safe_markdown(claims_columns_markdown())
            )
            if "not run (" in text:
                parts.append(
                    '<p class="note">A verdict <em>not run (arm missing)</em> is no failure: '
                    "this study's params did not train an arm the claim compares "
                    "(<code>train.arms</code>, <code>train.trainable</code>), so the claim is "
                    "listed and left out of its family.</p>"
                )
    return "".join(parts)


def write_index(
    out: Path,
    params: Params,
    params_file: Path,
    params_digest: str,
    runs: Sequence[NotebookRun],
) -> Path:
    """``index.html``: what the study is, the tables, the figures, the reports and provenance."""
    esc = html.escape
    kind = "smoke run" if is_smoke(params, params_file) else "study"
    title = esc(f"xlr {kind} '{params.run.name}': hybrid batches vs language adapters")
    rows = "".join(
        f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>"
        for key, value in provenance(params, params_file, params_digest, runs).items()
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{page_css()}</style></head>"
        f"<body class='xlr-index'><h1>{title}</h1>{banner(params, params_file, out)}"
        f"{summary(params)}<h2>Claims and tables</h2>{_tables(out)}"
        f"<h2>Figures</h2>{_figures(out)}<h2>Reports</h2>{_links(out)}"
        f"<h2>Provenance</h2><div class='table-wrap'><table class='provenance'>{rows}</table>"
        f"</div><p class='note'>{DIGESTS_EXPLAINED}</p></body></html>"
    )
    return atomic_write_text(out / INDEX_FILE, page)
