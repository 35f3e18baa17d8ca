"""Setting a training run up: decide whether the run directory may be used (and what to resume from), load the
data, build the model and optimizer, restore a checkpoint, write config.yaml. Everything that can fail (config,
data, weights, checkpoint) happens before the run directory is written."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lora_nlg import precision
from lora_nlg.train.batching import Example, load_examples, validation_batches
from lora_nlg.config import ConfigError, RunConfig, diff
from lora_nlg.train.objective import apply_precision
from lora_nlg.train.optim import Optimization, derive_max_steps
from lora_nlg.run_dir import (base_model_name, build_run_model, config_path, is_run_dir_in_use, latest_step_dir,
                              read_config, remove_stale_temporaries, write_config)
from lora_nlg.train.report import truncate_metrics
from lora_nlg.train.state import Session, TrainData, TrainingError, TrainModel, load_step

# Keys that may change between a run and its resumption without changing what is being trained.
RESUMABLE_CHANGES = {"train.resume", "train.log_interval", "train.eval_interval", "train.eval_at_start",
                     "train.save_interval", "train.keep_last", "train.stop_after_steps", "train.device",
                     "train.compile", "train.max_steps", "train.epochs"}


def setup(cfg: RunConfig, env) -> Session:
    t = cfg.train
    resolve_precision(cfg, env)
    if t.precision == "fp16" and env.device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs CUDA (it uses a grad scaler); use bf16 on CPU")
    run_dir = cfg.run_dir()
    resume_dir = find_resume_dir(cfg, env, run_dir)
    data = load_train_data(cfg, env)
    max_steps = t.max_steps or derive_max_steps(len(data.train_set), t.batch_size, env.world_size, t.grad_acc,
                                                t.epochs)
    net = build_training_model(cfg, env)
    s = Session(cfg, env, run_dir, data, net, Optimization.build(net.params, t, max_steps), max_steps)
    if resume_dir is not None:
        load_step(s, resume_dir)
    else:  # dropout masks differ per rank, reproducibly; a resumed run restores the saved states instead
        torch.manual_seed(t.seed + env.rank)
    if env.is_main:
        write_run_dir(s)
    env.barrier()
    return s


def resolve_precision(cfg: RunConfig, env) -> None:
    """train.precision=auto becomes bf16 or fp32 for this device (config.yaml records the resolved value, so a
    resumed run compares like with like); bf16 where it is only emulated gets a warning."""
    t = cfg.train
    requested = t.precision
    t.precision, warning = precision.resolve(requested, env.device, "train.precision")
    if env.is_main:
        if requested == "auto":
            tqdm.write(f"train.precision=auto -> {t.precision} on {env.device}"
                       + (f" ({precision.describe_cpu()})" if env.device.type == "cpu" else ""), file=sys.stderr)
        if warning:
            tqdm.write(warning, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- run directory
def find_resume_dir(cfg: RunConfig, env, run_dir: Path) -> Path | None:
    """Rank 0 checks the run dir (no overwrite without resume) and finds the checkpoint to resume from."""
    decision: dict[str, Any] = {}
    if env.is_main:
        try:
            decision = decide_resume(cfg, run_dir)
        except (ConfigError, TrainingError) as e:
            decision = {"error": str(e)}
    decision = env.broadcast(decision)
    if "error" in decision:
        raise TrainingError(decision["error"])
    return Path(decision["resume"]) if decision.get("resume") else None


def decide_resume(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    if not is_run_dir_in_use(run_dir):
        return {}
    if not cfg.train.resume:
        raise TrainingError(f"run directory {run_dir} already exists: pass RESUME=1 (train.resume=true) to "
                            f"continue it, or choose another RUN=<name> (nothing was overwritten)")
    remove_stale_temporaries(run_dir)
    if config_path(run_dir).is_file():
        check_resumable(read_config(run_dir), cfg, run_dir)
    resume = latest_step_dir(run_dir)
    if resume is None:
        tqdm.write(f"note: no complete checkpoint in {run_dir}; starting from scratch")
    return {"resume": str(resume) if resume else ""}


def check_resumable(saved: RunConfig, cfg: RunConfig, run_dir: Path) -> None:
    changes = diff(saved, cfg)
    blocking = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES and not k.startswith("decode.")}
    if blocking:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in blocking.items())
        raise TrainingError(f"cannot resume {run_dir}: the config differs from its config.yaml in {listed} "
                            f"(resume with the same settings, or start a new RUN)")
    length = {k: v for k, v in changes.items() if k in ("train.max_steps", "train.epochs")}
    if length:
        listed = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in length.items())
        tqdm.write(f"note: resuming with a different length ({listed}); the learning-rate schedule follows the "
                   f"new length from here on")


def write_run_dir(s: Session) -> None:
    s.run_dir.mkdir(parents=True, exist_ok=True)
    # Lines logged after the checkpoint we resume from would repeat: drop them (all of them on a fresh start).
    truncate_metrics(s.run_dir / "metrics.jsonl", s.progress.step if s.progress.resumed_from else -1)
    write_config(s.cfg, s.run_dir)


# ---------------------------------------------------------------------------------------------- data, model
def load_train_data(cfg: RunConfig, env) -> TrainData:
    d, t = cfg.data, cfg.train
    train_set = load_examples(d.split_path(d.train_split), d.max_seq_len)
    valid_set: list[Example] = []
    if d.valid_split:
        valid_set = load_examples(d.split_path(d.valid_split), d.max_seq_len, limit=d.max_valid_examples)
    return TrainData(train_set, valid_set, validation_batches(valid_set, env.rank, env.world_size, t.valid_batch_size),
                     unit_size=t.batch_size * env.world_size, rank=env.rank, world_size=env.world_size, seed=t.seed,
                     bucket_window=t.bucket_window, grad_acc=t.grad_acc, max_tokens=t.max_tokens)


def build_training_model(cfg: RunConfig, env) -> TrainModel:
    """The model of the run on this rank's device in train mode, wrapped for DDP (several processes) and
    torch.compile (train.compile) as configured."""
    model = build_run_model(cfg, cfg.lora.to_lora_config()).to(env.device).train()
    apply_precision(model, cfg.train.precision)
    base_path = base_model_name(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    forward: torch.nn.Module = model
    ddp = None
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Frozen weights are identical on every rank (same checkpoint): only the LoRA parameters take part
        # in DDP's initial broadcast and gradient all-reduce.
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        frozen += [n for n, _ in model.named_buffers()]
        DDP._set_params_and_buffers_to_ignore_for_model(model, frozen)
        forward = ddp = DDP(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
    if cfg.train.compile:
        forward = torch.compile(forward, dynamic=True)
    return TrainModel(model, forward, ddp, params, base_path)
