"""`make bench`: run the training and decoding benchmarks and write bench/report.md + bench/report.json.

Each benchmark is its own process (a clean peak-RSS reading, no allocator state carried over) and prints one
JSON line per configuration; this script only runs them, collects the lines and renders the table. Both
benchmarks already time our fast path and the reference regime interleaved in the same process.

    python scripts/bench_report.py [--model gpt2] [--quick] [--out bench]
    python scripts/bench_report.py --gpu [--device cuda] [--model gpt2-medium]   # make bench-gpu

Rows whose precision the machine only emulates (bf16 on a CPU without avx512_bf16/AMX) are marked "(emulated)".
`--gpu` writes bench/report-gpu.md + .json: training tokens/s of GPT-2 medium (batch 8, E2E lengths, fp32 and bf16
autocast, transformers+PEFT interleaved) and beam-search inputs/s at batch 1, 8 and 32 (HF generate interleaved),
timed with CUDA events, with peak GPU memory; sized to finish in under 8 minutes on one GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from lora_nlg.atomic import atomic_file  # noqa: E402


def machine_description() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    from lora_nlg import precision
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "cpu_capability": precision.describe_cpu(),
            "native_bf16_cpu": precision.cpu_has_native_bf16()}


def run_json_lines(cmd: list[str]) -> list[dict]:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print("  " + json.dumps(row), flush=True)
    return rows


def plan(model: str, quick: bool) -> list[tuple[str, list[str]]]:
    py = sys.executable
    steps, pad_steps, inputs = ("3", "1", "16") if quick else ("10", "2", "32")
    batches, ref_inputs = ("4,16", "2") if quick else ("1,4,16,32", "4")
    hf_inputs, hf_repeats = ("4", "1") if quick else ("16", "2")
    jobs = []
    for dtype in ("fp32", "bf16"):
        jobs.append(("train", [py, "scripts/bench_train.py", "--model", model, "--batch", "8", "--dtype", dtype,
                               "--steps", steps, "--pad", "512", "--pad-steps", pad_steps, "--hf",
                               "--rounds", "1" if quick else "3"]))
    for dtype in ("fp32", "bf16"):
        jobs.append(("decode", [py, "scripts/bench_decode.py", "--model", model, "--beam", "10", "--batch", batches,
                                "--inputs", inputs, "--max-new-tokens", "64", "--dtype", dtype, "--reference",
                                "--reference-inputs", ref_inputs]))
    for dtype in ("fp32", "bf16"):  # HF generate's comparison point: batch 8 (its own batch size, interleaved)
        jobs.append(("decode_hf", [py, "scripts/bench_decode.py", "--model", model, "--beam", "10", "--batch", "8",
                                   "--inputs", hf_inputs, "--max-new-tokens", "64", "--dtype", dtype, "--hf",
                                   "--repeats", hf_repeats]))
    return jobs


def plan_gpu(model: str, device: str, quick: bool = False) -> list[tuple[str, list[str]]]:
    """make bench-gpu: ~8 minutes on one GPU (each job a process: clean allocator peaks)."""
    py = sys.executable
    steps, rounds, batch = ("1", "1", "2") if quick else ("10", "3", "8")
    small = ["--peak-size", "256"] if quick else []  # --quick: a dry run of the plan (tests, --device cpu)
    jobs = [("train", [py, "scripts/bench_train.py", "--model", model, "--batch", batch, "--dtype", dtype, "--steps",
                       steps, "--warmup", "1" if quick else "2", "--hf", "--rounds", rounds, "--device", device, *small])
            for dtype in ("fp32", "bf16")]
    # batch 1 decodes few inputs (its time per input is the longest); 8 and 32 share a larger set
    for batch, inputs in (("1", "2" if quick else "8"), ("8,32", "4" if quick else "64")):
        jobs.append(("decode_hf", [py, "scripts/bench_decode.py", "--model", model, "--beam", "10", "--batch", batch,
                                   "--inputs", inputs, "--max-new-tokens", "8" if quick else "64", "--dtype", "fp32",
                                   "--hf", "--repeats", "1" if quick else "2", "--device", device, *small]))
    return jobs


def dtype_cell(r: dict) -> str:
    """A row's precision, marked where this machine only emulates it."""
    return r["dtype"] + (" (emulated)" if r.get("precision_native") is False else "")


def render_gpu(machine: dict, train: list[dict], decode_hf: list[dict]) -> str:
    gpu = next((r.get("gpu") for r in train + decode_hf if r.get("gpu")), "no GPU (device " + str(
        next((r.get("device") for r in train + decode_hf), "?")) + ")")
    lines = ["# GPU benchmarks", "", f"Device: {gpu}; torch {machine['torch']}, {machine['date']}. Random weights. "
             "Timed with CUDA events; memory is the allocator's peak. Produced by `make bench-gpu`; raw lines in "
             "`report-gpu.json`.", "", "## Training (LoRA r=4 on q,v; batch 8; E2E length distribution)", "",
             "| model | dtype | ours tokens/s | ms/step | peak GPU MB | FLOP/s achieved / measured peak | "
             "HF+PEFT tokens/s | vs HF+PEFT (rounds) |", "|---|---|---|---|---|---|---|---|"]
    for r in train:
        lines.append(f"| {r['model']} | {dtype_cell(r)} | {fmt(r['tokens_per_s'])} | {fmt(r['ms_per_step'], 1)} | "
                     f"{fmt(r.get('peak_gpu_mb', r.get('peak_rss_mb')), 0)} | {r['achieved_flops'] / 1e12:.2f} / "
                     f"{r['peak_flops'] / 1e12:.1f} TFLOP/s ({r['mfu']:.0%}) | {hf_training_cells(r)} |")
    lines += ["", "## Beam search vs HF `generate` (beam 10, 64 new tokens, end tokens banned)", "",
              "| model | dtype | batch | ours inputs/s | HF inputs/s | speedup | ours / HF peak GPU MB |",
              "|---|---|---|---|---|---|---|"]
    for r in decode_hf:
        hf = r["hf"]
        mem = lambda x: fmt(x.get("peak_gpu_mb", x.get("peak_rss_mb")), 0)  # noqa: E731
        lines.append(f"| {r['model']} | {dtype_cell(r)} | {r['batch']} | {fmt(r['inputs_per_s'], 2)} | "
                     f"{fmt(hf['inputs_per_s'], 2)} | {fmt(r['speedup_vs_hf'], 2)}x | {mem(r)} / {mem(hf)} |")
    return "\n".join(lines) + "\n"


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def hf_training_cells(r: dict) -> str:
    """The 'HF+PEFT tokens/s | vs HF+PEFT (rounds)' cells of a training row (CPU and GPU reports alike)."""
    rounds = ", ".join(f"{x:.2f}" for x in r.get("speedup_vs_hf_rounds", []))
    return (f"{fmt((r.get('hf') or {}).get('tokens_per_s'))} | {fmt(r.get('speedup_vs_hf'), 2)}x"
            + (f" ({rounds})" if rounds else ""))


def render(machine: dict, train: list[dict], decode: list[dict], decode_hf: list[dict] = ()) -> str:
    lines = [f"# Benchmarks", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, {machine['date']}"
             + (f"; {machine['cpu_capability']}" if machine.get("cpu_capability") else "") + ". "
             "Rows marked (emulated) ran a precision this CPU has no native instructions for. "
             "Random weights (speed does not depend on them). Produced by `make bench`; raw lines in `report.json`.",
             "", "## Training (LoRA r=4 on q,v; E2E length distribution)", "",
             "| model | dtype | batch | ours tokens/s | ms/step | peak RSS MB | FLOP/s achieved / measured peak | "
             "pad-512 tokens/s | pad-512 peak RSS MB | speedup | HF+PEFT tokens/s | vs HF+PEFT (rounds) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in train:
        lines.append(f"| {r['model']} | {dtype_cell(r)} | {r['batch']} | {fmt(r['tokens_per_s'])} | "
                     f"{fmt(r['ms_per_step'], 0)} | {fmt(r['peak_rss_mb'], 0)} | {r['achieved_flops'] / 1e9:.1f} / "
                     f"{r['peak_flops'] / 1e9:.1f} GFLOP/s ({r['mfu']:.0%}) | {fmt(r.get('ref_tokens_per_s'))} | "
                     f"{fmt(r.get('ref_peak_rss_mb'), 0)} | {fmt(r.get('speedup'))}x | {hf_training_cells(r)} |")
    lines += ["", "Tokens/s counts non-pad tokens. The reference regime pads every example to 512 and computes "
              "full-vocabulary logits at every position; both regimes run interleaved in one process. HF+PEFT: "
              "transformers' GPT2LMHeadModel with PEFT LoRA (r=4, alpha=32 on c_attn) on the same batches, dynamic "
              "padding with an attention mask, bf16 by autocast; rounds of ours and HF alternate, the ratio is the "
              "median of the per-round ratios.",
              "", "## Beam search (beam 10, 64 new tokens, end tokens suppressed so every input runs full length)", "",
              "| model | dtype | batch | inputs/s | new tokens/s | peak RSS MB | FLOP/s achieved / measured peak | "
              "reference inputs/s | speedup | identical outputs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in decode:
        ref = r.get("reference") or {}
        lines.append(f"| {r['model']} | {dtype_cell(r)} | {r['batch']} | {fmt(r['inputs_per_s'], 2)} | "
                     f"{fmt(r['new_tokens_per_s'])} | {fmt(r['peak_rss_mb'], 0)} | "
                     f"{r['achieved_flops'] / 1e9:.1f} / {r['peak_flops'] / 1e9:.1f} GFLOP/s ({r['mfu']:.0%}) | "
                     f"{fmt(ref.get('inputs_per_s'), 3)} | {fmt(r.get('speedup_inputs_per_s'))}x | "
                     f"{r.get('identical_outputs', '–')} |")
    lines += ["", "The reference regime decodes one input at a time, its prompt padded to 512, recomputing the prompt "
              "for each of the 10 beams and running all 64 steps; it decodes the first inputs only (its time per "
              "input hardly varies). Identical outputs are checked in fp32; in bf16 the regimes' different matmul "
              "shapes round differently, so near-ties may go either way. Decode FLOP/s count the weight matmuls any "
              "implementation needs (prompt tokens once, then every beam row through blocks and LM head), not what "
              "a regime pads or recomputes."]
    if decode_hf:
        lines += ["", "## Beam search vs Hugging Face `generate` (beam 10, batch 8, 64 new tokens, end tokens banned)", "",
                  "| model | dtype | ours inputs/s | HF inputs/s | speedup (median ratio) | per round | ours / HF peak RSS MB | "
                  "HF weight-matmul FLOPs / ours |", "|---|---|---|---|---|---|---|---|"]
        for r in decode_hf:
            hf = r["hf"]
            lines.append(f"| {r['model']} | {dtype_cell(r)} | {fmt(r['inputs_per_s'], 3)} | {fmt(hf['inputs_per_s'], 3)} | "
                         f"{fmt(r['speedup_vs_hf'], 2)}x | {fmt(r['speedup_vs_hf_per_round'], 2)}x | "
                         f"{fmt(r['peak_rss_mb'], 0)} / {fmt(hf['peak_rss_mb'], 0)} | "
                         f"{fmt(hf.get('weight_matmul_flops_vs_ours'), 2)} |")
        lines += ["", "HF: `GPT2LMHeadModel.generate(num_beams=10, ...)` on a model sharing our weights, left-padded "
                  "batches, end tokens banned through min_new_tokens. HF's beam search does the same per-step work as "
                  "ours (every beam row through the blocks and the full-vocabulary head); it prefills each prompt once "
                  "per beam, hence the FLOP ratio above; the rest of the speedup is overhead."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="preset (default gpt2; gpt2-medium with --gpu)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and inputs (a smoke run)")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    parser.add_argument("--gpu", action="store_true", help="the GPU plan -> report-gpu.md/.json (make bench-gpu)")
    parser.add_argument("--device", default="cuda", help="device of the --gpu plan (cpu: a dry run of it)")
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {"train": [], "decode": [], "decode_hf": []}
    machine = machine_description()
    if args.gpu:
        for kind, cmd in plan_gpu(args.model or "gpt2-medium", args.device, args.quick):
            results[kind] += run_json_lines(cmd)
        with atomic_file(args.out / "report-gpu.json", "w") as f:
            json.dump({"machine": machine, **results}, f, indent=2)
        with atomic_file(args.out / "report-gpu.md", "w") as f:
            f.write(render_gpu(machine, results["train"], results["decode_hf"]))
        print(f"wrote {args.out / 'report-gpu.md'} and {args.out / 'report-gpu.json'}")
        return 0
    for kind, cmd in plan(args.model or "gpt2", args.quick):
        results[kind] += run_json_lines(cmd)
    with atomic_file(args.out / "report.json", "w") as f:
        json.dump({"machine": machine, **results}, f, indent=2)
    with atomic_file(args.out / "report.md", "w") as f:
        f.write(render(machine, results["train"], results["decode"], results["decode_hf"]))
    print(f"wrote {args.out / 'report.md'} and {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
