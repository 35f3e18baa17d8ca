"""What a training run holds (its data plan, model, optimizer and progress) and its checkpoints: `step-N/` with
the complete training state, so a resumed run continues bit for bit, and the `best/` and `final/` adapters."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lora_nlg.run_dir import ADAPTER_FILE, load_training_state, prune_steps, write_checkpoint_dir
from lora_nlg.train.batching import Batch, TrainingSequence, collate, epoch_plan, rank_share, split_by_tokens
from lora_nlg.train.optim import Optimization


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, inconsistent resume); the message says what to do."""


def empty_log_acc() -> dict[str, float]:
    return {"loss": 0.0, "updates": 0, "tokens": 0, "seconds": 0.0}


@dataclass
class Progress:
    """Where the run is; everything here but `last_val`, `last_lr` and `resumed_from` is checkpointed."""
    step: int = 0                # optimizer updates done
    epoch: int = 1               # current epoch (1-based)
    unit_pos: int = 0            # next global batch of the epoch's plan
    best_val_loss: float = math.inf
    best_step: int = -1
    last_val: tuple[int, float] | None = None
    log_acc: dict[str, float] = field(default_factory=empty_log_acc)  # training numbers since the last log line
    last_lr: float | None = None  # lr of the last update (what metrics.jsonl reports)
    resumed_from: Path | None = None


@dataclass
class TrainData:
    """The training examples of this run and the validation batches of this rank, with the epoch plan."""
    train_set: list[TrainingSequence]
    valid_set: list[TrainingSequence]
    valid_batches: list[Batch]
    unit_size: int               # examples per global batch (batch_size x world_size)
    rank: int
    world_size: int
    seed: int
    bucket_window: int
    grad_acc: int
    max_tokens: int
    longest: tuple[int, str] = (0, "")  # longest model input (tokens) over both splits, and its path:line
    _plan: tuple[int, list[list[int]]] | None = None

    @property
    def units_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.unit_size)

    def epoch_units(self, epoch: int) -> list[list[int]]:
        if self._plan is None or self._plan[0] != epoch:
            lengths = [e.n_input for e in self.train_set]
            self._plan = (epoch, epoch_plan(lengths, self.unit_size, self.seed, epoch, self.bucket_window))
        return self._plan[1]

    def next_window(self, progress: Progress) -> list[Batch]:
        """The micro-batches of this rank for the next update: grad_acc global batches, each split by max_tokens;
        advances `progress` past them (into the next epoch when this one is used up)."""
        if progress.unit_pos >= self.units_per_epoch:
            progress.epoch, progress.unit_pos = progress.epoch + 1, 0
        units = self.epoch_units(progress.epoch)[progress.unit_pos:progress.unit_pos + self.grad_acc]
        progress.unit_pos += len(units)
        batches = []
        for unit in units:
            mine = [self.train_set[i] for i in rank_share(unit, self.rank, self.world_size)]
            batches += [collate(chunk) for chunk in split_by_tokens(mine, self.max_tokens)]
        return batches

    def epoch_progress(self, progress: Progress) -> float:
        return progress.epoch - 1 + progress.unit_pos / self.units_per_epoch


@dataclass
class TrainModel:
    """The model being trained and what the update runs: `forward` (DDP and/or torch.compile wrapped), `ddp`
    (for no_sync), `params` (the trainable ones), `base_path` (recorded in adapters' meta and PEFT config)."""
    model: torch.nn.Module
    forward: torch.nn.Module
    ddp: torch.nn.Module | None
    params: list[torch.nn.Parameter]
    base_path: str


@dataclass
class Session:
    """One training run after setup: config, processes, data, model, optimizer, length and progress."""
    cfg: Any                     # RunConfig
    env: Any                     # DistEnv
    run_dir: Path
    data: TrainData
    net: TrainModel
    opt: Optimization
    max_steps: int
    progress: Progress = field(default_factory=Progress)
    lock: Any = None             # run_dir.RunLock held by rank 0 for the life of the run
    data_fingerprint: dict[str, Any] = field(default_factory=dict)  # {path: {size, sha256}} (rank 0)

    def epoch_progress(self) -> float:
        return self.data.epoch_progress(self.progress)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


# ---------------------------------------------------------------------------------------------- checkpoints
def adapter_meta(s: Session) -> dict[str, Any]:
    p = s.progress
    return {"step": p.step, "epoch": round(s.epoch_progress(), 4), "base_model": s.net.base_path,
            "val_loss": p.last_val[1] if p.last_val else None,
            "best_step": p.best_step, "best_val_loss": p.best_val_loss if math.isfinite(p.best_val_loss) else None}


def save_named_adapter(s: Session, name: str) -> Path:
    """`run_dir/<name>/` (best, final) with the adapter and its meta.json; rank 0 only."""
    return write_checkpoint_dir(s.net.model, s.run_dir / name, s.net.base_path, meta=adapter_meta(s))


def training_state(s: Session) -> dict[str, Any]:
    """Everything resume needs; collective (gathers every rank's RNG states), so every rank calls it."""
    p, env = s.progress, s.env
    rng = {"torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(env.device) if env.device.type == "cuda" else None}
    return {
        "step": p.step, "epoch": p.epoch, "unit_pos": p.unit_pos, "world_size": env.world_size,
        "unit_size": s.data.unit_size, "max_steps": s.max_steps,
        **s.opt.state_dict(),
        "rng": env.all_gather(rng),   # one entry per rank
        "best_val_loss": p.best_val_loss, "best_step": p.best_step, "log_acc": dict(p.log_acc),
        "data_fingerprint": s.data_fingerprint,   # what resume checks the data files against
    }


def check_adapter_finite(s: Session) -> None:
    """Never save (or report) an adapter with NaN/inf weights; the last saved checkpoint stays the good one."""
    if not all(bool(torch.isfinite(prm).all()) for prm in s.net.params):
        raise TrainingError(f"the adapter has non-finite weights after update {s.progress.step}; nothing saved "
                            f"for it. Try a lower train.lr or lora.alpha, train.clip=1.0, or train.precision=fp32")


def save_step(s: Session) -> None:
    check_adapter_finite(s)
    state = training_state(s)
    if s.env.is_main:
        out = s.run_dir / f"step-{s.progress.step}"
        write_checkpoint_dir(s.net.model, out, s.net.base_path, meta=adapter_meta(s), state=state)
        prune_steps(s.run_dir, s.cfg.train.keep_last)
    s.env.barrier()


def load_step(s: Session, step_dir: Path) -> None:
    """Continue from `step_dir`: adapter, optimizer/scheduler/scaler, progress and this rank's RNG states."""
    env = s.env
    state = load_training_state(step_dir)
    if state["world_size"] != env.world_size or state["unit_size"] != s.data.unit_size:
        raise TrainingError(f"{step_dir} was written by {state['world_size']} process(es) with "
                            f"{state['unit_size']} examples per global batch; resume with the same NPROC x "
                            f"NNODES and train.batch_size (now {env.world_size} and {s.data.unit_size})")
    s.net.model.load_lora(step_dir / ADAPTER_FILE)
    s.opt.load_state_dict(state, s.cfg.train, state["max_steps"], s.max_steps)
    p = s.progress
    p.step, p.epoch, p.unit_pos = state["step"], state["epoch"], state["unit_pos"]
    p.best_val_loss, p.best_step = state["best_val_loss"], state["best_step"]
    p.log_acc = dict(state["log_acc"])
    rng = state["rng"][env.rank]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and env.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], env.device)
    p.resumed_from = step_dir
