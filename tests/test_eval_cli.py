"""`python eval/score.py` and `eval/run_eval.py` (make eval): outputs, reference layouts and error paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import run_eval
import score
from evalcommon.text_files import EvalInputError

REPO = Path(__file__).resolve().parents[1]

FIXTURES = REPO / "tests" / "fixtures" / "eval"
E2E_KEYS = ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"]


def run_cli(*args: str, env: dict | None = None, script: str = "score.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "eval" / script), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


# ---- score.py e2e -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_e2e_cli_prints_like_measure_scores_and_writes_json(tmp_path):
    # The challenge CSV form and the -p mode here; refs.txt and the default mode run in the `make eval` test.
    out = tmp_path / "scores.json"
    proc = run_cli("e2e", FIXTURES / "e2e_refs.csv", FIXTURES / "e2e_hyp.txt", "--mteval", "python", "--json", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[:2] == ["SCORES:", "=============="] and lines[7:] == ["", ""]
    scores = json.loads(out.read_text())
    assert list(scores) == E2E_KEYS
    assert lines[2:7] == [f"{k}: {scores[k]:.4f}" for k in E2E_KEYS]
    assert 0 < scores["BLEU"] < 1 and 0 < scores["METEOR"] < 1 and 0 < scores["ROUGE_L"] < 1
    assert len(str(scores["BLEU"])) > 6  # the port's full precision, not mteval's 4 printed decimals
    assert "warning" not in proc.stderr  # no output of <= 3 tokens


def test_count_mismatch_fails_without_writing(tmp_path):
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("only one line\n")
    out = tmp_path / "scores.json"
    proc = run_cli("e2e", FIXTURES / "e2e_refs.txt", hyp, "--json", out)
    assert proc.returncode == 2
    assert "has 1 hypotheses but" in proc.stderr and "has 3 inputs" in proc.stderr
    assert not out.exists()


def test_non_utf8_hypotheses_fail_naming_the_file(tmp_path):
    hyp = tmp_path / "latin1.txt"
    hyp.write_bytes(b"a\nb\ncaf\xe9\n")
    proc = run_cli("e2e", FIXTURES / "e2e_refs.txt", hyp)
    assert proc.returncode == 2
    assert f"{hyp}: line 3, byte 4: not valid UTF-8" in proc.stderr


def test_missing_java_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # an empty directory: no java anywhere
    out = tmp_path / "scores.json"
    proc = run_cli("e2e", FIXTURES / "e2e_refs.txt", FIXTURES / "e2e_hyp.txt", "--json", out, env=env)
    assert proc.returncode == 2
    assert "Java not found" in proc.stderr and "apt-get install default-jre-headless" in proc.stderr
    assert "JAVA_HOME" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_too_old_java_in_java_home_is_rejected(tmp_path):
    fake = tmp_path / "jdk7" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho \'java version "1.7.0_80"\' >&2\n')
    fake.chmod(0o755)
    proc = run_cli("e2e", FIXTURES / "e2e_refs.txt", FIXTURES / "e2e_hyp.txt",
                   env={**os.environ, "JAVA_HOME": str(tmp_path / "jdk7")})
    assert proc.returncode == 2 and "is Java 7" in proc.stderr and "need Java >= 8" in proc.stderr


def test_cli_rejects_wrong_arguments():
    assert run_cli("e2e", FIXTURES / "e2e_refs.txt").returncode == 2
    assert run_cli("webnlg", FIXTURES / "webnlg", FIXTURES / "webnlg" / "hypothesis", "--mteval", "python").returncode == 2


# ---- score.py webnlg / dart ---------------------------------------------------------------------------------

def test_reference_layouts(tmp_path):
    for i in range(3):
        (tmp_path / f"reference{i}").write_text("x\n")
    expected = [tmp_path / f"reference{i}" for i in range(3)]
    assert score.resolve_reference_files([str(tmp_path)]) == expected  # directory
    assert score.resolve_reference_files([str(tmp_path / "reference")]) == expected  # prefix
    assert score.resolve_reference_files([str(p) for p in expected[:2]]) == expected[:2]  # several files
    (tmp_path / "reference10").write_text("x\n")  # numeric, not lexicographic order; gaps are errors
    with pytest.raises(EvalInputError, match="missing reference3, .*reference9"):
        score.resolve_reference_files([str(tmp_path)])
    with pytest.raises(EvalInputError, match="no reference files"):
        score.resolve_reference_files([str(tmp_path / "ref_")])
    with pytest.raises(EvalInputError, match="no such reference file"):
        score.resolve_reference_files([str(expected[0]), str(tmp_path / "nope")])


@pytest.mark.slow
def test_webnlg_cli_table_and_json(tmp_path):
    out = tmp_path / "w.json"
    proc = run_cli("webnlg", FIXTURES / "webnlg" / "reference", FIXTURES / "webnlg" / "hypothesis", "--json", out)
    assert proc.returncode == 0, proc.stderr
    header, rule, row = proc.stdout.strip("\n").split("\n")
    assert header.split() == ["BLEU", "BLEU", "NLTK", "METEOR", "TER"]
    scores = json.loads(out.read_text())
    assert list(scores) == ["BLEU", "METEOR", "TER", "TER_corpus"]
    assert row.split()[0] == format(float(f"{scores['BLEU']:.2f}"), "g") and 0 < scores["METEOR"] < 1 and 0 < scores["TER"] < 1


# ---- run_eval.py (make eval) --------------------------------------------------------------------------------

def make_e2e_run(root: Path, model: str = "gpt2-medium") -> Path:
    run = root / "my-run"
    decode = run / "decode" / "test"
    decode.mkdir(parents=True)
    (decode / "refs.txt").write_bytes((FIXTURES / "e2e_refs.txt").read_bytes())
    (decode / "hyp.txt").write_bytes((FIXTURES / "e2e_hyp.txt").read_bytes())
    (decode / "decode.json").write_text(json.dumps({"dataset": "e2e", "split": "test"}))
    (run / "config.yaml").write_text(f"model:\n  name: {model}\ndata:\n  dataset: e2e\n")
    return run


@pytest.mark.slow
def test_run_eval_writes_json_and_markdown_beside_the_paper(tmp_path):
    run = make_e2e_run(tmp_path)
    proc = run_cli(run, "test", script="run_eval.py")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run / "eval" / "test.json").read_text())
    assert report["dataset"] == "e2e" and report["model"] == "gpt2-medium"
    assert list(report["scores"]) == ["all"] and list(report["scores"]["all"]) == E2E_KEYS
    assert report["paper"]["scores"]["all"]["BLEU"] == {"value": 70.4, "plus_minus": 0.1}
    assert report["bleu_nist_by_mteval"]["official"]["BLEU"] == report["scores"]["all"]["BLEU"]
    md = (run / "eval" / "test.md").read_text()
    bleu = report["scores"]["all"]["BLEU"]
    assert f"| all | BLEU | {bleu:.4f} | {bleu * 100:.2f} | 70.4 ± 0.1 | {bleu * 100 - 70.4:+.2f} |" in md
    assert "| all | CIDEr |" in md and "2.53 ± 0.02" in md
    assert md in proc.stdout
    assert not [p for p in (run / "eval").iterdir() if p.name.startswith(".")]  # no temp files left


def test_run_eval_without_decode_output_says_what_to_do(tmp_path):
    proc = run_cli(tmp_path / "nothing", "test", script="run_eval.py")
    assert proc.returncode == 2 and "make decode RUN=nothing SPLIT=test" in proc.stderr


def test_dataset_and_subsets_are_detected_from_files(tmp_path):
    web = tmp_path / "web"
    for subset in ("seen", "all"):  # a split without unseen inputs
        (web / subset).mkdir(parents=True)
        (web / subset / "hyp.txt").write_text("x\n")
    assert run_eval.detect_dataset(web) == "webnlg"
    assert run_eval.subset_dirs("webnlg", web) == {"seen": web / "seen", "all": web / "all"}
    (tmp_path / "dart").mkdir()
    (tmp_path / "dart" / "reference0").write_text("x\n")
    assert run_eval.detect_dataset(tmp_path / "dart") == "dart"
    assert run_eval.subset_dirs("dart", tmp_path / "dart") == {"all": tmp_path / "dart"}
    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "refs.txt").write_text("x\n")
    assert run_eval.detect_dataset(tmp_path / "e2e") == "e2e"
    with pytest.raises(EvalInputError, match="make decode"):
        run_eval.detect_dataset(tmp_path)


def test_webnlg_report_puts_each_subset_beside_the_papers_column():
    scores = {s: {"BLEU": b, "BLEU_NLTK": 0.5, "METEOR": 0.4, "TER": 0.35, "TER_corpus": 0.3}
              for s, b in (("unseen", 47.0), ("seen", 62.5), ("all", 55.0))}
    facts = {"run": "r", "split": "test", "dataset": "webnlg", "model": "gpt2-large", "decode_dir": "d",
             "scorer": "s"}
    md = run_eval.markdown_report(facts, scores, "gpt2-large")
    assert "| unseen | BLEU | 47 | 47.00 | 48.4 ± 0.3 | -1.40 |" in md
    assert "| seen | TER | 0.35 | 0.350 | 0.32 | +0.030 |" in md
    assert "| all | METEOR | 0.4 | 0.400 | 0.42 | -0.020 |" in md
    small = run_eval.markdown_report({**facts, "model": "gpt2"}, scores, "gpt2-medium")
    assert "the paper has no row for gpt2" in small and "| all | BLEU | 55 | 55.00 | 55.3 ± 0.2 | -0.30 |" in small
