"""The training loss: image-text InfoNCE plus ``lambda_tt`` times text-text InfoNCE.

Image-text follows open_clip's ``ClipLoss``: logits = logit_scale * image @ text.T, cross-entropy
with the diagonal as labels in both directions, averaged. The text-text term is the same loss
between query and target caption features, over the rows that have a target (``mono`` images with
a single caption in the batch language have none). Both terms share the model's learnable
``logit_scale``: query, target and image embeddings live on one unit sphere and their cosines on
one scale, and the study adds no second temperature.

Under ``torch.distributed`` the features of every rank are gathered with gradients (open_clip's
``local_loss=False, gather_with_grad=True``), so each rank computes the loss of the whole global
batch with global in-batch negatives. Each rank's loss is then the single-process loss of the
concatenated batch; the gradient reaching a rank's local features is ``world_size`` times the
single-process one (every rank backpropagates the same global loss), which DDP's gradient
averaging divides out.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def symmetric_info_nce(left: Tensor, right: Tensor, logit_scale: Tensor) -> Tensor:
    """Mean of the left-to-right and right-to-left InfoNCE losses, row ``i`` matching row ``i``.

    ``left`` and ``right`` are ``[N, D]`` L2-normalised features; ``logit_scale`` is the exp'ed
    (inverse-temperature) scale. Returns a scalar in nats.
    """
    logits = logit_scale * left @ right.T
    labels = torch.arange(len(left), device=left.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def gather_no_grad(values: Tensor) -> Tensor:
    """All ranks' values concatenated in rank order (masks and other non-differentiable data)."""
    parts = [torch.empty_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, values.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for this rank's shard.

    The same gradient as ``torch.distributed.nn.all_gather`` (open_clip's choice), which torch
    2.14 deprecates in favour of a private module; written on public collectives instead. The
    backward all-reduces the whole gradient and keeps this rank's rows (gloo has no
    reduce-scatter; the features are ``[B, D]``, so the extra bytes are few)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, features: Tensor) -> Tensor:
        ctx.rows = len(features)
        return gather_no_grad(features)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.narrow(0, dist.get_rank() * ctx.rows, ctx.rows)


def gather_with_grad(features: Tensor) -> Tensor:
    """All ranks' features concatenated in rank order; gradients flow back to each shard.
    Every rank's shard has the same number of rows (``all_gather`` needs equal shapes)."""
    return _GatherWithGrad.apply(features)


class ContrastiveLoss(nn.Module):
    """Image-text plus ``lambda_tt`` times text-text symmetric InfoNCE over the global batch."""

    def __init__(self, lambda_tt: float = 1.0, world_size: int = 1) -> None:
        super().__init__()
        if lambda_tt < 0:
            raise ValueError(f"lambda_tt is a loss weight and must be >= 0, got {lambda_tt}")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        self.lambda_tt = lambda_tt
        self.world_size = world_size

    def forward(
        self,
        image_features: Tensor,
        query_features: Tensor,
        target_features: Tensor,
        target_mask: Tensor,
        logit_scale: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss (nats) and its detached components for logging.

        ``image_features``, ``query_features``, ``target_features``: this rank's ``[B, D]``
        L2-normalised features, row ``i`` of each from example ``i``. ``target_mask``: bool
        ``[B]``, ``False`` where example ``i`` has no target (its ``target_features`` row is
        ignored: fill it with anything, e.g. zeros). ``logit_scale``: the model's exp'ed scale.
        Components: ``loss``, ``loss_image_text``, ``loss_text_text`` and ``text_pairs`` (rows of
        the global batch in the text-text term).
        """
        if self.world_size > 1:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(
                    f"ContrastiveLoss(world_size={self.world_size}) needs an initialised "
                    "torch.distributed process group; use world_size=1 in a single process"
                )
            image_features = gather_with_grad(image_features)
            query_features = gather_with_grad(query_features)
            target_features = gather_with_grad(target_features)
            target_mask = gather_no_grad(target_mask.to(torch.uint8)).bool()
        target_mask = target_mask.bool()
        loss_image_text = symmetric_info_nce(image_features, query_features, logit_scale)
        pairs = int(target_mask.sum())
        if pairs:
            loss_text_text = symmetric_info_nce(
                query_features[target_mask], target_features[target_mask], logit_scale
            )
        else:
            loss_text_text = loss_image_text.new_zeros(())
        total = loss_image_text + self.lambda_tt * loss_text_text
        components = {
            "loss": total.detach(),
            "loss_image_text": loss_image_text.detach(),
            "loss_text_text": loss_text_text.detach(),
            "text_pairs": torch.tensor(pairs),
        }
        return total, components
