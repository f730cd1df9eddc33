"""Learning rates chosen on the validation split: the sweep, the choice, its reuse, and no
handle on the evaluation split."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pandas as pd
import pytest
from test_tasks import DesignedEncoder, designed_set

from xlr import tuning
from xlr.arms import Arm
from xlr.config import Params, RateKey, load_params, parse_params
from xlr.data import prepare
from xlr.data.prepare import finetune_pool, prepare_data
from xlr.data.synthetic import corpus as corpus_module
from xlr.models.bases import load_base
from xlr.train import study
from xlr.train.finetune import arm_folder


def tiny_study(root: Path, **tune: list[float]) -> object:
    return parse_params(
        {
            "run": {"name": "t", "cache_dir": str(root / "cache"), "runs_dir": str(root / "runs"),
                    "device": "cpu", "seeds": [0], "workers": 1},
            "data": {"train_langs": ["en", "de"], "heldout_langs": ["nl"],
                     "synthetic": {"pretrain_images": 300, "finetune_images": 40,
                                   "eval_images": 20, "shard_size": 200}},
            "model": {"tiny": {"vocab_size": 1500, "pretrain_steps": 8,
                               "pretrain_batch_size": 32}},
            "train": {"arms": ["zeroshot", "hybrid"], "steps": 2, "batch_size": 8,
                      "checkpoint_every": 2, "tune": tune},
            "adapters": {"fallbacks": ["base"], "hybrid_alpha": None},
        }
    )  # fmt: skip


def test_rates_are_chosen_on_validation_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tiny_study(tmp_path, full=[1e-4, 1e-1], adapters=[1e-3])
    prepare_data(params, progress=False)
    pool = finetune_pool(params)

    def no_test_split(*args: object, **kwargs: object) -> None:
        raise AssertionError("tuning read the evaluation split")

    real_read_shards = corpus_module.read_shards

    def no_eval_shards(shard_dir: Path) -> object:  # every pool is read from its shards
        if "eval" in Path(shard_dir).parts:
            no_test_split()
        return real_read_shards(shard_dir)

    monkeypatch.setattr(prepare, "eval_sets", no_test_split)
    monkeypatch.setattr(corpus_module, "read_shards", no_eval_shards)
    with pytest.raises(AssertionError, match="evaluation split"):  # the guard does guard
        prepare.load_pool(Path(prepare.read_contract(params)["corpus"]), "eval")
    result = tuning.tune(params, pool)

    sweep = result.sweep
    assert sweep[["family", "lr"]].values.tolist() == [
        ["hybrid-full", 1e-4],
        ["hybrid-full", 1e-1],
        ["adapters", 1e-3],
    ]
    assert sweep["value"].between(0, 1).all() and sweep["chosen"].sum() == 2
    best = sweep[sweep["family"] == "hybrid-full"].sort_values("value").iloc[-1]
    assert result.rates == {"hybrid-full": best["lr"], "adapters": 1e-3}
    assert result.params.train.rates == result.rates
    assert result.params.train.lr == best["lr"]  # the headline full arm's: every scale's rate
    assert Arm("adapters").lr(result.params) == 1e-3
    # the configured rates stay as they were: the tuned ones live in train.rates
    assert (
        result.params.adapters == params.adapters and result.params.train.lora == params.train.lora
    )
    out = tuning.tuning_dir(params)
    assert pd.read_csv(out / tuning.SWEEP_FILE)["value"].tolist() == pytest.approx(
        sweep["value"].tolist()
    )
    assert tuning.tuned_params(params) == result.params  # what notebooks 03-06 read

    monkeypatch.setattr(tuning, "score", no_test_split)  # reused: nothing is trained or scored
    assert tuning.tune(params, pool).rates == result.rates

    monkeypatch.undo()
    for name in (tuning.CHOICE_FILE, tuning.SWEEP_FILE):  # a sweep stopped before its choice
        (out / name).unlink()

    loads = []

    def counted_base(*args: object) -> object:
        loads.append(args)
        return load_base(*args)

    for module in (study, tuning):
        monkeypatch.setattr(module, "load_base", counted_base)
    assert tuning.tune(params, pool).sweep["value"].tolist() == pytest.approx(
        sweep["value"].tolist()
    )
    assert len(loads) == 1  # the adapters' trial, used on its base; the full trials load none

    monkeypatch.undo()
    wider = tiny_study(tmp_path, full=[1e-4, 1e-1, 1e-2], adapters=[1e-3])
    again = tuning.tune(wider, pool)  # a new grid: a new sweep, in folders of its own
    assert again.sweep["lr"].tolist() == [1e-4, 1e-1, 1e-2, 1e-3]
    kept = again.sweep.set_index(["family", "lr"])["value"]
    assert kept[("hybrid-full", 1e-4)] == pytest.approx(
        sweep.set_index(["family", "lr"])["value"][("hybrid-full", 1e-4)]
    )


def test_adapter_trials_train_their_scale_at_the_full_familys_chosen_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trained logit scale moves at ``train.lr`` in every arm: the final adapters arm trains
    it at the headline full arm's chosen rate, so its trials do too (and name it in their
    folder)."""
    params = tiny_study(tmp_path, full=[1e-4, 1e-3, 1e-2], adapters=[1e-3, 1e-2])
    trials: list[tuple[str, float, float, str]] = []
    seeds: set[tuple[int | None, int | None]] = set()
    scores = {("hybrid-full", 1e-3): 0.5, ("adapters", 1e-2): 0.4}

    def scripted_encoder(trial: Params, arm: Arm, out: Path, pool: object) -> str:
        family = out.parent.name
        trials.append((family, trial.train.lr, arm.lr(trial), out.name))
        seeds.add((arm.base_seed, arm.seed))
        return f"{family} {arm.lr(trial)}"

    def scripted_score(trial: Params, encoder: str, arm: Arm, sets: object) -> float:
        family, lr = encoder.split()
        return scores.get((family, float(lr)), 0.1)

    monkeypatch.setattr(tuning, "ensure_bases", lambda params, progress: None)
    monkeypatch.setattr(tuning, "val_sets", lambda params: {})
    monkeypatch.setattr(tuning, "_encoder", scripted_encoder)
    monkeypatch.setattr(tuning, "score", scripted_score)
    result = tuning.tune(params, pool=None)  # type: ignore[arg-type]
    assert trials == [
        ("hybrid-full", 1e-4, 1e-4, "lr0.0001"),
        ("hybrid-full", 1e-3, 1e-3, "lr0.001"),
        ("hybrid-full", 1e-2, 1e-2, "lr0.01"),
        ("adapters", 1e-3, 1e-3, "lr0.001-scale0.001"),
        ("adapters", 1e-3, 1e-2, "lr0.01-scale0.001"),
    ]
    assert result.rates == {"hybrid-full": 1e-3, "adapters": 1e-2}
    # a seed of the trials' own: no study arm shares a trial's training noise
    assert seeds == {(0, params.train.tune.seed)} and params.train.tune.seed not in params.run.seeds
    assert result.sweep["chosen"].tolist() == [False, True, False, False, True]
    assert result.sweep["scale_lr"].tolist() == [1e-4, 1e-3, 1e-2, 1e-3, 1e-3]


def test_without_a_grid_nothing_is_tuned_and_a_missing_sweep_is_an_error(tmp_path: Path) -> None:
    plain = tiny_study(tmp_path)
    assert tuning.tune(plain, pool=None).params == plain  # type: ignore[arg-type]
    assert tuning.tuned_params(plain) == plain
    with pytest.raises(FileNotFoundError, match="run the tuning first"):
        tuning.tuned_params(tiny_study(tmp_path, full=[1e-3]))


def test_with_rates_replaces_only_the_named_families(tmp_path: Path) -> None:
    params = tiny_study(tmp_path)
    changed = tuning.with_rates(params, {"hybrid-lora": 0.5})
    assert changed.train.rates == {"hybrid-lora": 0.5} and changed.train.lr == params.train.lr
    assert Arm("hybrid", 0.25, "lora").lr(changed) == 0.5  # an alpha sweep shares the rate
    assert Arm("mono", trained="lora").lr(changed) == params.train.lora.lr  # not tuned: as set
    assert Arm("adapters_hybrid", 0.5).lr(changed) == params.adapters.lora.lr
    assert tuning.with_rates(changed, {"hybrid-full": 0.2}).train.lr == 0.2  # every scale's rate
    assert tuning.with_rates(changed, {"hybrid-full": 0.2}).train.rates["hybrid-lora"] == 0.5
    with pytest.raises(ValueError, match="no learning rate"):
        Arm("zeroshot").lr(changed)


def test_every_trained_family_has_a_rate_key_the_params_accept() -> None:
    """``train.rates`` keys are a closed list (a typo is refused when params load): it must name
    every family that trains, as :attr:`Arm.rate_key` spells it."""
    trained = [
        Arm(family, 0.5 if family == "hybrid" else None, kind)
        for family in ("mono", "cross", "multi", "hybrid")
        for kind in ("full", "lora")
    ]
    trained += [Arm("adapters"), Arm("adapters_hybrid", 0.5)]  # fmt: skip
    assert sorted(arm.rate_key for arm in trained) == sorted(get_args(RateKey))


def test_every_arm_family_is_tuned_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mono, cross and hybrid (full and LoRA) and both adapter arms each get the rate that is
    best for them on validation, not hybrid's; every trial after the headline full arm's moves
    its logit scale at the rate chosen there."""
    base = tiny_study(tmp_path, full=[1e-4, 1e-3], lora=[1e-2, 1e-1], adapters=[1e-3, 1e-2])
    train = base.train.model_copy(
        update={"arms": ["zeroshot", "mono", "cross", "hybrid"], "trainable": ["full", "lora"]}
    )
    adapters = base.adapters.model_copy(update={"hybrid_alpha": 0.5})
    params = base.model_copy(update={"train": train, "adapters": adapters})
    assert list(tuning.family_arms(params)) == [
        "hybrid-full", "mono-full", "cross-full", "hybrid-lora", "mono-lora", "cross-lora",
        "adapters", "adapters_hybrid",
    ]  # fmt: skip
    best = {
        "hybrid-full": 1e-3, "mono-full": 1e-4, "cross-full": 1e-3, "hybrid-lora": 1e-2,
        "mono-lora": 1e-1, "cross-lora": 1e-2, "adapters": 1e-3, "adapters_hybrid": 1e-2,
    }  # fmt: skip
    scales: dict[str, set[float]] = {}

    def scripted_encoder(trial: Params, arm: Arm, out: Path, pool: object) -> str:
        family = out.parent.name
        assert family == arm.rate_key
        scales.setdefault(family, set()).add(trial.train.lr)
        return f"{family} {arm.lr(trial)}"

    def scripted_score(trial: Params, encoder: str, arm: Arm, sets: object) -> float:
        family, lr = encoder.split()
        return 1.0 if best[family] == float(lr) else 0.0

    monkeypatch.setattr(tuning, "ensure_bases", lambda params, progress: None)
    monkeypatch.setattr(tuning, "val_sets", lambda params: {})
    monkeypatch.setattr(tuning, "_encoder", scripted_encoder)
    monkeypatch.setattr(tuning, "score", scripted_score)
    result = tuning.tune(params, pool=None)  # type: ignore[arg-type]
    assert result.rates == best
    assert {arm: Arm.parse(arm).lr(result.params) for arm in
            ["mono-full", "cross-lora", "hybrid-a0.5-lora", "adapters_hybrid-a0.5-base"]} == {
        "mono-full": 1e-4, "cross-lora": 1e-2, "hybrid-a0.5-lora": 1e-2,
        "adapters_hybrid-a0.5-base": 1e-2,
    }  # fmt: skip
    assert scales.pop("hybrid-full") == {1e-4, 1e-3}  # its trials move the scale at their rate
    assert set(map(frozenset, scales.values())) == {frozenset({1e-3})}  # the others at its best


@pytest.mark.parametrize(
    ("name", "trials"), [("smoke", 6), ("synthetic", 44), ("laion5b_xlmr_b32", 30)]
)
def test_shipped_sweeps_train_the_trials_their_docs_count(name: str, trials: int) -> None:
    """README and the params' comments give each study's tuning cost in trials (a real one is an
    arm trained for the whole run's steps)."""
    params = load_params(Path(__file__).parents[1] / "params" / f"{name}.yaml")
    arms = tuning.family_arms(params).values()
    assert sum(len(tuning.rate_grid(params, arm)) for arm in arms) == trials


def test_a_sweep_is_redone_only_for_settings_that_change_its_trials(tmp_path: Path) -> None:
    """The choice's key and the trials' key: a speed setting, an eval setting the score does not
    read or the study's seeds (trials train at train.tune.seed) leave both (a new trials' key
    retrains every trial: hours on the real study); the grid, the measure and what the score
    reads choose again from the same trials."""
    params = tiny_study(tmp_path, full=[1e-4, 1e-3])

    def changed(section: str, **update: object) -> Params:
        part = getattr(params, section).model_copy(update=update)
        return params.model_copy(update={section: part})

    same = [changed("train", loader_workers=7), changed("eval", confidence=0.9),
            changed("eval", control_doses=[0.5]), changed("eval", recall_at=[1]),
            changed("run", seeds=[0, 1, 2])]  # fmt: skip
    assert {tuning._key(p) for p in same} == {tuning._key(params)}
    grid = params.train.tune.model_copy(update={"full": [1e-4]})
    measure = params.train.tune.model_copy(update={"measure": "t2i R@1"})
    seed = params.train.tune.model_copy(update={"seed": 7})
    rescored = [changed("train", tune=grid), changed("train", tune=measure),
                changed("eval", captions="first")]  # fmt: skip
    retrained = [changed("train", lambda_tt=0.5), changed("train", tune=seed)]
    assert tuning._key(params) not in {tuning._key(p) for p in rescored + retrained}
    # a new grid, measure or scoring chooses again from the same trials
    assert {tuning._trials_key(p) for p in same + rescored} == {tuning._trials_key(params)}
    assert tuning._trials_key(params) not in {tuning._trials_key(p) for p in retrained}


def test_a_widened_grid_trains_only_its_new_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's folder is its family and rate under what shapes its weights: widening a grid
    whose choice sat at its edge reuses every trained trial and chooses again."""
    trained: list[tuple[str, bool]] = []

    def recording_encoder(trial: Params, arm: Arm, out: Path, pool: object) -> float:
        trained.append((out.name, out.is_dir()))
        out.mkdir(parents=True, exist_ok=True)  # as a finished trial leaves its folder
        return arm.lr(trial)

    monkeypatch.setattr(tuning, "ensure_bases", lambda params, progress: None)
    monkeypatch.setattr(tuning, "val_sets", lambda params: {})
    monkeypatch.setattr(tuning, "_encoder", recording_encoder)
    monkeypatch.setattr(tuning, "score", lambda trial, lr, arm, sets: lr)  # the highest wins
    grids = [tiny_study(tmp_path, full=[1e-4, 1e-3]), tiny_study(tmp_path, full=[1e-4, 1e-3, 1e-2])]
    narrow, wide = (tuning.tune(params, pool=None) for params in grids)  # type: ignore[arg-type]
    assert (narrow.rates, wide.rates) == ({"hybrid-full": 1e-3}, {"hybrid-full": 1e-2})
    assert trained == [("lr0.0001", False), ("lr0.001", False),
                       ("lr0.0001", True), ("lr0.001", True), ("lr0.01", False)]  # fmt: skip
    # the real trial resumes or reuses a folder only for its own run: the same under both grids
    arm = tuning.family_arms(grids[0])["hybrid-full"]
    identities = [
        arm_folder(arm, designed_set(), ["en"], tuning.with_rates(params, {"hybrid-full": 1e-3}),
                   tmp_path, resume=True).identity
        for params in grids
    ]  # fmt: skip
    assert identities[0] == identities[1]


def test_a_choice_at_the_edge_of_its_grid_is_flagged() -> None:
    """A rate chosen at the end of a grid of three or more may be beaten beyond it."""
    sweep = pd.DataFrame(
        {
            "family": ["full"] * 3 + ["lora"] * 3 + ["adapters"] * 2,
            "lr": [1e-4, 1e-3, 1e-2, 1e-3, 1e-2, 1e-1, 1e-3, 1e-2],
            "chosen": [False, True, False, False, False, True, True, False],
        }
    )
    flagged = sweep["chosen"] & tuning._at_grid_edge(sweep)
    assert flagged.tolist() == [False, False, False, False, False, True, False, False]


@pytest.mark.filterwarnings("ignore:designed")
def test_a_validation_set_without_the_held_out_languages_is_scored_on_those_it_has(
    tmp_path: Path,
) -> None:
    """LAION's validation split holds the seen languages only (the pool keeps their images, and
    translation adds seen languages): the score reads the study languages the set has."""
    params = tiny_study(tmp_path)  # seen en, de; held out nl, which the designed set lacks
    arm = Arm("hybrid", 0.5, "full").at(0, 0)
    value = tuning.score(params, DesignedEncoder(), arm, {"laion-val": designed_set()})
    assert 0.0 <= value <= 1.0
