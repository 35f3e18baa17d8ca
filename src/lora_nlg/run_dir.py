"""A training run's directory, as training writes it and decoding reads it, and the model of a run.

```
checkpoints/<run>/
  config.yaml            resolved config
  metrics.jsonl          one line per logged update (validation lines add val_loss, val_ppl)
  train_curves.png       train loss, validation loss, learning rate
  step-<N>/              lora.safetensors + peft/ + training_state.pt (the newest `keep_last` are kept)
  best/                  adapter with the lowest validation loss (+ meta.json)
  final/                 adapter at the end of training (+ meta.json)
```
Every directory is assembled under a temporary name and renamed into place, so a crash or a kill leaves either
the previous complete version or the new complete one; a `step-<N>/` that exists is complete.

The model of a run is its base (pretrained, or seeded random) with the LoRA adapter of one of its checkpoints.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from lora_nlg.atomic import atomic_dir
from lora_nlg.config import RunConfig, load_config, save_config
from lora_nlg.model import weights
from lora_nlg.model.gpt2 import GPT2

CONFIG_FILE = "config.yaml"
STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "training_state.pt"
ADAPTER_FILE = "lora.safetensors"
PEFT_DIR = "peft"


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
    lora_cfg = weights.read_lora_config(adapter) or cfg.lora
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
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
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


def prune_steps(run_dir: Path, keep_last: int) -> None:
    for _, path in step_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temp dirs/files left by a killed writer (`.name.xxxx.tmp`); restores a `.name.old` if `name` went missing."""
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
    """The training state of a step checkpoint; `weights_only=True`, so the file cannot run code."""
    return torch.load(step_dir / STATE_FILE, map_location="cpu", weights_only=True)


def is_run_dir_in_use(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(run_dir.iterdir())


