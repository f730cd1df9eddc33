"""The params schema: shipped files validate, each kind of bad input names its key and file."""

from pathlib import Path

import pytest
import yaml

from xlr.config import ParamsError, load_params, parse_params
from xlr.notebook import notebook_params
from xlr.params_yaml import read_yaml
from xlr.paths import resolve_path

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"


def minimal(**sections: dict) -> dict:
    raw = {"run": {"name": "t"}, "data": {"train_langs": ["en", "de"], "heldout_langs": ["nl"]}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


@pytest.mark.parametrize("name", ["smoke", "synthetic", "laion5b_xlmr_b32"])
def test_shipped_params_validate(name: str) -> None:
    params = load_params(PARAMS_DIR / f"{name}.yaml")
    assert params.run.name == name
    assert not set(params.data.train_langs) & set(params.data.heldout_langs)


def test_synthetic_study_has_several_bases_and_a_rare_seen_language() -> None:
    params = load_params(PARAMS_DIR / "synthetic.yaml")
    from xlr.langs import laion_mix

    mix = laion_mix(params.data.synthetic.langs)
    assert len(params.run.base_seeds) >= 3
    assert min(mix[lang] for lang in params.data.train_langs) <= 0.01
    assert params.train.alphas == [0.25, 0.5, 0.75]
    assert {"mono", "cross", "hybrid"} <= set(params.train.arms)  # sweep end points


def test_aliases_are_canonicalised() -> None:
    params = parse_params(minimal(data={"heldout_langs": ["jp", "NL"]}))
    assert params.data.heldout_langs == ["ja", "nl"]


def test_scientific_notation_reads_as_a_number(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("run: {name: t}\ndata: {train_langs: [en, de]}\ntrain: {lr: 1e-5}\n")
    assert load_params(path).train.lr == pytest.approx(1e-5)
    # a notebook given the file (papermill -p params_file, README) reads it alike; papermill's
    # own -f loader would inject the string '1e-5', which the schema refuses
    assert notebook_params(str(path)).train.lr == pytest.approx(1e-5)
    with pytest.raises(ValueError, match=r"train\.lr: Input should be a valid number"):
        parse_params(yaml.safe_load(path.read_text()), source="papermill -f")


@pytest.mark.parametrize(
    ("sections", "key", "hint"),
    [
        ({"run": {"sede": [1]}}, "run.sede", "unknown key"),
        ({"train": {"steps": "ten"}}, "train.steps", "valid integer"),
        ({"train": {"steps": 0}}, "train.steps", "greater than 0"),
        ({"train": {"alphas": [0.5, 1.5]}}, "train.alphas.1", "less than or equal to 1"),
        ({"train": {"alphas": [0.123456789]}}, "train.alphas", "six significant digits"),
        ({"adapters": {"hybrid_alpha": 0.1234567}}, "adapters.hybrid_alpha", "six significant"),
        ({"train": {"arms": ["mono", "hybrd"]}}, "train.arms.1", "'hybrid'"),
        ({"data": {"train_langs": ["en", "xx"]}}, "data.train_langs", "unknown language code 'xx'"),
        ({"data": {"heldout_langs": ["de"]}}, "data", "both seen and held out: de"),
        ({"data": {"train_langs": ["en", "en"]}}, "data.train_langs", "listed twice"),
        ({"data": {"heldout_langs": ["ko"]}}, "data", "not in the generated corpus: ko"),
        ({"model": {"tiny": {"text_heads": 3}}}, "model.tiny", "not divisible"),
        ({"run": {"name": "a b"}}, "run.name", "pattern"),
        ({"run": {"workers": 0}}, "run.workers", "greater than 0"),
        ({"train": {"lora": {"lr": 0}}}, "train.lora.lr", "greater than 0"),
        ({"adapters": {"lora": {"lr": "fast"}}}, "adapters.lora.lr", "valid number"),
        ({"data": {"source": "laion"}}, "data", "needs a data.laion section"),
        ({"eval": {"captions": "some"}}, "eval.captions", "'all' or 'first'"),
        ({"report": {"min_effect": {"map": 0}}}, "report.min_effect.map", "greater than 0"),
        (
            {"report": {"min_effect": {"rank_distance": 10}}},
            "report.min_effect.rank_distance",
            "less than 1",
        ),
        ({"report": {"min_effect": {"r1": 0.02}}}, "report.min_effect.r1", "unknown key"),
        ({"train": {"tune": {"seed": 0}}}, "(top level)", "train.tune.seed 0 is one of run.seeds"),
        ({"train": {"tune": {"seed": -1}}}, "train.tune.seed", "greater than or equal to 0"),
        ({"data": {"train_langs": ["en", False]}}, "data.train_langs.1", "as true/false: quote it"),
    ],
)
def test_bad_params_name_file_and_key(sections: dict, key: str, hint: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(minimal(**sections), "params/bad.yaml")
    message = str(info.value)
    assert message.startswith("params/bad.yaml:")
    assert f"  {key}:" in message
    assert hint in message


def test_minimum_effects_default_to_the_issue_values() -> None:
    """0.01 absolute for R@1 and mAP, 10% of arm b's level for rank distance."""
    effect = parse_params(minimal()).report.min_effect
    assert (effect.recall_at_1, effect.map, effect.rank_distance) == (0.01, 0.01, 0.1)
    assert parse_params(minimal(report={"min_effect": {"map": 0.02}})).report.min_effect.map == 0.02


def test_cross_section_rules() -> None:
    with pytest.raises(ParamsError, match="at least two data.train_langs"):
        parse_params(minimal(data={"train_langs": ["en"]}, train={"arms": ["hybrid"]}))
    # any open_clip name loads; the text tower is checked once the model is built (test_models)
    names = ["ViT-B-32", "local-dir:runs/base", "hf-hub:laion/CLIP-ViT-B-32-xlm-roberta-base"]
    for name in names:
        assert parse_params(minimal(model={"kind": "open_clip", "name": name})).model.name == name
    laion = {
        "source": "laion",
        "laion": {"inputs": {"metadata": ["x.parquet"]}, "quotas": {"counts": {"en": 5}}},
    }
    with pytest.raises(ParamsError, match="model.kind 'tiny'"):
        parse_params(minimal(data=laion))
    # a quota for a language the pool would leave out (it keeps the seen languages' images)
    laion["laion"]["quotas"]["counts"] |= {"ko": 5, "iw": 2}
    with pytest.raises(ParamsError, match=r"samples he, ko, not in data.train_langs"):
        parse_params(minimal(data=laion, model={"kind": "open_clip"}))
    laion["laion"]["quotas"] = {"shares": {"en": 0.5, "ko": 0.5}, "total": 10}  # the other form
    with pytest.raises(ParamsError, match=r"samples ko, not in data.train_langs"):
        parse_params(minimal(data=laion, model={"kind": "open_clip"}))
    laion["laion"]["quotas"]["shares"] = {"en": 1.0}
    with pytest.raises(ParamsError) as refused:  # refused elsewhere, not for its quotas
        parse_params(minimal(data=laion, model={"kind": "open_clip"}))
    assert "not in data.train_langs" not in str(refused.value)


def test_adapters_share_the_budget_and_the_shape_of_the_shared_lora() -> None:
    with pytest.raises(ParamsError, match="cannot give each of the 2 training languages"):
        parse_params(minimal(train={"steps": 1}))
    assert parse_params(minimal(train={"steps": 1}, adapters={"enabled": False,
                                                              "hybrid_alpha": None}))  # fmt: skip
    lora = {"trainable": ["full", "lora"], "lora": {"r": 8, "lr": 5e-3}}
    other_lr = parse_params(minimal(train=lora, adapters={"lora": {"r": 8, "lr": 1e-3}}))
    assert other_lr.adapters.lora.lr != other_lr.train.lora.lr  # the learning rate may differ
    for shape in ({"r": 4}, {"ffn": True}, {"target_modules": ["query"]}):
        with pytest.raises(ParamsError, match="adapters.lora and train.lora differ in"):
            parse_params(minimal(train=lora, adapters={"lora": shape}))
    with pytest.raises(ParamsError, match="adapters.steps_per_language"):
        parse_params(minimal(adapters={"steps_per_language": 3}))  # the budget is train.steps


BAD_YAML = [
    ("run: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    # PyYAML would keep the second section and drop steps: 500 without a word
    ("run: {name: x}\ntrain:\n  steps: 500\ntrain:\n  batch_size: 8\n",
     r"found the key 'train' twice(.|\n)*line 4"),
    ("run: {name: x, name: y}\n", "found the key 'name' twice"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "error"), BAD_YAML)
def test_bad_yaml_names_the_file_and_what_is_wrong(tmp_path: Path, text: str, error: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ParamsError, match=f"{bad}: (.|\n)*{error}"):
        load_params(bad)


def test_missing_file_and_merge_keys(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")
    # a merge key's keys may be overridden: no duplicate, and the merge still works
    text = "a: &b {steps: 5, lr: 1}\nc:\n  <<: *b\n  steps: 7\n"
    assert read_yaml(text)["c"] == {"steps": 7, "lr": 1}


def test_section_hash_tracks_content() -> None:
    a = parse_params(minimal())
    b = parse_params(minimal(train={"steps": 7}))
    c = parse_params(minimal(model={"tiny": {"vocab_size": 999}}))
    assert a.section_hash("model", "data") == b.section_hash("model", "data")
    assert a.section_hash("model", "data") != c.section_hash("model", "data")


def test_relative_paths_resolve_against_project_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XLR_ROOT", str(tmp_path))
    assert resolve_path("runs/x") == tmp_path / "runs/x"
    assert resolve_path("/abs/y") == Path("/abs/y")


def test_settings_left_unset_stay_out_of_dumps_and_so_of_hashes() -> None:
    """``Field(exclude_if=...)`` (pydantic 2.12 and later; 2.11 ignores it without a word, which
    would rename every run's folders): the tuned rates, the image-feature cache and benchmark
    image folders enter a dump, and with it a hash, only when set."""
    unset = parse_params(minimal())
    train, data = (unset.model_dump(mode="json")[name] for name in ("train", "data"))
    assert not {"rates", "cache_image_features"} & set(train)
    assert "benchmark_images" not in data
    tuned = parse_params(minimal(train={"rates": {"mono-full": 1e-3}}))
    assert tuned.model_dump(mode="json")["train"]["rates"] == {"mono-full": 1e-3}


def test_laion_shards_stand_in_for_inputs_and_unset_settings_keep_hashes() -> None:
    """``data.laion.shards`` replaces inputs and quotas; the new settings, unset, leave the data
    section's hash (part of every checkpoint's name) as it was before they existed."""
    real = load_params(PARAMS_DIR / "laion5b_xlmr_b32.yaml")
    # changed on purpose: data.laion.val_fraction holds images out of the training pool,
    # data.laion.translate gives validation captions in every seen language (positive control),
    # data.laion.near_duplicate_bits takes copies of benchmark and training photos out of it,
    # and data.laion.translate.paraphrase_via gives mono batches a text-text target
    assert real.section_hash("data") == "e674841c3166a2e5"
    laion = real.data.model_dump(mode="json")["laion"]
    assert "shards" not in laion and not {"spark_master", "ray_address"} & set(laion["download"])
    real_model = {"model": {"kind": "open_clip"}, "eval": {"benchmarks": ["xtd10"]}}
    given = {"source": "laion", "laion": {"shards": "data/laion_shards"}}
    assert parse_params(minimal(data=given, **real_model)).data.laion.shards
    # a cropped or padded download moves a photo's pHash: copies of benchmark images would stay
    crop = given | {"laion": {"shards": "d", "download": {"resize_mode": "center_crop"}}}
    with pytest.raises(ParamsError, match=r"resize_mode: Input should be 'keep_ratio' or 'no'"):
        parse_params(minimal(data=crop, **real_model))
    with pytest.raises(ParamsError, match="data.laion needs inputs and quotas .* or shards"):
        parse_params(minimal(data={"source": "laion", "laion": {}}, **real_model))
