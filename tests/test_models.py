"""The model factory: the tiny CLIP builds offline, trains and reloads exactly; clear errors."""

import json
import shutil
import socket
from pathlib import Path

import open_clip
import pytest
import torch
from conftest import tiny_raw_params
from open_clip.loss import ClipLoss

from xlr.config import ModelSection, TinyModelSection, config_hash, parse_params
from xlr.models import factory as models
from xlr.models.bases import base_key
from xlr.models.factory import (
    ModelBundle,
    create_model,
    load_model,
    model_tokenizer,
    save_model_dir,
    write_tiny_model_dir,
)
from xlr.models.tokenizer import build_tokenizer

CAPTIONS = [
    "a small red circle on the left", "two green triangles at the top",
    "ein kleiner roter Kreis links", "маленький красный круг слева",
    "左边有一个红色的小圆", "左側にある小さな赤い円", "دائرة حمراء صغيرة على اليسار",
    "बाईं ओर एक छोटा लाल वृत्त",
]  # fmt: skip
TINY = TinyModelSection(context_length=16, vocab_size=300)
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = [word for caption in CAPTIONS for word in caption.split()]
    return build_tokenizer(CAPTIONS, tmp_path_factory.mktemp("tok") / "tok", 300, words)


@pytest.fixture(scope="module")
def model_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    return write_tiny_model_dir(TINY, tokenizer_dir, IMAGE_SIZE, out, seed=0)


@pytest.fixture(scope="module")
def bundle(model_dir: Path) -> ModelBundle:
    return load_model(model_dir)


def encode(bundle: ModelBundle, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model = bundle.model.eval()
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(bundle.tokenizer(CAPTIONS))


def images(n: int = len(CAPTIONS)) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))


def test_tiny_model_builds_offline(tokenizer_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the tiny model must build without the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    folder = write_tiny_model_dir(TINY, tokenizer_dir, IMAGE_SIZE, tmp_path / "m", seed=0)
    loaded = load_model(folder)
    model = loaded.model
    assert type(model).__name__ == "CustomTextCLIP"
    config = model.text.config
    assert config.model_type == "xlm-roberta" and config.pad_token_id == 1
    assert config.vocab_size == len(loaded.tokenizer.tokenizer)
    assert config.max_position_embeddings == TINY.context_length + 2
    assert (config.hidden_size, config.num_hidden_layers) == (TINY.text_hidden, TINY.text_layers)
    assert model.visual.image_size == (IMAGE_SIZE, IMAGE_SIZE)
    assert model.visual.transformer.width == TINY.vision_width
    names = [name for name, _ in model.text.transformer.named_modules()]
    assert any(name.endswith("attention.self.query") for name in names)  # LoRA's targets
    assert any(name.endswith("attention.self.value") for name in names)


def test_encoders_give_normalised_embed_dim_vectors(bundle: ModelBundle) -> None:
    image_features, text_features = encode(bundle, images())
    assert image_features.shape == text_features.shape == (len(CAPTIONS), TINY.embed_dim)
    model = bundle.model
    with torch.no_grad():
        unit = model.encode_text(bundle.tokenizer(CAPTIONS), normalize=True)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(len(CAPTIONS)), atol=1e-5)
    assert torch.allclose(unit, torch.nn.functional.normalize(text_features, dim=-1), atol=1e-6)


def test_clip_loss_backward_gives_finite_gradients(model_dir: Path) -> None:
    model = load_model(model_dir).model.train()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    image_features = model.encode_image(images(), normalize=True)
    text_features = model.encode_text(tokenizer(CAPTIONS), normalize=True)
    loss = ClipLoss()(image_features, text_features, model.logit_scale.exp())
    loss.backward()
    assert torch.isfinite(loss)
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_save_load_round_trip_is_exact_even_after_a_move(model_dir: Path, tmp_path: Path) -> None:
    bundle = load_model(model_dir)
    with torch.no_grad():  # change the weights so the check is not passed by re-initialisation
        for parameter in bundle.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    saved = save_model_dir(bundle, tmp_path / "saved")
    moved = saved.rename(tmp_path / "moved")
    again = load_model(moved)
    for before, after in zip(encode(bundle, images()), encode(again, images()), strict=True):
        assert torch.equal(before, after)
    config = json.loads((moved / models.OPEN_CLIP_CONFIG).read_text())
    assert config["preprocess_cfg"]["size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved"]


def test_same_seed_same_initial_weights(tokenizer_dir: Path, model_dir: Path, tmp_path) -> None:
    rng_before = torch.get_rng_state()
    same = load_model(write_tiny_model_dir(TINY, tokenizer_dir, IMAGE_SIZE, tmp_path / "a", 0))
    other = load_model(write_tiny_model_dir(TINY, tokenizer_dir, IMAGE_SIZE, tmp_path / "b", 1))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    reference = load_model(model_dir).model.state_dict()
    assert all(torch.equal(reference[k], v) for k, v in same.model.state_dict().items())
    assert not all(torch.equal(reference[k], v) for k, v in other.model.state_dict().items())


def test_tokenizer_pads_and_truncates_to_context_length(bundle: ModelBundle) -> None:
    ids = bundle.tokenizer(["a red circle", " ".join(CAPTIONS)])
    assert ids.shape == (2, TINY.context_length)
    assert ids[0, 0] == 0 and (ids[0] == 2).sum() == 1 and ids[0, -1] == 1
    assert ids[1, 0] == 0 and ids[1, -1] == 2 and 1 not in ids[1].tolist()


def test_create_model_dispatches_on_kind(model_dir: Path, monkeypatch) -> None:
    tiny = create_model(ModelSection(kind="tiny", tiny=TINY), tiny_dir=model_dir)
    saved = create_model(ModelSection(kind="open_clip", name=f"local-dir:{model_dir}"))
    for before, after in zip(encode(tiny, images()), encode(saved, images()), strict=True):
        assert torch.equal(before, after)

    calls = []

    def fake_create(name, pretrained=None, **kwargs):
        calls.append(("create", name, pretrained))
        return tiny.model, tiny.preprocess_train, tiny.preprocess_val

    def fake_tokenizer(name):
        calls.append(("tokenizer", name))
        return tiny.tokenizer

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    monkeypatch.setattr(open_clip, "get_tokenizer", fake_tokenizer)
    real = create_model(ModelSection(kind="open_clip"))
    assert calls == [
        ("create", "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"),
        ("tokenizer", "xlm-roberta-base-ViT-B-32"),
    ]
    assert real.name == "xlm-roberta-base-ViT-B-32"
    assert real.model_cfg["text_cfg"]["hf_model_name"] == "xlm-roberta-base"


def test_the_tokenizer_alone_is_the_models_own(
    model_dir: Path, bundle: ModelBundle, monkeypatch
) -> None:
    """``model_tokenizer`` reads the tokenizer :func:`create_model` would return, from the same
    source, and builds no model: the token cache's need, where a real model is 1.4 GB."""
    monkeypatch.setattr(models, "_build", lambda *args: pytest.fail("a model was built"))
    expected = bundle.tokenizer(CAPTIONS)
    tiny = model_tokenizer(ModelSection(kind="tiny", tiny=TINY), tiny_dir=model_dir)
    saved = model_tokenizer(ModelSection(kind="open_clip", name=f"local-dir:{model_dir}"))
    assert torch.equal(tiny(CAPTIONS), expected) and torch.equal(saved(CAPTIONS), expected)
    named = []
    monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: named.append(name))
    model_tokenizer(ModelSection(kind="open_clip"))
    assert named == ["xlm-roberta-base-ViT-B-32"]  # what create_model asks open_clip for
    with pytest.raises(ValueError, match="needs tiny_dir"):
        model_tokenizer(ModelSection(kind="tiny", tiny=TINY))
    with pytest.raises(ValueError, match="brings its own weights"):  # as create_model refuses it
        model_tokenizer(ModelSection(kind="open_clip", name="hf-hub:a/b", pretrained="tag"))

    def offline(name: str) -> None:
        raise OSError("no tokenizer.json in the cache")

    monkeypatch.setattr(open_clip, "get_tokenizer", offline)
    with pytest.raises(RuntimeError, match="did not load: no tokenizer.json.*Offline nodes"):
        model_tokenizer(ModelSection(kind="open_clip"))


def test_unknown_pretrained_tag_names_model_and_tag() -> None:
    section = ModelSection(kind="open_clip", pretrained="no_such_tag")
    with pytest.raises(RuntimeError, match="'no_such_tag' did not load.*model.kind 'tiny'"):
        create_model(section)


def test_clear_errors_for_missing_or_mismatched_folders(
    tokenizer_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="missing: not a model folder"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json; build one"):
        write_tiny_model_dir(TINY, tmp_path / "no-tokenizer", IMAGE_SIZE, tmp_path / "m", seed=0)
    with pytest.raises(ValueError, match="needs tiny_dir"):
        create_model(ModelSection(kind="tiny", tiny=TINY))
    wider = TinyModelSection(context_length=16, vocab_size=300, text_hidden=128)
    with pytest.raises(ValueError, match="other model.tiny sizes"):
        create_model(ModelSection(kind="tiny", tiny=wider), tiny_dir=model_dir)
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    (broken / models.WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=f"no {models.WEIGHTS}"):
        load_model(broken)
    assert not (tmp_path / "m").exists()


def test_saved_folders_load_with_plain_open_clip(model_dir: Path, tmp_path: Path) -> None:
    """A folder written here names itself in its text config, so open_clip's own local-dir
    loader (and CLIP_benchmark, which calls it) rebuilds the same model from it."""
    bundle = load_model(model_dir)
    with torch.no_grad():
        for parameter in bundle.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    saved = save_model_dir(bundle, tmp_path / "saved")
    for folder in (model_dir, saved):
        config = json.loads((folder / models.OPEN_CLIP_CONFIG).read_text())["model_cfg"]
        assert config["text_cfg"]["hf_model_name"] == config["text_cfg"]["hf_tokenizer_name"]
        assert config["text_cfg"]["hf_model_name"] == str(folder)
        model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        plain = ModelBundle(model, model, model, tokenizer, "plain", config)
        for ours, theirs in zip(encode(load_model(folder), images()), encode(plain, images()),
                                strict=True):  # fmt: skip
            assert torch.equal(ours, theirs)


def test_the_text_tower_must_be_multilingual(model_dir: Path, tmp_path: Path) -> None:
    english = tmp_path / "english"  # an open_clip CLIP with its own (English BPE) text tower
    english.mkdir()
    vision = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8}
    text = {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}
    config = {"model_cfg": {"embed_dim": 16, "vision_cfg": vision, "text_cfg": text}}
    (english / models.OPEN_CLIP_CONFIG).write_text(json.dumps(config))
    section = ModelSection(kind="open_clip", name=f"local-dir:{english}", pretrained=None)
    with pytest.raises(ValueError, match=r"open_clip's own transformer .*, not multilingual"):
        create_model(section)
    roberta = shutil.copytree(model_dir, tmp_path / "roberta")  # an English Hugging Face tower
    hf_config = json.loads((roberta / models.HF_CONFIG).read_text()) | {"model_type": "roberta"}
    (roberta / models.HF_CONFIG).write_text(json.dumps(hf_config))
    with pytest.raises(ValueError, match=r"a Hugging Face 'roberta' model, not multilingual"):
        create_model(ModelSection(kind="open_clip", name=f"local-dir:{roberta}"))


def test_local_paths_start_at_the_project_root(model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("XLR_ROOT", str(model_dir.parent))
    relative = create_model(ModelSection(kind="open_clip", name=f"local-dir:{model_dir.name}"))
    assert relative.name == f"local-dir:{model_dir}"

    tiny = load_model(model_dir)
    calls = []

    def fake_create(name, pretrained=None, **kwargs):
        calls.append(pretrained)
        return tiny.model, tiny.preprocess_train, tiny.preprocess_val

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: tiny.tokenizer)
    checkpoint = model_dir.parent / "checkpoints" / "epoch_1.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.touch()
    create_model(ModelSection(kind="open_clip", pretrained="checkpoints/epoch_1.pt"))
    assert calls == [str(checkpoint)]
    with pytest.raises(ValueError, match="brings its own weights.*remove model.pretrained"):
        create_model(ModelSection(kind="open_clip", name="hf-hub:org/repo", pretrained="x.pt"))


def test_weights_replaced_in_place_are_another_base(
    model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Same params, weights replaced under the same name (a ``model.pretrained`` checkpoint, a
    ``local-dir:`` folder): another base key, so the image features cached on the old base
    (keyed on it, xlr.train.image_cache) are not served. Unchanged files: the same key."""
    monkeypatch.setenv("XLR_ROOT", str(tmp_path))
    tiny = parse_params(
        tiny_raw_params(tmp_path / "runs", ["en", "de", "ja"], ["en", "de"], ["ja"])
    )

    def key(**model: str | None) -> str:
        section = ModelSection(kind="open_clip", **model)
        return base_key(tiny.model_copy(update={"model": section}), 0)

    checkpoint = tmp_path / "checkpoints" / "epoch_1.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"old weights")
    before = key(pretrained="checkpoints/epoch_1.pt")
    assert key(pretrained="checkpoints/epoch_1.pt") == before
    checkpoint.write_bytes(b"new weights, longer")
    assert key(pretrained="checkpoints/epoch_1.pt") != before

    folder = shutil.copytree(model_dir, tmp_path / "clip")
    before = key(name="local-dir:clip", pretrained=None)
    assert key(name="local-dir:clip", pretrained=None) == before
    config = folder / "open_clip_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"note": "replaced"}))
    assert key(name="local-dir:clip", pretrained=None) != before
    tagged = tiny.model_copy(update={"model": ModelSection(kind="open_clip")})
    assert base_key(tagged, 0) == config_hash(tagged.model)  # a tag pins its weights
