"""The optimizer side of training: the reference's AdamW, its LambdaLR schedule, the run length in updates, and
the optimizer/scheduler/grad-scaler triple a run checkpoints.

Schedule: the learning rate of optimizer update k (1-based) is lr * lambda(k-1), as the reference's LambdaLR, so the
first update runs at lr 0 when warmup_steps > 0; the scheduler steps once per update (the reference steps it per
micro-batch, which makes grad_acc change the schedule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    """lambda(s) of the reference's LambdaLR (s = scheduler steps taken = updates done before this one)."""
    def factor(s: int) -> float:
        if s < warmup_steps:
            return s / max(1, warmup_steps)
        if schedule == "constant":
            return 1.0
        if schedule == "linear":
            return max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps))
        progress = min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


class ReferenceAdamW(torch.optim.Optimizer):
    """AdamW exactly as the reference's optimizer.py (HF-style), which differs from torch.optim.AdamW in two ways:
    eps is added to the bias-UNcorrected sqrt(v) (the bias correction is folded into the step size), and the
    decoupled weight decay p -= lr*wd*p is applied AFTER the Adam update, to the updated weights. With eps 1e-6 and
    beta2 0.999 the first form differs from torch's by a factor sqrt(1-beta2^t) on eps: ~32x early in training.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
                 correct_bias: bool = True) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                exp_avg, exp_avg_sq, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                exp_avg.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t) if group["correct_bias"] else lr
                p.addcdiv_(exp_avg, denom, value=-step_size)
                if wd > 0.0:
                    p.add_(p, alpha=-lr * wd)


def derive_max_steps(n_examples: int, batch_size: int, world_size: int, grad_acc: int, epochs: int) -> int:
    """epochs x updates per epoch; an epoch has ceil(N / (batch_size x world_size)) global batches (the last one
    topped up with random duplicates, as the reference) and its last update may take fewer than grad_acc of them."""
    return epochs * math.ceil(math.ceil(n_examples / (batch_size * world_size)) / grad_acc)


@dataclass
class Optimization:
    """Optimizer, LR scheduler and (fp16 only) grad scaler of a run: what an update uses and a checkpoint keeps."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None

    @classmethod
    def build(cls, params: list[torch.nn.Parameter], t, max_steps: int) -> "Optimization":
        """From the train section `t` of the run config, scheduled over `max_steps` updates."""
        kind = ReferenceAdamW if t.optimizer == "adamw_reference" else torch.optim.AdamW
        optimizer = kind(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t.schedule, t.warmup_steps, max_steps))
        return cls(optimizer, scheduler, torch.amp.GradScaler("cuda") if t.precision == "fp16" else None)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {}}

    def load_state_dict(self, state: dict[str, Any], t, saved_max_steps: int, max_steps: int) -> None:
        """Restore a checkpoint's states; a run lengthened or shortened since continues on the new schedule."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if saved_max_steps != max_steps:
            factor = lr_lambda(t.schedule, t.warmup_steps, max_steps)
            self.scheduler.lr_lambdas = [factor]
            for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base_lr * factor(self.scheduler.last_epoch)
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])

    def apply(self, params: list[torch.nn.Parameter], clip: float) -> None:
        """Unscale (fp16), clip, step, zero the gradients and advance the schedule: the end of one update."""
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
