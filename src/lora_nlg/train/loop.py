"""LoRA fine-tuning: `python -m lora_nlg.train CONFIG [key=value ...]`, the same loop for 1..N processes.

Under torchrun, RANK/LOCAL_RANK/WORLD_SIZE come from the environment (gloo on CPU, NCCL on CUDA) and every rank
trains on its own disjoint share of each global batch. The objective is the reference's
(docs/reference-pipeline.md, "Training objective"): label-smoothed cross-entropy on completion tokens (incl. the
final 50256), averaged over the loss tokens of the whole global batch (all micro-batches and ranks of one optimizer
update). Only positions that carry loss reach the LM head and batches are padded to their own longest row, which
gives the same loss as the reference's 512-padded computation at a fraction of the work.

The lifecycle: `setup.setup` (run directory, data, model, optimizer, resume) -> `train` (the loop here:
`train_update` per optimizer update, `validate` at the eval points, `state` checkpoints) -> the final
adapter and summary (`report`). The schedule is described in `optim`.
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from typing import Any

import torch
from tqdm import tqdm

from lora_nlg.atomic import WriteError
from lora_nlg.config import ConfigError, load_config
from lora_nlg.distributed import init_distributed
from lora_nlg.run_dir import latest_step_dir
from lora_nlg.train.batching import DataError
from lora_nlg.train.objective import REFERENCE_DENOM_EPS, autocast, batch_loss_sum
from lora_nlg.train.report import Reporter, perplexity, print_final_summary, print_start_summary
from lora_nlg.train.setup import setup
from lora_nlg.train.state import Session, TrainingError, check_adapter_finite, save_named_adapter, save_step


# ---------------------------------------------------------------------------------------------- signals
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


# ---------------------------------------------------------------------------------------------- update
def train_update(s: Session) -> dict[str, float]:
    """One optimizer update over grad_acc global batches; returns the global loss, tokens and lr used."""
    t, env, net = s.cfg.train, s.env, s.net
    batches = s.data.next_window(s.progress)
    # The normaliser is the loss-token count of the whole global batch, so it must be known before backward.
    n_loss_global = env.all_reduce_sum([sum(b.n_loss for b in batches)])[0]
    scale = env.world_size / (n_loss_global + REFERENCE_DENOM_EPS)  # DDP averages gradients over ranks
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    for i, batch in enumerate(batches):
        batch = batch.to(env.device)
        sync = net.ddp is None or i == len(batches) - 1
        with (contextlib.nullcontext() if sync else net.ddp.no_sync()), autocast(t.precision, env.device.type):
            micro_sum = batch_loss_sum(net.forward, batch, t.label_smoothing)
        loss = micro_sum * scale
        (s.opt.scaler.scale(loss) if s.opt.scaler else loss).backward()
        loss_sum += micro_sum.detach()
    total_sum, n_tokens = env.all_reduce_sum([loss_sum.item(), sum(b.n_tokens for b in batches)])
    loss = total_sum / (n_loss_global + REFERENCE_DENOM_EPS)
    if not math.isfinite(loss):
        s.opt.optimizer.zero_grad(set_to_none=True)
        last = latest_step_dir(s.run_dir)
        raise TrainingError(f"non-finite training loss ({loss}) at update {s.progress.step + 1} (epoch "
                            f"{s.progress.epoch}); stopped before applying it. Last good checkpoint: "
                            f"{last or 'none yet'}. Try a lower train.lr, train.clip=1.0, or train.precision=fp32")
    lr = s.opt.lr
    s.opt.apply(net.params, t.clip)
    s.progress.step += 1
    return {"loss": loss, "tokens": n_tokens, "lr": lr}


# ---------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(s: Session) -> float:
    """Un-smoothed token-mean cross-entropy over the whole validation set (sums and counts over ranks)."""
    model = s.net.model
    model.eval()
    loss_sum, n_loss = 0.0, 0
    for batch in s.data.valid_batches:
        batch = batch.to(s.env.device)
        with autocast(s.cfg.train.precision, s.env.device.type):
            loss_sum += batch_loss_sum(model, batch, 0.0).item()
        n_loss += batch.n_loss
    model.train()
    loss_sum, n_loss = s.env.all_reduce_sum([loss_sum, n_loss])
    return loss_sum / max(n_loss, 1)


def run_validation(s: Session, report: Reporter, bar) -> None:
    """Validate (once per step), log it with the training numbers, keep best/ and tell the console."""
    p, env = s.progress, s.env
    if not s.data.valid_batches or (p.last_val and p.last_val[0] == p.step):
        return
    val_loss = validate(s)
    if not math.isfinite(val_loss):
        raise TrainingError(f"non-finite validation loss ({val_loss}) at update {p.step}; the adapter is unusable. "
                            f"Try a lower train.lr or lora.alpha, train.clip=1.0, or train.precision=fp32")
    p.last_val = (p.step, val_loss)
    report.log(val_loss)
    improved = val_loss < p.best_val_loss
    if improved:
        p.best_val_loss, p.best_step = val_loss, p.step
        if env.is_main:
            save_named_adapter(s, "best")
    env.barrier()
    if env.is_main:
        bar.write(f"step {p.step}: val_loss {val_loss:.4f}  ppl {perplexity(val_loss):.2f}"
                  + ("  (best)" if improved else ""))
        report.plot(throttle=True)  # the end of the run always plots


# ---------------------------------------------------------------------------------------------- loop
def train(s: Session) -> int:
    t, env, p = s.cfg.train, s.env, s.progress
    report = Reporter(s)
    print_start_summary(s)
    start_time, start_step = time.perf_counter(), p.step
    lr_used = 0.0   # the largest lr of this invocation's updates: with 0 (warmup only) nothing can change
    bar = tqdm(total=s.max_steps, initial=p.step, disable=not env.is_main, unit="step",
               dynamic_ncols=True, desc="train")
    try:
        with StopSignal() as stop:
            if t.eval_at_start and p.step == 0 and p.resumed_from is None:
                run_validation(s, report, bar)
            while p.step < s.max_steps:
                tic = time.perf_counter()
                out = train_update(s)
                p.last_lr = out["lr"]
                lr_used = max(lr_used, out["lr"])
                acc = p.log_acc
                acc["loss"] += out["loss"]
                acc["updates"] += 1
                acc["tokens"] += out["tokens"]
                acc["seconds"] += time.perf_counter() - tic
                bar.update(1)
                if env.is_main and (p.step % 10 == 0 or p.step == s.max_steps or t.log_interval == 1):
                    bar.set_postfix(loss=f"{out['loss']:.3f}", lr=f"{out['lr']:.2e}",
                                    tok_s=f"{out['tokens'] / max(time.perf_counter() - tic, 1e-9):.0f}",
                                    refresh=False)
                after_update(s, report, bar, stop, start_step)
    finally:
        bar.close()
        report.close()
    check_learned(s, lr_used)
    finish(s, report, time.perf_counter() - start_time)
    return 0


def check_learned(s: Session, lr_used: float) -> None:
    """A run whose adapter still adds nothing (every lora_B exactly zero, as initialised) after updates with a
    positive lr did not learn: an error, not a success (e.g. a huge lora.alpha whose gradients overflow)."""
    check_adapter_finite(s)
    b = [prm for name, prm in s.net.model.named_parameters() if ".lora_B" in name]
    if lr_used > 0 and b and not any(bool(prm.detach().any()) for prm in b):
        t, lora = s.cfg.train, s.cfg.lora
        raise TrainingError(f"training did not learn: after update {s.progress.step} (lr up to {lr_used:g}) every "
                            f"LoRA B matrix is still zero, so the adapter changes nothing (lora.alpha={lora.alpha:g}, "
                            f"lora.r={lora.r}, train.lr={t.lr:g}); final/ was not written. Use a sane lora.alpha "
                            f"and train.lr")


def after_update(s: Session, report: Reporter, bar, stop: "StopSignal", start_step: int) -> None:
    """Validation or a log line, a step checkpoint, and an early stop (signal, train.stop_after_steps) if due."""
    t, env, p = s.cfg.train, s.env, s.progress
    done = p.step >= s.max_steps
    if s.data.valid_batches and ((t.eval_interval and p.step % t.eval_interval == 0) or done
                                 or p.unit_pos >= s.data.units_per_epoch):
        run_validation(s, report, bar)   # its metrics line carries the training numbers too
    elif (t.log_interval and p.step % t.log_interval == 0) or (done and p.log_acc["updates"]):
        report.log()
    saved = False
    if (t.save_interval and p.step % t.save_interval == 0) or done:
        save_step(s)
        saved = True
    # Every rank must stop at the same update, so a signal on any rank stops all of them.
    signalled = env.all_reduce_sum([float(stop.signum != 0)])[0] > 0
    asked = t.stop_after_steps and p.step - start_step >= t.stop_after_steps and not done
    if signalled or asked:
        if not saved:
            save_step(s)
        signum = stop.signum or signal.SIGTERM
        why = (f"received {signal.Signals(signum).name}" if signalled
               else f"train.stop_after_steps={t.stop_after_steps} reached")
        raise StopRun(f"{why}: saved {s.run_dir / f'step-{p.step}'}; continue with RESUME=1 "
                      f"(train.resume=true)", 128 + signum if signalled else 0)


def finish(s: Session, report: Reporter, seconds: float) -> None:
    if s.env.is_main:
        save_named_adapter(s, "final")
        report.plot()
    s.env.barrier()
    if s.env.is_main:
        print_final_summary(s, seconds)


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
    env = session = None
    try:
        cfg = load_config(argv[0], argv[1:])
        env = init_distributed(cfg.train.device)
        session = setup(cfg, env)
        return train(session)
    except StopRun as e:
        if env is None or env.is_main:
            print(f"stopped: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except (ConfigError, DataError, TrainingError, ValueError, WriteError) as e:  # WriteError: full disk etc.
        prefix = f"[rank {env.rank}] " if env is not None and env.distributed else ""
        if env is None or env.is_main or not isinstance(e, (ConfigError, TrainingError)):
            print(f"{prefix}error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if session is not None:
            session.release()
        if env is not None:
            env.close()


if __name__ == "__main__":
    sys.exit(main())
