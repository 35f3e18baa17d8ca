"""LoRA fine-tuning: `python -m lora_nlg.train CONFIG [key=value ...]`, the same loop for 1..N processes.

Under torchrun, RANK/LOCAL_RANK/WORLD_SIZE come from the environment (gloo on CPU, NCCL on CUDA) and every rank
trains on its own disjoint share of each global batch. The objective is the reference's (reference-pipeline.md
§2.5): label-smoothed cross-entropy on completion tokens (incl. the final 50256), averaged over the loss tokens of
the whole global batch (all micro-batches and ranks of one optimizer update). Only positions that carry loss reach
the LM head and batches are padded to their own longest row, which gives the same loss as the reference's
512-padded computation at a fraction of the work.

Schedule: the learning rate of optimizer update k (1-based) is lr * lambda(k-1), as the reference's LambdaLR, so the
first update runs at lr 0 when warmup_steps > 0; the scheduler steps once per update (the reference steps it per
micro-batch, which makes grad_acc change the schedule).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from lora_nlg import checkpoint as ckpt
from lora_nlg.batching import (Batch, DataError, Example, collate, epoch_plan, load_examples, rank_share,
                               split_by_tokens, validation_batches)
from lora_nlg.config import ConfigError, RunConfig, diff, load_config, save_config

# The reference divides the masked loss sum by (number of loss tokens + 1e-4); kept for an identical objective.
REFERENCE_DENOM_EPS = 1e-4
# Keys that may change between a run and its resumption without changing what is being trained.
RESUMABLE_CHANGES = {"train.resume", "train.log_interval", "train.eval_interval", "train.eval_at_start",
                     "train.save_interval", "train.keep_last", "train.stop_after_steps", "train.device",
                     "train.compile", "train.max_steps", "train.epochs"}


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, inconsistent resume); the message says what to do."""


# ---------------------------------------------------------------------------------------------- objective
def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Sum over loss positions of (1-eps)*nll + eps*mean_v(-log p_v), in fp32 (eps = 0: plain cross-entropy).

    `F.cross_entropy(label_smoothing=eps)` computes exactly this: the smoothing mass eps is spread uniformly over
    the full vocabulary, target included, as the reference's `label_smooth` branch does.
    """
    return F.cross_entropy(logits.float(), targets, reduction="sum", label_smoothing=label_smoothing)


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


# ---------------------------------------------------------------------------------------------- processes
@dataclass
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sum of `values` over ranks, in float64 (token counts stay exact)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def init_distributed(device_pref: str) -> DistEnv:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    return DistEnv(rank, local_rank, world, device)


class StopSignal:
    """SIGTERM/SIGINT ask the loop to checkpoint and exit; a second signal acts at once (default behaviour)."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signum, self.previous[signum])

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class StopRun(Exception):
    """The run stops early after checkpointing (signal, or train.stop_after_steps)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------- trainer
def build_run_model(cfg: RunConfig, lora):
    """The run's base model with fresh LoRA adapters, built right after seeding with train.seed: the LoRA init is
    then identical on every rank, and a model.random_init base is a function of the seed, so decode rebuilds the
    very base a run was trained on by calling this again."""
    from lora_nlg.model import GPT2

    torch.manual_seed(cfg.train.seed)
    if cfg.model.random_init:
        return GPT2.from_preset(cfg.model.name, lora=lora)
    return GPT2.from_pretrained(cfg.pretrained_path(), lora=lora)


class Trainer:
    """setup() -> train() -> (final save inside train); state lives here so resume can restore all of it."""

    def __init__(self, cfg: RunConfig, env: DistEnv) -> None:
        self.cfg, self.env = cfg, env
        self.run_dir = cfg.run_dir()
        self.step = 0                # optimizer updates done
        self.epoch = 1               # current epoch (1-based)
        self.unit_pos = 0            # next global batch of the epoch's plan
        self.best_val_loss = math.inf
        self.best_step = -1
        self.last_val: tuple[int, float] | None = None
        self.log_acc = self._empty_log_acc()
        self.resumed_from: Path | None = None
        self._last_lr: float | None = None  # lr of the last update (what metrics.jsonl reports)
        self._last_plot = -math.inf
        self._plan: tuple[int, list[list[int]]] | None = None

    # -------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        """Everything that can fail (config, data, weights, checkpoint) happens before the run dir is written."""
        cfg, env, t = self.cfg, self.env, self.cfg.train
        if t.precision == "fp16" and env.device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs CUDA (it uses a grad scaler); use bf16 on CPU")
        resume_dir = self._find_resume_dir()
        self.train_set = load_examples(cfg.data.split_path(cfg.data.train_split), cfg.data.max_seq_len)
        self.valid_set: list[Example] = []
        if cfg.data.valid_split:
            self.valid_set = load_examples(cfg.data.split_path(cfg.data.valid_split), cfg.data.max_seq_len,
                                           limit=cfg.data.max_valid_examples)
        self.valid_batches = validation_batches(self.valid_set, env.rank, env.world_size, t.valid_batch_size)
        self.lengths = [e.n_input for e in self.train_set]
        self.unit_size = t.batch_size * env.world_size
        self.units_per_epoch = math.ceil(len(self.train_set) / self.unit_size)
        self.max_steps = t.max_steps or derive_max_steps(len(self.train_set), t.batch_size, env.world_size,
                                                         t.grad_acc, t.epochs)
        self._build_model()
        self._build_optimizer()
        if resume_dir is not None:
            self._load_checkpoint(resume_dir)
        else:  # dropout masks differ per rank, reproducibly; a resumed run restores the saved states instead
            torch.manual_seed(t.seed + env.rank)
        if env.is_main:
            self._write_run_dir()
        env.barrier()

    def _find_resume_dir(self) -> Path | None:
        """Rank 0 checks the run dir (no overwrite without resume) and finds the checkpoint to resume from."""
        decision: dict[str, Any] = {}
        if self.env.is_main:
            try:
                decision = self._decide_resume()
            except (ConfigError, TrainingError) as e:
                decision = {"error": str(e)}
        decision = self.env.broadcast(decision)
        if "error" in decision:
            raise TrainingError(decision["error"])
        return Path(decision["resume"]) if decision.get("resume") else None

    def _decide_resume(self) -> dict[str, Any]:
        run_dir, t = self.run_dir, self.cfg.train
        if not ckpt.is_run_dir_in_use(run_dir):
            return {}
        if not t.resume:
            raise TrainingError(f"run directory {run_dir} already exists: pass RESUME=1 (train.resume=true) to "
                                f"continue it, or choose another RUN=<name> (nothing was overwritten)")
        ckpt.remove_stale_temporaries(run_dir)
        saved_cfg_path = run_dir / "config.yaml"
        if saved_cfg_path.is_file():
            self._check_resumable(load_config(saved_cfg_path))
        resume = ckpt.latest_step_dir(run_dir)
        if resume is None:
            tqdm.write(f"note: no complete checkpoint in {run_dir}; starting from scratch")
        return {"resume": str(resume) if resume else ""}

    def _write_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Lines logged after the checkpoint we resume from would repeat: drop them (all of them on a fresh start).
        ckpt.truncate_metrics(self.run_dir / "metrics.jsonl", self.step if self.resumed_from else -1)
        save_config(self.cfg, self.run_dir / "config.yaml")

    def _check_resumable(self, saved: RunConfig) -> None:
        changes = diff(saved, self.cfg)
        blocking = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES and not k.startswith("decode.")}
        if blocking:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in blocking.items())
            raise TrainingError(f"cannot resume {self.run_dir}: the config differs from its config.yaml in {listed} "
                                f"(resume with the same settings, or start a new RUN)")
        length = {k: v for k, v in changes.items() if k in ("train.max_steps", "train.epochs")}
        if length:
            listed = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in length.items())
            tqdm.write(f"note: resuming with a different length ({listed}); the learning-rate schedule follows the "
                       f"new length from here on")

    def _build_model(self) -> None:
        cfg, env = self.cfg, self.env
        model = build_run_model(cfg, cfg.lora.to_lora_config())
        self.base_path = f"random:{cfg.model.name}" if cfg.model.random_init else str(cfg.pretrained_path())
        self.model = model.to(env.device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        forward_model: torch.nn.Module = self.model
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # Frozen weights are identical on every rank (same checkpoint): only the LoRA parameters take part
            # in DDP's initial broadcast and gradient all-reduce.
            frozen = [n for n, p in self.model.named_parameters() if not p.requires_grad]
            frozen += [n for n, _ in self.model.named_buffers()]
            DDP._set_params_and_buffers_to_ignore_for_model(self.model, frozen)
            forward_model = DDP(self.model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        self.ddp = forward_model if env.distributed else None
        if cfg.train.compile:
            forward_model = torch.compile(forward_model, dynamic=True)
        self.forward_model = forward_model

    def _build_optimizer(self) -> None:
        t = self.cfg.train
        if t.optimizer == "adamw_reference":
            self.optimizer = ReferenceAdamW(self.params, lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                                            weight_decay=t.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(self.params, lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                                               weight_decay=t.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(t.schedule, t.warmup_steps, self.max_steps))
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None

    # -------------------------------------------------------------------------------- checkpoints
    def _training_state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(self.env.device) if self.env.device.type == "cuda" else None}
        return {
            "step": self.step, "epoch": self.epoch, "unit_pos": self.unit_pos, "world_size": self.env.world_size,
            "unit_size": self.unit_size, "max_steps": self.max_steps,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "rng": self.env.gather(rng),   # one entry per rank
            "best_val_loss": self.best_val_loss, "best_step": self.best_step, "log_acc": dict(self.log_acc),
        }

    def _load_checkpoint(self, step_dir: Path) -> None:
        state = ckpt.load_training_state(step_dir)
        if state["world_size"] != self.env.world_size or state["unit_size"] != self.unit_size:
            raise TrainingError(f"{step_dir} was written by {state['world_size']} process(es) with "
                                f"{state['unit_size']} examples per global batch; resume with the same NPROC x "
                                f"NNODES and train.batch_size (now {self.env.world_size} and {self.unit_size})")
        self.model.load_lora(step_dir / ckpt.ADAPTER_FILE)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["max_steps"] != self.max_steps:  # the run was lengthened/shortened: schedule over the new length
            factor = lr_lambda(self.cfg.train.schedule, self.cfg.train.warmup_steps, self.max_steps)
            self.scheduler.lr_lambdas = [factor]
            for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base_lr * factor(self.scheduler.last_epoch)
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.unit_pos = state["step"], state["epoch"], state["unit_pos"]
        self.best_val_loss, self.best_step = state["best_val_loss"], state["best_step"]
        self.log_acc = dict(state["log_acc"])
        rng = state["rng"][self.env.rank]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.env.device)
        self.resumed_from = step_dir

    def save_step(self) -> None:
        state = self._training_state()   # collective (gathers RNG states): every rank calls it
        if self.env.is_main:
            out = self.run_dir / f"step-{self.step}"
            ckpt.save_adapter(self.model, out, self.base_path, meta=self._meta(), state=state)
            ckpt.prune_steps(self.run_dir, self.cfg.train.keep_last)
        self.env.barrier()

    def _meta(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": round(self._epoch_progress(), 4), "base_model": self.base_path,
                "val_loss": self.last_val[1] if self.last_val else None,
                "best_step": self.best_step, "best_val_loss": _finite_or_none(self.best_val_loss)}

    # -------------------------------------------------------------------------------- data
    def _epoch_units(self) -> list[list[int]]:
        if self._plan is None or self._plan[0] != self.epoch:
            t = self.cfg.train
            self._plan = (self.epoch, epoch_plan(self.lengths, self.unit_size, t.seed, self.epoch, t.bucket_window))
        return self._plan[1]

    def _next_window(self) -> list[Batch]:
        """The micro-batches of this rank for the next update: grad_acc global batches, each split by max_tokens."""
        if self.unit_pos >= self.units_per_epoch:
            self.epoch, self.unit_pos = self.epoch + 1, 0
        units = self._epoch_units()[self.unit_pos:self.unit_pos + self.cfg.train.grad_acc]
        self.unit_pos += len(units)
        batches = []
        for unit in units:
            mine = [self.train_set[i] for i in rank_share(unit, self.env.rank, self.env.world_size)]
            batches += [collate(chunk) for chunk in split_by_tokens(mine, self.cfg.train.max_tokens)]
        return batches

    def _epoch_progress(self) -> float:
        return self.epoch - 1 + self.unit_pos / self.units_per_epoch

    # -------------------------------------------------------------------------------- steps
    def _autocast(self):
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def train_update(self) -> dict[str, float]:
        """One optimizer update over grad_acc global batches; returns the global loss, tokens and lr used."""
        t, env = self.cfg.train, self.env
        batches = self._next_window()
        # The normaliser is the loss-token count of the whole global batch, so it must be known before backward.
        n_loss_global = env.all_reduce_sum([sum(b.n_loss for b in batches)])[0]
        scale = env.world_size / (n_loss_global + REFERENCE_DENOM_EPS)  # DDP averages gradients over ranks
        loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        for i, batch in enumerate(batches):
            batch = batch.to(env.device)
            sync = self.ddp is None or i == len(batches) - 1
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self._autocast():
                logits = self.forward_model(batch.input_ids, logits_mask=batch.loss_mask)
                micro_sum = token_loss_sum(logits, batch.targets, t.label_smoothing)
            loss = micro_sum * scale
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            loss_sum += micro_sum.detach()
        total_sum, n_tokens = env.all_reduce_sum([loss_sum.item(), sum(b.n_tokens for b in batches)])
        loss = total_sum / (n_loss_global + REFERENCE_DENOM_EPS)
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            last = ckpt.latest_step_dir(self.run_dir)
            raise TrainingError(f"non-finite training loss ({loss}) at update {self.step + 1} (epoch {self.epoch}); "
                                f"stopped before applying it. Last good checkpoint: {last or 'none yet'}. Try a lower "
                                f"train.lr, train.clip=1.0, or train.precision=fp32")
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if t.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, t.clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return {"loss": loss, "tokens": n_tokens, "lr": lr}

    @torch.no_grad()
    def validate(self) -> float:
        """Un-smoothed token-mean cross-entropy over the whole validation set (sums and counts over ranks)."""
        self.model.eval()
        loss_sum, n_loss = 0.0, 0
        for batch in self.valid_batches:
            batch = batch.to(self.env.device)
            with self._autocast():
                logits = self.model(batch.input_ids, logits_mask=batch.loss_mask)
            loss_sum += token_loss_sum(logits, batch.targets, 0.0).item()
            n_loss += batch.n_loss
        self.model.train()
        loss_sum, n_loss = self.env.all_reduce_sum([loss_sum, n_loss])
        return loss_sum / max(n_loss, 1)

    # -------------------------------------------------------------------------------- loop
    @staticmethod
    def _empty_log_acc() -> dict[str, float]:
        return {"loss": 0.0, "updates": 0, "tokens": 0, "seconds": 0.0}

    def _log(self, metrics: ckpt.MetricsLog | None, val_loss: float | None = None) -> dict[str, Any]:
        acc = self.log_acc
        row = {"step": self.step, "epoch": round(self._epoch_progress(), 4),
               "lr": self._last_lr if self._last_lr is not None else self.optimizer.param_groups[0]["lr"],
               "loss": acc["loss"] / acc["updates"] if acc["updates"] else None,
               "tokens_per_s": round(acc["tokens"] / acc["seconds"], 1) if acc["seconds"] > 0 else None}
        if val_loss is not None:
            row.update(val_loss=val_loss, val_ppl=ckpt.perplexity(val_loss))
        if metrics is not None:
            metrics.write(row)
        self.log_acc = self._empty_log_acc()
        return row

    def _run_validation(self, metrics, bar) -> None:
        if not self.valid_batches or (self.last_val and self.last_val[0] == self.step):
            return
        val_loss = self.validate()
        self.last_val = (self.step, val_loss)
        self._log(metrics, val_loss)
        improved = val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step = val_loss, self.step
            if self.env.is_main:
                ckpt.save_adapter(self.model, self.run_dir / "best", self.base_path, meta=self._meta())
        self.env.barrier()
        if self.env.is_main:
            bar.write(f"step {self.step}: val_loss {val_loss:.4f}  ppl {ckpt.perplexity(val_loss):.2f}"
                      + ("  (best)" if improved else ""))
            if time.perf_counter() - self._last_plot > 60:  # matplotlib costs ~0.3 s; the end of the run always plots
                ckpt.plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "train_curves.png")
                self._last_plot = time.perf_counter()

    def train(self) -> int:
        t, env = self.cfg.train, self.env
        metrics = ckpt.MetricsLog(self.run_dir / "metrics.jsonl") if env.is_main else None
        self._print_start_summary()
        start_time, start_step = time.perf_counter(), self.step
        bar = tqdm(total=self.max_steps, initial=self.step, disable=not env.is_main, unit="step",
                   dynamic_ncols=True, desc="train")
        try:
            with StopSignal() as stop:
                if t.eval_at_start and self.step == 0 and self.resumed_from is None:
                    self._run_validation(metrics, bar)
                while self.step < self.max_steps:
                    tic = time.perf_counter()
                    out = self.train_update()
                    self._last_lr = out["lr"]
                    acc = self.log_acc
                    acc["loss"] += out["loss"]
                    acc["updates"] += 1
                    acc["tokens"] += out["tokens"]
                    acc["seconds"] += time.perf_counter() - tic
                    bar.update(1)
                    if env.is_main and (self.step % 10 == 0 or self.step == self.max_steps or t.log_interval == 1):
                        bar.set_postfix(loss=f"{out['loss']:.3f}", lr=f"{out['lr']:.2e}",
                                        tok_s=f"{out['tokens'] / max(time.perf_counter() - tic, 1e-9):.0f}",
                                        refresh=False)
                    self._after_update(metrics, bar, stop, start_step)
        finally:
            bar.close()
            if metrics:
                metrics.close()
        self._finish(time.perf_counter() - start_time)
        return 0

    def _after_update(self, metrics, bar, stop: StopSignal, start_step: int) -> None:
        t, env = self.cfg.train, self.env
        done = self.step >= self.max_steps
        if self.valid_batches and ((t.eval_interval and self.step % t.eval_interval == 0) or done
                                   or self.unit_pos >= self.units_per_epoch):
            self._run_validation(metrics, bar)   # its metrics line carries the training numbers too
        elif (t.log_interval and self.step % t.log_interval == 0) or (done and self.log_acc["updates"]):
            self._log(metrics)
        saved = False
        if (t.save_interval and self.step % t.save_interval == 0) or done:
            self.save_step()
            saved = True
        # Every rank must stop at the same update, so a signal on any rank stops all of them.
        signalled = env.all_reduce_sum([float(stop.signum != 0)])[0] > 0
        asked = t.stop_after_steps and self.step - start_step >= t.stop_after_steps and not done
        if signalled or asked:
            if not saved:
                self.save_step()
            signum = stop.signum or signal.SIGTERM
            why = (f"received {signal.Signals(signum).name}" if signalled
                   else f"train.stop_after_steps={t.stop_after_steps} reached")
            raise StopRun(f"{why}: saved {self.run_dir / f'step-{self.step}'}; continue with RESUME=1 "
                          f"(train.resume=true)", 128 + signum if signalled else 0)

    def _finish(self, seconds: float) -> None:
        env = self.env
        if env.is_main:
            ckpt.save_adapter(self.model, self.run_dir / "final", self.base_path, meta=self._meta())
            ckpt.plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "train_curves.png")
        env.barrier()
        if env.is_main:
            best = (f"{self.best_val_loss:.4f} (ppl {ckpt.perplexity(self.best_val_loss):.2f}) at step "
                    f"{self.best_step} -> {self.run_dir / 'best'}" if self.best_step >= 0 else "n/a (no validation)")
            print("\n".join([
                "-" * 72,
                f"done: {self.step} updates in {_fmt_seconds(seconds)}",
                f"best validation loss: {best}",
                f"final adapter:  {self.run_dir / 'final'} (lora.safetensors, peft/)",
                f"metrics:        {self.run_dir / 'metrics.jsonl'}",
                f"curves:         {self.run_dir / 'train_curves.png'}",
                "-" * 72]), flush=True)

    def _print_start_summary(self) -> None:
        if not self.env.is_main:
            return
        cfg, t, env = self.cfg, self.cfg.train, self.env
        n_total = self.model.num_parameters()
        n_train = self.model.num_parameters(trainable_only=True)
        lora = cfg.lora
        lines = [
            "-" * 72,
            f"model:      {self.base_path}  ({self.model.config.n_layer} layers x {self.model.config.n_embd}, "
            f"{n_total / 1e6:.1f}M params)",
            f"LoRA:       r={lora.r} alpha={lora.alpha:g} dropout={lora.dropout:g} targets={','.join(lora.targets)}"
            f"  -> {n_train:,} trainable params ({100 * n_train / n_total:.3f}%)",
            f"data:       {cfg.data.split_path(cfg.data.train_split)} ({len(self.train_set):,} examples), "
            + (f"{cfg.data.split_path(cfg.data.valid_split)} ({len(self.valid_set):,})" if self.valid_set
               else "no validation"),
            f"batch:      {t.batch_size} per rank x {t.grad_acc} accumulation x {env.world_size} rank(s) = "
            f"{t.batch_size * t.grad_acc * env.world_size} examples per update",
            f"steps:      {self.max_steps:,} updates ({self.units_per_epoch:,} global batches per epoch), warmup "
            f"{t.warmup_steps}, {t.schedule} schedule, lr {t.lr:g}",
            f"precision:  {t.precision} on {env.device}" + (f", {env.world_size} processes" if env.distributed else ""),
            f"run dir:    {self.run_dir}" + (f"  (resuming from {self.resumed_from.name})" if self.resumed_from else ""),
            "-" * 72,
        ]
        print("\n".join(lines), flush=True)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _fmt_seconds(s: float) -> str:
    h, rem = divmod(int(s), 3600)
    return f"{h}h{rem // 60:02d}m{rem % 60:02d}s" if h else f"{rem // 60}m{rem % 60:02d}s"


# ---------------------------------------------------------------------------------------------- CLI
USAGE = """usage: python -m lora_nlg.train CONFIG [key=value ...]

  CONFIG      a YAML preset (configs/e2e.yaml, webnlg.yaml, dart.yaml, demo.yaml)
  key=value   dotted overrides, e.g. train.lr=1e-3 lora.r=8 train.resume=true
Under torchrun every process runs the same command (torchrun --nproc_per_node=N -m lora_nlg.train ...)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    env = None
    try:
        cfg = load_config(argv[0], argv[1:])
        env = init_distributed(cfg.train.device)
        trainer = Trainer(cfg, env)
        trainer.setup()
        return trainer.train()
    except StopRun as e:
        if env is None or env.is_main:
            print(f"stopped: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except (ConfigError, DataError, TrainingError, ValueError) as e:
        prefix = f"[rank {env.rank}] " if env is not None and env.distributed else ""
        if env is None or env.is_main or not isinstance(e, (ConfigError, TrainingError)):
            print(f"{prefix}error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if env is not None and env.distributed and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
