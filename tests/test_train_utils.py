"""Shared training-loop pieces: schedule shape, resumable batch draws, pixel normalisation."""

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import image_transform
from PIL import Image

from xlr.config import TinyModelSection
from xlr.data.imagetext import ArrayImages, finish_input, model_input, model_pixels
from xlr.models.factory import load_model, write_tiny_model_dir
from xlr.models.tokenizer import build_tokenizer
from xlr.runtime import chunks, normalise_pixels
from xlr.train.checkpoint import resume_point, save_checkpoint
from xlr.train.optim import (
    clocked_warmup_cosine,
    make_optimizer,
    warmup_cosine,
    warmup_cosine_factor,
)
from xlr.train.pretrain import batch_indices


class ListImages(list):
    """A list of PIL images as an image store."""


def test_warmup_then_cosine_to_zero() -> None:
    param = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = warmup_cosine(opt, warmup=4, total=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[8] == pytest.approx(0.5)  # half-way through the decay
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="must be positive"):
        warmup_cosine(opt, warmup=1, total=0)


def test_a_clocked_schedule_follows_each_step_on_its_own_clock() -> None:
    def rates(scheduler: torch.optim.lr_scheduler.LambdaLR, steps: int) -> list[float]:
        out = []
        for _ in range(steps):
            out.append(scheduler.optimizer.param_groups[0]["lr"])
            scheduler.optimizer.step()
            scheduler.step()
        return out

    def sgd() -> torch.optim.SGD:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)

    alone = rates(warmup_cosine(sgd(), warmup=2, total=5), 5)
    clock = [(k, 5) for k in range(5) for _ in range(2)]  # two languages interleaved, 5 each
    assert rates(clocked_warmup_cosine(sgd(), clock, warmup_share=0.4), 10) == [
        rate for rate in alone for _ in range(2)
    ]
    restarting = rates(clocked_warmup_cosine(sgd(), [(k, 5) for k in [*range(5)] * 2], 0.4), 10)
    assert restarting == alone + alone
    # clocks of different lengths keep the same shape: a 10-step language warms up for 4
    longer = rates(warmup_cosine(sgd(), warmup=4, total=10), 10)
    mixed = [(k, 5) for k in range(5)] + [(k, 10) for k in range(10)]
    assert rates(clocked_warmup_cosine(sgd(), mixed, 0.4), 15) == alone + longer


def test_a_trained_logit_scale_keeps_the_whole_runs_schedule() -> None:
    """Two adapters one after the other, 5 steps each: their weights' rate restarts with each
    language's clock, the logit scale's (one parameter every adapter trains) follows the shared
    arms' 10-step warmup-cosine at its own rate."""
    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(torch.zeros(2, 2))
    model.logit_scale = torch.nn.Parameter(torch.zeros(()))
    optimizer = make_optimizer(model, lr=1.0, weight_decay=0.1, scale_lr=0.5)
    clock = [(k, 5) for k in [*range(5)] * 2]
    scheduler = clocked_warmup_cosine(optimizer, clock, warmup_share=0.4)
    seen = []
    for _ in range(10):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    per_language = [warmup_cosine_factor(k, 2, 5) for k in range(5)] * 2
    whole_run = [0.5 * warmup_cosine_factor(k, 4, 10) for k in range(10)]
    assert [lrs[1] for lrs in seen] == pytest.approx(per_language)  # the decayed weights
    assert [lrs[2] for lrs in seen] == pytest.approx(whole_run)  # the logit scale


def test_batch_indices_depend_only_on_seed_and_step() -> None:
    a = batch_indices(100, 10, seed=3, step=7)
    assert np.array_equal(a, batch_indices(100, 10, seed=3, step=7))
    assert not np.array_equal(a, batch_indices(100, 10, seed=3, step=8))
    assert len(set(a.tolist())) == 10
    with pytest.raises(ValueError, match="exceeds"):
        batch_indices(5, 10, seed=0, step=0)


def test_no_weight_decay_on_gains_biases_and_temperature() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    model.logit_scale = torch.nn.Parameter(torch.ones([]))
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.2)
    no_decay, decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 3])]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    own = make_optimizer(model, lr=1e-2, weight_decay=0.2, scale_lr=1e-4)  # one scale policy
    no_decay, decay, scale = own.param_groups
    assert scale["params"] == [model.logit_scale] and scale["lr"] == 1e-4
    assert scale["weight_decay"] == 0.0 and len(no_decay["params"]) == 3 and decay["lr"] == 1e-2
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        make_optimizer(model, lr=1e-3, weight_decay=0.2)


def test_normalise_pixels_layout_and_values() -> None:
    pixels = torch.tensor([[[[255, 0, 51]]]], dtype=torch.uint8)  # one 1x1 image
    out = normalise_pixels(pixels, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.1))
    assert out.shape == (1, 3, 1, 1)
    assert out.flatten().tolist() == pytest.approx([1.0, -2.0, -3.0])


def test_model_input_skips_pil_only_at_the_towers_size() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    tower = SimpleNamespace(image_size=8, image_mean=(0.5,) * 3, image_std=(0.25,) * 3)
    model = SimpleNamespace(visual=tower)

    def never(_: object) -> torch.Tensor:
        raise AssertionError("decoded pixels at the tower's size went through PIL")

    ids = np.array([3, 1])
    expected = normalise_pixels(torch.from_numpy(pixels[ids]), tower.image_mean, tower.image_std)
    assert torch.equal(model_input(ArrayImages(pixels), ids, model, never), expected)
    assert torch.equal(model_input(ArrayImages(pixels), slice(1, 3), model, never)[0], expected[1])
    tower.image_size = (16, 16)  # another size: the model's own transform, image by image
    seen = []

    def transform(image: object) -> torch.Tensor:
        seen.append(np.asarray(image))
        return torch.zeros(3, 16, 16)

    assert model_input(ArrayImages(pixels), ids, model, transform).shape == (2, 3, 16, 16)
    assert [image.tolist() for image in seen] == [pixels[3].tolist(), pixels[1].tolist()]


@pytest.mark.parametrize("is_train", [True, False])
def test_uint8_pixels_normalised_later_equal_open_clips_whole_transform(is_train: bool) -> None:
    """A loader ships uint8 pixels and the device normalises them: bit for bit the floats of
    open_clip's transform image by image (random crops drawn in the same order), greyscale and
    palette images included. A transform of another shape, or a Normalize with other
    statistics than the tower's, runs whole and ships floats."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 52, 3), dtype=np.uint8) for _ in range(3)]
    pil = [Image.fromarray(a) for a in images]
    pil += [Image.fromarray(images[0][..., 0]), Image.fromarray(images[1]).convert("P")]
    tower = SimpleNamespace(
        image_size=32, image_mean=OPENAI_DATASET_MEAN, image_std=OPENAI_DATASET_STD
    )
    model = SimpleNamespace(visual=tower)
    transform = image_transform(32, is_train=is_train, mean=tower.image_mean, std=tower.image_std)
    store = ListImages(pil)
    torch.manual_seed(3)
    expected = torch.stack([transform(image) for image in pil])
    torch.manual_seed(3)
    pixels = model_pixels(store, np.arange(len(pil)), model, transform)
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(pil), 32, 32, 3)
    assert torch.equal(finish_input(pixels, model), expected)
    torch.manual_seed(3)
    assert torch.equal(model_input(store, np.arange(len(pil)), model, transform), expected)
    other = image_transform(32, is_train=is_train, mean=(0.5,) * 3, std=(0.5,) * 3)
    for whole in (other, lambda image: transform(image)):
        floats = model_pixels(store, np.arange(2), model, whole)
        assert floats.dtype == torch.float32 and finish_input(floats, model) is floats


def test_a_reloaded_model_folder_still_ships_uint8_pixels(tmp_path: Path) -> None:
    """A model folder's statistics come back from JSON as lists: its transform still counts as
    open_clip's (the comparison with the tower's is by value), so workers ship uint8 and the
    device's normalisation gives the whole transform's floats."""
    tokenizer = build_tokenizer(["a red square", "ein blaues Dreieck"] * 20, tmp_path / "tok", 120)
    folder = write_tiny_model_dir(TinyModelSection(), tokenizer, 32, tmp_path / "model", seed=0)
    bundle = load_model(folder)
    normalize = bundle.preprocess_train.transforms[-1]
    assert isinstance(normalize.mean, list)  # as read back from open_clip_config.json
    rng = np.random.default_rng(1)
    store = ListImages([Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8))] * 2)
    for transform in (bundle.preprocess_train, bundle.preprocess_val):
        torch.manual_seed(5)
        expected = torch.stack([transform(store[i]) for i in range(2)])
        torch.manual_seed(5)
        pixels = model_pixels(store, np.arange(2), bundle.model, transform)
        assert pixels.dtype == torch.uint8
        assert torch.equal(finish_input(pixels, bundle.model), expected)


def test_chunks_cover_range() -> None:
    assert [(s.start, s.stop) for s in chunks(7, 3)] == [(0, 3), (3, 6), (6, 7)]


def test_a_checkpoint_resumed_on_other_ranks_warns(tmp_path: Path) -> None:
    """The number of ranks is no part of a run's identity (a finished arm reads back on any
    machine), but a resume on another number is not exact: it warns, naming both."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = SimpleNamespace(
        model=model, optimizer=optimizer, scaler=None, trained=["weight", "bias"],
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
    )  # fmt: skip
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, run, step=3, elapsed_s=1.5, identity={"arm": "a"}, world_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same number of ranks: silent
        assert resume_point(run, path, {"arm": "a"}, True, 2) == (3, 1.5)
    with pytest.warns(UserWarning, match=r"checkpoint\.pt: written by 2 rank\(s\), resumed on 1"):
        assert resume_point(run, path, {"arm": "a"}, True, 1) == (3, 1.5)
