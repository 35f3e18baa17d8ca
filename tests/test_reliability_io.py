"""Issue 16, classes 2, 5, 6 and 7: outputs appear whole or not at all, cannot-write is one line before the heavy
work, decode settings the model cannot run are refused, and files are deterministic and respect the umask.
Full or unwritable outputs are simulated in ways that also work as root: RLIMIT_FSIZE in a subprocess (with
SIGXFSZ ignored the write fails with EFBIG), monkeypatched os functions, a path whose parent is a regular file."""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import lora_nlg.atomic as atomic
from lora_nlg import GPT2, LoRAConfig
from lora_nlg.atomic import WriteError, atomic_dir, atomic_file, check_writable, json_text, write_files_together
from lora_nlg.config import load_config, save_config

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "tests" / "fixtures" / "data" / "raw"
DECODE_DATA = REPO / "tests" / "fixtures" / "decode" / "webnlg_test.jsonl"
EVAL_FIXTURES = REPO / "tests" / "fixtures" / "eval"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".")]


def full_disk(limit: int):
    """preexec_fn: files may not grow past `limit` bytes; writes beyond fail with EFBIG instead of a signal."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def run_py(code: str, *args: str, limit: int | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=full_disk(limit) if limit else None)


def enospc_on_fsync(monkeypatch, fragment: str) -> None:
    """fsync of a file whose path contains `fragment` fails as on a full disk (a real ENOSPC shows up there)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)
    monkeypatch.setattr(atomic.os, "fsync", fsync)


# ============================================================================ class 2: data outputs are one set
@pytest.fixture
def data_out(tmp_path) -> tuple[Path, Path]:
    """(raw dir, out dir) with data/e2e written once from the fixtures; then the raw test split is changed, so a
    second run would write a different set."""
    raw = tmp_path / "raw"
    shutil.copytree(RAW, raw)
    out = tmp_path / "out"
    from lora_nlg.data.stage import main
    assert main(["--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(out), "--no-progress"]) == 0
    for split in ("train", "valid", "test"):
        with open(raw / "e2e" / f"{split}.txt", "a", encoding="utf-8") as f:
            f.write("name : Extra Place | Type : pub||Extra Place is a pub .\n")
    return raw, out


DATA_KILLER = """
    import os, signal, sys
    import lora_nlg.atomic as atomic
    import lora_nlg.data.stage as stage
    when, args = sys.argv[1], sys.argv[2:]
    calls = [0]
    real_write, real_swap, real_rename = stage.atomic_write_lines, atomic._swap_in, atomic.os.rename
    def write(path, lines):
        real_write(path, lines)
        calls[0] += 1
        if when == f"write{calls[0]}":
            os.kill(os.getpid(), signal.SIGKILL)
    def swap(tmp, path):
        real_swap(tmp, path)
        os.kill(os.getpid(), signal.SIGKILL)
    def rename(a, b):
        real_rename(a, b)
        if str(b).endswith(".e2e.old"):
            os.kill(os.getpid(), signal.SIGKILL)
    stage.atomic_write_lines = write
    if when == "swap":
        atomic._swap_in = swap
    if when == "between-renames":  # the fallback without renameat2
        atomic._EXCHANGE = None
        atomic.os.rename = rename
    sys.exit(stage.main(args))
"""


@pytest.mark.parametrize("when", ["write1", "write2", "write3", "write4", "swap", "between-renames"])
def test_data_kill_at_any_point_leaves_the_old_or_the_new_complete_set(data_out, when):
    raw, out = data_out
    old = snapshot(out / "e2e")
    args = ["--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(out), "--no-progress"]
    killed = run_py(DATA_KILLER, when, *args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if when == "between-renames":  # `e2e` is gone for a moment; the next writer (or reader's sweep) puts it back
        atomic.remove_stale_temporaries(out / "e2e")
    now = snapshot(out / "e2e")
    assert sorted(now) == ["stats.json", "test.jsonl", "train.jsonl", "valid.jsonl"]
    if when == "swap":
        assert now != old
        stats = json.loads(now["stats.json"])
        assert stats["splits"]["test"]["pairs"] == now["test.jsonl"].count(b"\n")  # stats describe these files
    else:
        assert now == old
    from lora_nlg.data.stage import main
    assert main(args) == 0  # the next run sweeps what the killed one left
    assert hidden_leftovers(out) == []
    stats = json.loads((out / "e2e" / "stats.json").read_text())
    assert all(stats["splits"][s]["pairs"] == (out / "e2e" / f"{s}.jsonl").read_text().count("\n")
               for s in ("train", "valid", "test"))


@pytest.mark.parametrize("after_writes, replaced", [(0, False), (2, False), (3, False), (None, True)])
def test_data_ctrl_c_message_says_what_is_true(data_out, monkeypatch, capsys, after_writes, replaced):
    import lora_nlg.data.stage as stage
    raw, out = data_out
    old = snapshot(out / "e2e")
    calls = [0]
    real_write, real_swap = stage.atomic_write_lines, atomic._swap_in

    def write(path, lines):
        if calls[0] == after_writes:
            raise KeyboardInterrupt
        calls[0] += 1
        real_write(path, lines)

    def swap(tmp, path):
        real_swap(tmp, path)
        raise KeyboardInterrupt  # after the swap, before the stage hears of it

    monkeypatch.setattr(stage, "atomic_write_lines", write)
    if replaced:
        monkeypatch.setattr(atomic, "_swap_in", swap)
    assert stage.main(["--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip()
    if replaced:
        assert err == f"error: interrupted; {out / 'e2e'} written completely"
        assert snapshot(out / "e2e") != old
    else:
        assert err == f"error: interrupted; {out / 'e2e'} left as before"
        assert snapshot(out / "e2e") == old
    assert hidden_leftovers(out) == [] and "no partial output" not in err


def test_data_interrupt_before_writing_says_nothing_changed(data_out, monkeypatch, capsys):
    import lora_nlg.data.stage as stage
    raw, out = data_out

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(stage, "encode_examples", interrupted)
    assert stage.main(["--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(out), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted before writing; no output was changed"


def test_data_full_disk_keeps_the_previous_set_and_says_cannot_write(data_out):
    raw, out = data_out
    old = snapshot(out / "e2e")
    proc = run_py("import sys; from lora_nlg.data.stage import main; sys.exit(main(sys.argv[1:]))",
                  "--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(out), "--no-progress", limit=600)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"error: cannot write {out / 'e2e' / 'train.jsonl'}: File too large"
    assert snapshot(out / "e2e") == old and hidden_leftovers(out) == []


def test_data_enospc_on_a_later_file_keeps_the_previous_set(data_out, monkeypatch, capsys):
    from lora_nlg.data.stage import main
    raw, out = data_out
    old = snapshot(out / "e2e")
    enospc_on_fsync(monkeypatch, "stats.json")
    assert main(["--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(out), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == \
        f"error: cannot write {out / 'e2e' / 'stats.json'}: No space left on device"
    assert snapshot(out / "e2e") == old and hidden_leftovers(out) == []


def test_data_only_some_splits_keeps_the_others_in_the_new_set(data_out):
    from lora_nlg.data.stage import main
    raw, out = data_out
    train = (out / "e2e" / "train.jsonl").read_bytes()
    assert main(["--dataset", "e2e", "--splits", "test", "--raw-dir", str(raw), "--out-dir", str(out),
                 "--no-progress"]) == 0
    assert (out / "e2e" / "train.jsonl").read_bytes() == train
    stats = json.loads((out / "e2e" / "stats.json").read_text())
    assert sorted(stats["splits"]) == ["test", "train", "valid"] and stats["dataset"] == "e2e"


def test_data_unwritable_out_dir_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    import lora_nlg.data.stage as stage
    (tmp_path / "blocker").write_text("")

    def never(*a, **k):
        raise AssertionError("encoded although the output cannot be written")
    monkeypatch.setattr(stage, "encode_dataset", never)
    assert stage.main(["--dataset", "e2e", "--raw-dir", str(RAW), "--out-dir", str(tmp_path / "blocker" / "data"),
                       "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == \
        f"error: cannot write {tmp_path / 'blocker' / 'data' / 'e2e'}: {tmp_path / 'blocker'} is not a directory"


# ============================================================================ class 5: cannot write, said once
@pytest.mark.parametrize("make, kind, reason", [
    (lambda p: (p / "f").write_text(""), "f/x/y.json", "is not a directory"),           # parent is a file
    (lambda p: (p / "f").write_text(""), "f/y.json", "is not a directory"),
    (lambda p: (p / "d").mkdir(), "d", "is a directory"),                               # a file where a dir is
    (lambda p: None, "/proc/no-such-dir/out.json", "No such file or directory"),        # unwritable even as root
    (lambda p: None, "/proc/self/out.json", ""),
])
def test_check_writable_names_the_path_and_the_reason(tmp_path, make, kind, reason):
    make(tmp_path)
    target = Path(kind) if kind.startswith("/") else tmp_path / kind
    with pytest.raises(WriteError) as caught:
        check_writable(target)
    assert str(caught.value).startswith(f"cannot write {target}: ") and reason in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ([kind[0]] if kind[0] in "fd" else [])  # nothing created


def test_check_writable_dir_refuses_a_file_and_accepts_a_new_path(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(WriteError, match="exists and is not a directory"):
        check_writable(tmp_path / "f", "dir")
    check_writable(tmp_path / "new" / "deeper", "dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("writer", ["atomic_file", "atomic_dir", "together"])
def test_full_disk_in_every_writer_is_a_write_error_and_keeps_the_old_file(tmp_path, writer):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("old")
    (tmp_path / "b.txt").write_text("old")
    code = {"atomic_file": "with atomic_file(root / 'b.txt') as f: f.write('x' * 5000)",
            "atomic_dir": "with atomic_dir(root / 'd') as t: (t / 'a.txt').write_text('x' * 5000)",
            "together": "write_files_together({root / 'b.txt': 'new', root / 'c.txt': 'x' * 5000})"}[writer]
    proc = run_py(f"""
        import sys
        from pathlib import Path
        from lora_nlg.atomic import WriteError, atomic_dir, atomic_file, write_files_together
        root = Path(sys.argv[1])
        try:
            {code}
        except WriteError as e:
            print(e)
            sys.exit(3)
        """, str(tmp_path), limit=1000)
    assert proc.returncode == 3, proc.stderr
    failed = {"atomic_file": "b.txt", "atomic_dir": "d", "together": "c.txt"}[writer]  # write() names no file
    assert proc.stdout.strip() == f"cannot write {tmp_path / failed}: File too large"
    assert (tmp_path / "b.txt").read_text() == "old" and (tmp_path / "d" / "a.txt").read_text() == "old"
    assert not (tmp_path / "c.txt").exists() and hidden_leftovers(tmp_path) == []


def test_files_written_together_roll_back_when_a_later_rename_fails(tmp_path, monkeypatch):
    (tmp_path / "test.json").write_text("old json")
    (tmp_path / "test.md").write_text("old md")
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith("test.md"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'test.md'}: Input/output error"):
        write_files_together({tmp_path / "test.json": "new json", tmp_path / "test.md": "new md"})
    assert (tmp_path / "test.json").read_text() == "old json" and (tmp_path / "test.md").read_text() == "old md"
    assert hidden_leftovers(tmp_path) == []


def run_eval_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "r"
    decode = run / "decode" / "test"
    decode.mkdir(parents=True)
    shutil.copy(EVAL_FIXTURES / "e2e_refs.txt", decode / "refs.txt")
    shutil.copy(EVAL_FIXTURES / "e2e_hyp.txt", decode / "hyp.txt")
    (decode / "decode.json").write_text(json.dumps({"dataset": "e2e", "split": "test"}))
    return run


def eval_cli(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "eval" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("where", ["under-a-file", "a-directory", "proc"])
def test_score_json_that_cannot_be_written_exits_2_before_scoring(tmp_path, where):
    (tmp_path / "f").write_text("")
    (tmp_path / "d").mkdir()
    out = {"under-a-file": tmp_path / "f" / "s.json", "a-directory": tmp_path / "d",
           "proc": Path("/proc/self/s.json")}[where]
    proc = eval_cli("score.py", "e2e", EVAL_FIXTURES / "e2e_refs.txt", EVAL_FIXTURES / "e2e_hyp.txt",
                    "--mteval", "python", "--json", out)
    assert proc.returncode == 2 and proc.stdout == ""  # nothing printed: the table would suggest success
    assert proc.stderr.startswith(f"error: cannot write {out}: ") and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"] and not any((tmp_path / "d").iterdir())


def test_run_eval_unwritable_eval_dir_exits_2_and_writes_nothing(tmp_path):
    run = run_eval_dir(tmp_path)
    (run / "eval").write_text("not a directory")
    proc = eval_cli("run_eval.py", run, "test", "--mteval", "python")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: cannot write {run / 'eval' / 'test.json'}: {run / 'eval'} is not a directory"
    assert "eval: scoring" not in proc.stderr  # refused before the scorers ran


@pytest.mark.slow  # scores twice through the metric jars
def test_run_eval_writes_json_and_md_together_or_neither(tmp_path, monkeypatch, capsys):
    import run_eval
    run = run_eval_dir(tmp_path)
    assert run_eval.main([str(run), "test", "--mteval", "python"]) == 0
    before = snapshot(run / "eval")
    assert sorted(before) == ["test.json", "test.md"]
    enospc_on_fsync(monkeypatch, "test.md")
    (run / "decode" / "test" / "hyp.txt").write_text((run / "decode" / "test" / "hyp.txt").read_text().upper())
    capsys.readouterr()
    assert run_eval.main([str(run), "test", "--mteval", "python"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"error: cannot write {run / 'eval' / 'test.md'}: No space left on device")
    assert snapshot(run / "eval") == before


def test_checkpoint_on_a_full_disk_is_one_clean_line(tiny_checkpoint, data_dir, tmp_path, monkeypatch, capsys):
    from lora_nlg.train.loop import main
    enospc_on_fsync(monkeypatch, "step-")
    args = {"model.pretrained": tiny_checkpoint, "data.dir": data_dir, "train.out_dir": tmp_path, "train.run": "run",
            "train.batch_size": 4, "train.max_steps": 2, "train.warmup_steps": 1, "train.log_interval": 1,
            "train.eval_interval": 0, "train.save_interval": 2, "train.eval_at_start": False}
    assert main([str(REPO / "configs" / "e2e.yaml"), *[f"{k}={v}" for k, v in args.items()]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot write {tmp_path / 'run' / 'step-2'}/")
    assert err[-1].endswith(": No space left on device") and not any("Traceback" in line for line in err)
    assert not (tmp_path / "run" / "step-2").exists() and hidden_leftovers(tmp_path / "run") == []


def test_training_state_is_written_without_torch_file_writer(tmp_path, monkeypatch):
    """torch.save to a path reports a full disk as a C++ enforce error; in memory then our writer, an OSError."""
    from lora_nlg.run_dir import write_checkpoint_dir
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=2))
    enospc_on_fsync(monkeypatch, "never")  # a no-op filter: the real fsync
    real_write_bytes = Path.write_bytes

    def full(self, data):
        if self.name == "training_state.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_bytes(self, data)
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(WriteError) as caught:
        write_checkpoint_dir(model, tmp_path / "step-1", state={"step": torch.tensor(1)})
    assert str(caught.value) == f"cannot write {tmp_path / 'step-1' / 'training_state.pt'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


# ============================================================================ class 6: decode settings
@pytest.fixture(scope="module")
def decode_env(tmp_path_factory, decoding_tiny_model):
    root = tmp_path_factory.mktemp("decode-rel")
    model = decoding_tiny_model()
    base = root / "base"
    model.save_pretrained(base)
    runs = root / "runs"
    data = root / "data" / "webnlg"
    data.mkdir(parents=True)
    shutil.copy(DECODE_DATA, data / "test.jsonl")
    cfg = load_config(None, ["model.name=tiny", f"model.pretrained={base}", "data.dataset=webnlg",
                             f"data.dir={data}", "lora.r=4", "lora.alpha=32", "decode.beam=2",
                             "decode.max_new_tokens=4", "decode.batch_size=2"])
    for name in ("good", "nan", "foreign"):
        (runs / name / "final").mkdir(parents=True)
        save_config(cfg, runs / name / "config.yaml")
    model.save_lora(runs / "good" / "final" / "lora.safetensors")
    with torch.no_grad():
        next(iter(model.lora_parameters())).view(-1)[0] = float("nan")
    model.save_lora(runs / "nan" / "final" / "lora.safetensors")
    GPT2.from_preset("tiny", lora=LoRAConfig(r=8, alpha=16)).save_lora(runs / "foreign" / "final" / "lora.safetensors")
    return {"runs": runs, "n_positions": model.config.n_positions, "vocab": model.config.vocab_size}


def decode(env, run: str, *extra: str) -> int:
    from lora_nlg.decode.stage import main
    return main(["--run", run, "--runs-dir", str(env["runs"]), *extra])


@pytest.mark.parametrize("override", ["decode.length_penalty=nan", "decode.length_penalty=inf",
                                      "decode.length_penalty=-inf", "decode.repetition_penalty=inf",
                                      "decode.repetition_penalty=nan", "decode.beam=60000",
                                      "decode.max_new_tokens=100000"])
def test_decode_settings_that_cannot_work_are_refused_before_the_search(decode_env, override, capsys, monkeypatch):
    import lora_nlg.decode.stage as stage

    def never(*a, **k):
        raise AssertionError("searched with settings that cannot work")
    monkeypatch.setattr(stage, "generate", never)
    assert decode(decode_env, "good", override) == 1
    err = capsys.readouterr().err.strip().splitlines()
    key, value = override.split("=")
    assert err[-1].startswith("error: ") and key in err[-1] and "Traceback" not in "".join(err)
    assert value in err[-1] or key.endswith("repetition_penalty")  # the config check may word it as a rule
    assert not (decode_env["runs"] / "good" / "decode").exists()


def test_decode_exactly_at_the_context_window_truncates_and_says_how_many(decode_env, capsys, tmp_path):
    n = decode_env["n_positions"]
    assert decode(decode_env, "good", f"decode.max_new_tokens={n - 4}", "decode.beam=1", "--max-inputs", "2",
                  "--out", str(tmp_path / "o")) == 0
    assert "note: 2 of 2 inputs are longer than" in capsys.readouterr().err


def test_negative_length_penalty_is_refused_before_anything_is_written(decode_env, capsys, tmp_path):
    assert decode(decode_env, "good", "decode.length_penalty=-0.5", "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decode.length_penalty" in err[0] and "-0.5" in err[0] and "must be a finite number >= 0" in err[0]
    assert not (tmp_path / "o").exists()


def test_decode_outputs_are_strict_json(decode_env, tmp_path):
    assert decode(decode_env, "good", "decode.length_penalty=0", "--out", str(tmp_path / "o")) == 0

    def no_constants(name):
        raise AssertionError(f"bare {name} in a JSON file")
    for line in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line, parse_constant=no_constants)["score"], (float, type(None)))
    json.loads((tmp_path / "o" / "decode.json").read_text(), parse_constant=no_constants)


def test_nan_adapter_is_refused_naming_the_file(decode_env, capsys):
    assert decode(decode_env, "nan") == 1
    adapter = decode_env["runs"] / "nan" / "final" / "lora.safetensors"
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"error: {adapter}: 1 tensor(s) hold NaN or inf values")
    assert not (decode_env["runs"] / "nan" / "decode").exists()


def test_foreign_adapter_with_other_lora_settings_is_refused_naming_both(decode_env, capsys):
    assert decode(decode_env, "foreign") == 1
    err = capsys.readouterr().err.strip()
    assert "r: adapter 8 vs config 4" in err and "alpha: adapter 16" in err and "vs config 32" in err
    assert str(decode_env["runs"] / "foreign" / "config.yaml") in err


@pytest.mark.parametrize("out", ["under-a-file", "a-file"])
def test_decode_unwritable_out_is_refused_before_the_model_loads(decode_env, tmp_path, capsys, monkeypatch, out):
    import lora_nlg.decode.stage as stage
    (tmp_path / "f").write_text("")
    target = tmp_path / "f" / "o" if out == "under-a-file" else tmp_path / "f"

    def never(*a, **k):
        raise AssertionError("the model was loaded although --out cannot be written")
    monkeypatch.setattr(stage, "load_model", never)
    assert decode(decode_env, "good", "--out", str(target)) == 1
    reason = f"{tmp_path / 'f'} is not a directory" if out == "under-a-file" else "exists and is not a directory"
    assert capsys.readouterr().err.strip() == f"error: cannot write {target}: {reason}"


def test_decode_full_disk_keeps_the_previous_output(decode_env, tmp_path):
    out = tmp_path / "o"
    assert decode(decode_env, "good", "--out", str(out)) == 0
    old = snapshot(out)
    proc = run_py("import sys; from lora_nlg.decode.stage import main; sys.exit(main(sys.argv[1:]))",
                  "--run", "good", "--runs-dir", str(decode_env["runs"]), "--out", str(out), "decode.beam=1",
                  limit=200, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: cannot write {out / 'predictions.jsonl'}: File too large"
    assert snapshot(out) == old and hidden_leftovers(tmp_path) == []


# ============================================================================ class 7: deterministic, umask
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_every_writer_respects_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "d") as t:
            (t / "inner.txt").write_text("x")
        with atomic_dir(tmp_path / "d") as t:  # the replacement too
            (t / "inner.txt").write_text("y")
        write_files_together({tmp_path / "t.json": "{}", tmp_path / "t.md": "#"})
        save_config(load_config(None, []), tmp_path / "config.yaml")
    finally:
        os.umask(old)
    for name in ("a.txt", "t.json", "t.md", "config.yaml"):  # t.*: how eval/ writes its reports
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask


def test_checkpoint_dirs_respect_the_umask(tmp_path):
    from lora_nlg.run_dir import write_checkpoint_dir
    old = os.umask(0o022)
    try:
        write_checkpoint_dir(GPT2.from_preset("tiny", lora=LoRAConfig(r=2)), tmp_path / "final", meta={"step": 1})
    finally:
        os.umask(old)
    for p in [tmp_path / "final", *(tmp_path / "final").rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


@pytest.mark.slow  # 4 fresh interpreters importing torch
def test_the_same_adapter_saved_by_two_processes_has_the_same_bytes(tmp_path):
    code = """
        import sys, torch
        from lora_nlg import GPT2, LoRAConfig
        torch.manual_seed(0)
        GPT2.from_preset("tiny", lora=LoRAConfig(r=2)).save_lora(sys.argv[1])
        """
    outs = []
    for seed in ("1", "2", "3", "4"):  # the hash seed changed the metadata order of safetensors' header
        out = tmp_path / f"a{seed}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(out)], check=True, env=env, timeout=120)
        outs.append(out.read_bytes())
    assert all(o == outs[0] for o in outs)
    from safetensors.torch import load_file
    assert load_file(str(tmp_path / "a1.safetensors"))  # still a valid file


def test_json_text_is_strict_and_stable():
    assert json_text({"b": float("nan"), "a": [float("inf"), 1.5]}, sort_keys=True) == '{"a": [null, 1.5], "b": null}'
    with pytest.raises(ValueError):
        json.dumps({"x": float("nan")}, allow_nan=False)  # what json_text guards against


def test_a_killed_writers_temp_file_is_removed_by_the_next_writer(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.json.{atomic._HOST}-{pid}-deadbeef.tmp"
    stale.write_text("half")
    foreign = tmp_path / ".out.json.000000-1-deadbeef.tmp"  # another host's writer may still be alive
    foreign.write_text("theirs")
    with atomic_file(tmp_path / "out.json") as f:
        f.write("{}")
    assert not stale.exists() and foreign.exists()
