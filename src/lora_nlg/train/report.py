"""What a training run tells: the start summary, metrics.jsonl lines, train_curves.png and the final summary."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from lora_nlg.atomic import atomic_file, json_text, writing
from lora_nlg.train.state import Session, empty_log_acc


class Reporter:
    """metrics.jsonl (rank 0 only) and the curves plot, throttled during the run."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.metrics = MetricsLog(s.run_dir / "metrics.jsonl") if s.env.is_main else None
        self._last_plot = -float("inf")

    def log(self, val_loss: float | None = None) -> dict[str, Any]:
        """One metrics line with the training numbers since the last one (and the validation loss, if given)."""
        p, acc = self.s.progress, self.s.progress.log_acc
        row = {"step": p.step, "epoch": round(self.s.epoch_progress(), 4),
               "lr": p.last_lr if p.last_lr is not None else self.s.opt.lr,
               "loss": acc["loss"] / acc["updates"] if acc["updates"] else None,
               "tokens_per_s": round(acc["tokens"] / acc["seconds"], 1) if acc["seconds"] > 0 else None}
        if val_loss is not None:
            row.update(val_loss=val_loss, val_ppl=perplexity(val_loss))
        if self.metrics is not None:
            self.metrics.write(row)
        p.log_acc = empty_log_acc()
        return row

    def plot(self, throttle: bool = False) -> None:
        if throttle and time.perf_counter() - self._last_plot <= 60:  # matplotlib costs ~0.3 s
            return
        plot_curves(self.s.run_dir / "metrics.jsonl", self.s.run_dir / "train_curves.png")
        self._last_plot = time.perf_counter()

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()


def print_start_summary(s: Session) -> None:
    if not s.env.is_main:
        return
    cfg, t, env, model = s.cfg, s.cfg.train, s.env, s.net.model
    n_total = model.num_parameters()
    n_train = model.num_parameters(trainable_only=True)
    lora = cfg.lora
    lines = [
        "-" * 72,
        f"model:      {s.net.base_path}  ({model.config.n_layer} layers x {model.config.n_embd}, "
        f"{n_total / 1e6:.1f}M params)",
        f"LoRA:       r={lora.r} alpha={lora.alpha:g} dropout={lora.dropout:g} targets={','.join(lora.targets)}"
        f"  -> {n_train:,} trainable params ({100 * n_train / n_total:.3f}%)",
        f"data:       {cfg.data.split_path(cfg.data.train_split)} ({len(s.data.train_set):,} examples), "
        + (f"{cfg.data.split_path(cfg.data.valid_split)} ({len(s.data.valid_set):,})" if s.data.valid_set
           else "no validation"),
        f"batch:      {t.batch_size} per rank x {t.grad_acc} accumulation x {env.world_size} rank(s) = "
        f"{t.batch_size * t.grad_acc * env.world_size} examples per update",
        f"steps:      {s.max_steps:,} updates ({s.data.units_per_epoch:,} global batches per epoch), warmup "
        f"{t.warmup_steps}, {t.schedule} schedule, lr {t.lr:g}",
        f"precision:  {t.precision} on {env.device}" + (f", {env.world_size} processes" if env.distributed else ""),
        f"run dir:    {s.run_dir}"
        + (f"  (resuming from {s.progress.resumed_from.name})" if s.progress.resumed_from else ""),
        "-" * 72,
    ]
    print("\n".join(lines), flush=True)


def print_final_summary(s: Session, seconds: float) -> None:
    p, run_dir = s.progress, s.run_dir
    best = (f"{p.best_val_loss:.4f} (ppl {perplexity(p.best_val_loss):.2f}) at step "
            f"{p.best_step} -> {run_dir / 'best'}" if p.best_step >= 0 else "n/a (no validation)")
    print("\n".join([
        "-" * 72,
        f"done: {p.step} updates in {fmt_seconds(seconds)}",
        f"best validation loss: {best}",
        f"final adapter:  {run_dir / 'final'} (lora.safetensors, peft/)",
        f"metrics:        {run_dir / 'metrics.jsonl'}",
        f"curves:         {run_dir / 'train_curves.png'}",
        "-" * 72]), flush=True)


def fmt_seconds(s: float) -> str:
    h, rem = divmod(int(s), 3600)
    return f"{h}h{rem // 60:02d}m{rem % 60:02d}s" if h else f"{rem // 60}m{rem % 60:02d}s"


# ---------------------------------------------------------------------------------------------- metrics file
class MetricsLog:
    """Append-only metrics.jsonl (flushed per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        with writing(self.path):
            self.file.write(json_text(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        self.file.close()


class MetricsError(ValueError):
    """A metrics.jsonl line that is not a JSON object (other than a cut-off last line)."""


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl. A kill while a line was being written leaves it cut off, without its newline:
    that last line is dropped (resume rewrites the file up to its checkpoint); any other bad line is an error."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        if not isinstance(row, dict):
            if number == len(lines):  # no newline after it: a write cut short
                break
            raise MetricsError(f"{path}:{number}: not a JSON object; delete the line or the file to go on")
        rows.append(row)
    return rows


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines logged after `last_step` (written after the checkpoint we resume from) so nothing repeats."""
    if not path.is_file():
        return
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    with atomic_file(path) as f:
        f.writelines(json_text(r) + "\n" for r in rows)


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
