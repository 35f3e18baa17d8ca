"""The benchmark scripts run end to end on a tiny model and their report renders every row they print."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow  # a subprocess per benchmark script
def test_decode_and_train_benchmarks_and_their_report():
    decode = run_script("scripts/bench_decode.py", "--model", "tiny", "--batch", "1,3", "--inputs", "4",
                        "--max-new-tokens", "8", "--reference", "--reference-inputs", "2", "--repeats", "1",
                        "--device", "cpu", "--peak-size", "256")
    assert [r["batch"] for r in decode] == [1, 3]
    for r in decode:
        assert r["inputs"] == 4 and r["eos_suppressed"] and r["mean_new_tokens"] == 8.0
        assert r["identical_outputs"] == "2/2"  # fp32: both regimes find the same hypotheses
        assert r["reference"]["inputs"] == 2 and r["reference"]["mode"] == "faithful"
        assert r["inputs_per_s"] > 0 and abs(r["new_tokens_per_s"] - 8 * r["inputs_per_s"]) < 0.1
        assert 0 < r["mfu"] < 1 and r["peak_rss_mb"] > 0 and r["speedup_inputs_per_s"] > 0
        assert r["device"] == "cpu" and r["precision_native"] and r["cpu_capability"]

    (train,) = run_script("scripts/bench_train.py", "--model", "tiny", "--steps", "2", "--warmup", "1",
                          "--pad", "512", "--pad-steps", "1", "--device", "cpu", "--peak-size", "256")
    assert train["tokens_per_s"] > 0 and 0 < train["mfu"] < 1
    assert train["speedup"] > 1  # padding every example to 512 costs far more than bucketing

    report = load_report_module()
    machine = {"cpu": "test CPU", "cores": 2, "torch": "x", "python": "3", "date": "2026-01-01"}
    text = report.render(machine, [train], decode)
    table_rows = [line for line in text.splitlines() if line.startswith("| tiny |")]
    assert len(table_rows) == 3 and "test CPU, 2 cores" in text
    assert f"{decode[0]['speedup_inputs_per_s']:,.1f}x | 2/2 |" in table_rows[1]


@pytest.mark.slow  # a subprocess per benchmark script
def test_train_benchmark_against_hf_peft_and_its_report_rows():
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("peft") is None:
        pytest.skip("transformers/peft are not installed: bench_train.py --hf trains GPT2LMHeadModel + PEFT")
    # batch 2, a 256^3 peak: cheap where bf16 is emulated (a CPU without avx512_bf16/AMX), where it runs too
    (r,) = run_script("scripts/bench_train.py", "--model", "tiny", "--steps", "2", "--warmup", "1", "--dtype", "bf16",
                      "--hf", "--rounds", "2", "--batch", "2", "--peak-size", "256")
    assert r["hf"]["tokens_per_s"] > 0 and r["hf"]["rounds"] == 2 and "bf16 autocast" in r["hf"]["setup"]
    assert len(r["speedup_vs_hf_rounds"]) == 2 and min(r["speedup_vs_hf_rounds"]) <= r["speedup_vs_hf"] \
        <= max(r["speedup_vs_hf_rounds"])
    report = load_report_module()
    machine = {"cpu": "test CPU", "cores": 2, "torch": "x", "python": "3", "date": "2026-01-01"}
    decode_hf = {"model": "tiny", "dtype": "fp32", "inputs_per_s": 0.5, "speedup_vs_hf": 2.5,
                 "speedup_vs_hf_per_round": 2.4, "peak_rss_mb": 100.0,
                 "hf": {"inputs_per_s": 0.2, "peak_rss_mb": 120.0, "weight_matmul_flops_vs_ours": 1.26}}
    text = report.render(machine, [r], [], [decode_hf])
    emulated = "" if r["precision_native"] else " (emulated)"
    train_row = next(line for line in text.splitlines() if line.startswith(f"| tiny | bf16{emulated} | 2 |"))
    assert f"| {r['speedup_vs_hf']:,.2f}x (" in train_row
    assert "| tiny | fp32 | 0.500 | 0.200 | 2.50x | 2.40x | 100 / 120 | 1.26 |" in text


@pytest.mark.slow  # a subprocess per benchmark script
def test_decode_benchmark_against_hf_generate():
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed: bench_decode.py --hf compares with its generate()")
    (r,) = run_script("scripts/bench_decode.py", "--model", "tiny", "--beam", "3", "--batch", "2", "--inputs", "3",
                      "--max-new-tokens", "5", "--hf", "--repeats", "1", "--peak-size", "256")
    hf = r["hf"]
    assert r["batch"] == 2 and r["eos_suppressed"] and r["mean_new_tokens"] == 5.0
    assert hf["inputs"] == 3 and hf["mean_new_tokens"] == 5.0  # end tokens banned in HF too: all 5 steps ran
    assert hf["inputs_per_s"] > 0 and hf["peak_rss_mb"] > 0 and hf["dtype"] == "float32"
    assert hf["attn_implementation"] == "sdpa" and hf["transformers"]
    assert hf["same_as_ours"].endswith("/3") and hf["achieved_flops"] > 0
    assert hf["weight_matmul_flops_vs_ours"] > 1  # HF prefills every prompt once per beam
    assert r["speedup_vs_hf"] > 0 and r["speedup_vs_hf_per_round"] > 0
    assert abs(r["speedup_vs_hf"] - r["inputs_per_s"] / hf["inputs_per_s"]) < 0.02 * r["speedup_vs_hf"] + 0.01


def test_hf_model_built_from_ours_shares_weights_and_logits():
    transformers = pytest.importorskip("transformers", reason="bench_hf.py's oracle is transformers")
    import torch

    from lora_nlg import GPT2
    from lora_nlg.decode.search import BeamSettings, generate, plan_batches

    spec = importlib.util.spec_from_file_location("bench_hf", REPO / "scripts" / "bench_hf.py")
    bench_hf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_hf)
    torch.manual_seed(0)
    ours = GPT2.from_preset("tiny").eval()
    hf = bench_hf.build_hf_model_from_ours(ours)
    assert isinstance(hf, transformers.GPT2LMHeadModel) and not hf.training
    assert hf.transformer.h[0].attn.c_attn.weight.data_ptr() == ours.transformer.h[0].attn.c_attn.weight.data_ptr()
    ids = torch.randint(0, 50257, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-5, rtol=0)
    # with beam 1 and no n-gram ban both searches are greedy: the same tokens, whatever the left padding
    prompts = [[5, 6, 7, 8, 50256], [9, 10, 50256]]
    s = BeamSettings(beam=1, no_repeat_ngram_size=0, max_new_tokens=4, min_length=4)
    got = bench_hf.hf_generate(hf, prompts, plan_batches([5, 3], s, 2), beam=1, max_new_tokens=4, length_penalty=1.0,
                               no_repeat_ngram_size=0, min_new_tokens=4)
    assert got == [h.ids for h in generate(ours, prompts, s)] and all(len(g) == 4 for g in got)


def test_report_marks_rows_whose_precision_is_emulated():
    report = load_report_module()
    machine = {"cpu": "test CPU", "cores": 2, "torch": "x", "python": "3", "date": "2026-01-01",
               "cpu_capability": "CPU capability AVX2, no avx512_bf16/amx_bf16"}
    row = {"model": "tiny", "dtype": "bf16", "batch": 8, "tokens_per_s": 10.0, "ms_per_step": 5.0, "peak_rss_mb": 9.0,
           "achieved_flops": 1e9, "peak_flops": 2e9, "mfu": 0.5, "precision_native": False}
    text = report.render(machine, [row, dict(row, dtype="fp32", precision_native=True)], [])
    assert "| tiny | bf16 (emulated) | 8 |" in text and "| tiny | fp32 | 8 |" in text
    assert "CPU capability AVX2, no avx512_bf16/amx_bf16" in text


def test_gpu_plan_runs_end_to_end_on_the_cpu(tmp_path):
    """make bench-gpu's plan (bench_report.py --gpu) as a dry run on the CPU with the tiny model: the same
    scripts and report, so a GPU run has nothing left to debug but CUDA itself."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("peft") is None:
        pytest.skip("transformers/peft are not installed: the GPU plan compares with them")
    proc = subprocess.run([sys.executable, "scripts/bench_report.py", "--gpu", "--device", "cpu", "--quick",
                           "--model", "tiny", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    data = json.loads((tmp_path / "report-gpu.json").read_text())
    assert [r["dtype"] for r in data["train"]] == ["fp32", "bf16"] and all(r["device"] == "cpu" for r in data["train"])
    assert [r["batch"] for r in data["decode_hf"]] == [1, 8, 32] and all(r["hf"]["inputs_per_s"] > 0
                                                                        for r in data["decode_hf"])
    text = (tmp_path / "report-gpu.md").read_text()
    assert text.count("| tiny | fp32 |") == 4 and "| 32 |" in text
