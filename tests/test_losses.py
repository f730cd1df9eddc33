"""ContrastiveLoss: a hand-computed case, masking, gradients, open_clip parity, and DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.loss import ClipLoss

from xlr.train.losses import ContrastiveLoss

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from dist_loss_worker import LAMBDA_TT, global_inputs  # noqa: E402

IMAGE = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
QUERY = [[0.8, 0.6], [0.0, 1.0], [0.6, -0.8]]
TARGET = [[0.6, 0.8], [9.0, 9.0], [1.0, 0.0]]  # row 1 has no target: its values must not matter
MASK = [True, False, True]
SCALE = 2.0


def logsumexp(values: np.ndarray) -> float:
    return float(np.log(np.sum(np.exp(values))))


def symmetric_nce_by_hand(logits: np.ndarray) -> float:
    rows = np.mean([logsumexp(logits[i]) - logits[i, i] for i in range(len(logits))])
    cols = np.mean([logsumexp(logits[:, i]) - logits[i, i] for i in range(len(logits))])
    return float((rows + cols) / 2)


def tensors(*rows: list) -> list[torch.Tensor]:
    return [torch.tensor(r, requires_grad=True) for r in rows]


def test_three_by_three_matches_hand_computation() -> None:
    # image @ query.T = [[0.8, 0, 0.6], [0.6, 1, -0.8], [0.96, 0.8, -0.28]], times the scale 2:
    image_text = np.array([[1.6, 0.0, 1.2], [1.2, 2.0, -1.6], [1.92, 1.6, -0.56]])
    # queries 0 and 2 against targets 0 and 2: [[0.96, 0.8], [-0.28, 0.6]], times 2:
    text_text = np.array([[1.92, 1.6], [-0.56, 1.2]])
    np.testing.assert_allclose(SCALE * np.array(IMAGE) @ np.array(QUERY).T, image_text)
    expected_it = symmetric_nce_by_hand(image_text)
    expected_tt = symmetric_nce_by_hand(text_text)
    assert expected_it == pytest.approx(1.2941214683)  # (1.3633894 + 1.2248535) / 2
    assert expected_tt == pytest.approx(0.4245197895)  # (0.3523215 + 0.4967181) / 2

    image, query, target = tensors(IMAGE, QUERY, TARGET)
    total, parts = ContrastiveLoss(lambda_tt=0.5)(
        image, query, target, torch.tensor(MASK), torch.tensor(SCALE)
    )
    assert parts["loss_image_text"].item() == pytest.approx(expected_it, rel=1e-6)
    assert parts["loss_text_text"].item() == pytest.approx(expected_tt, rel=1e-6)
    assert total.item() == pytest.approx(expected_it + 0.5 * expected_tt, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(total.item())
    assert parts["text_pairs"].item() == 2


def test_masked_rows_are_ignored_and_get_no_gradient() -> None:
    image, query, target = tensors(IMAGE, QUERY, TARGET)
    loss_fn = ContrastiveLoss(lambda_tt=1.0)
    total, _ = loss_fn(image, query, target, torch.tensor(MASK), torch.tensor(SCALE))
    total.backward()
    assert torch.all(target.grad[1] == 0)
    assert torch.all(target.grad[[0, 2]] != 0)
    other = torch.tensor(TARGET)
    other[1] = torch.tensor([-3.0, 0.5])
    again, _ = loss_fn(image, query, other, torch.tensor(MASK), torch.tensor(SCALE))
    assert again.item() == total.item()


def test_no_targets_leaves_the_image_term() -> None:
    image, query, target = tensors(IMAGE, QUERY, TARGET)
    mask = torch.zeros(3, dtype=torch.bool)
    total, parts = ContrastiveLoss(lambda_tt=1.0)(image, query, target, mask, torch.tensor(SCALE))
    assert parts["loss_text_text"].item() == 0.0 and parts["text_pairs"].item() == 0
    assert total.item() == pytest.approx(parts["loss_image_text"].item())
    total.backward()
    assert target.grad is None  # targets take no part in the loss
    assert torch.any(image.grad != 0) and torch.any(query.grad != 0)


def test_gradients_reach_every_input() -> None:
    image, query, target = tensors(IMAGE, QUERY, TARGET)
    log_scale = torch.tensor(np.log(SCALE), requires_grad=True)
    total, _ = ContrastiveLoss(lambda_tt=1.0)(
        image, query, target, torch.tensor(MASK), log_scale.exp()
    )
    total.backward()
    for grad in (image.grad, query.grad, target.grad[[0, 2]], log_scale.grad):
        assert grad is not None and torch.all(torch.isfinite(grad)) and torch.any(grad != 0)


def test_image_text_term_equals_open_clip() -> None:
    generator = torch.Generator().manual_seed(1)
    image, query, target = torch.nn.functional.normalize(
        torch.randn(3, 6, 4, generator=generator), dim=-1
    )
    scale = torch.tensor(14.3)
    ours, _ = ContrastiveLoss(lambda_tt=0.0)(image, query, target, torch.ones(6, dtype=bool), scale)
    assert ours.item() == pytest.approx(ClipLoss()(image, query, scale).item(), rel=1e-6)


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="lambda_tt"):
        ContrastiveLoss(lambda_tt=-1.0)
    image, query, target = tensors(IMAGE, QUERY, TARGET)
    with pytest.raises(RuntimeError, match="process group"):
        ContrastiveLoss(world_size=2)(image, query, target, torch.tensor(MASK), torch.tensor(1.0))


def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    """Gathered negatives: each rank's loss is the global-batch loss; local grads are 2x."""
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        # the workers fail on a deprecated collective (torch.distributed.nn.all_gather is one)
        "PYTHONWARNINGS": "error::FutureWarning",
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        str(TESTS / "dist_loss_worker.py"),
        str(tmp_path),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]

    inputs = global_inputs()
    features = {
        name: inputs[name].clone().requires_grad_(True) for name in ("image", "query", "target")
    }
    log_scale = inputs["log_scale"].clone().requires_grad_(True)
    total, parts = ContrastiveLoss(lambda_tt=LAMBDA_TT)(
        features["image"], features["query"], features["target"], inputs["mask"], log_scale.exp()
    )
    total.backward()

    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["loss"].item() == pytest.approx(total.item(), rel=1e-6)
        assert result["loss_text_text"].item() == pytest.approx(parts["loss_text_text"].item())
        assert result["text_pairs"].item() == 6
        # every rank backpropagates the same global loss; DDP's averaging divides the 2 out
        assert result["log_scale_grad"].item() == pytest.approx(log_scale.grad.item(), rel=1e-5)
        part = slice(rank * 4, (rank + 1) * 4)
        for name, tensor in features.items():
            torch.testing.assert_close(result[f"{name}_grad"], 2 * tensor.grad[part])
