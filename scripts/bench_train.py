"""Training throughput: our regime (length-bucketed batches, LM head at loss positions only) vs the reference's
(every example padded to 512, full-vocabulary logits at all positions). Prints one JSON line.

  python scripts/bench_train.py --model gpt2 --batch 8 --dtype fp32|bf16 --steps 10 [--pad 512] [--data e2e|webnlg]
      [--hf --rounds 3] [--device cpu|cuda]

A step = forward + loss + backward + AdamW update of the LoRA parameters (r=4, alpha=32, dropout 0.1, q/v), random
weights. Sequence lengths come from real data: data/<data>/{train,valid}.jsonl if `make data` ran, else the raw
files in ../shared/data, else a fixed-seed draw matching the statistics in docs/reference-pipeline.md, "BPE
encoding". `tokens_per_s` counts real (non-pad) tokens. `achieved_flops` counts the matmul FLOPs actually executed
(padded shapes, attention T^2, backward = input gradients only since the base weights are frozen); `peak_flops` is
the best of a few 2048^3 matmuls in the same dtype, so `mfu` = achieved / measured peak. Our step is the training
stage's own (objective.apply_precision, objective.autocast, objective.batch_loss_sum). `--hf` also trains transformers'
GPT2LMHeadModel + PEFT LoRA on the same batches (scripts/bench_hf.py), in `--rounds` alternating rounds of
`--steps` updates each, and reports `speedup_vs_hf` (median of the per-round ratios).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort timings on shared cores

import torch  # noqa: E402
from bench_device import Timer, device_of, measured_peak_flops, peak_memory_mb, precision_facts, reset_peak_memory  # noqa: E402

from lora_nlg import GPT2, LoRAConfig, get_tokenizer  # noqa: E402
from lora_nlg.tokenizer import EOT_ID  # noqa: E402
from lora_nlg.train.batching import TrainingSequence, collate, epoch_plan, load_examples  # noqa: E402
from lora_nlg.train.objective import REFERENCE_DENOM_EPS, apply_precision, autocast, batch_loss_sum  # noqa: E402
from lora_nlg.train.optim import ReferenceAdamW  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


# ---------------------------------------------------------------------------------------------- lengths
def _encode_pairs(pairs: list[tuple[str, str]], max_seq_len: int) -> list[TrainingSequence]:
    enc = get_tokenizer()
    return [TrainingSequence(tuple((enc.encode(c) + [EOT_ID] + enc.encode(" " + t) + [EOT_ID])[:max_seq_len]),
                    len(enc.encode(c)) + 1) for c, t in pairs]


def _shared_pairs(name: str) -> list[tuple[str, str]]:
    if name == "e2e":
        lines = (SHARED / "e2e" / "valid.txt").read_text(encoding="utf-8").splitlines()
        return [tuple(part.strip() for part in line.split("||", 1)) for line in lines if "||" in line]
    entries = json.loads((SHARED / "webnlg_challenge_2017" / "dev.json").read_text(encoding="utf-8"))["entries"]
    pairs = []
    for i, wrapper in enumerate(entries):
        entry = wrapper[str(i + 1)]
        context = " | ".join(f"{t['subject']} : {t['property']} : {t['object']}" for t in entry["modifiedtripleset"])
        pairs += [(context, lex["lex"]) for lex in entry["lexicalisations"] if lex["comment"] == "good"]
    return pairs


def _synthetic(name: str, n: int = 4000) -> list[TrainingSequence]:
    """Fixed-seed lengths matching docs/reference-pipeline.md, "BPE encoding": E2E context mean 36.3 (max 47),
    completion mean 30.7 (max 90); WebNLG total mean 79 (p99 223)."""
    g = torch.Generator().manual_seed(0)
    if name == "e2e":
        ctx = torch.normal(36.3, 5.0, (n,), generator=g).clamp(12, 47)
        comp = torch.distributions.Gamma(6.0, 6.0 / 30.7).sample((n,)).clamp(4, 90)
    else:
        ctx = torch.normal(36.0, 15.0, (n,), generator=g).clamp(8, 160)
        comp = torch.distributions.Gamma(3.0, 3.0 / 43.0).sample((n,)).clamp(4, 200)
    return [TrainingSequence(tuple([1] * (int(c) + int(t))), int(c)) for c, t in zip(ctx.tolist(), comp.tolist())]


def benchmark_examples(name: str, max_seq_len: int = 512) -> tuple[list[TrainingSequence], str]:
    for split in ("train", "valid"):
        path = REPO / "data" / name / f"{split}.jsonl"
        if path.is_file():
            return load_examples(path, max_seq_len), str(path.relative_to(REPO))
    try:
        return _encode_pairs(_shared_pairs(name), max_seq_len), f"../shared/data ({name} dev)"
    except (FileNotFoundError, KeyError, ValueError):
        return _synthetic(name), "synthetic (fixed seed, E2E-like lengths)"


# ---------------------------------------------------------------------------------------------- steps
def our_step(model, batch, precision_context) -> None:
    """What the training stage does per micro-batch (train.train_update): the fused head + loss under the run's
    precision, normalised by the loss-token count."""
    with precision_context():
        loss = batch_loss_sum(model, batch, 0.1) / (batch.n_loss + REFERENCE_DENOM_EPS)
    loss.backward()


def reference_step(model, batch, precision_context) -> None:
    """The reference's computation: logits for all B x 512 positions, full log-softmax, masked smoothed mean."""
    b, s = batch.input_ids.shape
    full_targets = torch.zeros(b, s, dtype=torch.long, device=batch.input_ids.device)
    full_targets[batch.loss_mask] = batch.targets
    with precision_context():
        logits = model(batch.input_ids)
        lp = torch.log_softmax(logits.float(), dim=-1)
        nll = -lp.gather(-1, full_targets[..., None]).squeeze(-1)
        per_token = 0.9 * nll + 0.1 * (-lp.mean(-1))
        mask = batch.loss_mask.float()
        loss = (per_token * mask).sum() / (mask.sum() + REFERENCE_DENOM_EPS)
    loss.backward()


def step_flops(cfg, batch, head_rows: int) -> float:
    """Matmul FLOPs executed by one step (forward + input-gradient backward, i.e. 2x forward)."""
    b, t = batch.input_ids.shape
    d, layers = cfg.n_embd, cfg.n_layer
    linear = 2 * 12 * d * d * b * t * layers           # c_attn 3d^2 + c_proj d^2 + MLP 8d^2 per token per layer
    attention = 2 * 2 * b * t * t * d * layers          # QK^T and AV
    return 2.0 * (linear + attention + 2 * d * cfg.vocab_size * head_rows)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gpt2", help="preset (gpt2, gpt2-medium, ..., small, tiny)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: frozen weights stored in bf16, autocast (as train.precision=bf16)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps of our regime")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--pad", type=int, default=0, help="also time the reference regime padded to this length (512)")
    ap.add_argument("--pad-steps", type=int, default=3, help="interleaved step pairs (ours, reference) with --pad")
    ap.add_argument("--data", choices=("e2e", "webnlg"), default="e2e", help="length distribution")
    ap.add_argument("--bucket-window", type=int, default=50, help="as train.bucket_window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hf", action="store_true", help="also time transformers + PEFT on the same batches, interleaved")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ours, HF) with --hf; median reported")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (timed with CUDA events, GPU peak memory)")
    ap.add_argument("--peak-size", type=int, default=2048, help="matmul size of the measured FLOP/s peak")
    args = ap.parse_args(argv)
    device = device_of(args.device)

    torch.manual_seed(args.seed)
    examples, source = benchmark_examples(args.data)
    model = GPT2.from_preset(args.model, lora=LoRAConfig(r=4, alpha=32, dropout=0.1)).to(device).train()
    params = list(model.lora_parameters())
    opt = ReferenceAdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    apply_precision(model, args.dtype)   # as the training stage does (train.setup.build_training_model)
    precision_context = lambda: autocast(args.dtype, device.type)  # noqa: E731
    units = epoch_plan([e.n_input for e in examples], args.batch, args.seed, 1, args.bucket_window)
    need = args.warmup + max(args.steps, args.pad_steps if args.pad else 0)
    units = (units * math.ceil(need / len(units)))[:need]
    ours = [collate([examples[i] for i in u]).to(device) for u in units]

    def timed(step_fn, batch) -> float:
        with Timer(device) as t:
            step_fn(model, batch, precision_context)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return t.seconds

    for batch in ours[:args.warmup]:
        timed(our_step, batch)
    reset_peak_memory(device)
    timed_batches = ours[args.warmup:args.warmup + args.steps]
    seconds = [timed(our_step, b) for b in timed_batches]
    tokens = sum(b.n_tokens for b in timed_batches)
    flops = sum(step_flops(model.config, b, b.n_loss) for b in timed_batches)
    peak_mem = peak_memory_mb(device)
    peak = measured_peak_flops(dtype, args.peak_size, device=device)
    result = {
        "model": args.model, "batch": args.batch, "dtype": args.dtype, "steps": args.steps, "data": source,
        "threads": torch.get_num_threads(), "mean_tokens_per_example": round(tokens / (len(timed_batches) * args.batch), 1),
        "mean_padded_len": round(statistics.mean(b.input_ids.shape[1] for b in timed_batches), 1),
        "tokens_per_s": round(tokens / sum(seconds), 1), "ms_per_step": round(1e3 * statistics.median(seconds), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), **precision_facts(args.dtype, device),
        **({"peak_gpu_mb": peak_mem} if device.type == "cuda" else {}),
        "achieved_flops": round(flops / sum(seconds)), "peak_flops": round(peak),
        "mfu": round(flops / sum(seconds) / peak, 3),
    }
    if args.pad:
        padded = [collate([examples[i] for i in u], pad_to=args.pad).to(device) for u in units]
        timed(reference_step, padded[0])  # warm-up of the big shapes
        ours_s, ref_s, ours_tok, ref_tok = [], [], 0, 0
        for i in range(args.warmup, args.warmup + args.pad_steps):  # interleaved: A B A B
            ours_s.append(timed(our_step, ours[i]))
            ref_s.append(timed(reference_step, padded[i]))
            ours_tok += ours[i].n_tokens
            ref_tok += padded[i].n_tokens
        result.update({
            "pad": args.pad, "pad_steps": args.pad_steps,
            "ref_tokens_per_s": round(ref_tok / sum(ref_s), 1), "ref_ms_per_step": round(1e3 * statistics.median(ref_s), 1),
            "ref_peak_rss_mb": round(peak_rss_mb(), 1),
            "interleaved_tokens_per_s": round(ours_tok / sum(ours_s), 1),
            "speedup": round((ours_tok / sum(ours_s)) / (ref_tok / sum(ref_s)), 2),
        })
    if args.hf:
        result.update(compare_with_hf(args, model, opt, examples, units, precision_context, timed, device))
    print(json.dumps(result), flush=True)
    return 0


def compare_with_hf(args, model, opt, examples, units, precision_context, timed_ours, device) -> dict:
    """Rounds of `--steps` updates of ours, then the same batches through transformers + PEFT (A B A B ...)."""
    from bench_hf import build_hf_peft_for_training, hf_training_step, padding_mask  # scripts/ is on sys.path

    hf = build_hf_peft_for_training(model, dropout=0.1).to(device)
    hf_opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=2e-4, betas=(0.9, 0.999),
                               eps=1e-6, weight_decay=0.01)
    batches = [([examples[i] for i in u], collate([examples[i] for i in u]).to(device)) for u in units]
    masks = [padding_mask([e.n_input for e in rows], b.input_ids.shape[1]).to(device) for rows, b in batches]
    mask_of = {id(b): m for (_, b), m in zip(batches, masks)}

    def timed_hf(rows, batch) -> float:
        with Timer(device) as t:
            hf_training_step(hf, batch, mask_of[id(batch)], precision_context, label_smoothing=0.1)
            hf_opt.step()
            hf_opt.zero_grad(set_to_none=True)
        return t.seconds

    for rows, batch in batches[:args.warmup]:
        timed_hf(rows, batch)
    timed_batches = batches[args.warmup:args.warmup + args.steps]
    tokens = sum(b.n_tokens for _, b in timed_batches)
    ours_rate, hf_rate = [], []
    reset_peak_memory(device)
    for _ in range(args.rounds):
        ours_rate.append(tokens / sum(timed_ours(our_step, b) for _, b in timed_batches))
        hf_rate.append(tokens / sum(timed_hf(rows, b) for rows, b in timed_batches))
    return {"hf": {"tokens_per_s": round(statistics.median(hf_rate), 1), "rounds": args.rounds,
                   **({"peak_gpu_mb_both": peak_memory_mb(device)} if device.type == "cuda" else {}),
                   "setup": "transformers GPT2LMHeadModel + PEFT LoRA r=4 alpha=32 on c_attn, dynamic padding, "
                            "logits at every position" + (", bf16 autocast" if args.dtype == "bf16" else "")},
            "interleaved_tokens_per_s": round(statistics.median(ours_rate), 1),
            "speedup_vs_hf": round(statistics.median(a / b for a, b in zip(ours_rate, hf_rate)), 2),
            "speedup_vs_hf_rounds": [round(a / b, 2) for a, b in zip(ours_rate, hf_rate)]}


if __name__ == "__main__":
    sys.exit(main())
