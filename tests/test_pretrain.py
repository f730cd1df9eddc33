"""The cached tiny base: builds offline, reports its pretraining, caches, never half-writes.

Its per-language recall on the validation pool (:func:`xlr.eval.runner.base_report`) is checked on
the base this module builds.
"""

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from xlr.cli import main
from xlr.config import parse_params
from xlr.eval.runner import base_report
from xlr.models.bases import REPORT_NAME, base_model_dir
from xlr.models.factory import OPEN_CLIP_CONFIG, load_model
from xlr.train import pretrain as pretrain_module
from xlr.train.pretrain import PRETRAIN_GRAD_CLIP, PRETRAIN_WEIGHT_DECAY, ensure_base_model


def tiny_params(cache: Path, **tiny: int) -> object:
    return parse_params(
        {
            "run": {"name": "t", "cache_dir": str(cache), "device": "cpu"},
            "data": {
                "train_langs": ["en", "de"],
                "synthetic": {
                    "pretrain_images": 300,
                    "finetune_images": 40,
                    "eval_images": 20,
                    "shard_size": 200,
                },
            },
            "model": {
                "tiny": {"vocab_size": 1500, "pretrain_steps": 8, "pretrain_batch_size": 32} | tiny
            },
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    params = tiny_params(tmp_path_factory.mktemp("cache"))
    return params, ensure_base_model(params, base_seed=0, progress=False)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    (path,) = model_dir.glob("*.safetensors")
    return load_file(path)


def test_base_folder_and_report(built) -> None:
    params, model_dir = built
    report = json.loads((model_dir / REPORT_NAME).read_text())
    assert report.keys() == {"base_seed", "pretrain"} and report["base_seed"] == 0
    assert report["pretrain"].keys() == {"losses", "steps_per_s", "wall_s"}
    assert len(report["pretrain"]["losses"]) == params.model.tiny.pretrain_steps
    assert report["pretrain"]["steps_per_s"] > 0
    table = base_report(params, base_seed=0)
    assert set(table["lang"]) == set(params.data.synthetic.langs)
    assert table["pretrain_share"].sum() == pytest.approx(1.0)
    assert table["r1"].between(0, 1).all() and (table["r5"] >= table["r1"]).all()
    assert (table["chance_r1"] == 1 / params.data.synthetic.validation_images).all()


def test_cache_hit_does_not_retrain(built, monkeypatch) -> None:
    params, model_dir = built
    stamp = (model_dir / REPORT_NAME).stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("a cached base was pretrained again")

    monkeypatch.setattr(pretrain_module, "pretrain", boom)
    assert ensure_base_model(params, base_seed=0, progress=False) == model_dir
    assert (model_dir / REPORT_NAME).stat().st_mtime_ns == stamp


def test_same_seed_same_weights_other_seed_differs(built, tmp_path: Path) -> None:
    params, model_dir = built
    again = tiny_params(tmp_path)
    same = ensure_base_model(again, base_seed=0, progress=False)
    other = ensure_base_model(again, base_seed=1, progress=False)
    reference, repeat, different = weights(model_dir), weights(same), weights(other)
    assert all(torch.equal(reference[k], repeat[k]) for k in reference)
    assert not all(torch.equal(reference[k], different[k]) for k in reference)


def test_interrupted_build_leaves_nothing(built, tmp_path: Path, monkeypatch) -> None:
    params = tiny_params(tmp_path)

    recipes = []

    def interrupted(*args, **kwargs):
        recipes.append({key: kwargs[key] for key in ("weight_decay", "grad_clip")})
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_module, "pretrain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_base_model(params, base_seed=0, progress=False)
    # the pretraining recipe is the call's to state, not the loop's to assume
    assert recipes == [{"weight_decay": PRETRAIN_WEIGHT_DECAY, "grad_clip": PRETRAIN_GRAD_CLIP}]
    out = base_model_dir(params, 0)
    assert not out.exists() and not list(out.parent.glob("*.tmp"))


def test_cli_prepare_prints_recall_per_language(tmp_path: Path, capsys) -> None:
    params_file = tmp_path / "p.yaml"
    run = {"name": "t", "runs_dir": f"{tmp_path}/runs", "cache_dir": f"{tmp_path}/cache"}
    params_file.write_text(
        f"run: {json.dumps(run | {'device': 'cpu'})}\n"  # JSON is YAML
        "data: {train_langs: [en, de], synthetic: {pretrain_images: 300, finetune_images: 40,"
        " eval_images: 20, shard_size: 200}}\n"
        "model: {tiny: {vocab_size: 1500, pretrain_steps: 4, pretrain_batch_size: 32}}\n"
    )
    assert main(["prepare", str(params_file), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "base seed 0" in out and "pretrain_share" in out and " hi " in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: {name: t}\ndata: {train_langs: [en, xx]}\n")
    assert main(["prepare", str(bad)]) == 2
    assert "unknown language code 'xx'" in capsys.readouterr().err


def test_the_cached_base_loads_with_plain_open_clip(built) -> None:
    """Pretrained in a scratch folder, saved to its place: its text config names that place,
    not a temporary one, so open_clip's local-dir loader rebuilds the base as xlr does."""
    _, model_dir = built
    text_cfg = json.loads((model_dir / OPEN_CLIP_CONFIG).read_text())["model_cfg"]["text_cfg"]
    assert text_cfg["hf_model_name"] == text_cfg["hf_tokenizer_name"] == str(model_dir)
    assert sorted(p.name for p in model_dir.parent.iterdir()) == [model_dir.name]
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    tokens = open_clip.get_tokenizer(f"local-dir:{model_dir}")(["a red circle", "ein Kreis"])
    ours = load_model(model_dir).model.eval()
    with torch.no_grad():
        assert torch.equal(model.eval().encode_text(tokens), ours.encode_text(tokens))
