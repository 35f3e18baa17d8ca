"""Setting a training run up: lock the run directory, decide whether it may be used (and what to resume from),
load the data, build the model and optimizer, restore a checkpoint, write config.yaml. Everything that can fail
(config, data, weights, checkpoint, a model too short for the data) happens before the run directory is written."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lora_nlg import precision
from lora_nlg.config import ConfigError, RunConfig, diff
from lora_nlg.model import weights
from lora_nlg.run_dir import (
    STATE_FILE,
    RunError,
    RunLock,
    base_model_name,
    build_run_model,
    check_fingerprint,
    config_path,
    fingerprint_files,
    is_run_dir_in_use,
    load_training_state,
    newest_usable_step_dir,
    read_config,
    remove_run_temporaries,
    write_config,
)
from lora_nlg.train.batching import DataError, Split, read_split, validation_batches
from lora_nlg.train.objective import apply_precision
from lora_nlg.train.optim import Optimization, derive_max_steps
from lora_nlg.train.report import truncate_metrics
from lora_nlg.train.state import Session, TrainData, TrainingError, TrainModel, load_step

# Keys that may change between a run and its resumption without changing what is being trained (out_dir and run:
# a run directory that was moved or copied continues the same training).
RESUMABLE_CHANGES = {"train.out_dir", "train.run", "train.resume", "train.log_interval", "train.eval_interval", "train.eval_at_start",
                     "train.save_interval", "train.keep_last", "train.stop_after_steps", "train.device",
                     "train.compile", "train.max_steps", "train.epochs"}


def setup(cfg: RunConfig, env) -> Session:
    """The session of a run, holding the run's lock (rank 0) until `Session.release`; on failure the lock is
    released and a run directory that taking it created is removed again."""
    t = cfg.train
    resolve_precision(cfg, env)
    if t.precision == "fp16" and env.device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs CUDA (it uses a grad scaler); use bf16 on CPU")
    run_dir = cfg.run_dir()
    lock = lock_run_dir(run_dir, env)
    try:
        resume_dir = find_resume_dir(cfg, env, run_dir)
        data = load_train_data(cfg, env)
        max_steps = t.max_steps or derive_max_steps(len(data.train_set), t.batch_size, env.world_size, t.grad_acc,
                                                    t.epochs)
        net = build_training_model(cfg, env)
        check_positions(cfg, net.model.config.n_positions, data)
        s = Session(cfg, env, run_dir, data, net, Optimization.build(net.params, t, max_steps), max_steps, lock=lock,
                    data_fingerprint=fingerprint_files(data_files(cfg)) if env.is_main else {})
        if resume_dir is not None:
            load_step(s, resume_dir)
        else:  # dropout masks differ per rank, reproducibly; a resumed run restores the saved states instead
            torch.manual_seed(t.seed + env.rank)
        if env.is_main:
            write_run_dir(s)
        env.barrier()
        return s
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def lock_run_dir(run_dir: Path, env) -> RunLock | None:
    """Rank 0 takes the run's lock (the other ranks write nothing there); a refusal reaches every rank."""
    lock, error = None, ""
    if env.is_main:
        try:
            lock = RunLock(run_dir).acquire()
        except RunError as e:
            error = str(e)
        if lock is not None and lock.took_over:
            h = lock.took_over
            tqdm.write(f"note: took over the stale lock of {run_dir} (pid {h.get('pid')} on host {h.get('host')}, "
                       f"since {h.get('since')}; that process is gone)", file=sys.stderr)
    error = env.broadcast(error)
    if error:
        raise TrainingError(error)
    return lock


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
        except (ConfigError, TrainingError, RunError) as e:
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
    remove_run_temporaries(run_dir)
    if config_path(run_dir).is_file():
        check_resumable(read_config(run_dir), cfg, run_dir)
    resume, skipped = newest_usable_step_dir(run_dir)
    for why in skipped:
        tqdm.write(f"note: skipping a damaged checkpoint: {why}", file=sys.stderr)
    if resume is None and skipped:
        raise TrainingError(f"cannot resume {run_dir}: no usable checkpoint (every step-N/, {len(skipped)}, is "
                            f"damaged, see above); start a new RUN=<name>, or remove the damaged step-N/ "
                            f"directories to start this run from scratch")
    if resume is None:
        tqdm.write(f"note: no complete checkpoint in {run_dir}; starting from scratch")
    else:
        check_fingerprint(load_training_state(resume).get("data_fingerprint"), data_files(cfg), resume / STATE_FILE)
        if skipped:
            tqdm.write(f"note: resuming from {resume.name}, the newest complete checkpoint", file=sys.stderr)
    return {"resume": str(resume) if resume else ""}


def data_files(cfg: RunConfig) -> list[Path]:
    d = cfg.data
    return [d.split_path(d.train_split)] + ([d.split_path(d.valid_split)] if d.valid_split else [])


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
    splits = [read_split(d.split_path(d.train_split), d.max_seq_len)]
    if d.valid_split:
        splits.append(read_split(d.split_path(d.valid_split), d.max_seq_len, limit=d.max_valid_examples))
    for split in splits:
        check_truncation(split, d.max_seq_len, env.is_main)
    train_set, valid_set = splits[0].examples, splits[1].examples if len(splits) > 1 else []
    return TrainData(train_set, valid_set, validation_batches(valid_set, env.rank, env.world_size, t.valid_batch_size),
                     unit_size=t.batch_size * env.world_size, rank=env.rank, world_size=env.world_size, seed=t.seed,
                     bucket_window=t.bucket_window, grad_acc=t.grad_acc, max_tokens=t.max_tokens,
                     longest=max((sp.longest, sp.longest_at) for sp in splits))


def check_truncation(split: Split, max_seq_len: int, tell: bool) -> None:
    """Refuse a split that keeps no completion token (nothing to learn or to validate on); say what it loses."""
    if split.n_loss == 0:
        raise DataError(f"data.max_seq_len={max_seq_len} cuts away every completion token of {split.path} "
                        f"({len(split.examples):,} examples): nothing to train or validate on; raise "
                        f"data.max_seq_len above {min(e.n_context for e in split.examples)}, the shortest context")
    if tell and split.n_truncated:
        print(split.truncation_note(max_seq_len), file=sys.stderr, flush=True)


def check_positions(cfg: RunConfig, n_positions: int, data: TrainData) -> None:
    """A base model with fewer positions than the longest input cannot train on it; say so before anything is
    written, naming where the model's length comes from."""
    longest, where = data.longest
    if longest <= n_positions:
        return
    if cfg.model.random_init:
        source = f"model.name={cfg.model.name} (preset): n_positions={n_positions}"
    else:
        weights_file, cfg_file = weights.locate_weights(cfg.pretrained_path())
        source = (f"{cfg_file}: key n_positions={n_positions}" if cfg_file is not None
                  else f"{weights_file}: tensor transformer.wpe.weight has {n_positions} positions")
    raise ConfigError(f"{source}, but the longest input is {longest} tokens ({where}, after data.max_seq_len="
                      f"{cfg.data.max_seq_len}); set data.max_seq_len={n_positions + 1} or lower, or use a base "
                      f"model with more positions")


def build_training_model(cfg: RunConfig, env) -> TrainModel:
    """The model of the run on this rank's device in train mode, wrapped for DDP (several processes) and
    torch.compile (train.compile) as configured."""
    model = build_run_model(cfg, cfg.lora).to(env.device).train()
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
