"""`python -m lora_nlg.decode` end to end on a tiny run directory, a PEFT adapter and a merged checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lora_nlg.config import load_config, save_config
from lora_nlg.decode import reference_files as R
from lora_nlg.decode.search import beam_search
from lora_nlg.decode.stage import main
from lora_nlg.tokenizer import get_tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "decode"
REPO = Path(__file__).resolve().parents[1]
DECODE = ["decode.beam=3", "decode.max_new_tokens=8", "decode.batch_size=2"]


@pytest.fixture(scope="module")
def run_env(tmp_path_factory, decoding_tiny_model):
    """runs/tiny-run/{config.yaml, final/lora.safetensors, final/peft/}, a base checkpoint and data/webnlg/test.jsonl."""
    root = tmp_path_factory.mktemp("decode-cli")
    model = decoding_tiny_model()
    base = root / "base"
    model.save_pretrained(base)
    run = root / "runs" / "tiny-run"
    (run / "final").mkdir(parents=True)
    model.save_lora(run / "final" / "lora.safetensors")
    model.save_peft_adapter(run / "final" / "peft", str(base))
    model.save_merged(root / "merged")
    data = root / "data" / "webnlg"
    data.mkdir(parents=True)
    shutil.copy(FIXTURES / "webnlg_test.jsonl", data / "test.jsonl")
    cfg = load_config(None, ["model.name=tiny", f"model.pretrained={base}", "data.dataset=webnlg",
                             f"data.dir={data}", "lora.r=4", "lora.alpha=32", *DECODE])
    save_config(cfg, run / "config.yaml")
    model.merge_lora()
    return {"root": root, "runs": root / "runs", "run": run, "base": base, "data": data / "test.jsonl",
            "model": model.eval()}


def expected_hypotheses(model, data: Path, **kw) -> list[list[int]]:
    inputs = R.unique_inputs(R.read_examples(data))
    return beam_search(model, [list(e.context_ids) for e in inputs], **kw)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_adapter_decodes_unique_inputs_and_writes_webnlg_subsets(run_env):
    assert main(["--run", "tiny-run", "--runs-dir", str(run_env["runs"]), "--split", "test"]) == 0
    out = run_env["run"] / "decode" / "test"
    preds = read_jsonl(out / "predictions.jsonl")
    inputs = R.unique_inputs(R.read_examples(run_env["data"]))
    assert [p["context"] for p in preds] == [e.context for e in inputs]
    want = expected_hypotheses(run_env["model"], run_env["data"], beam=3, max_new_tokens=8, batch_size=1)
    assert [p["hypothesis_ids"] for p in preds] == want
    assert any(len(ids) > 1 for ids in want)
    tok = get_tokenizer()
    assert [p["hypothesis"] for p in preds] == [R.cut_text(tok.decode(ids)) for ids in want]
    assert [len(p["references"]) for p in preds] == [3, 1, 7, 1, 1]
    assert [p["seen"] for p in preds] == [True, True, False, False, True]
    for subset, n in {"seen": 3, "unseen": 2, "all": 5}.items():
        names = sorted(p.name for p in (out / subset).iterdir())
        assert names == ["hyp.txt"] + [f"reference{k}" for k in range(6)]
        assert all((out / subset / name).read_text().count("\n") == n for name in names)
    all_hyp = (out / "all" / "hyp.txt").read_text().splitlines()
    assert all_hyp == [R.normalise(p["hypothesis"], tokenize=True, lower=True) for p in preds]
    summary = json.loads((out / "decode.json").read_text())
    assert summary["inputs"] == 5 and summary["references"] == 13 and summary["decode"]["beam"] == 3


def test_overrides_apply_and_unknown_keys_are_rejected(run_env, tmp_path, capsys):
    out = tmp_path / "greedy"
    assert main(["--run", "tiny-run", "--runs-dir", str(run_env["runs"]), "--out", str(out), "decode.beam=1"]) == 0
    got = [p["hypothesis_ids"] for p in read_jsonl(out / "predictions.jsonl")]
    assert got == expected_hypotheses(run_env["model"], run_env["data"], beam=1, max_new_tokens=8)
    assert main(["--run", "tiny-run", "--runs-dir", str(run_env["runs"]), "--out", str(tmp_path / "x"),
                 "decode.beams=2"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'decode.beams'" in err and "decode.beam" in err
    assert not (tmp_path / "x").exists()


def test_peft_adapter_and_merged_checkpoint_give_the_run_adapter_output(run_env, tmp_path):
    assert main(["--run", "tiny-run", "--runs-dir", str(run_env["runs"]), "--out", str(tmp_path / "run")]) == 0
    assert main(["--peft", str(run_env["run"] / "final" / "peft"), "--data", str(run_env["data"]),
                 "--out", str(tmp_path / "peft"), *DECODE]) == 0
    assert main(["--merged", str(run_env["root"] / "merged"), "--data", str(run_env["data"]),
                 "--out", str(tmp_path / "merged"), *DECODE]) == 0
    run_preds = (tmp_path / "run" / "all" / "hyp.txt").read_text()
    assert (tmp_path / "peft" / "all" / "hyp.txt").read_text() == run_preds
    assert (tmp_path / "merged" / "all" / "hyp.txt").read_text() == run_preds


def test_e2e_files_from_a_merged_checkpoint(run_env, tmp_path):
    out = tmp_path / "e2e"
    assert main(["--merged", str(run_env["root"] / "merged"), "--data", str(FIXTURES / "e2e_test.jsonl"),
                 "--dataset", "e2e", "--out", str(out), *DECODE]) == 0
    refs = (out / "refs.txt").read_text()
    assert refs.count("\n\n") == 3 and refs.splitlines()[3] == ""
    preds = read_jsonl(out / "predictions.jsonl")
    assert (out / "hyp.txt").read_text() == "".join(p["hypothesis"] + "\n" for p in preds)
    want = expected_hypotheses(run_env["model"], FIXTURES / "e2e_test.jsonl", beam=3, max_new_tokens=8)
    assert [p["hypothesis_ids"] for p in preds] == want


def test_clear_errors_and_nothing_written(run_env, tmp_path, capsys):
    runs = str(run_env["runs"])
    out = tmp_path / "out"
    assert main(["--run", "tiny-run", "--runs-dir", runs, "--checkpoint", "best", "--out", str(out)]) == 1
    assert "best/lora.safetensors: no adapter here" in capsys.readouterr().err
    assert main(["--run", "no-such-run", "--runs-dir", runs]) == 1
    assert "no-such-run/config.yaml: not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(run_env["data"].read_text() + '{"context": "x", "completion": "y"}\n')
    assert main(["--run", "tiny-run", "--runs-dir", runs, "--data", str(bad), "--out", str(out)]) == 1
    assert "bad.jsonl:14: missing field 'context_ids'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_two_processes_write_the_same_files_as_one(run_env, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    common = ["--run", "tiny-run", "--runs-dir", str(run_env["runs"])]
    one = subprocess.run([sys.executable, "-m", "lora_nlg.decode", *common, "--out", str(tmp_path / "one")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "lora_nlg.decode", "--run-name", *common[1:], "--out", str(tmp_path / "two")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    assert "2 process(es)" in two.stderr
    for rel in ("all/hyp.txt", "all/reference5", "seen/reference0", "unseen/hyp.txt"):
        assert (tmp_path / "two" / rel).read_text() == (tmp_path / "one" / rel).read_text(), rel
    one_rows, two_rows = read_jsonl(tmp_path / "one" / "predictions.jsonl"), read_jsonl(tmp_path / "two" / "predictions.jsonl")
    # other batch compositions change scores in the last bits only
    assert [(r["context"], r["hypothesis_ids"]) for r in two_rows] == [(r["context"], r["hypothesis_ids"]) for r in one_rows]
    assert [r["score"] for r in two_rows] == pytest.approx([r["score"] for r in one_rows], rel=1e-5)
