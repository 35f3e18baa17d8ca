"""Beam-search speed: our batched, cached search vs the reference's regime. Prints one JSON line per batch size.

  OMP_WAIT_POLICY=PASSIVE python scripts/bench_decode.py --model gpt2 --beam 10 --batch 16 --inputs 32 \\
      --max-new-tokens 64 --dtype fp32|bf16 [--reference] [--reference-inputs 8] [--hf] [--repeats 2]

Inputs are the unique E2E test contexts (data/e2e/test.jsonl after `make data`, else ../shared/data/e2e/test.txt,
else fixed-seed lengths with E2E statistics). Weights are random (or --pretrained DIR). By default the end tokens
are banned at every step (`eos_suppressed: true`), so every input runs all max_new_tokens steps and both regimes
do the same, fixed amount of work; `--allow-eos` lets hypotheses end (a random model ends almost at once).

The reference regime (`--reference`) follows gpt2_beam.py + model.py: batch 1; the prompt right-padded to 512 and run
K times through a full forward with logits at all 512 x K positions; a 512-slot cache attended in full and copied
twice per step (model.py's `present = torch.stack((key, value))` in every layer, then `_reorder_cache`'s
index_select); all steps (no early stop); Python loops per hypothesis for the n-gram bans and the end-token
bookkeeping; log(softmax). `--generous-reference` drops the all-position logits and the stack copy (then it is
our model code with only the reference's batching, padding and loops), for a lower bound on the speedup.
`--hf` also times Hugging Face transformers' beam search, `GPT2LMHeadModel.generate(num_beams=K, ...)`, at
each batch size (scripts/bench_hf.py): a GPT2LMHeadModel sharing our model's weight tensors (so the same dtype:
bf16 weights under --dtype bf16, as `.to(torch.bfloat16)` would give), SDPA attention, the same batches as ours
(length-sorted), left-padded, with the same settings (length_penalty, no_repeat_ngram_size, repetition_penalty,
end tokens 50256/628 as eos_token_id, banned by min_new_tokens = our min_length, so it too runs every step;
checked). HF's algorithm differs in details (2K candidates, n-grams counted over the prompt too), so its
hypotheses are its own; the row gets `hf` (the same fields as ours, plus `achieved_flops` and
`weight_matmul_flops_vs_ours`: HF prefills each prompt once per beam, the rest of its work is ours) and
`speedup_vs_hf` (median inputs/s ratio).
Peak RSS is the process's: with --hf it holds one copy of the weights, shared by both models.
Variants are interleaved (A B A B ...) and medians reported; `identical_outputs` compares the best hypotheses of
the two regimes on the inputs both decoded. `new_tokens_per_s` counts the tokens of the returned best hypotheses.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort timings on shared cores

import psutil  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_device import (  # noqa: E402
    Timer,
    device_of,
    measured_peak_flops,
    peak_memory_mb,
    precision_facts,
    reset_peak_memory,  # scripts/ is on sys.path when run as a script
)

from lora_nlg import GPT2, KVCache, get_tokenizer  # noqa: E402
from lora_nlg.decode.beam_settings import BATCH_SIZE, DEFAULT  # noqa: E402
from lora_nlg.decode.search import BeamSettings, generate, plan_batches  # noqa: E402
from lora_nlg.decode.stage import DTYPES  # noqa: E402
from lora_nlg.tokenizer import EOT_ID  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_E2E_TEST = REPO.parent / "shared" / "data" / "e2e" / "test.txt"


# ---------------------------------------------------------------------------------------------- inputs
def e2e_test_prompts(n: int) -> tuple[list[list[int]], str]:
    """The first n unique E2E test contexts as context_ids (BPE(context) + [50256])."""
    data = REPO / "data" / "e2e" / "test.jsonl"
    if data.is_file():
        from lora_nlg.decode.reference_files import read_examples, unique_inputs
        return [list(e.context_ids) for e in unique_inputs(read_examples(data))[:n]], str(data.relative_to(REPO))
    if SHARED_E2E_TEST.is_file():
        enc, seen, prompts = get_tokenizer(), set(), []
        for line in SHARED_E2E_TEST.read_text(encoding="utf-8").splitlines():
            context = line.split("||")[0].strip()
            if context and context not in seen and len(prompts) < n:
                seen.add(context)
                prompts.append(enc.encode(context) + [EOT_ID])
        return prompts, "../shared/data/e2e/test.txt"
    # E2E test contexts: mean 36.3 tokens, max 47 (docs/reference-pipeline.md, "BPE encoding")
    g = torch.Generator().manual_seed(0)
    lengths = torch.normal(36.3, 5.0, (n,), generator=g).clamp(12, 47).long()
    return [torch.randint(0, 50000, (int(k) - 1,), generator=g).tolist() + [EOT_ID] for k in lengths], "synthetic"


# ---------------------------------------------------------------------------------------------- reference regime
def _banned_ngram_tokens(history: torch.Tensor, n: int, cur_len: int) -> list[list[int]]:
    """gpt2_beam.py `_calc_banned_ngram_tokens`: per hypothesis, a dict rebuilt from `.tolist()` every step."""
    if cur_len + 1 < n:
        return [[] for _ in range(history.shape[0])]
    banned = []
    for row in history.tolist():
        followers: dict[tuple, list[int]] = {}
        for gram in zip(*[row[i:] for i in range(n)]):
            followers[tuple(gram[:-1])] = followers.get(tuple(gram[:-1]), []) + [gram[-1]]
        banned.append(followers.get(tuple(row[cur_len + 1 - n:cur_len]), []))
    return banned


def reference_regime(model, prompt: list[int], s: BeamSettings, seq_len: int = 512, faithful: bool = True) -> list[int]:
    """One input the way gpt2_beam.py decodes it (see the module docstring)."""
    K, V, M = s.beam, model.config.vocab_size, s.max_new_tokens
    device = model.lm_head_weight.device
    query = prompt[-(seq_len - M):]
    padded = torch.zeros(K, seq_len, dtype=torch.long)
    padded[:, :len(query)] = torch.tensor(query)
    padded = padded.to(device)
    last = torch.zeros(K, seq_len, dtype=torch.bool, device=device)
    last[:, len(query) - 1] = True
    cache = KVCache(batch_size=K, max_len=seq_len, device=device)
    lengths = torch.full((K,), len(query), device=device)
    hidden = model.hidden(padded, kv_cache=cache, input_lengths=lengths)
    if faithful:  # model(_query) returns logits at every position; gpt2_beam.py then picks query_len - 1
        logits = lm_head(model, hidden)[:, len(query) - 1]
    else:
        logits = lm_head(model, hidden[last])
    stack_present(cache, faithful)
    beam_scores = torch.zeros(1, K, device=device)
    history, token = None, None
    best_score, best_seq = None, None

    def add_candidates(rows_ending_only: bool, cur_len: int) -> None:
        nonlocal best_score, best_seq
        for j in range(K):
            if not rows_ending_only or int(history[j, -1]) in s.eos_ids:
                score = float(beam_scores[0, j]) / cur_len ** s.length_penalty
                if best_score is None or best_score < score:
                    best_score, best_seq = score, history[j].tolist()
                beam_scores[0, j] = -math.inf

    for i in range(M):
        if i > 0:
            logits = lm_head(model, model.hidden(token[:, None], kv_cache=cache))[:, -1]
            stack_present(cache, faithful)
        logits = logits.float()
        if s.repetition_penalty != 1.0 and history is not None:
            for j in range(K):
                for t in set(history[j].tolist()):
                    logits[j, t] = logits[j, t] * s.repetition_penalty if logits[j, t] < 0 \
                        else logits[j, t] / s.repetition_penalty
        if i < s.min_length:
            logits[:, list(s.eos_ids)] = -math.inf
        if s.no_repeat_ngram_size > 0 and history is not None:
            for j, banned in enumerate(_banned_ngram_tokens(history, s.no_repeat_ngram_size, i)):
                logits[j, banned] = -math.inf
        logp = torch.log(torch.softmax(logits, dim=-1))
        if i == 0:
            next_scores = logp[:1]
        else:
            next_scores = (beam_scores[:, :, None] + logp.view(1, K, V)).view(1, K * V)
        beam_scores, index = torch.topk(next_scores, K, dim=1, largest=True, sorted=True)
        beam_id, token = (index // V).view(-1), (index % V).view(-1)
        cache.reorder_(beam_id)
        history = token[:, None] if history is None else torch.cat([history[beam_id], token[:, None]], dim=1)
        add_candidates(True, i + 1)
    add_candidates(False, M)
    return best_seq[:-1] if best_seq and best_seq[-1] in s.eos_ids else best_seq


def lm_head(model, hidden: torch.Tensor) -> torch.Tensor:
    """The reference's LM head: one nn.Linear over all rows (not our blocked projection)."""
    return F.linear(hidden, model.lm_head_weight)


def stack_present(cache, faithful: bool) -> None:
    """model.py builds `present = torch.stack((key, value))` of the whole 512-slot cache in every layer, every step
    (a copy our cache does not make); reproduced here so the regime costs what the reference's does."""
    if faithful:
        for k, v in zip(cache.k, cache.v):
            torch.stack((k, v))


# ---------------------------------------------------------------------------------------------- measuring
def weight_matmul_flops(cfg, prompt_tokens: int, prompts: int, beam_rows: int) -> float:
    """FLOPs of the weight matmuls a beam search needs whatever its implementation: every prompt token once
    through the blocks, one LM-head row per prompt, and each later beam row through blocks and head. (Attention
    scores and what a regime recomputes or pads are not counted, so FLOP/s compare useful work.)"""
    block = 2 * 12 * cfg.n_embd ** 2 * cfg.n_layer  # c_attn 3d^2 + c_proj d^2 + MLP 8d^2, x2 FLOPs per MAC
    head = 2 * cfg.n_embd * cfg.vocab_size
    return float(prompt_tokens * block + prompts * head + beam_rows * (block + head))


def hf_weight_matmul_flops(cfg, prompts: list[list[int]], batches: list[list[int]], beam: int, new_tokens: int) -> float:
    """The same count for HF's generate: each batch's left-padded prompts expanded to K rows before the prefill
    (so every prompt token K times, padding included), LM head at the last position only (logits_to_keep=1),
    then new_tokens - 1 forwards of all beam rows."""
    block = 2 * 12 * cfg.n_embd ** 2 * cfg.n_layer
    head = 2 * cfg.n_embd * cfg.vocab_size
    prefill = sum(len(b) * beam * max(len(prompts[i]) for i in b) for b in batches)
    rows = len(prompts) * beam
    return float(prefill * block + rows * head + (new_tokens - 1) * rows * (block + head))


class PeakRSS:
    """Highest resident set size (MB) seen while the block runs, sampled every 20 ms."""

    def __enter__(self):
        self.proc, self.peak, self.done = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            if self.done.wait(0.02):
                return

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = round(self.peak / 2**20, 1)


def timed(fn, device: torch.device = torch.device("cpu")):
    """(output, wall seconds, CPU seconds of this process, peak memory MB: RSS on the CPU, the allocator's peak
    on a GPU). CPU time is less disturbed than wall time when other jobs share the cores. On a GPU the wall
    time comes from CUDA events around the block."""
    reset_peak_memory(device)
    with torch.inference_mode(), PeakRSS() as rss:
        cpu = time.process_time()
        with Timer(device) as t:
            out = fn()
        cpu = time.process_time() - cpu
    return out, t.seconds, cpu, peak_memory_mb(device) if device.type == "cuda" else rss.mb


MEMORY_KEY = ["peak_rss_mb"]  # "peak_gpu_mb" under --device cuda


def summary(times: list[float], cpu: list[float], rss: list[float], outs: list[list[int]]) -> dict:
    sec = statistics.median(times)
    tokens = sum(len(o) for o in outs)
    return {"inputs": len(outs), "seconds_median": round(sec, 3), "seconds_all": [round(t, 3) for t in times],
            "cpu_seconds_median": round(statistics.median(cpu), 3),
            "inputs_per_s": round(len(outs) / sec, 4), "new_tokens_per_s": round(tokens / sec, 2),
            "mean_new_tokens": round(tokens / len(outs), 2), MEMORY_KEY[0]: max(rss)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gpt2", help="preset for random weights (gpt2, gpt2-medium, small, tiny, ...)")
    p.add_argument("--pretrained", help="checkpoint dir instead of random weights")
    p.add_argument("--beam", type=int, default=DEFAULT.beam)
    p.add_argument("--batch", default=str(BATCH_SIZE), help="inputs per batch; a comma list benchmarks several (1,4,16)")
    p.add_argument("--inputs", type=int, default=32, help="unique E2E test contexts to decode")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT.max_new_tokens)
    p.add_argument("--length-penalty", type=float, default=DEFAULT.length_penalty)
    p.add_argument("--no-repeat-ngram-size", type=int, default=DEFAULT.no_repeat_ngram_size)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--allow-eos", action="store_true", help="let hypotheses end (default: end tokens banned)")
    p.add_argument("--reference", action="store_true", help="also time the reference regime (slow)")
    p.add_argument("--reference-inputs", type=int, default=8,
                   help="inputs the reference regime decodes per repeat (the first N; default 8)")
    p.add_argument("--generous-reference", action="store_true",
                   help="reference regime without its all-position logits and per-layer stack copy (lower bound)")
    p.add_argument("--hf", action="store_true",
                   help="also time Hugging Face transformers' generate (beam search) at each batch size")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds per variant (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (timed with CUDA events; peak_gpu_mb, the GPU "
                                                   "allocator's peak, replaces peak_rss_mb)")
    p.add_argument("--peak-size", type=int, default=2048, help="matmul size of the measured FLOP/s peak")
    args = p.parse_args(argv)
    device = device_of(args.device)
    if device.type == "cuda":
        MEMORY_KEY[0] = "peak_gpu_mb"
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = GPT2.from_pretrained(args.pretrained) if args.pretrained else GPT2.from_preset(args.model)
    model = model.to(device=device, dtype=DTYPES[args.dtype]).eval()
    prompts, source = e2e_test_prompts(args.inputs)
    M = args.max_new_tokens
    settings = BeamSettings(beam=args.beam, length_penalty=args.length_penalty,
                            no_repeat_ngram_size=args.no_repeat_ngram_size, max_new_tokens=M,
                            min_length=0 if args.allow_eos else M)  # min_length = M bans the end tokens always
    batches = [int(b) for b in args.batch.split(",")]
    n_ref = min(args.reference_inputs, len(prompts))
    beam_rows: dict[str, int] = {}

    def ours(b: int) -> list[list[int]]:
        stats: dict = {}
        out = [h.ids for h in generate(model, prompts, settings, batch_size=b, stats=stats)]
        beam_rows[f"batch{b}"] = stats.get("beam_rows", 0)
        return out

    variants = {f"batch{b}": (lambda b=b: ours(b)) for b in batches}
    if args.reference:
        variants["reference"] = lambda: [reference_regime(model, q, settings, faithful=not args.generous_reference)
                                         for q in prompts[:n_ref]]
    if args.hf:
        from bench_hf import build_hf_model_from_ours, hf_generate, require_transformers
        transformers = require_transformers()
        hf_model = build_hf_model_from_ours(model)

        def hf(b: int, s: BeamSettings = settings, which: list[list[int]] = prompts) -> list[list[int]]:
            return hf_generate(hf_model, which, plan_batches([len(q) for q in which], s, b), beam=s.beam,
                               max_new_tokens=s.max_new_tokens, length_penalty=s.length_penalty,
                               no_repeat_ngram_size=s.no_repeat_ngram_size, repetition_penalty=s.repetition_penalty,
                               min_new_tokens=s.min_length, eos_ids=s.eos_ids)

        for b in batches:
            variants[f"hf_batch{b}"] = lambda b=b: hf(b)
        with torch.inference_mode():
            hf(1, BeamSettings(beam=2, max_new_tokens=2), prompts[:1])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    rss: dict[str, list[float]] = {k: [] for k in variants}
    outs: dict[str, list[list[int]]] = {}
    generate(model, prompts[:1], BeamSettings(beam=2, max_new_tokens=2))  # warm-up (allocator, kernels)
    for _ in range(args.repeats):
        for name, fn in variants.items():  # interleaved: A B A B ...
            out, sec, cpu_sec, mb = timed(fn, device)
            times[name].append(sec)
            cpu[name].append(cpu_sec)
            rss[name].append(mb)
            if outs.setdefault(name, out) != out:
                raise SystemExit(f"{name}: outputs changed between repeats")
            print(f"# {name}: {sec:.2f} s wall, {cpu_sec:.2f} s CPU", file=sys.stderr)

    ref = summary(times["reference"], cpu["reference"], rss["reference"], outs["reference"]) if args.reference else None
    peak = measured_peak_flops(DTYPES[args.dtype], args.peak_size, device=device)
    prompt_tokens = sum(min(len(q), model.config.n_positions - M) for q in prompts)
    for b in batches:
        name = f"batch{b}"
        row = {"model": args.pretrained or args.model, "weights": "pretrained" if args.pretrained else "random",
               "dtype": args.dtype, "beam": args.beam, "batch": b, "max_new_tokens": M,
               "length_penalty": args.length_penalty, "no_repeat_ngram_size": args.no_repeat_ngram_size,
               "eos_suppressed": not args.allow_eos, "inputs_source": source, "threads": torch.get_num_threads(),
               "repeats": args.repeats, **precision_facts(args.dtype, device), **summary(times[name], cpu[name], rss[name], outs[name])}
        achieved = weight_matmul_flops(model.config, prompt_tokens, len(prompts), beam_rows[name]) / row["seconds_median"]
        row.update(achieved_flops=round(achieved), peak_flops=round(peak), mfu=round(achieved / peak, 3))
        if ref is not None:
            same = sum(a == r for a, r in zip(outs[name][:n_ref], outs["reference"]))
            ref["mode"] = "generous" if args.generous_reference else "faithful"
            cpu_per_input = row["cpu_seconds_median"] / row["inputs"], ref["cpu_seconds_median"] / ref["inputs"]
            row.update(reference=ref, speedup_inputs_per_s=round(row["inputs_per_s"] / ref["inputs_per_s"], 2),
                       speedup_cpu_time=round(cpu_per_input[1] / cpu_per_input[0], 2),
                       identical_outputs=f"{same}/{n_ref}")
        if args.hf:
            hf_row = summary(times[f"hf_batch{b}"], cpu[f"hf_batch{b}"], rss[f"hf_batch{b}"], outs[f"hf_batch{b}"])
            flops = hf_weight_matmul_flops(model.config, [q[-(model.config.n_positions - M):] for q in prompts],
                                           plan_batches([len(q) for q in prompts], settings, b), args.beam, M)
            hf_row.update(achieved_flops=round(flops / hf_row["seconds_median"]),
                          weight_matmul_flops_vs_ours=round(flops / (achieved * row["seconds_median"]), 3))
            hf_row.update(transformers=transformers.__version__, attn_implementation="sdpa",
                          dtype=str(hf_model.transformer.wte.weight.dtype).removeprefix("torch."),
                          same_as_ours=f"{sum(a == h for a, h in zip(outs[name], outs[f'hf_batch{b}']))}/{len(prompts)}")
            ratio = statistics.median(o / h for o, h in zip(times[f"hf_batch{b}"], times[name]))
            row.update(hf=hf_row, speedup_vs_hf=round(row["inputs_per_s"] / hf_row["inputs_per_s"], 2),
                       speedup_vs_hf_per_round=round(ratio, 2))
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
