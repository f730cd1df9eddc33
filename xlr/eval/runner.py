"""Evaluating the study's models (notebook 04): every arm on every eval set, the models of
notebook 05's controls on the validation sets, and the bases.

Notebook 04 and ``xlr prepare`` call these instead of looping themselves, so which models,
which encoder and where results go is written once and tested. Only :func:`evaluate_arms` reads
the evaluation split; the controls and the base report read the validation split, since the
study acts on what they find and must never choose by looking at test results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from xlr.arms import IDENTITY_KEY, SUMMARY_FILE, ZEROSHOT, Arm, study_arms
from xlr.config import EvalSection, Params
from xlr.data.imagetext import ImageTextSet
from xlr.data.prepare import corpus_dir, eval_sets, pretraining_shares, val_sets
from xlr.data.synthetic import load_pool
from xlr.eval.embedded import embed_model
from xlr.eval.encoders import AdapterEncoder, Encoder, ModelEncoder
from xlr.eval.planted import (
    control_doses,
    plant_bias,
    planted_language,
    planted_name,
    planted_table,
)
from xlr.eval.results import (
    MULTILINGUAL,
    PLANTED_FILE,
    remove_stale,
    results_dir,
    val_results_dir,
    write_ranks,
    write_results,
)
from xlr.eval.tasks import evaluate_arm
from xlr.io import atomic_write_text
from xlr.models.bases import load_base
from xlr.runtime import resolve_device
from xlr.workers import run_jobs


@dataclass(frozen=True)
class EvaluatedArm:
    """An encoder to evaluate and the arm (with base and seed) its results are filed under."""

    arm: Arm
    encoder: Encoder


def arm_encoders(params: Params, arm: Arm) -> Iterator[EvaluatedArm]:
    """The models of one arm as :class:`~xlr.eval.encoders.Encoder`: the zero-shot base, a
    trained arm's model folder, or an adapter arm once per fallback (its routing says which
    adapter encodes which language). A missing folder is a clear error naming the arm."""
    device = resolve_device(params.run.device)
    how = {"batch_size": params.eval.batch_size, "precision": params.eval.precision}
    if arm.is_trained:
        _check_nested_seeds(arm, params)
    if arm.is_adapters:
        base = load_base(params, arm.base_seed)
        for evaluated in arm.evaluated(params):
            encoder: Encoder = AdapterEncoder.from_folder(
                base, arm.directory(params), evaluated.fallback, device=device, **how
            )
            yield EvaluatedArm(evaluated, encoder)
    elif not arm.is_trained:
        yield EvaluatedArm(arm, ModelEncoder(load_base(params, arm.base_seed), device, **how))
    else:
        yield EvaluatedArm(arm, ModelEncoder.from_folder(arm.model_dir(params), device, **how))


def _check_nested_seeds(arm: Arm, params: Params) -> None:
    """Refuse a trained arm whose run was seeded before seeds were nested in bases (its
    ``summary.json`` has no :attr:`~xlr.arms.Arm.stream_seed`): its seeds are crossed with the
    bases, which the intervals cannot see. Training refuses such a folder too; this stops an
    evaluation of it run on its own."""
    path = arm.directory(params) / SUMMARY_FILE
    if not path.is_file():
        return  # not trained: loading its model says so
    identity = json.loads(path.read_text(encoding="utf-8")).get(IDENTITY_KEY, {})
    if identity.get("stream_seed") != arm.stream_seed:
        raise ValueError(
            f"{path}: arm {arm.name} was trained before seeds were nested in bases "
            f"(xlr.arms.Arm.stream_seed); delete {path.parent} and train it again (notebook 02 "
            "or 03, or xlr train)"
        )


def languages_in(
    eval_set: ImageTextSet, seen: Sequence[str], heldout: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The seen and held-out study languages ``eval_set`` has captions in: a benchmark lacks
    some (Multi30K has en, de, fr, cs), and so may LAION's validation split (it holds only the
    sampled languages); :func:`~xlr.data.prepare.eval_sets` reports what each one leaves out."""
    has = set(eval_set.langs)
    return [lang for lang in seen if lang in has], [lang for lang in heldout if lang in has]


@dataclass(frozen=True)
class _EvalJob:
    """Evaluate one arm's models on every eval set (a :func:`xlr.workers.run_jobs` job).

    Each model's ranks go to their own file under ``out_dir`` as soon as they exist
    (:func:`~xlr.eval.results.write_ranks`), so no process holds more than one model's ranks:
    an arm's ranks on Crossmodal-3600's pools run to millions of rows. Returns each
    evaluation's results and ranks files; the caller writes the one ``retrieval.parquet`` from
    every job's results. Embeddings are cached per model and set.
    """

    params: Params
    arm: Arm
    sets: tuple[ImageTextSet, ...]
    out_dir: Path
    tasks: tuple[str, ...] | None = None  # default: eval.tasks

    def __call__(self) -> list[tuple[pd.DataFrame, list[Path]]]:
        data = self.params.data
        outputs = []
        for evaluated in arm_encoders(self.params, self.arm):
            for eval_set in self.sets:
                results, ranks = evaluate_arm(
                    evaluated.encoder,
                    eval_set,
                    *languages_in(eval_set, data.train_langs, data.heldout_langs),
                    tasks=self.tasks,
                    eval_cfg=self.params.eval,
                    arm=evaluated.arm.name,
                    seed=evaluated.arm.seed,
                    base_seed=evaluated.arm.base_seed,
                    cache_dir=results_dir(self.params) / "embeddings",
                )
                outputs.append((results, write_ranks(ranks, self.out_dir)))
        return outputs


def _write_evaluation(
    outputs: Sequence[tuple[pd.DataFrame, list[Path]]], out_dir: Path
) -> tuple[pd.DataFrame, list[Path]]:
    """Write a whole evaluation's results (every model of the params, ranks already written)
    as ``out_dir``'s table, in the order given, and remove what an earlier evaluation left of
    models it no longer holds (:func:`~xlr.eval.results.remove_stale`); return the results and
    every ranks file."""
    results = pd.concat([results for results, _ in outputs], ignore_index=True)
    ranks = [path for _, paths in outputs for path in paths]
    written = write_results(results, None, out_dir)
    remove_stale(out_dir, [*written, *ranks])
    return results, ranks


def evaluate_arms(params: Params, progress: bool = True) -> tuple[pd.DataFrame, list[Path]]:
    """Evaluate every arm on every eval set of ``params``, ``run.workers`` models at a time;
    write the results and ranks, and return the results and the ranks files
    (:func:`~xlr.eval.results.load_results` finds them again). The run's results are then this
    evaluation's alone: those of models the params no longer name are removed.

    Results are written in the study's arm order whatever order the workers finish in, and
    embeddings are cached per arm, seed and checkpoint, so a re-run re-encodes nothing.
    """
    sets = tuple(eval_sets(params).values())
    out = results_dir(params)
    jobs = [_EvalJob(params, arm, sets, out) for arm in study_arms(params)]
    outputs = run_jobs(jobs, params.run.workers, desc="evaluate arms", progress=progress)
    return _write_evaluation([output for job in outputs for output in job], out)


# What the controls read: t2i (the share correlation), xt2t (the cross-lingual gain), the
# multilingual pools (the language-blind test on the seen pool, the planted bias in both).
CONTROL_TASKS: tuple[str, ...] = ("t2i", "xt2t", MULTILINGUAL)


def control_arms(params: Params) -> list[Arm]:
    """The models notebook 05's controls read, base by base: the zero-shot model, and
    ``cross-<train.trainable[0]>`` at every seed when the study trains the cross arm (without
    it, the fine-tuning control reports the arm missing and fails)."""
    cross = Arm("cross", trained=params.train.trainable[0])
    arms = []
    for base_seed in params.run.base_seeds:
        arms.append(ZEROSHOT.at(base_seed))
        if cross.family in params.train.arms:
            arms += [cross.at(base_seed, seed) for seed in params.run.seeds]
    return arms


@dataclass(frozen=True)
class _PlantedJob:
    """The positive control's models of one base (a :func:`xlr.workers.run_jobs` job): its
    zero-shot model with a bias planted in the first seen language (:mod:`xlr.eval.planted`) at
    each dose of :func:`control_doses`, ranked in the multilingual pools of every set. Returns
    each set and dose's results, ranks and what was planted (a :func:`planted_table` row), the
    ranks written as :class:`_EvalJob` does. The zero-shot model's embeddings are read from the
    cache its own job filled; every dose moves a copy of them, so nothing is encoded again."""

    params: Params
    base_seed: int
    sets: tuple[ImageTextSet, ...]

    def __call__(self) -> list[tuple[pd.DataFrame, list[Path], dict[str, Any]]]:
        data, cfg = self.params.data, self.params.eval
        lang = planted_language(data.train_langs)
        (real,) = arm_encoders(self.params, ZEROSHOT.at(self.base_seed))
        cache_dir = results_dir(self.params) / "embeddings"
        outputs = []
        for eval_set in self.sets:
            seen, heldout = languages_in(eval_set, data.train_langs, data.heldout_langs)
            model = (ZEROSHOT.name, self.base_seed, None)  # the zero-shot model's cache entry
            embedded = embed_model(
                real.encoder, eval_set, seen + heldout, cfg.captions, model, cache_dir
            )
            unit = plant_bias(embedded, lang, 1.0, self.params.run.seeds[0])
            for fraction in control_doses(cfg.control_doses):
                bias = unit.at(fraction)
                results, ranks = evaluate_arm(
                    bias.plant(embedded), eval_set, seen, heldout, tasks=[MULTILINGUAL],
                    eval_cfg=cfg, arm=planted_name(lang, fraction), base_seed=self.base_seed,
                )  # fmt: skip
                row = planted_table([(self.base_seed, eval_set.name, bias)]).iloc[0].to_dict()
                outputs.append((results, write_ranks(ranks, val_results_dir(self.params)), row))
        return outputs


def evaluate_controls(params: Params, progress: bool = True) -> tuple[pd.DataFrame, list[Path]]:
    """Evaluate the controls' models (:func:`control_arms`) and each base's planted zero-shot
    model on the validation sets, with :data:`CONTROL_TASKS`, ``run.workers`` at a time; write
    the results and ranks under :func:`~xlr.eval.results.val_results_dir` (what was planted in
    ``results/planted.csv`` there) and return the results and the ranks files.

    The evaluation split is never read. Embeddings share the evaluation's cache (keyed by
    model and set content, the validation set's name included), so a re-run re-encodes nothing.
    """
    sets = tuple(val_sets(params).values())
    out = val_results_dir(params)
    arms = control_arms(params)
    zero_shot = [i for i, arm in enumerate(arms) if not arm.is_trained]
    jobs: list[Any] = [_EvalJob(params, arm, sets, out, CONTROL_TASKS) for arm in arms]
    jobs += [_PlantedJob(params, arms[i].base_seed, sets) for i in zero_shot]
    after = [None] * len(arms) + zero_shot  # the planted model reuses its base's embeddings
    outputs = run_jobs(jobs, params.run.workers, "evaluate controls", progress, after)
    pairs = [pair for job in outputs[: len(arms)] for pair in job]
    planted = [output for job in outputs[len(arms) :] for output in job]
    pairs += [(results, paths) for results, paths, _ in planted]
    table = pd.DataFrame([row for *_, row in planted])
    atomic_write_text(out / PLANTED_FILE, table.to_csv(index=False))
    return _write_evaluation(pairs, out)


def text_to_image_recall(
    encoder: Encoder, eval_set: ImageTextSet, eval_cfg: EvalSection
) -> pd.DataFrame:
    """Per-language text-to-image R@1 and R@5 (hit rate) of a model on an eval set, through the
    study's own ``t2i`` task under ``eval_cfg`` (its captions setting; R@1 and R@5 whatever its
    ``recall_at``)."""
    langs = eval_set.langs
    recall = eval_cfg.model_copy(update={"recall_at": [1, 5]})
    results, _ = evaluate_arm(
        encoder, eval_set, langs, [], tasks=["t2i"], eval_cfg=recall, arm=ZEROSHOT.name
    )
    table = results.pivot_table(index="query_lang", columns="metric", values="value")
    counts = results.groupby("query_lang")["n_queries"].first()
    return pd.DataFrame(
        {
            "lang": langs,
            "queries": counts.loc[langs].to_numpy(),
            "r1": table.loc[langs, "R@1"].to_numpy(),
            "r5": table.loc[langs, "R@5"].to_numpy(),
            "chance_r1": 1.0 / len(eval_set),
        }
    )


def base_report(params: Params, base_seed: int) -> pd.DataFrame:
    """Per-language text-to-image R@1 of a pretrained tiny base on the generated validation
    pool, beside each language's share of the pretraining mix (most frequent first): the base
    should be best in the languages it saw most, as the real model is. Validation, not
    evaluation: a base that fails this is a world to change, and that choice may not look at
    the test split. Encoded as the study encodes (``eval.precision``, ``eval.batch_size``)."""
    (zero_shot,) = arm_encoders(params, ZEROSHOT.at(base_seed))
    recall = text_to_image_recall(
        zero_shot.encoder, load_pool(corpus_dir(params), "val"), params.eval
    )
    recall["pretrain_share"] = recall["lang"].map(pretraining_shares(params))
    return recall.sort_values("pretrain_share", ascending=False).reset_index(drop=True)
