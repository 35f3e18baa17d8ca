"""A training run's directory, as training writes it and decoding reads it, and the model of a run.

```
checkpoints/<run>/
  config.yaml            resolved config
  metrics.jsonl          one line per logged update (validation lines add val_loss, val_ppl)
  train_curves.png       train loss, validation loss, learning rate
  step-<N>/              lora.safetensors + peft/ + training_state.pt (the newest `keep_last` are kept); the state
                         records size and sha256 of the data files, so a resume refuses data changed since
  best/                  adapter with the lowest validation loss (+ meta.json)
  final/                 adapter at the end of training (+ meta.json)
  .lock                  while a training runs: who holds the run (pid, host, since); removed at its end
```
Every directory is assembled under a temporary name and renamed into place, so a crash or a kill leaves either
the previous complete version or the new complete one; a `step-<N>/` that exists is complete.

The model of a run is its base (pretrained, or seeded random) with the LoRA adapter of one of its checkpoints.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from lora_nlg.atomic import atomic_dir, json_text
from lora_nlg.config import RunConfig, load_config, save_config
from lora_nlg.model import weights
from lora_nlg.model.gpt2 import GPT2

CONFIG_FILE = "config.yaml"
STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "training_state.pt"
ADAPTER_FILE = "lora.safetensors"
PEFT_DIR = "peft"
LOCK_FILE = ".lock"
# What every training_state.pt holds (written by train.state.training_state); a file without them is damaged.
STATE_KEYS = {"step": int, "epoch": int, "unit_pos": int, "world_size": int, "unit_size": int, "max_steps": int,
              "optimizer": dict, "scheduler": dict, "rng": list, "best_val_loss": float, "best_step": int,
              "log_acc": dict}


class RunError(ValueError):
    """A run directory or checkpoint that cannot be used; the message says what to do."""


def config_path(run_dir: Path) -> Path:
    return run_dir / CONFIG_FILE


def write_config(cfg: RunConfig, run_dir: Path) -> None:
    save_config(cfg, config_path(run_dir))


def read_config(run_dir: Path, overrides: list[str] = (), run_name: str | None = None) -> RunConfig:
    """The run's resolved config with dotted overrides applied (decode.* keys change decoding only)."""
    path = config_path(run_dir)
    if not path.is_file():
        name = run_name or run_dir.name
        raise RunError(f"{path}: not found; is {run_dir} a training run directory (`make train RUN={name}`)?")
    return load_config(path, overrides)


def base_model_name(cfg: RunConfig) -> str:
    """What adapters record as their base: the pretrained path, or random:<preset> for model.random_init."""
    return f"random:{cfg.model.name}" if cfg.model.random_init else str(cfg.pretrained_path())


def build_run_model(cfg: RunConfig, lora) -> GPT2:
    """The run's base model with fresh LoRA adapters, built right after seeding with train.seed: the LoRA init is
    then identical on every rank, and a model.random_init base is a function of the seed, so decode rebuilds the
    very base a run was trained on by calling this again."""
    torch.manual_seed(cfg.train.seed)
    if cfg.model.random_init:
        return GPT2.from_preset(cfg.model.name, lora=lora)
    return GPT2.from_pretrained(cfg.pretrained_path(), lora=lora)


def adapter_path(run_dir: Path, checkpoint: str = "final") -> Path:
    """`run_dir/<checkpoint>/lora.safetensors` for checkpoint final, best or step-N; an error lists the others."""
    adapter = run_dir / checkpoint / ADAPTER_FILE
    if not adapter.is_file():
        found = sorted(p.name for p in run_dir.iterdir() if (p / ADAPTER_FILE).is_file()) if run_dir.is_dir() else []
        raise RunError(f"{adapter}: no adapter here (checkpoints of {run_dir} with one: {found or 'none'}; "
                       f"choose with --checkpoint final|best|step-N, or train first)")
    return adapter


def load_run_model(run_dir: Path, cfg: RunConfig, checkpoint: str = "final") -> GPT2:
    """Base model of the run's config plus the adapter of `run_dir/<checkpoint>/lora.safetensors`."""
    adapter = adapter_path(run_dir, checkpoint)
    lora_cfg = cfg.lora
    saved = weights.read_lora_config(adapter)
    if saved is not None:
        differ = [f"{k}: adapter {getattr(saved, k)!r} vs config {getattr(lora_cfg, k)!r}"
                  for k in ("r", "alpha", "targets", "use_rslora") if getattr(saved, k) != getattr(lora_cfg, k)]
        if differ:  # an adapter from another run (or a lora.* override): decoding it silently would mislead
            raise RunError(f"{adapter}: LoRA settings differ from {config_path(run_dir)} (lora.*): "
                           + "; ".join(differ) + "; decode it with the config it was trained with")
        lora_cfg = saved
    if cfg.model.random_init:
        print(f"note: {run_dir} was trained on a randomly initialised {cfg.model.name} (model.random_init); "
              f"its scores are meaningless", file=sys.stderr)
    model = build_run_model(cfg, lora_cfg)  # the same call training made, so a random base comes back identical
    model.load_lora(adapter)
    return model


# ---------------------------------------------------------------------------------------------- checkpoints


def write_checkpoint_dir(model, out_dir: Path, base_model: str | None = None, meta: dict[str, Any] | None = None,
                 state: dict[str, Any] | None = None) -> Path:
    """Write `out_dir/` atomically: lora.safetensors, peft/, optional meta.json and training_state.pt."""
    with atomic_dir(out_dir) as tmp:
        weights.save_lora(model, tmp / ADAPTER_FILE)
        weights.save_peft_adapter(model, tmp / PEFT_DIR, base_model)
        if meta is not None:
            (tmp / "meta.json").write_text(json_text(meta, indent=1, sort_keys=True) + "\n")
        if state is not None:  # serialised in memory: torch's own file writer reports a full disk as a C++ error
            buffer = io.BytesIO()
            torch.save(state, buffer)
            (tmp / STATE_FILE).write_bytes(buffer.getbuffer())
    return out_dir


def step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted((n, p) for n, p in found if (p / STATE_FILE).is_file() and (p / ADAPTER_FILE).is_file())


def latest_step_dir(run_dir: Path) -> Path | None:
    steps = step_dirs(run_dir)
    return steps[-1][1] if steps else None


def newest_usable_step_dir(run_dir: Path) -> tuple[Path | None, list[str]]:
    """(the newest step checkpoint whose training state and adapter both load, what was wrong with each newer
    one). A disk that filled up or a copy that broke off can leave a damaged checkpoint behind a good one."""
    skipped = []
    for _, step_dir in reversed(step_dirs(run_dir)):
        try:
            load_training_state(step_dir)
            weights.read_lora_config(step_dir / ADAPTER_FILE)
            weights.read_tensors(step_dir / ADAPTER_FILE)
        except (RunError, weights.CheckpointError) as e:
            skipped.append(str(e))
            continue
        return step_dir, skipped
    return None, skipped


def prune_steps(run_dir: Path, keep_last: int) -> None:
    for _, path in step_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)


def remove_run_temporaries(run_dir: Path) -> None:
    """Every temp dir/file in the run directory (`.name.xxxx.tmp`: a killed writer's, since the run lock is held, no
    live one's); restores a `.name.old` if `name` went missing."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith(".old"):
            target = run_dir / p.name[1:-len(".old")]
            if not target.exists():
                p.rename(target)
            else:
                shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".") and p.name.endswith(".tmp"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def load_training_state(step_dir: Path) -> dict[str, Any]:
    """The training state of a step checkpoint; `weights_only=True`, so the file cannot run code. A damaged file
    (empty, truncated, foreign, a pickle) is a `RunError` naming it."""
    path = step_dir / STATE_FILE
    try:
        state = weights.load_weights_only(path)
    except OSError as e:
        raise RunError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for damaged files
        if path.stat().st_size == 0:
            raise RunError(f"{path}: empty file (a write that never finished)") from None
        if "weights_only" in str(e) or isinstance(e, pickle.UnpicklingError):
            raise RunError(f"{path}: refused: holds pickled Python objects that could run code when loaded "
                           f"(torch.load weights_only=True); a training state holds only tensors and numbers") from None
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise RunError(f"{path}: damaged or not a training state ({type(e).__name__}"
                       f"{': ' + first if first else ''})") from None
    problems = check_training_state(state)
    if problems:
        raise RunError(f"{path}: not a complete training state ({'; '.join(problems)})")
    return state


def check_training_state(state: Any) -> list[str]:
    if not isinstance(state, dict):
        return [f"holds a {type(state).__name__}, not a dict"]
    problems = [f"missing {k}" for k in STATE_KEYS if k not in state]
    problems += [f"{k} is a {type(state[k]).__name__}, not {t.__name__}" for k, t in STATE_KEYS.items()
                 if k in state and not isinstance(state[k], t) and not (t is float and isinstance(state[k], int))]
    if not problems and len(state["rng"]) != state["world_size"]:
        problems.append(f"{len(state['rng'])} RNG states for {state['world_size']} process(es)")
    return problems


def is_run_dir_in_use(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())


# ---------------------------------------------------------------------------------------------- lock
class RunLock:
    """An exclusive lock on a run directory for the life of a training: `flock` on `run_dir/.lock`, which also
    records the holder (pid, host, start time). The kernel drops a flock when its process dies, however it dies,
    so a lock file nobody holds is stale and is taken over. `release` removes the lock file, and the run
    directory too when taking the lock created it and nothing else was written (a refused setup leaves nothing)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []   # directories this lock created, deepest first
        self.took_over: dict[str, Any] | None = None

    def acquire(self) -> "RunLock":
        self.created = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                self._remove_created()
                raise RunError(f"{self.run_dir}: in use by another training ({describe_holder(self.path)}); wait "
                               f"for it to end or stop it, or choose another RUN=<name> (nothing was changed)")
            if self._still_ours(fd):
                break
            os.close(fd)   # the holder removed the file between our open and flock: lock the new one
        self.fd = fd
        previous = read_holder(fd)
        if previous:
            self.took_over = previous
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder, sort_keys=True) + "\n").encode(), 0)
        return self

    def _still_ours(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)   # closing drops the flock
        self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for d in self.created:
            try:
                d.rmdir()   # only if empty: a failed setup wrote nothing there
            except OSError:
                break
        self.created = []


def read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (ValueError, RecursionError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            holder = read_holder(f.fileno())
    except OSError:
        holder = {}
    if not holder:
        return f"lock {path} held, holder not recorded yet"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('since')}; lock {path}"


# ---------------------------------------------------------------------------------------------- data fingerprint
def fingerprint_files(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """{path: {size, sha256}} of the data files a run trains on."""
    out = {}
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[str(path)] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


def check_fingerprint(saved: Any, paths: list[Path], state_file: Path) -> None:
    """Raise if a data file the run trained on changed since `state_file` was written (same path, other bytes)."""
    if not isinstance(saved, dict):
        return   # a checkpoint of an older version, without a fingerprint
    now = fingerprint_files([p for p in paths if p.is_file()])  # a missing file is the data loader's error
    for name, was in saved.items():
        if name in now and now[name] != was:
            what = (f"size {was.get('size')} -> {now[name]['size']} bytes" if was.get("size") != now[name]["size"]
                    else "same size, other content (sha256 differs)")
            raise RunError(f"{name}: changed since the run trained on it ({what}; recorded in {state_file}); a "
                           f"resume would continue on other data. Restore the file, or start a new RUN=<name>")
