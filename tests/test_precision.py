"""``eval.precision`` reaches the encoders' autocast: checked on the CPU, where ``auto`` keeps
plain fp32 and an explicit ``bf16``/``fp16`` is honoured."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from xlr.config import EvalSection
from xlr.eval.encoders import ModelEncoder, encode_texts
from xlr.runtime import autocast

CPU = torch.device("cpu")


class AutocastProbe(torch.nn.Module):
    """Stands in for a CLIP: records the autocast state each text batch is encoded under."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype | None] = []

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        enabled = torch.is_autocast_enabled("cpu")
        self.seen.append(torch.get_autocast_dtype("cpu") if enabled else None)
        return torch.nn.functional.normalize(torch.ones(len(tokens), 4), dim=-1)


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("auto", None), ("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)],
)
def test_encoders_autocast_to_the_configured_precision(precision, dtype):
    probe = AutocastProbe()
    texts = ["a", "b", "c"]
    out = encode_texts(
        probe, lambda batch: torch.zeros(len(batch), 2), texts, CPU, 2, precision=precision
    )
    assert probe.seen == [dtype, dtype]  # two batches of at most 2
    assert out.shape == (3, 4) and out.dtype == np.float32


@pytest.mark.parametrize(("precision", "checkpoint"), [("auto", "abc"), ("bf16", "abc-bf16")])
def test_model_encoder_honours_precision_and_caches_it_apart(precision, checkpoint):
    probe = AutocastProbe()
    tokenizer = lambda batch: torch.zeros(len(batch), 2)  # noqa: E731
    bundle = SimpleNamespace(model=probe, tokenizer=tokenizer, name="probe")
    encoder = ModelEncoder(bundle, CPU, 2, checkpoint="abc", precision=precision)
    encoder.encode_texts(["a"], "en")
    assert probe.seen == [torch.bfloat16 if precision == "bf16" else None]
    assert encoder.checkpoint == checkpoint  # the embedding cache's key
    assert encoder.describe()["precision"] == precision


def test_the_embedding_cache_key_names_the_precision_the_setting_means_on_the_device():
    """``auto`` is fp32 on the CPU and bf16 on CUDA: a CPU run and a GPU run sharing ``runs/``
    must not read each other's embeddings, and ``auto`` on CUDA is explicit bf16's entry."""
    bundle = SimpleNamespace(model=AutocastProbe(), tokenizer=None, name="probe")
    keys = {}
    for precision in ("auto", "fp32", "bf16"):
        encoder = ModelEncoder(bundle, CPU, 2, checkpoint="abc", precision=precision)
        keys["cpu", precision] = encoder.checkpoint
        encoder.device = torch.device("cuda")  # the key alone: no card is needed to read it
        keys["cuda", precision] = encoder.checkpoint
    assert keys["cpu", "auto"] == keys["cpu", "fp32"] == keys["cuda", "fp32"] == "abc"
    assert keys["cuda", "auto"] == keys["cuda", "bf16"] == keys["cpu", "bf16"] == "abc-bf16"


def test_autocast_auto_keeps_fp32_on_the_cpu():
    with autocast(CPU, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(CPU, "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_eval_precision_is_validated():
    assert EvalSection().precision == "auto"
    assert EvalSection(precision="fp16").precision == "fp16"
    with pytest.raises(ValidationError):
        EvalSection(precision="int8")


class LinearText(torch.nn.Module):
    """A text tower of one linear layer, open_clip's ``encode_text`` signature (normalize off
    by default), whose features come out in autocast's dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 512)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.linear(tokens)
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features


def test_bf16_embeddings_are_unit_rows_in_fp32():
    """CPU autocast normalises in bf16 (rows off unit length by up to 0.4%): the encoders
    normalise the features in fp32 after it, so scores are cosines whatever the precision."""
    torch.manual_seed(0)
    tokenizer = lambda batch: torch.randn(len(batch), 8) * 3  # noqa: E731
    texts = [str(i) for i in range(64)]
    out = encode_texts(LinearText(), tokenizer, texts, CPU, 16, precision="bf16")
    assert out.dtype == np.float32
    assert np.abs(np.linalg.norm(out, axis=1) - 1).max() < 1e-6
    with autocast(CPU, "bf16"):
        raw = LinearText().encode_text(tokenizer(texts), normalize=True)
    assert raw.dtype == torch.bfloat16 and (raw.float().norm(dim=1) - 1).abs().max() > 1e-4
