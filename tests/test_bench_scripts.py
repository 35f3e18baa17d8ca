"""The benchmark scripts run end to end on a tiny model and their report renders every row they print."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def load_report_module():
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "scripts" / "bench_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decode_and_train_benchmarks_and_their_report():
    decode = run_script("scripts/bench_decode.py", "--model", "tiny", "--batch", "1,3", "--inputs", "4",
                        "--max-new-tokens", "8", "--reference", "--reference-inputs", "2", "--repeats", "1")
    assert [r["batch"] for r in decode] == [1, 3]
    for r in decode:
        assert r["inputs"] == 4 and r["eos_suppressed"] and r["mean_new_tokens"] == 8.0
        assert r["identical_outputs"] == "2/2"  # fp32: both regimes find the same hypotheses
        assert r["reference"]["inputs"] == 2 and r["reference"]["mode"] == "faithful"
        assert r["inputs_per_s"] > 0 and abs(r["new_tokens_per_s"] - 8 * r["inputs_per_s"]) < 0.1
        assert 0 < r["mfu"] < 1 and r["peak_rss_mb"] > 0 and r["speedup_inputs_per_s"] > 0

    (train,) = run_script("scripts/bench_train.py", "--model", "tiny", "--steps", "2", "--warmup", "1",
                          "--pad", "512", "--pad-steps", "1")
    assert train["tokens_per_s"] > 0 and 0 < train["mfu"] < 1
    assert train["speedup"] > 1  # padding every example to 512 costs far more than bucketing

    report = load_report_module()
    machine = {"cpu": "test CPU", "cores": 2, "torch": "x", "python": "3", "date": "2026-01-01"}
    text = report.render(machine, [train], decode)
    table_rows = [line for line in text.splitlines() if line.startswith("| tiny |")]
    assert len(table_rows) == 3 and "test CPU, 2 cores" in text
    assert f"{decode[0]['speedup_inputs_per_s']:,.1f}x | 2/2 |" in table_rows[1]
