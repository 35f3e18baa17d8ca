"""CLI contract: the whole chain (data -> train -> decode -> eval) through the real entry points, on a tiny
model and generated data; plus each stage's refusal of bad input with a clear message and a non-zero exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_nlg.demo import synthetic

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = REPO, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("chain")
    synthetic.write_dataset(root / "raw", seed=1, sizes={"train": 40, "valid": 6, "test": 6})
    run("-m", "lora_nlg.data", "--dataset", "e2e", "--raw-dir", str(root / "raw"), "--out-dir", str(root / "data"),
        "--no-progress")
    run("-m", "lora_nlg.train", "configs/demo.yaml", "model.name=tiny", f"model.pretrained={tiny_checkpoint}",
        f"data.dir={root / 'data' / 'e2e'}", f"train.out_dir={root / 'ck'}", "train.run=r", "train.max_steps=4",
        "train.batch_size=4", "train.eval_interval=2", "train.save_interval=2", "train.log_interval=1")
    run("-m", "lora_nlg.decode", "--run-name", "r", "--runs-dir", str(root / "ck"), "--split", "test",
        "decode.beam=3", "decode.max_new_tokens=12")
    run("eval/run_eval.py", str(root / "ck" / "r"), "test", "--mteval", "python")
    return root


@pytest.mark.slow
def test_every_artifact_exists_and_scores_are_in_range(chain):
    run_dir = chain / "ck" / "r"
    for rel in ("config.yaml", "metrics.jsonl", "train_curves.png", "step-2/lora.safetensors", "step-4/lora.safetensors",
                "step-4/training_state.pt", "final/lora.safetensors", "final/peft/adapter_config.json",
                "final/peft/adapter_model.safetensors", "best/lora.safetensors", "decode/test/predictions.jsonl",
                "decode/test/refs.txt", "decode/test/hyp.txt", "eval/test.json", "eval/test.md"):
        assert (run_dir / rel).is_file(), rel
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("loss") is not None][:4] == [1, 2, 3, 4]
    assert any(m.get("val_loss") is not None for m in metrics)
    hyps = (run_dir / "decode" / "test" / "hyp.txt").read_text().splitlines()
    assert len(hyps) == 6  # one line per unique test input
    report = json.loads((run_dir / "eval" / "test.json").read_text())
    scores = next(iter(report["scores"].values()))
    assert set(scores) >= {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
    assert all(isinstance(v, float) for v in scores.values())
    assert 0 <= scores["BLEU"] <= 1 and 0 <= scores["METEOR"] <= 1 and 0 <= scores["ROUGE_L"] <= 1
    assert scores["NIST"] >= 0 and scores["CIDEr"] >= 0


@pytest.mark.slow
def test_bad_input_is_refused_with_a_clear_message(chain, tmp_path):
    ck = chain / "ck"
    missing = run("-m", "lora_nlg.decode", "--run-name", "nope", "--runs-dir", str(ck), ok=False)
    assert missing.returncode != 0 and "nope" in missing.stderr and "Traceback" not in missing.stderr

    (ck / "no-adapter").mkdir()
    (ck / "no-adapter" / "config.yaml").write_text((ck / "r" / "config.yaml").read_text())
    no_adapter = run("-m", "lora_nlg.decode", "--run-name", "no-adapter", "--runs-dir", str(ck), ok=False)
    assert no_adapter.returncode != 0 and "lora.safetensors" in no_adapter.stderr and "Traceback" not in no_adapter.stderr

    refs, hyp = tmp_path / "refs.txt", tmp_path / "hyp.txt"
    refs.write_text("a b c\n\nd e f\n")
    hyp.write_text("a b c\n")
    mismatch = run("eval/score.py", "e2e", str(refs), str(hyp), ok=False)
    # One line naming both files with their counts: 1 hypothesis against 2 inputs (blank-line separated groups).
    assert mismatch.returncode != 0 and mismatch.stderr.count("\n") == 1, mismatch.stderr
    assert mismatch.stderr.startswith("error: count mismatch: ")
    assert f"{hyp} has 1 hypotheses" in mismatch.stderr and f"{refs} has 2 inputs" in mismatch.stderr

    preset = run("-m", "lora_nlg.train", "configs/demo.yaml", "model.name=gpt5", "model.pretrained=",
                 f"data.dir={tmp_path}", f"train.out_dir={tmp_path}", ok=False)
    assert preset.returncode != 0 and "gpt5" in preset.stderr and "Traceback" not in preset.stderr

    unknown = run("-m", "lora_nlg.train", "configs/nope.yaml", ok=False)
    assert unknown.returncode != 0 and "configs/nope.yaml" in unknown.stderr
