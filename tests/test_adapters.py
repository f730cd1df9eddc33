"""Language adapters (notebook 03) on a tiny random CLIP: isolation, routing, fallbacks, costs.

Real open_clip and peft throughout; the model is a seeded random tiny CLIP (XLM-R 64 hidden,
2 layers) on a generated pool with three training languages and two held-out ones.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import build_tiny_world, logit_scale_rates, record_optimizers, tiny_raw_params
from safetensors.torch import load_file, save_file

from xlr import runtime, tuning
from xlr.arms import ADAPTERS_DIR, FALLBACKS, LOG_CSV, Arm, adapter_arms
from xlr.config import Params, parse_params
from xlr.eval.encoders import AdapterEncoder, ModelEncoder
from xlr.langs import nearest_language
from xlr.models import adapters as stored
from xlr.models.factory import load_model
from xlr.train import adapters as ad
from xlr.train import trainable
from xlr.train.checkpoint import CHECKPOINT, load_checkpoint
from xlr.train.loop import Trainer

LANGS = ["en", "de", "es", "pt", "ja"]
TRAIN, HELDOUT = ["en", "de", "es"], ["pt", "ja"]
R, HIDDEN, LAYERS, TARGETS = 4, 64, 2, 2  # one adapter: LAYERS * TARGETS * R * (in + out)
PER_ADAPTER = LAYERS * TARGETS * R * (HIDDEN + HIDDEN)


def raw_params(runs: Path, train: dict | None = None, **adapters: object) -> dict:
    """Nine steps: three per training language; the logit scale locked, so the adapters of the
    ``adapters`` arm are independent of one another."""
    defaults = {"steps": 9, "batch_size": 16, "checkpoint_every": 2, "warmup": 1, "lr": 1e-4,
                "logit_scale": "lock"}  # fmt: skip
    return tiny_raw_params(
        runs, LANGS, TRAIN, HELDOUT,
        train=defaults | (train or {}),
        adapters={"lora": {"r": R, "alpha": 8.0, "lr": 1e-2}} | adapters,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Corpus, tokenizer, a tiny model, and the ``adapters`` arm trained on en, de, es."""
    root = tmp_path_factory.mktemp("adapters")
    tiny = build_tiny_world(root, raw_params(root / "runs"))
    base = load_model(tiny.model_dir)
    trained = ad.train_adapters(
        base, tiny.pool, tiny.params(), Arm("adapters").at(0, 0), root / "arm", progress=False
    )
    texts = {lang: tiny.pool.captions_in(lang)["caption"].tolist()[:12] for lang in LANGS}
    return {"root": root, "pool": tiny.pool, "base": base, "trained": trained, "texts": texts}


def params_for(world: dict, train: dict | None = None, **adapters: object) -> Params:
    return parse_params(raw_params(world["root"] / "runs", train, **adapters))


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}


def adapter_of(name: str) -> str:
    parts = name.split(".")
    return parts[next(i for i, p in enumerate(parts) if p.startswith("lora_")) + 1]


def encodings(encoder: object, texts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    return {lang: encoder.encode_texts(batch, lang) for lang, batch in texts.items()}


def test_budget_split_schedules_and_seeds_are_pure() -> None:
    equal = dict.fromkeys(["en", "de", "es"], 1 / 3)
    assert ad.language_steps(7, equal) == {"en": 3, "de": 2, "es": 2}
    assert sum(ad.language_steps(150, dict.fromkeys(TRAIN, 1.0)).values()) == 150  # every arm's
    with pytest.raises(ValueError, match="cannot give each of the 3 adapters a step"):
        ad.language_steps(2, dict.fromkeys(TRAIN, 1.0))
    # quotas 5.0, 3.33, 1.67: floors 5, 3, 1 and the last step to the largest remainder (es)
    assert ad.language_steps(10, {"en": 0.5, "de": 1 / 3, "es": 1 / 6}) == {
        "en": 5, "de": 3, "es": 2,
    }  # fmt: skip
    with pytest.raises(ValueError, match="raise train.steps or lower train.tau"):
        ad.language_steps(10, {"en": 0.95, "de": 0.04, "es": 0.01})
    with pytest.raises(ValueError, match="not all 0"):
        ad.language_steps(10, {"en": 0.0})
    assert ad.language_schedule({"en": 2, "de": 2}, "sequential") == [
        ("en", 0), ("en", 1), ("de", 0), ("de", 1),
    ]  # fmt: skip
    assert ad.language_schedule({"en": 2, "de": 1}, "interleaved") == [
        ("en", 0), ("de", 0), ("en", 1),
    ]  # fmt: skip
    seed = trainable.language_seed
    assert seed(0, "en") == seed(0, "en") != seed(0, "de")
    specs = adapter_arms(parse_params(raw_params(Path("runs"))))
    assert [s.name for s in specs] == ["adapters", "adapters_hybrid-a0.5"]
    assert specs[1].directory(parse_params(raw_params(Path("/r")))) == Path(
        "/r/t/arms/adapters_hybrid-a0.5/base0/seed0"
    )


@pytest.mark.parametrize(("tau", "expected"), [(0.0, {"en": 5, "de": 4}), (1.0, {"en": 7, "de": 2}),
                                              (0.5, {"en": 6, "de": 3})])  # fmt: skip
def test_the_budget_follows_the_shared_arms_language_mix(tau: float, expected: dict) -> None:
    """40 English captions against 10 German (one per image): p(l) proportional to n ** tau,
    counted by hand, is how the shared arms' mono batches draw languages and how the adapters
    split 9 steps (0: equal, remainder to the first; 1: 0.8 / 0.2; 0.5: 2/3 / 1/3)."""
    rows = [(i, "en", 0, f"en {i}") for i in range(40)] + [
        (i, "de", 0, f"de {i}") for i in range(10)
    ]
    captions = pd.DataFrame(rows, columns=["image_id", "lang", "caption_idx", "caption"])
    params = SimpleNamespace(train=SimpleNamespace(batch_size=4, tau=tau))
    shares = ad._mono_shares(captions, ["en", "de"], params)
    by_hand = np.array([40.0, 10.0]) ** tau
    assert list(shares.values()) == pytest.approx((by_hand / by_hand.sum()).tolist())
    assert ad.language_steps(9, shares) == expected


def test_only_the_active_adapter_trains(world: dict) -> None:
    model = load_model(world["root"] / "model").model
    lora = params_for(world).adapters.lora
    per_adapter = trainable.add_language_adapters(model, TRAIN, lora, seed=0)
    assert per_adapter == PER_ADAPTER == trainable.count_trainable(model)
    for lang in TRAIN:
        model.text.set_adapter(lang)
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable.count_trainable(model) == PER_ADAPTER
        inside = "text.base_model.model.transformer."  # peft wraps the text tower
        assert all(n.startswith(inside) and adapter_of(n) == lang for n in names)


def test_arm_outputs_summary_and_frozen_base(world: dict) -> None:
    trained, base = world["trained"], world["base"]
    out = trained.out_dir
    assert stored.saved_adapter_langs(out) == sorted(TRAIN)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 * len(TRAIN) and summary["trainable_params"] == 3 * PER_ADAPTER
    assert summary["examples"] == 9 * 16  # the budget of every arm: train.steps x batch_size
    assert summary["steps_per_language"] == {lang: 3 for lang in TRAIN}
    for lang in TRAIN:
        cost = summary["per_language"][lang]
        assert cost["trainable_params"] == PER_ADAPTER and cost["steps"] == 3
        assert cost["bytes_on_disk"] > PER_ADAPTER * 4 and cost["wall_s"] > 0
    log = list(csv.DictReader((out / LOG_CSV).read_text().splitlines()))
    assert [row["query_langs"] for row in log] == [lang for lang in TRAIN for _ in range(3)]
    # each language's clock restarts: its first step runs at adapters.lora.lr (warmup 1)
    assert [float(row["lr"]) for row in log[::3]] == pytest.approx([1e-2] * len(TRAIN))
    base_state = base.model.state_dict()
    for name, value in trained.bundle.model.state_dict().items():
        if ".lora_B." in name:
            assert value.abs().sum() > 0  # trained away from peft's zero init
        elif ".lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(value, base_state[key]), key


def test_an_adapter_changes_only_its_languages_outputs(world: dict, tmp_path: Path) -> None:
    """Training de's adapter (or not) leaves en and es bit-identical; held-out = the base.
    Without de the budget shrinks by de's share, so en and es keep their three steps each."""
    params = params_for(world, {"steps": 6}, schedule="interleaved")
    without_de = ad.train_adapters(
        world["base"], world["pool"], params, Arm("adapters").at(0, 0), tmp_path,
        langs=["en", "es"], progress=False,
    )  # fmt: skip
    with_de = world["trained"]
    for name, value in lora_state(without_de.bundle.model).items():
        assert torch.equal(value, dict(with_de.bundle.model.named_parameters())[name]), name
    texts = world["texts"]
    a = encodings(AdapterEncoder(with_de.bundle), texts)
    b = encodings(AdapterEncoder(without_de.bundle), texts)
    base = encodings(ModelEncoder(world["base"]), texts)
    for lang in ("en", "es", *HELDOUT):
        assert np.array_equal(a[lang], b[lang]), lang
    for lang in HELDOUT:  # adapters disabled: the base model, exactly
        assert np.array_equal(a[lang], base[lang]), lang
    assert not np.allclose(a["de"], b["de"]) and not np.allclose(a["de"], base["de"])


def test_routing_fallbacks_and_exact_reload(world: dict) -> None:
    trained, texts = world["trained"], world["texts"]
    images = world["pool"].images
    base_images = ModelEncoder(world["base"]).encode_images(images)
    expected = {"base": "base", "nearest": "nearest:es", "average": "average"}
    for fallback in FALLBACKS:
        live = AdapterEncoder(trained.bundle, fallback)
        loaded = AdapterEncoder.from_folder(world["base"], trained.out_dir, fallback)
        assert {lang: live.route(lang) for lang in TRAIN} == {lang: lang for lang in TRAIN}
        assert live.route("pt") == expected[fallback] == loaded.route("pt")
        if fallback == "nearest":
            assert live.route("ja") == f"nearest:{nearest_language('ja', TRAIN)}"
        assert live.describe()["fallback"] == fallback and live.checkpoint == loaded.checkpoint
        ours, theirs = encodings(live, texts), encodings(loaded, texts)
        assert all(np.array_equal(ours[lang], theirs[lang]) for lang in LANGS)
        assert np.array_equal(loaded.encode_images(images), base_images)
    nearest = AdapterEncoder(trained.bundle, "nearest")
    assert np.array_equal(
        nearest.encode_texts(texts["pt"], "pt"), nearest.encode_texts(texts["pt"], "es")
    )
    average = AdapterEncoder(trained.bundle, "average").encode_texts(texts["pt"], "pt")
    base = ModelEncoder(world["base"]).encode_texts(texts["pt"], "pt")
    assert not np.allclose(average, base) and not np.allclose(
        average, nearest.encode_texts(texts["pt"], "pt")
    )
    checkpoints = {AdapterEncoder(trained.bundle, f).checkpoint for f in FALLBACKS}
    assert len(checkpoints) == 3  # cached held-out embeddings never cross fallbacks


def test_adapters_on_the_feed_forward_and_projection_reload_exactly(
    world: dict, tmp_path: Path
) -> None:
    """Adapters on every target family (attention, feed-forward pair, text projection) train,
    save and load back through :func:`load_adapters` to identical embeddings: a target the
    loader dropped would load as peft's zero update and evaluate as the base."""
    shape = {"r": R, "alpha": 8.0, "lr": 1e-2, "ffn": True, "projection": True}
    params = parse_params(
        raw_params(world["root"] / "runs", {"steps": 3, "lora": shape}, lora=shape)
    )
    trained = ad.train_adapters(
        world["base"], world["pool"], params, Arm("adapters").at(0, 0), tmp_path,
        langs=["de"], progress=False,
    )  # fmt: skip
    names = {name for name in lora_state(trained.bundle.model) if adapter_of(name) == "de"}
    assert any(".intermediate.dense.lora_" in n for n in names)
    assert any(".output.dense.lora_" in n for n in names)
    assert any(".proj.0.lora_" in n for n in names) and any(".proj.2.lora_" in n for n in names)
    live = AdapterEncoder(trained.bundle, "base")
    loaded = AdapterEncoder.from_folder(world["base"], trained.out_dir, "base")
    texts = world["texts"]["de"]
    assert np.array_equal(live.encode_texts(texts, "de"), loaded.encode_texts(texts, "de"))
    base = ModelEncoder(world["base"]).encode_texts(texts, "de")
    assert not np.allclose(loaded.encode_texts(texts, "de"), base)
    reloaded = lora_state(loaded.bundle.model)
    assert {n for n in reloaded if adapter_of(n) == "de"} == names
    assert all(torch.equal(reloaded[n], lora_state(trained.bundle.model)[n]) for n in names)


def test_average_adapter_is_the_mean_update(world: dict) -> None:
    transformer = world["trained"].bundle.model.text
    stored.add_average_adapter(transformer, TRAIN)
    average = stored.lora_deltas(transformer, stored.AVERAGE)
    per_lang = [stored.lora_deltas(transformer, lang) for lang in TRAIN]
    assert len(average) == LAYERS * TARGETS
    for layer, delta in average.items():
        mean = sum(deltas[layer] for deltas in per_lang) / len(TRAIN)
        assert mean.abs().max() > 0
        torch.testing.assert_close(delta, mean, atol=1e-6, rtol=1e-5)


def test_cross_step_updates_exactly_its_two_adapters(world: dict) -> None:
    params = params_for(world)
    ctx = runtime.init_distributed("cpu")
    spec = Arm("adapters_hybrid", 0.0).at(0, 0)  # every step a cross step
    run = ad.adapter_run(world["base"], world["pool"], params, spec, TRAIN, ctx)
    batch, _ = run.plan(0)
    assert batch.kind == "cross"
    pair = {batch.query_langs[0], batch.target_langs[0]}
    model = run.trainer.model
    before, frozen = lora_state(model), {n: p.clone() for n, p in model.state_dict().items()}
    run.trainer.step(batch)
    for name, value in lora_state(model).items():
        changed = not torch.equal(value, before[name])
        assert changed == (adapter_of(name) in pair), name
    for name, value in model.state_dict().items():
        if ".lora_" not in name:
            assert torch.equal(value, frozen[name]), name


def test_a_trained_logit_scale_moves_at_train_lr_beside_the_adapters(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: a trained scale moves at ``train.lr``, the adapters at ``adapters.lora.lr``."""
    made = record_optimizers(monkeypatch, ad)
    params = params_for(world, {"steps": 3, "logit_scale": "train"})
    ad.train_adapters(
        world["base"], world["pool"], params, Arm("adapters").at(0, 0), tmp_path, progress=False
    )
    [(model, optimizer)] = made
    scale, others = logit_scale_rates(model, optimizer)
    assert scale == [pytest.approx(1e-4)] and others == [pytest.approx(1e-2)] * len(others)
    assert others


def test_a_tuned_adapters_rate_reaches_the_optimizer(world: dict) -> None:
    """train.rates (what tuning chose) sets each adapter arm's rate, its own family's: the
    hybrid-batch adapters keep the configured one here; the scale stays at train.lr."""
    params = tuning.with_rates(params_for(world, {"steps": 3, "logit_scale": "train"}),
                               {"adapters": 4e-2, "hybrid-full": 1e-4})  # fmt: skip
    ctx = runtime.init_distributed("cpu")
    for arm, rate in [(Arm("adapters"), 4e-2), (Arm("adapters_hybrid", 0.5), 1e-2)]:
        run = ad.adapter_run(world["base"], world["pool"], params, arm.at(0, 0), TRAIN, ctx)
        scale, others = logit_scale_rates(run.trainer.model, run.trainer.optimizer)
        assert scale == [pytest.approx(1e-4)] and others == [pytest.approx(rate)] * len(others)


def test_hybrid_arm_trains_every_adapter(world: dict, tmp_path: Path) -> None:
    params = params_for(world, {"steps": 6})
    spec = Arm("adapters_hybrid", 0.5).at(0, 0)
    arm = ad.train_adapters(world["base"], world["pool"], params, spec, tmp_path, progress=False)
    rows = (tmp_path / LOG_CSV).read_text().splitlines()[1:]
    assert len(rows) == 6 and {row.split(",")[1] for row in rows} == {"mono", "cross"}
    assert arm.summary["name"] == "adapters_hybrid-a0.5" and arm.summary["schedule"] == "hybrid"
    for lang in TRAIN:
        assert any(
            v.abs().sum() > 0 for v in stored.lora_deltas(arm.bundle.model.text, lang).values()
        )


def test_crashed_run_resumes_to_identical_adapters(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = params_for(world, {"steps": 4}, schedule="interleaved")
    spec, langs = Arm("adapters").at(0, 1), ["en", "de"]
    reference = ad.train_adapters(
        world["base"], world["pool"], params, spec, tmp_path / "ref", langs=langs, progress=False
    )
    step, calls = Trainer.step, []

    def crash_at_third(self: Trainer, batch: object, loaded: object = None) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return step(self, batch, loaded)

    monkeypatch.setattr(Trainer, "step", crash_at_third)
    with pytest.raises(RuntimeError, match="killed"):
        ad.train_adapters(
            world["base"], world["pool"], params, spec, tmp_path / "run", langs=langs,
            progress=False,
        )  # fmt: skip
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 2
    monkeypatch.setattr(Trainer, "step", step)
    resumed = ad.train_adapters(
        world["base"], world["pool"], params, spec, tmp_path / "run", langs=langs, progress=False
    )
    expected = lora_state(reference.bundle.model)
    assert all(torch.equal(v, expected[n]) for n, v in lora_state(resumed.bundle.model).items())
    assert len((tmp_path / "run" / LOG_CSV).read_text().splitlines()) == 1 + 4
    assert not (tmp_path / "run" / CHECKPOINT).exists()  # finished: dropped
    monkeypatch.setattr(Trainer, "step", mock.Mock(side_effect=AssertionError("a step ran")))
    again = ad.train_adapters(
        world["base"], world["pool"], params, spec, tmp_path / "run", langs=langs, progress=False
    )
    assert again.summary == resumed.summary
    loaded = lora_state(again.bundle.model)
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(v, expected[n]) for n, v in loaded.items())


def test_costs_against_full_tower_and_shared_lora(world: dict, tmp_path: Path) -> None:
    shared = load_model(world["root"] / "model").model
    trainable.add_shared_lora(shared, params_for(world).train.lora)  # r = 8: twice one adapter
    shared.text.save_pretrained(tmp_path)
    costs = ad.adapter_costs(world["trained"].out_dir, world["base"].model, tmp_path)
    by_kind = costs.groupby("kind")["trainable_params"].sum()
    assert list(costs.loc[costs["kind"] == "adapter", "lang"]) == sorted(TRAIN)
    assert (costs.loc[costs["kind"] == "adapter", "trainable_params"] == PER_ADAPTER).all()
    assert by_kind["adapters"] == 3 * PER_ADAPTER and by_kind["shared_lora"] == 2 * PER_ADAPTER
    text = sum(
        p.numel() for n, p in world["base"].model.named_parameters() if n.startswith("text.")
    )
    assert by_kind["full_text_tower"] == text + 1
    summary = world["trained"].summary
    assert (
        costs.loc[costs["kind"] == "adapters", "bytes_on_disk"].item() == summary["bytes_on_disk"]
    )
    assert (costs["vs_full"] <= 1).all()


def test_clear_errors(world: dict, tmp_path: Path) -> None:
    trained, base = world["trained"], world["base"]
    encoder = AdapterEncoder(trained.bundle, "nearest")
    with pytest.raises(ValueError, match="unknown language code 'xx'"):
        encoder.route("xx")
    with pytest.raises(FileNotFoundError, match="no adapters here"):
        AdapterEncoder.from_folder(base, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no adapter directory for \['pt'\]"):
        stored.load_adapters(base, trained.out_dir, langs=["en", "pt"])
    with pytest.raises(TypeError, match="ModelEncoder"):
        AdapterEncoder(base)
    wide = params_for(world, lora={"r": 128})
    with pytest.raises(ValueError, match=r"adapters.lora.r = 128 exceeds the width 64"):
        ad.train_adapters(
            base, world["pool"], wide, Arm("adapters").at(0, 0), tmp_path, progress=False
        )
    with pytest.raises(ValueError, match="held out|heldout"):
        ad.train_adapters(
            base, world["pool"], params_for(world), Arm("adapters").at(0, 0), tmp_path,
            langs=["en", "ja"], progress=False,
        )  # fmt: skip
    assert not list(tmp_path.iterdir())  # refused before writing anything


def test_adapters_saved_for_another_layout_are_refused(world: dict, tmp_path: Path) -> None:
    """An adapter whose layers the tower lacks (saved when peft wrapped text.transformer) would
    load as peft's zero initialisation: the arm would silently evaluate as the base."""
    old = tmp_path / "old"
    shutil.copytree(world["trained"].out_dir / ADAPTERS_DIR, old / ADAPTERS_DIR)
    weights = old / ADAPTERS_DIR / "de" / stored.ADAPTER_FILES[1]
    renamed = {k.replace("model.transformer.", "model."): v for k, v in load_file(weights).items()}
    save_file(renamed, weights)
    with pytest.raises(ValueError, match="older xlr"):
        AdapterEncoder.from_folder(world["base"], old)
