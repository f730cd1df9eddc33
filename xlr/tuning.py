"""Learning rates chosen on the validation split, before any arm of the study trains.

Why: a rate picked by looking at test results makes every claim about that test optimistic
(the review found ``params/synthetic.yaml``'s rates chosen on base 0's test numbers), and a rate
tuned for one arm family and reused by the families it is compared with favours the first (a
review found mono, cross and multi training at the rate chosen for hybrid). Here every arm
family that trains (:attr:`~xlr.arms.Arm.rate_key`: each batch strategy with the full tower or
the shared LoRA, hybrid at the headline alpha; ``adapters``; ``adapters_hybrid``) trains one arm
per rate of its kind's ``train.tune`` grid, at the first base and at ``train.tune.seed`` (a seed
of its own: no study arm shares a trial's training noise); each is scored on the validation
sets (:func:`xlr.data.prepare.val_sets`) and the best rate becomes the family's
``train.rates`` entry (:meth:`~xlr.arms.Arm.lr`). The headline full arm goes first: a trained
logit scale moves at ``train.lr`` in every arm, its chosen rate, so the other trials train theirs
at that rate, as their final arms do. Nothing here reads the evaluation sets. The sweep table
and the choice are written under ``runs/<run>/tuning/`` and reused while the settings they were
made for (:func:`_key`) are unchanged; trials are kept by what shapes their weights, so a
widened grid trains only its new rates.

Top level, beside :mod:`xlr.cli` and :mod:`xlr.report`: tuning drives training and evaluation,
two stages neither of which may import the other.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xlr.analysis.measures import per_query_measure
from xlr.arms import HEADLINE_ALPHA, MODEL_DIR, TRAINABLE, Arm, headline_arms
from xlr.config import Params, config_hash
from xlr.data.imagetext import ImageTextSet
from xlr.data.prepare import run_dir, val_sets
from xlr.eval.encoders import AdapterEncoder, Encoder, ModelEncoder
from xlr.eval.runner import languages_in
from xlr.eval.tasks import evaluate_arm
from xlr.io import atomic_write_json, atomic_write_text
from xlr.models.bases import base_key, load_base
from xlr.runtime import resolve_device
from xlr.train.adapters import train_adapters
from xlr.train.study import ensure_arm, ensure_bases

CHOICE_FILE = "choice.json"
SWEEP_FILE = "sweep.csv"
TASKS = {"multilingual mAP": "multilingual", "t2i R@1": "t2i"}  # what scoring a measure runs
# in every sweep's key, so that neither the trials nor the choice of a sweep made under another
# protocol (one rate per kind of training, tuned on its headline arm, until session 23) are
# reused; change it by hand whenever the trials change in a way the params do not show
PROTOCOL = "per arm family, scale at the headline full rate"
# the headline full arm's family: its rate is train.lr, the rate of every trained logit scale
SCALE_FAMILY = Arm("hybrid", HEADLINE_ALPHA, "full").rate_key
STRATEGIES = ("hybrid", "mono", "cross", "multi")  # tuned in this order, the headline first


def tuning_dir(params: Params) -> Path:
    """``runs/<run.name>/tuning``: the sweep's arms, table and choice."""
    return run_dir(params) / "tuning"


def with_rates(params: Params, rates: dict[str, float]) -> Params:
    """``params`` with ``rates`` (arm family, as :attr:`~xlr.arms.Arm.rate_key` names it, to
    rate) in ``train.rates``; the headline full arm's (:data:`SCALE_FAMILY`) is also
    ``train.lr``, the rate every arm's trained logit scale moves at."""
    update: dict[str, object] = {"rates": {**params.train.rates, **rates}}
    if SCALE_FAMILY in rates:
        update["lr"] = rates[SCALE_FAMILY]
    return params.model_copy(update={"train": params.train.model_copy(update=update)})


def family_arms(params: Params) -> dict[str, Arm]:
    """The arm each family is tuned on, by ``train.rates`` key, at the first base and at
    ``train.tune.seed``, in tuning order: for each kind with a non-empty grid (full first, then
    the shared LoRA), every batch strategy of ``train.arms`` (hybrid first, at the headline
    alpha: an alpha sweep shares its rate); then ``adapters`` and ``adapters_hybrid``, which
    the adapters grid tunes."""
    headline, train = headline_arms(params), params.train
    arms = [
        Arm(family, headline.hybrid.alpha if headline.hybrid and family == "hybrid" else None,
            trained)
        for trained in TRAINABLE
        if getattr(train.tune, trained) and trained in train.trainable
        for family in STRATEGIES
        if family in train.arms
    ]  # fmt: skip
    evaluated = (headline.adapters, headline.adapters_hybrid) if train.tune.adapters else ()
    arms += [dataclasses.replace(arm, fallback=None) for arm in evaluated if arm is not None]
    base, seed = params.run.base_seeds[0], train.tune.seed
    return {arm.rate_key: arm.at(base, seed) for arm in arms}


def rate_grid(params: Params, arm: Arm) -> list[float]:
    """The rates ``arm``'s family is tried at: its kind's ``train.tune`` list (full, lora or
    adapters)."""
    return getattr(params.train.tune, str(arm.trained))


def _trials_key(params: Params) -> str:
    """The folder of a sweep's trials: what shapes their weights
    (:meth:`~xlr.config.Params.weights_hash`: not ``train.loader_workers``, a speed setting),
    their seed (``train.tune.seed``), the base (corpus included) they train at, and the
    :data:`PROTOCOL` of the trials. Not the grid: a trial is one family at one rate (its
    folder's name, :func:`_trial`), so a widened grid trains its new rates only."""
    run = params.run
    return config_hash(
        params.weights_hash("data", "model", "train", "adapters"), params.train.tune.seed,
        base_key(params, run.base_seeds[0]), PROTOCOL,
    )  # fmt: skip


def _key(params: Params) -> str:
    """What a sweep's choice was made for: its trials (:func:`_trials_key`), its grid and
    measure, and what its score reads of ``eval`` (the caption convention and the encoders'
    precision and batch size: not the benchmarks, the controls' doses or the confidence, which
    would redo the choice for nothing)."""
    scored = params.eval.model_dump(include={"captions", "precision", "batch_size"})
    return config_hash(_trials_key(params), params.train.tune, scored)


def _encoder(params: Params, arm: Arm, out: Path, pool: ImageTextSet) -> Encoder:
    """Train ``arm`` at ``out`` (resuming, skipped when finished) and return its encoder."""
    device = resolve_device(params.run.device)
    if arm.is_adapters:  # the adapters are used on their base
        base = load_base(params, arm.base_seed)
        trained = train_adapters(base, pool, params, arm, out, progress=False)
        headline = headline_arms(params)
        evaluated = headline.adapters or headline.adapters_hybrid  # the headline's fallback
        fallback = evaluated.fallback if evaluated is not None else None
        return AdapterEncoder(trained.bundle, fallback or "base", device=device)
    ensure_arm(params, arm, pool, progress=False, out_dir=out)  # a finished trial loads no base
    # the saved model (a LoRA merged), as evaluation loads it: a trial scores the same whether
    # it trained now or in an interrupted sweep
    return ModelEncoder.from_folder(out / MODEL_DIR, device)


def score(params: Params, encoder: Encoder, arm: Arm, sets: dict[str, ImageTextSet]) -> float:
    """The tuning measure of one trained arm on the validation sets: the macro mean over query
    languages of ``train.tune.measure`` over the study languages each set has (LAION's holds
    the seen ones only: :func:`~xlr.eval.runner.languages_in`), averaged over the sets."""
    data, measure = params.data, params.train.tune.measure
    values = []
    for val_set in sets.values():
        seen, heldout = languages_in(val_set, data.train_langs, data.heldout_langs)
        _, ranks = evaluate_arm(
            encoder, val_set, seen, heldout, tasks=[TASKS[measure]], eval_cfg=params.eval,
            arm=arm.name, seed=arm.seed, base_seed=arm.base_seed,
        )  # fmt: skip
        per_query = per_query_measure(ranks, measure, "all", seen, heldout)
        values.append(per_query.groupby("query_lang")["value"].mean().mean())
    return float(sum(values) / len(values))


@dataclass(frozen=True)
class Tuning:
    """The sweep (one row per family and rate), the chosen rates, and the params using them."""

    sweep: pd.DataFrame
    rates: dict[str, float]
    params: Params


def tune(params: Params, pool: ImageTextSet) -> Tuning:
    """Sweep ``train.tune`` on the validation split (or reuse the sweep made for these params)
    and return the params with the chosen rates; no grid, no sweep: ``params`` unchanged."""
    arms = family_arms(params)
    if not arms:
        return Tuning(pd.DataFrame(), {}, params)
    out = tuning_dir(params)
    saved = out / CHOICE_FILE
    if saved.is_file() and (choice := json.loads(saved.read_text()))["key"] == _key(params):
        rates = choice["rates"]
        return Tuning(pd.read_csv(out / SWEEP_FILE), rates, with_rates(params, rates))
    ensure_bases(params, progress=False)  # the sweep's arms start from the first base
    sets, rows, rates, trials = val_sets(params), [], {}, out / _trials_key(params)
    # the headline full arm first: the later trials' logit scale moves at its chosen rate
    for family, arm in arms.items():
        scale = {SCALE_FAMILY: rates[SCALE_FAMILY]} if SCALE_FAMILY in rates else {}
        values = {}
        for rate in rate_grid(params, arm):
            trial = with_rates(params, scale | {family: rate})
            encoder = _encoder(trial, arm, trials / _trial(family, rate, scale), pool)
            values[rate] = score(trial, encoder, arm, sets)
            rows.append({"family": family, "arm": arm.name, "lr": rate,
                         "scale_lr": trial.train.lr, "measure": params.train.tune.measure,
                         "value": values[rate]})  # fmt: skip
        rates[family] = float(max(values, key=values.__getitem__))  # the first best, as idxmax
    sweep = pd.DataFrame(rows)
    sweep["chosen"] = sweep["lr"].eq(sweep["family"].map(rates))
    sweep["at_edge"] = sweep["chosen"] & _at_grid_edge(sweep)
    atomic_write_text(out / SWEEP_FILE, sweep.to_csv(index=False))
    atomic_write_json({"key": _key(params), "rates": rates}, saved)
    return Tuning(sweep, rates, with_rates(params, rates))


def _trial(family: str, rate: float, scale: dict[str, float]) -> str:
    """A trial's folder under its sweep's: ``hybrid-full/lr1e-05``; a trial after the headline
    full arm's names the rate chosen there, which its logit scale trained at
    (``mono-lora/lr0.001-scale3e-06``), as its final arm's will (README, "One logit-scale
    policy")."""
    folder = f"{family}/lr{rate:g}"
    return folder if not scale else f"{folder}-scale{scale[SCALE_FAMILY]:g}"


def _at_grid_edge(sweep: pd.DataFrame) -> pd.Series:
    """Rows at the lowest or highest rate of their family's grid (of three or more rates): a
    rate chosen there may be beaten beyond the grid, so the sweep table flags it and the grid
    should be widened (on validation, as before) rather than the choice trusted."""
    rates = sweep.groupby("family", sort=False)["lr"]
    wide = rates.transform("count") >= 3
    edge = sweep["lr"].eq(rates.transform("min")) | sweep["lr"].eq(rates.transform("max"))
    return wide & edge


def tuned_params(params: Params) -> Params:
    """``params`` with the rates a finished :func:`tune` chose (notebook 03 starts here, after
    notebook 02 tuned and trained); without a grid, ``params`` as they are. A grid without its
    sweep is an error."""
    if not family_arms(params):
        return params
    saved = tuning_dir(params) / CHOICE_FILE
    choice = json.loads(saved.read_text()) if saved.is_file() else None
    if choice is None or choice["key"] != _key(params):
        raise FileNotFoundError(
            f"{saved}: no learning-rate choice for these params; run the tuning first "
            "(notebook 02 or `xlr tune PARAMS`)"
        )
    return with_rates(params, choice["rates"])
