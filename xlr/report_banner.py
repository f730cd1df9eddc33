"""The banner of ``index.html``: what a reader must know before reading any number on the page.

A smoke run, a single run, generated data and LAION mono batches without a text-text target
are read from the params; a failed phenomenon, positive or negative control and benchmarks too
small to judge from the tables notebooks 05 and 06 saved in the report folder. Each line is
HTML with every value from a table escaped.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from xlr.analysis.claims import MIN_IMAGES
from xlr.analysis.negative_control import NEGATIVE_CONTROL_TABLE, chance_pattern
from xlr.analysis.phenomenon import PHENOMENON_TABLE, phenomenon_failures
from xlr.analysis.positive_control import (
    POSITIVE_CONTROL_TABLE,
    ZERO_DOSE,
    positive_control_shortfalls,
)
from xlr.arms import mono_batch_arms
from xlr.config import Params

# How unlikely the negative control's failures must be by chance for the banner to warn
CHANCE_TAIL = 0.05


def is_smoke(params: Params, params_file: Path) -> bool:
    """The smoke study: the pipeline's check on a few minutes of CPU, not a result."""
    return params.run.name == "smoke" or Path(params_file).stem == "smoke"


def positive_control_warning(out: Path) -> str | None:
    """A banner line when the positive control table notebook 05 saved under ``out/tables``
    (:func:`xlr.analysis.positive_control.save_positive_control`) has a required comparison that
    failed or could not be measured (a LAION validation split without translation has no
    caption rank distance), or a zero-dose comparison that found a difference where nothing was
    planted: the claims reading that measure rest on a measure not shown to see a planted bias,
    or every comparison on one that differs between a model and itself. None without the table
    or with every judged row passed."""
    path = out / "tables" / f"{POSITIVE_CONTROL_TABLE}.csv"
    if not path.is_file():
        return None
    summary = pd.read_csv(path, dtype=str, keep_default_na=False)
    missed = positive_control_shortfalls(summary)
    if missed.empty:
        return None
    esc = html.escape
    rows = []
    for row in missed.to_dict("records"):
        if row["role"] == ZERO_DOSE:
            why = (
                f"a difference where nothing was planted (dose {row['dose']}), {row['difference']}"
            )
        elif row["result"] == "n/a":
            why = f"not measured, {row['difference']}"
        else:
            why = f"not seen, planted - real {row['difference']} (if seen, it {row['if seen, it']})"
        bases = row.get("bases", "")  # tables saved before the per-base judgement lack it
        why += f"; {bases}" if bases else ""
        rows.append(esc(f"{row['measure']} ({row['benchmark']}, {row['pool']}): {why}"))
    unseen = missed[missed["role"] != ZERO_DOSE]
    what = []
    if not unseen.empty:
        measures = " and ".join(esc(m) for m in dict.fromkeys(unseen["measure"]))
        what.append(
            f"the claims reading {measures} rest on a measure not shown to see a planted bias on "
            "this run's validation split"
        )
    if len(unseen) < len(missed):
        what.append(
            "a comparison found a difference between the zero-shot model and itself (dose 0), "
            "so no dose's result, nor any claim's comparison, can be taken as it stands"
        )
    consequence = "; and ".join(what)
    return (
        "<strong>Positive control not passed.</strong> The language bias planted in the "
        "zero-shot model was not seen, or could not be measured, where the claims need it, or "
        f"a difference was found where nothing was planted: {'; '.join(rows)}. "
        f"{consequence[:1].upper()}{consequence[1:]} (notebook 05; the Positive control table "
        "below)."
    )


def phenomenon_warning(out: Path) -> str | None:
    """A banner line naming each failed control of the phenomenon table notebook 05 saved
    (``out/tables``, :func:`xlr.analysis.phenomenon.save_phenomenon`) with its value and what
    it needed: the claims were still issued (a run without ``report.require_controls``), but on
    a world that may not show what they measure. None without the table or with no failure."""
    path = out / "tables" / f"{PHENOMENON_TABLE}.csv"
    if not path.is_file():
        return None
    failed = phenomenon_failures(pd.read_csv(path, dtype=str, keep_default_na=False))
    if failed.empty:
        return None
    rows = [
        f"{row['control']}: {row['measure']} = {_number(row['value'])}"
        + (f" (p = {_number(row['p_value'])})" if row["p_value"] else "")
        + f", needs {row['threshold']}"
        for row in failed.to_dict("records")
    ]
    return (
        "<strong>Phenomenon controls not passed.</strong> "
        f"{html.escape('; '.join(rows))}. The claims below were issued on a world that may not "
        "show what they measure: read them as the measures' output, not as evidence about the "
        "question (notebook 05, its first table)."
    )


def negative_control_warning(out: Path, level: float = 0.05) -> str | None:
    """A banner line when the negative control table notebook 05 saved (``out/tables``,
    :func:`xlr.analysis.negative_control.save_negative_control`) has so many comparisons
    between two seeds of one arm at p < ``level`` that chance gives that many or more with a
    probability below :data:`CHANCE_TAIL`: seed noise passes for an effect, so an arm
    difference of the same size may be noise too. None without the table or with no row run.
    A failure or two above the ``level`` share expected is chance (no warning)."""
    path = out / "tables" / f"{NEGATIVE_CONTROL_TABLE}.csv"
    if not path.is_file():
        return None
    pattern = chance_pattern(pd.read_csv(path, dtype=str, keep_default_na=False), level)
    if pattern is None or pattern.chance >= CHANCE_TAIL:
        return None
    failed, n, chance = pattern
    return (
        f"<strong>Negative control not passed.</strong> {failed} of {n} comparisons between "
        f"two fine-tuning seeds of one arm differ at p &lt; {level:g}, where chance gives "
        f"{n * level:.1f} (P = {chance:.2g} if the comparisons were independent). Seeds differ "
        "more than the intervals allow: read an arm difference of that size as possibly seed "
        "noise, and run more seeds (notebook 05; the negative control table below)."
    )


def _number(text: str) -> str:
    """A saved number as three significant digits, or as saved when it is not one."""
    try:
        return f"{float(text):.3g}"
    except ValueError:
        return text


def text_text_warning(params: Params) -> str | None:
    """A banner line for a LAION study whose mono batches had no text-text target (one caption
    per image and language, and no round trips: ``data.laion.translate.paraphrase_via``) while
    its pair batches had one: the claims between them compare objectives as well as batch
    schedules (README, "The arms"). None otherwise."""
    laion = params.data.laion if params.data.source == "laion" else None
    if laion is None or (laion.translate is not None and laion.translate.paraphrase_via):
        return None
    arms = mono_batch_arms(params)
    if not arms:
        return None
    return (
        "<strong>Mono batches had no text-text target.</strong> On LAION an image has one "
        "caption per language, and this run made no round trips "
        "(data.laion.translate.paraphrase_via): the mono batches of "
        f"{html.escape(', '.join(arm.name for arm in arms))} trained the image-text term only, "
        "while pair batches also trained the text-text term on translations, so the claims "
        "comparing them compare objectives as well as batch schedules (README, The arms)."
    )


def few_images_warning(out: Path) -> str | None:
    """A banner line naming the benchmarks of the claims table notebook 06 saved
    (``out/claims.csv``) on which claims were measured with fewer than
    :data:`~xlr.analysis.claims.MIN_IMAGES` images (with the fewest): those verdicts are
    inconclusive by rule, however clear the effect looks. None without the table or without
    such a benchmark."""
    path = out / "claims.csv"
    if not path.is_file():
        return None
    claims = pd.read_csv(path, dtype={"benchmark": str}, keep_default_na=False)
    if "n_images" not in claims.columns:  # no claim was measured
        return None
    images = pd.to_numeric(claims["n_images"], errors="coerce")  # blank: a claim not run
    small = claims.assign(n_images=images)[images < MIN_IMAGES]
    fewest = small.groupby("benchmark", sort=False)["n_images"].min()
    listed = [f"{benchmark} ({int(n)} images)" for benchmark, n in fewest.items()]
    if not listed:
        return None
    return (
        f"<strong>Too few images to judge.</strong> {html.escape(', '.join(listed))}: claims "
        f"measured there on fewer than {MIN_IMAGES} images are inconclusive by rule (a few "
        "images can make an interval zero-width; notebook 06)."
    )


def banner(params: Params, params_file: Path, out: Path) -> str:
    """What a reader must know before reading any number on the page (empty for a real run
    whose controls passed); ``out`` is the report folder, whose saved tables it reads."""
    lines = []
    if is_smoke(params, params_file):
        lines.append(
            "<strong>Smoke run: numbers are checks, not findings.</strong> This run exercises "
            "every step on a small world in minutes; its verdicts say that the pipeline works, "
            "not which method is better."
        )
    if len(params.run.base_seeds) * len(params.run.seeds) == 1:
        lines.append(
            "<strong>One run (one base seed, one fine-tuning seed).</strong> Training noise is "
            "unmeasured: the intervals cover images only, and every claim's verdict is "
            "inconclusive by rule. Run more seeds (run.seeds) before reading any difference."
        )
    if params.data.source == "synthetic":
        lines.append(
            "<strong>Synthetic data.</strong> The images and captions are generated (rendered "
            "scenes, captions from hand-written lexicons) and the base model is pretrained here: "
            "the numbers describe this generated world, not LAION-5B or a released CLIP."
        )
    warnings = (
        text_text_warning(params), phenomenon_warning(out), positive_control_warning(out),
        negative_control_warning(out), few_images_warning(out),
    )  # fmt: skip
    lines += [w for w in warnings if w is not None]
    if not lines:
        return ""
    return (
        '<div class="banner" role="note">' + "".join(f"<p>{line}</p>" for line in lines) + "</div>"
    )
