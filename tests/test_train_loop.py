"""The training loop end to end on a tiny model: learning, artifacts, resume, signals, NaN, DDP (issue 4)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lora_nlg.train.loop as train_mod
from lora_nlg import GPT2
from lora_nlg.config import load_config
from lora_nlg.run_dir import load_training_state
from lora_nlg.train.loop import main
from lora_nlg.train.report import read_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "e2e.yaml")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def learnable_checkpoint(tmp_path_factory, write_learnable_checkpoint):
    return write_learnable_checkpoint(tmp_path_factory.mktemp("tiny-learnable"), "tiny")


def overrides(ckpt: Path, data: Path, out: Path, run: str = "run", **extra) -> list[str]:
    base = {"model.pretrained": ckpt, "data.dir": data, "train.out_dir": out, "train.run": run,
            "train.batch_size": 4, "train.max_steps": 4, "train.warmup_steps": 1, "train.lr": 1e-2,
            "train.log_interval": 1, "train.eval_interval": 0, "train.save_interval": 2, "train.eval_at_start": False}
    base.update({(k.replace("__", ".") if "__" in k else f"train.{k}"): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def lora_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "lora.safetensors"))


def losses(run_dir: Path) -> list[tuple[int, float, float | None]]:
    return [(r["step"], r["loss"], r.get("val_loss")) for r in read_metrics(run_dir / "metrics.jsonl")]


def assert_no_temporaries(run_dir: Path) -> None:
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.startswith(".")]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------- learning
def test_tiny_model_learns_and_writes_every_artifact(learnable_checkpoint, data_dir, tmp_path):
    args = overrides(learnable_checkpoint, data_dir, tmp_path, batch_size=8, max_steps=40, lr=3e-2, warmup_steps=2,
                     eval_interval=20, save_interval=20, keep_last=1, eval_at_start=True, **{"lora__dropout": 0.0})
    assert main([CONFIG, *args]) == 0
    run = tmp_path / "run"
    rows = read_metrics(run / "metrics.jsonl")
    train_losses = [r["loss"] for r in rows if r["loss"] is not None]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert train_losses[0] > 11.5 and sum(train_losses[-5:]) / 5 < train_losses[0] - 3.0, train_losses
    assert val[-1] < val[0] - 3.0, val
    # 48 examples / 8 = 6 global batches per epoch: validation at 0, every epoch end, 20 and 40
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 6, 12, 18, 20, 24, 30, 36, 40]
    assert all({"step", "epoch", "lr", "loss", "tokens_per_s"} <= r.keys() for r in rows)
    assert all(r["val_ppl"] == pytest.approx(2.718281828 ** r["val_loss"]) for r in rows if "val_loss" in r)

    assert load_config(run / "config.yaml").train.max_steps == 40
    assert (run / "train_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.yaml", "final", "metrics.jsonl", "step-40",
                                                     "train_curves.png"]   # keep_last=1 pruned step-20
    for name in ("best", "final", "step-40"):
        assert (run / name / "lora.safetensors").is_file()
        assert {p.name for p in (run / name / "peft").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    best_meta = json.loads((run / "best" / "meta.json").read_text())
    assert best_meta["val_loss"] == min(val) and best_meta["step"] == 40
    state = load_training_state(run / "step-40")  # weights_only=True
    assert state["step"] == 40 and state["epoch"] == 7 and len(state["rng"]) == 1
    assert {"optimizer", "scheduler", "unit_pos", "best_val_loss"} <= state.keys()
    torch.testing.assert_close(lora_tensors(run / "final"), lora_tensors(run / "step-40"), rtol=0, atol=0)

    # The PEFT export of the final adapter reproduces the trained model's logits.
    cfg = load_config(run / "config.yaml")
    ours = GPT2.from_pretrained(learnable_checkpoint, lora=cfg.lora).eval()
    ours.load_lora(run / "final" / "lora.safetensors")
    peft = GPT2.from_peft_adapter(learnable_checkpoint, run / "final" / "peft").eval()
    ids = torch.tensor([[464, 2068, 7586, 21831, 50256, 317]])
    with torch.no_grad():
        torch.testing.assert_close(peft(ids), ours(ids), rtol=1e-5, atol=1e-5)
    assert_no_temporaries(run)


def test_existing_run_dir_is_refused_without_resume(tiny_checkpoint, data_dir, tmp_path, capsys):
    args = overrides(tiny_checkpoint, data_dir, tmp_path, max_steps=2)
    assert main([CONFIG, *args]) == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")}
    capsys.readouterr()
    assert main([CONFIG, *args]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "RESUME=1" in err
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")} == before  # nothing touched


def test_failed_setup_writes_nothing(tiny_checkpoint, data_dir, tmp_path, capsys):
    """A missing split is reported before the run dir exists, so fixing it does not need RESUME=1."""
    args = overrides(tiny_checkpoint, data_dir, tmp_path, max_steps=1, **{"data__train_split": "nope"})
    assert main([CONFIG, *args]) == 1
    assert "nope.jsonl" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_resume_is_bit_identical(tiny_checkpoint, data_dir, tmp_path):
    """4 updates straight == 2 updates, stop, resume, 2 more (dropout on: the RNG state is restored too)."""
    common = dict(max_steps=4, save_interval=0, **{"lora__dropout": 0.1, "data__valid_split": "valid"},
                  eval_interval=2)
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "straight", **common)]) == 0
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "split", stop_after_steps=2, **common)]) == 0
    assert (tmp_path / "split" / "step-2").is_dir() and not (tmp_path / "split" / "final").exists()
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "split", resume="true", **common)]) == 0

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert losses(straight) == losses(split) and len(losses(split)) == 4
    for name in ("final", "best"):
        a, b = lora_tensors(straight / name), lora_tensors(split / name)
        assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = load_training_state(straight / "step-4"), load_training_state(split / "step-4")
    states_a, states_b = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert states_a and states_a.keys() == states_b.keys()
    assert all(torch.equal(states_a[k]["exp_avg_sq"], states_b[k]["exp_avg_sq"]) for k in states_a)


def test_resume_with_different_settings_is_refused(tiny_checkpoint, data_dir, tmp_path, capsys):
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, stop_after_steps=2)]) == 0
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, resume="true", lr=5e-3)]) == 1
    assert "train.lr: 0.01 -> 0.005" in capsys.readouterr().err


def test_nan_loss_stops_with_last_good_checkpoint_intact(tiny_checkpoint, data_dir, tmp_path, monkeypatch, capsys):
    real = train_mod.batch_loss_sum
    calls = {"n": 0}

    def poisoned(model, batch, eps):
        calls["n"] += 1
        loss = real(model, batch, eps)
        return loss * float("nan") if calls["n"] == 3 else loss   # the 3rd update's loss

    monkeypatch.setattr(train_mod, "batch_loss_sum", poisoned)
    args = overrides(tiny_checkpoint, data_dir, tmp_path, max_steps=6, save_interval=2,
                     **{"data__valid_split": ""})
    assert main([CONFIG, *args]) == 1
    err = capsys.readouterr().err
    assert "non-finite training loss (nan) at update 3" in err and "step-2" in err
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl", "step-2"]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]
    assert all(torch.isfinite(t).all() for t in lora_tensors(run / "step-2").values())
    assert load_training_state(run / "step-2")["step"] == 2
    assert_no_temporaries(run)


def test_micro_batch_splitting_keeps_the_global_token_mean(tiny_checkpoint, data_dir, tmp_path):
    """train.max_tokens splits each batch into accumulated chunks; the update must not change."""
    common = dict(max_steps=3, save_interval=0, lr=1e-2, warmup_steps=0, **{"lora__dropout": 0.0})
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "whole", **common)]) == 0
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "chunks", max_tokens=60, **common)]) == 0
    for (s1, l1, _), (s2, l2, _) in zip(losses(tmp_path / "whole"), losses(tmp_path / "chunks")):
        assert s1 == s2 and abs(l1 - l2) < 1e-5
    a, b = lora_tensors(tmp_path / "whole" / "final"), lora_tensors(tmp_path / "chunks" / "final")
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("grad_acc", [1, 2])
def test_lr_per_update_follows_the_reference_schedule(tiny_checkpoint, data_dir, tmp_path, grad_acc):
    """Update k uses lr * lambda(k-1) (first update lr 0), whatever the accumulation: the scheduler steps per
    update, not per micro-batch as in the reference."""
    args = overrides(tiny_checkpoint, data_dir, tmp_path, batch_size=2, grad_acc=grad_acc, max_steps=6,
                     warmup_steps=2, lr=1e-2, save_interval=0, **{"data__valid_split": ""})
    assert main([CONFIG, *args]) == 0
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert lrs == pytest.approx([0.0, 0.005, 0.01, 0.0075, 0.005, 0.0025], abs=1e-12)


# ---------------------------------------------------------------------------------------------- processes
def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


@pytest.mark.slow
def test_two_processes_equal_one_process(learnable_checkpoint, data_dir, tmp_path):
    """torchrun with 2 gloo ranks x batch 2 == 1 process x batch 4 (the same global batches)."""
    common = dict(max_steps=5, warmup_steps=0, lr=3e-2, eval_interval=5, save_interval=5,
                  **{"lora__dropout": 0.0, "data__valid_split": "valid"})
    one = overrides(learnable_checkpoint, data_dir, tmp_path, "one", batch_size=4, **common)
    two = overrides(learnable_checkpoint, data_dir, tmp_path, "two", batch_size=2, **common)
    assert main([CONFIG, *one]) == 0
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lora_nlg.train", CONFIG, *two], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _, _ in a] == [s for s, _, _ in b] == [1, 2, 3, 4, 5]
    for (_, la, va), (_, lb, vb) in zip(a, b):
        assert abs(la - lb) < 1e-5 and (va is None) == (vb is None) and (va is None or abs(va - vb) < 1e-5)
    assert a[0][1] - a[-1][1] > 0.5  # it trained
    torch.testing.assert_close(lora_tensors(tmp_path / "one" / "final"), lora_tensors(tmp_path / "two" / "final"),
                               rtol=1e-4, atol=1e-5)
    assert len(load_training_state(tmp_path / "two" / "step-5")["rng"]) == 2  # per-rank RNG states


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_matches_uninterrupted(tiny_checkpoint, data_dir, tmp_path):
    common = dict(max_steps=40, save_interval=0, **{"lora__dropout": 0.1, "data__valid_split": ""})
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "straight", **common)]) == 0

    args = [sys.executable, "-m", "lora_nlg.train", CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "killed",
                                                                       **common)]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(read_metrics(metrics)) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "received SIGTERM" in err and "RESUME=1" in err
    killed = tmp_path / "killed"
    steps = [p.name for p in killed.iterdir() if p.name.startswith("step-")]
    assert len(steps) == 1 and 3 <= int(steps[0][5:]) < 40 and not (killed / "final").exists()
    assert_no_temporaries(killed)

    resumed = subprocess.run(args + ["train.resume=true"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(killed) == losses(tmp_path / "straight")
    a, b = lora_tensors(killed / "final"), lora_tensors(tmp_path / "straight" / "final")
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert_no_temporaries(killed)


def test_bf16_autocast_trains_close_to_fp32_and_fp16_needs_cuda(tiny_checkpoint, data_dir, tmp_path, capsys):
    common = dict(max_steps=2, save_interval=0, **{"lora__dropout": 0.0, "data__valid_split": ""})
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "fp32", **common)]) == 0
    assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "bf16", precision="bf16", **common)]) == 0
    for (_, a, _), (_, b, _) in zip(losses(tmp_path / "fp32"), losses(tmp_path / "bf16")):
        assert abs(a - b) < 0.05 and a != b   # bf16 really ran, and stays close
    if not torch.cuda.is_available():
        assert main([CONFIG, *overrides(tiny_checkpoint, data_dir, tmp_path, "fp16", precision="fp16")]) == 1
        assert "fp16 needs CUDA" in capsys.readouterr().err
