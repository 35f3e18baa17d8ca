"""The training objective (reference-pipeline.md §2.5): label-smoothed cross-entropy summed over completion
tokens, normalised by the loss-token count of the whole global batch, computed under the run's precision."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

# The reference divides the masked loss sum by (number of loss tokens + 1e-4); kept for an identical objective.
REFERENCE_DENOM_EPS = 1e-4


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Sum over loss positions of (1-eps)*nll + eps*mean_v(-log p_v), in fp32 (eps = 0: plain cross-entropy).

    `F.cross_entropy(label_smoothing=eps)` computes exactly this: the smoothing mass eps is spread uniformly over
    the full vocabulary, target included, as the reference's `label_smooth` branch does.
    """
    return F.cross_entropy(logits.float(), targets, reduction="sum", label_smoothing=label_smoothing)


def autocast(precision: str, device_type: str):
    """The forward context of train.precision: fp32 runs as is, bf16/fp16 under torch.autocast."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
