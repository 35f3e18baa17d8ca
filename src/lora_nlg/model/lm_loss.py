"""The tied LM head and the label-smoothed cross-entropy of training, fused over chunks of loss rows.

Unfused, the loss of N rows against the 50,257-token vocabulary materialises [N, V] logits, an fp32 copy and its
log-softmax, keeps them for backward and walks them again there: ~150 MB per 8 E2E examples in fp32 and, in bf16,
a third of a training step spent outside the two head matmuls. Here each chunk of rows goes head -> fp32 logits
-> loss -> d loss / d logits -> d loss / d h while the chunk is still in cache, and only d loss / d h ([N, d])
is kept for backward, which then is one multiplication by the incoming scalar gradient.

Loss per row (the reference's label smoothing, = `F.cross_entropy(label_smoothing=eps)`):
    logsumexp(z) - (1 - eps) z_target - eps mean_v(z)
and its gradient softmax(z) - (1 - eps) onehot(target) - eps / V.
"""
from __future__ import annotations

import torch

# Rows per chunk: 128 x 50257 fp32 logits (26 MB) keep the head matmuls efficient and stay in the L3 cache.
CHUNK_ROWS = 128


class _FusedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, eps: float, chunk: int):
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for start in range(0, h.shape[0], chunk):
            rows = slice(start, start + chunk)
            # torch.mm follows an enclosing autocast, so bf16 training runs the head in bf16 like every matmul
            logits = torch.mm(h[rows], weight.t())
            z = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
            total += _chunk_loss_and_grad_(z, targets[rows], eps, grad_h is not None)
            if grad_h is not None:
                grad_h[rows] = torch.mm(z.to(logits.dtype), weight)  # z now holds d loss / d logits
        ctx.save_for_backward(grad_h)
        return total.float()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (grad_h,) = ctx.saved_tensors
        return grad_h * grad_out.to(grad_h.dtype), None, None, None, None


def _chunk_loss_and_grad_(z: torch.Tensor, targets: torch.Tensor, eps: float, want_grad: bool) -> torch.Tensor:
    """Summed loss of a chunk of fp32 logits; with `want_grad`, `z` is overwritten by d loss / d z."""
    z_target = z.gather(1, targets[:, None]).squeeze(1)
    z_mean = z.mean(dim=1) if eps else None
    lse = torch.logsumexp(z, dim=1)
    loss = lse - (1.0 - eps) * z_target
    if eps:
        loss = loss - eps * z_mean
    if want_grad:
        torch.exp(z.sub_(lse[:, None]), out=z)
        if eps:
            z.sub_(eps / z.shape[1])
        z[torch.arange(z.shape[0], device=z.device), targets] -= 1.0 - eps
    return loss.double().sum()


def fused_head_loss_sum(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, label_smoothing: float,
                        chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """Sum over rows of the label-smoothed cross-entropy of `h @ weight.T` (fp32 scalar); h [N, d], targets [N].

    Needs a frozen head weight (its gradient is not computed); use `objective`-style unfused code otherwise.
    """
    if weight.requires_grad:
        raise ValueError("fused_head_loss_sum computes no gradient for the head weight; it must be frozen")
    return _FusedHeadLoss.apply(h, weight, targets, float(label_smoothing), chunk)
