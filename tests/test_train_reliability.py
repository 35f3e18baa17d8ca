"""Training under hostile conditions (issue 16): concurrent runs, damaged checkpoints and adapters, changed data,
settings that cannot learn, models too short for the data, byte-identical artifacts, multi-node launches.

Every failure must be one line `error: <file or key>: <what is wrong>`, exit 1, no traceback, nothing half-written.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lora_nlg import GPT2, LoRAConfig
from lora_nlg.model import weights
from lora_nlg.model.network import CheckpointError, GPT2Config
from lora_nlg.run_dir import LOCK_FILE, RunLock, load_training_state
from lora_nlg.train.loop import main
from lora_nlg.train.report import read_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "e2e.yaml")

pytestmark = pytest.mark.usefixtures("one_thread")


def overrides(ckpt: Path, data: Path, out: Path, run: str = "run", **extra) -> list[str]:
    base = {"model.pretrained": ckpt, "data.dir": data, "train.out_dir": out, "train.run": run,
            "train.batch_size": 4, "train.max_steps": 4, "train.warmup_steps": 1, "train.lr": 1e-2,
            "train.log_interval": 1, "train.eval_interval": 0, "train.save_interval": 2, "train.eval_at_start": False,
            "data.valid_split": ""}
    base.update({(k.replace("__", ".") if "__" in k else f"train.{k}"): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def one_error_line(err: str) -> str:
    """The stderr of a refused command: exactly one `error:` line, no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def snapshot(root: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path, write_dataset) -> Path:
    """A private copy of the training data (tests change it)."""
    return write_dataset(tmp_path / "data")


@pytest.fixture(scope="module")
def stopped_run(tiny_checkpoint, tmp_path_factory, write_dataset) -> tuple[Path, Path]:
    """A run stopped after 4 of 6 updates with step-2/ and step-4/ (copied by each test that damages it)."""
    root = tmp_path_factory.mktemp("stopped")
    data = write_dataset(root / "data")
    assert main([CONFIG, *overrides(tiny_checkpoint, data, root, max_steps=6, stop_after_steps=4, keep_last=5)]) == 0
    assert sorted(p.name for p in (root / "run").iterdir() if p.name.startswith("step-")) == ["step-2", "step-4"]
    return root / "run", data


def copy_run(stopped_run, tmp_path) -> Path:
    run, _ = stopped_run
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def resume_args(tiny_checkpoint, stopped_run, tmp_path) -> list[str]:
    return [CONFIG, *overrides(tiny_checkpoint, stopped_run[1], tmp_path, max_steps=6, keep_last=5, resume="true")]


# ---------------------------------------------------------------------------------------------- damaged files
class Unsafe:
    """A class only a full unpickler could rebuild: torch.load(weights_only=True) must refuse it."""


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _safetensors_with_metadata(path: Path, **meta: str) -> None:
    tensors = weights.read_tensors(path)
    old = weights.read_metadata(path)
    weights.write_tensors(path, tensors, {**old, **meta})


DAMAGE = {
    "state-empty": ("training_state.pt", lambda p: p.write_bytes(b"")),
    "state-truncated": ("training_state.pt", _truncate),
    "state-random": ("training_state.pt", lambda p: p.write_bytes(os.urandom(4096))),
    "state-pickle": ("training_state.pt", lambda p: p.write_bytes(pickle.dumps({"step": Unsafe()}))),
    "state-torch-object": ("training_state.pt", lambda p: torch.save({"step": 4, "obj": Path("x")}, p)),
    "state-missing-keys": ("training_state.pt", lambda p: torch.save({"step": 4}, p)),
    "state-not-a-dict": ("training_state.pt", lambda p: torch.save(torch.zeros(3), p)),
    "adapter-empty": ("lora.safetensors", lambda p: p.write_bytes(b"")),
    "adapter-truncated": ("lora.safetensors", _truncate),
    "adapter-random": ("lora.safetensors", lambda p: p.write_bytes(os.urandom(4096))),
    "adapter-header-not-json": ("lora.safetensors",
                                lambda p: p.write_bytes((16).to_bytes(8, "little") + b"{not json at all" + b"\0" * 64)),
    "adapter-meta-not-json": ("lora.safetensors", lambda p: _safetensors_with_metadata(p, lora_config="{r: 4")),
    "adapter-meta-unknown-field": ("lora.safetensors", lambda p: _safetensors_with_metadata(
        p, lora_config=json.dumps({**LoRAConfig().to_dict(), "surprise": 1}))),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_resume_skips_a_damaged_newest_checkpoint(tiny_checkpoint, stopped_run, tmp_path, capsys, case):
    """A damaged step-4/ is named with what is wrong; the run continues from step-2/ and finishes."""
    run = copy_run(stopped_run, tmp_path)
    name, damage = DAMAGE[case]
    damage(run / "step-4" / name)
    assert main(resume_args(tiny_checkpoint, stopped_run, tmp_path)) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"skipping a damaged checkpoint: {run / 'step-4' / name}:" in err, err
    assert "resuming from step-2" in err
    assert (run / "final" / "lora.safetensors").is_file()
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("case", ["state-truncated", "adapter-random", "state-pickle"])
def test_resume_with_no_usable_checkpoint_names_them_and_writes_nothing(tiny_checkpoint, stopped_run, tmp_path,
                                                                        capsys, case):
    run = copy_run(stopped_run, tmp_path)
    name, damage = DAMAGE[case]
    for step in ("step-2", "step-4"):
        damage(run / step / name)
    before = snapshot(run)
    assert main(resume_args(tiny_checkpoint, stopped_run, tmp_path)) == 1
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert "no usable checkpoint" in line and str(run) in line
    assert str(run / "step-2" / name) in err and str(run / "step-4" / name) in err
    assert snapshot(run) == before and not (run / LOCK_FILE).exists()


@pytest.mark.parametrize("case", ["state-empty", "state-random", "state-pickle", "state-missing-keys"])
def test_load_training_state_is_one_error_naming_the_file(stopped_run, tmp_path, case):
    run = copy_run(stopped_run, tmp_path)
    name, damage = DAMAGE[case]
    damage(run / "step-4" / name)
    with pytest.raises(ValueError) as info:
        load_training_state(run / "step-4")
    assert str(info.value).startswith(f"{run / 'step-4' / name}: ") and "\n" not in str(info.value)
    if case == "state-pickle":
        assert "pickled Python objects" in str(info.value)


@pytest.mark.parametrize("case", [c for c in sorted(DAMAGE) if c.startswith("adapter-")])
def test_damaged_adapter_file_is_a_checkpoint_error(stopped_run, tmp_path, case):
    run = copy_run(stopped_run, tmp_path)
    name, damage = DAMAGE[case]
    path = run / "step-4" / name
    damage(path)
    model = GPT2.from_preset("tiny", lora=LoRAConfig())
    for load in (model.load_lora, weights.read_lora_config):
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: "), str(info.value)


def _deep_json(depth: int = 200_000) -> str:
    return "[" * depth + "]" * depth


PEFT_DAMAGE = {
    "missing-r": lambda c: json.dumps({k: v for k, v in c.items() if k != "r"}),
    "missing-alpha": lambda c: json.dumps({k: v for k, v in c.items() if k != "lora_alpha"}),
    "r-not-int": lambda c: json.dumps({**c, "r": "four"}),
    "alpha-nan": lambda c: json.dumps({**c, "lora_alpha": float("nan")}),
    "not-json": lambda c: "{\"r\": 4,",
    "a-list": lambda c: "[1, 2]",
    "nested-200000": lambda c: _deep_json(),
}


@pytest.mark.parametrize("case", sorted(PEFT_DAMAGE))
def test_damaged_peft_adapter_config_names_file_and_key(tiny_checkpoint, stopped_run, tmp_path, case):
    peft = tmp_path / "peft"
    shutil.copytree(stopped_run[0] / "step-4" / "peft", peft)
    cfg_file = peft / "adapter_config.json"
    cfg_file.write_text(PEFT_DAMAGE[case](json.loads(cfg_file.read_text())))
    with pytest.raises(CheckpointError) as info:
        GPT2.from_peft_adapter(tiny_checkpoint, peft)
    msg = str(info.value)
    assert msg.startswith(f"{cfg_file}: ") and "\n" not in msg, msg
    if case.startswith("missing-"):
        assert ("'r'" if case == "missing-r" else "'lora_alpha'") in msg


@pytest.mark.parametrize("content", ["{\"n_embd\": 64,", _deep_json(), "[]"], ids=["not-json", "nested", "list"])
def test_damaged_base_config_json_is_one_line_from_the_train_command(tiny_checkpoint, data, tmp_path, capsys,
                                                                      content):
    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    (base / "config.json").write_text(content)
    assert main([CONFIG, *overrides(base, data, tmp_path / "out")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {base / 'config.json'}: ")
    assert not (tmp_path / "out" / "run").exists()


# ---------------------------------------------------------------------------------------------- the run lock
def test_second_training_into_a_locked_run_is_refused_naming_the_holder(tiny_checkpoint, data, tmp_path, capsys):
    run = tmp_path / "run"
    lock = RunLock(run).acquire()
    try:
        before = snapshot(run)
        for extra in ({}, {"resume": "true"}):   # a resume takes the lock too
            assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, **extra)]) == 1
            line = one_error_line(capsys.readouterr().err)
            assert f"{run}: in use by another training" in line
            assert f"pid {os.getpid()} on host {socket.gethostname()}, since " in line
            assert snapshot(run) == before
    finally:
        lock.release()
    assert not run.exists()   # the lock created it, nothing else was written: releasing removes it
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path)]) == 0
    assert not (run / LOCK_FILE).exists() and (run / "final").is_dir()


@pytest.mark.parametrize("resume", [False, True])
def test_stale_lock_of_a_dead_process_is_taken_over(tiny_checkpoint, data, tmp_path, capsys, resume):
    run = tmp_path / "run"
    if resume:
        assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, stop_after_steps=2)]) == 0
    run.mkdir(exist_ok=True)
    (run / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone-host", "since": "2020-01-01T00:00:00"}))
    capsys.readouterr()
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, resume=str(resume).lower())]) == 0
    err = capsys.readouterr().err
    assert "took over the stale lock" in err and "pid 999999 on host gone-host" in err
    assert not (run / LOCK_FILE).exists() and (run / "final").is_dir()


def test_failed_setup_releases_the_lock(tiny_checkpoint, data, tmp_path, capsys):
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, **{"data__train_split": "nope"})]) == 1
    assert not (tmp_path / "run").exists()
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path)]) == 0


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


@pytest.mark.slow
def test_two_real_processes_into_one_run_then_kill_and_resume(tiny_checkpoint, data, tmp_path):
    args = [sys.executable, "-m", "lora_nlg.train", CONFIG,
            *overrides(tiny_checkpoint, data, tmp_path, max_steps=400, save_interval=1)]
    first = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None and len(read_metrics(tmp_path / "run" / "metrics.jsonl")) < 2:
            time.sleep(0.05)
        second = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        line = one_error_line(second.stderr)
        assert f"pid {first.pid} on host {socket.gethostname()}" in line
        again = subprocess.run(args + ["train.resume=true"], env=_env(), capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and f"pid {first.pid}" in one_error_line(again.stderr)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert (tmp_path / "run" / LOCK_FILE).exists()   # SIGKILL: no cleanup ran, the kernel dropped the flock
    resumed = subprocess.run(args + ["train.resume=true", "train.max_steps=3", "train.save_interval=0"],
                             env=_env(), capture_output=True, text=True, timeout=300)
    # max_steps lowered below the checkpoint: the resumed run finishes at once or after the remaining updates
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"took over the stale lock of {tmp_path / 'run'} (pid {first.pid}" in resumed.stderr
    assert not (tmp_path / "run" / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------------- data changed
@pytest.mark.parametrize("change", ["append", "same-size"])
def test_resume_refuses_changed_training_data(tiny_checkpoint, data, tmp_path, capsys, change):
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, stop_after_steps=2)]) == 0
    assert str(data / "train.jsonl") in load_training_state(tmp_path / "run" / "step-2")["data_fingerprint"]
    train = data / "train.jsonl"
    lines = train.read_text().splitlines(keepends=True)
    if change == "append":
        train.write_text("".join(lines + lines[:1]))
    else:  # the same bytes in another order: the epoch plan would differ
        train.write_text("".join(lines[1:] + lines[:1]))
    capsys.readouterr()
    before = snapshot(tmp_path / "run")
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, resume="true")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {train}: changed since the run trained on it")
    assert ("size" in line) if change == "append" else ("sha256 differs" in line)
    assert snapshot(tmp_path / "run") == before
    train.write_text("".join(lines))   # restored: the resume goes on
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, resume="true")]) == 0


# ---------------------------------------------------------------------------------------------- cannot learn
def test_max_seq_len_that_cuts_every_completion_is_refused_before_writing(tiny_checkpoint, data, tmp_path, capsys):
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, **{"data__max_seq_len": 8})]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "data.max_seq_len=8" in line and str(data / "train.jsonl") in line and "every completion token" in line
    assert not (tmp_path / "run").exists()


def test_validation_split_without_completion_tokens_is_refused(tiny_checkpoint, data, tmp_path, capsys):
    """A valid split whose contexts are all longer than max_seq_len would report val_loss 0.0000."""
    rows = [json.loads(line) for line in (data / "valid.jsonl").read_text().splitlines()]
    longest_train = max(len(json.loads(x)["context_ids"]) + len(json.loads(x)["completion_ids"])
                        for x in (data / "train.jsonl").read_text().splitlines())
    for row in rows:
        row["context_ids"] = [464] * longest_train + [50256]
    (data / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = overrides(tiny_checkpoint, data, tmp_path, **{"data__valid_split": "long", "data__max_seq_len": longest_train})
    assert main([CONFIG, *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(data / "long.jsonl") in line and f"data.max_seq_len={longest_train}" in line


def test_truncation_says_how_much_each_split_loses(tiny_checkpoint, data, tmp_path, capsys):
    max_len = 30
    expected = {}
    for split in ("train", "valid"):
        rows = [json.loads(x) for x in (data / f"{split}.jsonl").read_text().splitlines()]
        kept = [max(0, min(len(r["completion_ids"]), max_len - len(r["context_ids"]))) for r in rows]
        cut = [len(r["completion_ids"]) - k for r, k in zip(rows, kept)]
        expected[split] = (sum(c > 0 for c in cut), len(rows), sum(k == 0 for k in kept), sum(cut))
    assert all(0 < e[2] < e[0] for e in expected.values()), expected   # the fixture exercises both kinds
    args = overrides(tiny_checkpoint, data, tmp_path, max_steps=2, **{"data__max_seq_len": max_len,
                                                                       "data__valid_split": "valid"})
    assert main([CONFIG, *args]) == 0
    err = capsys.readouterr().err
    for split, (n_cut, n, n_none, tokens) in expected.items():
        assert (f"note: data.max_seq_len={max_len} cuts completion tokens from {n_cut:,} of {n:,} examples of "
                f"{data / f'{split}.jsonl'} ({n_none:,} of them lose every completion token and give no loss; "
                f"{tokens:,} completion tokens dropped)") in err, err


def test_no_note_when_nothing_is_truncated(tiny_checkpoint, data, tmp_path, capsys):
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, max_steps=1)]) == 0
    assert "cuts completion tokens" not in capsys.readouterr().err


@pytest.mark.parametrize("alpha", ["1e30", "1e38"])
def test_alpha_whose_adapter_cannot_learn_is_refused_before_the_run(tiny_checkpoint, data, tmp_path, capsys, alpha):
    """The config refuses a LoRA scale whose gradients overflow (LoRAConfig's bound), before anything is written."""
    args = overrides(tiny_checkpoint, data, tmp_path, max_steps=3, save_interval=0, **{"lora__alpha": alpha})
    assert main([CONFIG, *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "lora.alpha" in line and "scale" in line, line
    assert not (tmp_path / "run").exists()


def test_adapter_that_cannot_learn_is_not_a_success(tiny_checkpoint, data, tmp_path, capsys):
    """An lr so small that every fp32 update of B rounds to zero passes the config but leaves the adapter at zero."""
    args = overrides(tiny_checkpoint, data, tmp_path, max_steps=3, save_interval=0, lr="1e-46")
    assert main([CONFIG, *args]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "did not learn" in line, line
    assert not (tmp_path / "run" / "final").exists() and not (tmp_path / "run" / LOCK_FILE).exists()


def test_warmup_only_run_with_lr_zero_still_succeeds(tiny_checkpoint, data, tmp_path):
    """One update at lr 0 (the first warmup step) legitimately changes nothing: no error for smoke runs."""
    assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, max_steps=1, warmup_steps=5)]) == 0


# ---------------------------------------------------------------------------------------------- short model
def _short_checkpoint(out: Path, n_positions: int, config_json: bool) -> Path:
    torch.manual_seed(0)
    GPT2(GPT2Config(n_embd=64, n_layer=2, n_head=2, n_positions=n_positions)).save_pretrained(out)
    if not config_json:
        (out / "config.json").unlink()
        return out / "model.safetensors"
    return out


@pytest.mark.parametrize("config_json", [True, False])
def test_base_model_shorter_than_the_data_is_refused_before_writing(data, tmp_path, capsys, config_json):
    base = _short_checkpoint(tmp_path / "short", 40, config_json)
    assert main([CONFIG, *overrides(base, data, tmp_path / "out")]) == 1
    line = one_error_line(capsys.readouterr().err)
    if config_json:
        assert f"{base / 'config.json'}: key n_positions=40" in line
    else:
        assert f"{base}: tensor transformer.wpe.weight has 40 positions" in line
    assert "data.max_seq_len=41" in line and str(data / "train.jsonl") in line
    assert not (tmp_path / "out" / "run").exists()
    # the remedy the message gives works
    assert main([CONFIG, *overrides(base, data, tmp_path / "out", max_steps=2, **{"data__max_seq_len": 41})]) == 0


# ---------------------------------------------------------------------------------------------- artifacts
def test_same_adapter_saved_twice_is_byte_identical(tmp_path):
    torch.manual_seed(0)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(targets=("q", "v", "mlp.c_fc")))
    for i in range(2):
        model.save_lora(tmp_path / f"{i}.safetensors")
        model.save_peft_adapter(tmp_path / f"peft{i}", "base")
    assert (tmp_path / "0.safetensors").read_bytes() == (tmp_path / "1.safetensors").read_bytes()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "peft0" / name).read_bytes() == (tmp_path / "peft1" / name).read_bytes()
    header = json.loads((tmp_path / "0.safetensors").read_bytes()[8:8 + int.from_bytes(
        (tmp_path / "0.safetensors").read_bytes()[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    fresh = GPT2.from_preset("tiny", lora=LoRAConfig(targets=("q", "v", "mlp.c_fc")))
    fresh.load_lora(tmp_path / "0.safetensors")   # the canonical file still loads strictly
    assert all(torch.equal(a, b) for a, b in zip(fresh.lora_state_dict().values(), model.lora_state_dict().values()))


def test_identical_runs_give_identical_checksums(tiny_checkpoint, data, tmp_path):
    for run in ("a", "b"):
        assert main([CONFIG, *overrides(tiny_checkpoint, data, tmp_path, run)]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file() and p.parent.name in ("final", "peft", "step-2", "step-4"))
    assert len(files) >= 12
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


# ---------------------------------------------------------------------------------------------- multi-node
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_equal_one_process(tmp_path, write_dataset, write_learnable_checkpoint):
    """torchrun --nnodes=2 (one gloo process per 'node', both on 127.0.0.1) x batch 2 == 1 process x batch 4."""
    ckpt = write_learnable_checkpoint(tmp_path / "base", "tiny")
    data = write_dataset(tmp_path / "data")
    common = dict(max_steps=4, warmup_steps=0, lr=3e-2, eval_interval=4, save_interval=4,
                  **{"lora__dropout": 0.0, "data__valid_split": "valid"})
    assert main([CONFIG, *overrides(ckpt, data, tmp_path, "one", batch_size=4, **common)]) == 0
    port = _free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                               "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
                               "-m", "lora_nlg.train", CONFIG,
                               *overrides(ckpt, data, tmp_path, "two", batch_size=2, **common)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [n.communicate(timeout=300) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    one = [(r["step"], r["loss"], r.get("val_loss")) for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    two = [(r["step"], r["loss"], r.get("val_loss")) for r in read_metrics(tmp_path / "two" / "metrics.jsonl")]
    assert [s for s, _, _ in one] == [s for s, _, _ in two] == [1, 2, 3, 4]
    for (_, la, va), (_, lb, vb) in zip(one, two):
        assert abs(la - lb) < 1e-5 and (va is None) == (vb is None) and (va is None or abs(va - vb) < 1e-5)
    assert one[0][1] - one[-1][1] > 0.3   # it trained
    assert len(load_training_state(tmp_path / "two" / "step-4")["rng"]) == 2
    assert not (tmp_path / "two" / LOCK_FILE).exists()
