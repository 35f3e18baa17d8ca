"""The run directory: adapters and training state, written atomically, plus metrics.jsonl and train_curves.png.

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
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from lora_nlg import checkpoint_io
from lora_nlg.fsutil import atomic_dir, atomic_file

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "training_state.pt"
ADAPTER_FILE = "lora.safetensors"
PEFT_DIR = "peft"


def save_adapter(model, out_dir: Path, base_model: str | None = None, meta: dict[str, Any] | None = None,
                 state: dict[str, Any] | None = None) -> Path:
    """Write `out_dir/` atomically: lora.safetensors, peft/, optional meta.json and training_state.pt."""
    with atomic_dir(out_dir) as tmp:
        checkpoint_io.save_lora(model, tmp / ADAPTER_FILE)
        checkpoint_io.save_peft_adapter(model, tmp / PEFT_DIR, base_model)
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


# ---------------------------------------------------------------------------------------------- metrics
class MetricsLog:
    """Append-only metrics.jsonl (flushed per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines logged after `last_step` (written after the checkpoint we resume from) so nothing repeats."""
    if not path.is_file():
        return
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    with atomic_file(path) as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def plot_curves(metrics_path: Path, out_png: Path) -> None:
    """train_curves.png: training loss and validation loss (left), learning rate (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and r["loss"] is not None]
    valid = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    lrs = [(r["step"], r["lr"]) for r in rows if "lr" in r]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot(*zip(*train), label="train loss (label-smoothed)", lw=1)
    if valid:
        ax_loss.plot(*zip(*valid), "o-", label="validation loss", lw=1.5, ms=3)
    ax_loss.set_xlabel("optimizer update")
    ax_loss.set_ylabel("loss (nats / completion token)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if lrs:
        ax_lr.plot(*zip(*lrs), color="tab:green", lw=1)
    ax_lr.set_xlabel("optimizer update")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")
