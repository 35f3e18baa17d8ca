"""The training objective (docs/reference-pipeline.md, "Training objective"): label-smoothed cross-entropy summed
over completion tokens, normalised by the loss-token count of the whole global batch, computed under the run's
precision."""
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


def batch_loss_sum(model, batch, label_smoothing: float) -> torch.Tensor:
    """Summed label-smoothed loss of a batch's loss positions: the LM head only there, fused with the loss
    (`model(..., loss_targets=)`, lm_loss.py), so no [positions, vocabulary] tensor is kept for backward."""
    return model(batch.input_ids, logits_mask=batch.loss_index, loss_targets=batch.targets,
                 label_smoothing=label_smoothing)


REDUCED_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


def apply_precision(model, precision: str) -> None:
    """bf16/fp16: store the frozen base weights in that dtype once (LoRA, norms, biases stay fp32); see
    `GPT2Network.store_frozen_weights`. fp32 leaves the model as it is."""
    if precision in REDUCED_PRECISION:
        model.store_frozen_weights(REDUCED_PRECISION[precision])


def autocast(precision: str, device_type: str):
    """The forward context of train.precision: fp32 runs as is, bf16/fp16 under torch.autocast."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=REDUCED_PRECISION[precision])
