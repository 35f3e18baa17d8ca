"""Decode stage: the reference's beam search, batched over many inputs with a KV cache, and its CLI.

Semantics are those of microsoft/LoRA `gpt2_beam.py` (../shared/design/reference-pipeline.md section 4):
- each step takes the top-K of the K·V candidates (step 0: of beam 0 only, all beams start identical);
- repetition penalty, min_length (end tokens banned) and no-repeat-ngram (over *generated* tokens only) change
  the logits, which are then renormalised with a log-softmax;
- a candidate ending in an end token is finished with score = sum log-prob / (generated length incl. the end
  token) ** length_penalty, and its slot is dead (-inf) from then on;
- after `max_new_tokens` steps the live beams are candidates too (length = max_new_tokens); the single best
  candidate (first in rank order on equal scores) is the output.
What is faster: many inputs x K beams per forward, each prompt prefilled once (not K times, not padded to 512)
and its cache rows then expanded to K beams, one in-place cache reorder per step, vectorised bans, and an exact
early stop (an input stops once no live beam can beat its best finished hypothesis: with log-probs <= 0 a
beam's sum only falls, so its best possible normalised score is sum / max_L(L ** length_penalty)).
Ties in the top-K are broken by candidate index (a stable sort), so a batch gives the same hypotheses as its
inputs one at a time.

    from lora_nlg.decode import beam_search
    outs = beam_search(model, prompts, beam=10, length_penalty=0.8, no_repeat_ngram_size=4)

CLI: `python -m lora_nlg.decode --run RUN --split test [decode.beam=5 ...]` (see `--help`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from lora_nlg.distributed import init_distributed
from lora_nlg.kv_cache import BeamKVCache
from lora_nlg.run import RunError, adapter_path, load_run_model, read_config
from lora_nlg.tokenizer import DOUBLE_NEWLINE_ID, EOT_ID


@dataclass(frozen=True)
class BeamSettings:
    beam: int = 10                       # K beams per input (1 = greedy)
    length_penalty: float = 0.8          # finished score = sum logp / generated_len ** length_penalty
    no_repeat_ngram_size: int = 4        # ban n-grams already generated (0 = off)
    repetition_penalty: float = 1.0      # CTRL penalty on tokens already generated (1.0 = off)
    min_length: int = 0                  # end tokens banned while fewer tokens have been generated
    max_new_tokens: int = 64             # the reference's eval_len
    eos_ids: tuple[int, ...] = (EOT_ID, DOUBLE_NEWLINE_ID)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eos_ids", tuple(int(t) for t in self.eos_ids))
        checks = [(self.beam >= 1, "beam must be >= 1"), (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
                  (self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size must be >= 0"),
                  (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
                  (self.min_length >= 0, "min_length must be >= 0")]
        for ok, why in checks:
            if not ok:
                raise ValueError(f"beam search: {why}")


@dataclass
class Hypothesis:
    ids: list[int]        # generated ids without the end token
    score: float          # normalised score (the quantity the search maximises)
    finished: bool        # True: ended with an end token; False: still live after max_new_tokens steps


# ------------------------------------------------------------------------------------------ public API
def beam_search(model, prompts: Sequence[Sequence[int]], beam: int = 10, length_penalty: float = 0.8,
                no_repeat_ngram_size: int = 4, repetition_penalty: float = 1.0, min_length: int = 0,
                max_new_tokens: int = 64, eos_ids: Sequence[int] = (EOT_ID, DOUBLE_NEWLINE_ID),
                batch_size: int = 16) -> list[list[int]]:
    """Best hypothesis per prompt (generated ids, cut before the end token), in prompt order.

    prompts: token-id lists (context_ids as in data/<dataset>/<split>.jsonl, ending in 50256).
    """
    settings = BeamSettings(beam, length_penalty, no_repeat_ngram_size, repetition_penalty, min_length,
                            max_new_tokens, tuple(eos_ids))
    return [h.ids for h in generate(model, prompts, settings, batch_size=batch_size)]


def generate(model, prompts: Sequence[Sequence[int]], settings: BeamSettings = BeamSettings(), *,
             batch_size: int = 16, max_batch_tokens: int = 0, early_stop: bool = True,
             progress: bool = False, stats: dict | None = None) -> list[Hypothesis]:
    """Beam search over all prompts; batches of up to `batch_size` inputs (and, if > 0, of at most
    `max_batch_tokens` cache slots = inputs x (longest prompt + beam x max_new_tokens)). Prompt order kept.
    `stats`, if given, accumulates `steps` (forward passes after the prefill), `beam_rows` (rows in them) and
    `stopped_early` (inputs that left before max_new_tokens steps)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompts = [_checked_prompt(p, i, model.config.vocab_size) for i, p in enumerate(prompts)]
    if settings.beam > model.config.vocab_size:
        raise ValueError(f"beam {settings.beam} exceeds the vocabulary size {model.config.vocab_size}")
    if any(not 0 <= e < model.config.vocab_size for e in settings.eos_ids):
        raise ValueError(f"eos_ids {settings.eos_ids} must be token ids below {model.config.vocab_size}")
    limit = model.config.n_positions - settings.max_new_tokens
    if limit < 1:
        raise ValueError(f"max_new_tokens={settings.max_new_tokens} leaves no room for a prompt in "
                         f"{model.config.n_positions} positions")
    # The reference keeps the last tokens of an over-long prompt (left truncation); so do we.
    prompts = [p[-limit:] for p in prompts]
    batches = plan_batches([len(p) for p in prompts], settings, batch_size, max_batch_tokens)
    results: list[Hypothesis | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(prompts), desc="beam search", unit="input",
                                          disable=not progress, dynamic_ncols=True) as bar:
            for batch in batches:
                for i, hyp in zip(batch, search_batch(model, [prompts[i] for i in batch], settings, early_stop, stats)):
                    results[i] = hyp
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def _checked_prompt(p: Sequence[int], index: int, vocab: int) -> list[int]:
    ids = [int(t) for t in p]
    if not ids:
        raise ValueError(f"prompt {index} is empty")
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt {index} has a token id outside [0, {vocab})")
    return ids


def plan_batches(lengths: list[int], settings: BeamSettings, batch_size: int, max_batch_tokens: int = 0) -> list[list[int]]:
    """Input indices grouped into batches of similar prompt length (longest first: padding is per batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (
                max_batch_tokens <= 0 or (len(batches[-1]) + 1)
                * (lengths[batches[-1][0]] + settings.beam * settings.max_new_tokens) <= max_batch_tokens):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# ------------------------------------------------------------------------------------------ the search
def search_batch(model, prompts: list[list[int]], s: BeamSettings, early_stop: bool = True,
                 stats: dict | None = None) -> list[Hypothesis]:
    """Beam search for one batch of prompts: one prefill per prompt, then B x K rows per forward."""
    device = model.lm_head_weight.device
    B, K, M, V = len(prompts), s.beam, s.max_new_tokens, model.config.vocab_size
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    ids = torch.zeros(B, int(lengths.max()), dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        ids[b, :len(p)] = torch.tensor(p, dtype=torch.long)
    last = torch.zeros_like(ids, dtype=torch.bool)
    last[torch.arange(B, device=device), lengths - 1] = True
    cache = BeamKVCache(n_inputs=B, beam=K, prompt_len=ids.shape[1], max_new_tokens=M)
    logits = model(ids, kv_cache=cache, input_lengths=lengths, logits_mask=last)  # [B, V]: one row per prompt
    sdt = torch.promote_types(logits.dtype, torch.float32)  # scores never accumulate in bf16
    eos = torch.tensor(s.eos_ids, dtype=torch.long, device=device)
    neg_inf = torch.tensor(float("-inf"), dtype=sdt, device=device)
    # lp_denominator[L] = L ** length_penalty for a hypothesis of L generated tokens (index 0 unused)
    lp_denominator = [neg_inf] + [torch.tensor(float(L) ** s.length_penalty, dtype=sdt, device=device)
                                  for L in range(1, M + 1)]

    active = torch.arange(B, device=device)              # inputs still searching (batch positions)
    scores = torch.zeros(B, 1, dtype=sdt, device=device)  # [b, beams]: beam log-prob sums
    history = torch.zeros(B, 1, M, dtype=torch.long, device=device)  # generated tokens per beam
    best_score = torch.full((B,), float("-inf"), dtype=sdt, device=device)
    has_best = torch.zeros(B, dtype=torch.bool, device=device)
    best_ids = torch.zeros(B, M, dtype=torch.long, device=device)
    best_len = torch.zeros(B, dtype=torch.long, device=device)
    best_finished = torch.zeros(B, dtype=torch.bool, device=device)

    def offer(candidates: torch.Tensor, norm: torch.Tensor, step_len: int, finished: bool) -> None:
        """Take, per input, the first best of the candidates [b, K] if it beats the best so far (strictly)."""
        masked = torch.where(candidates, norm, neg_inf)
        top = masked.max(dim=1).values
        first = (candidates & (norm == top[:, None])).to(torch.int8).argmax(dim=1)  # first in rank order
        take = candidates.any(dim=1) & (~has_best[active] | (best_score[active] < top))
        if take.any():
            rows, where = active[take], first[take]
            best_score[rows] = top[take]
            has_best[rows] = True
            best_ids[rows] = history[take, where]
            best_len[rows] = step_len
            best_finished[rows] = finished

    for step in range(M):
        b = len(active)
        logp = torch.log_softmax(apply_bans(logits.to(sdt), history.view(-1, M)[:, :step], step, s), dim=-1)
        if step == 0:
            candidates = logp.view(b, V)  # all beams hold the same prompt: expand beam 0 only
        else:
            candidates = (scores[:, :, None] + logp.view(b, K, V)).view(b, K * V)
        scores, index = topk_stable(candidates, K)
        source = torch.div(index, V, rounding_mode="floor")
        token = index % V
        history = history.gather(1, source[:, :, None].expand(-1, -1, M))
        history[:, :, step] = token

        ended = torch.isin(token, eos)
        if ended.any():
            offer(ended, scores / lp_denominator[step + 1], step + 1, True)
            scores = torch.where(ended, neg_inf, scores)
        if step == M - 1:
            offer(torch.ones_like(ended), scores / lp_denominator[M], M, False)
            break

        keep = torch.ones(b, dtype=torch.bool, device=device)
        if early_stop:
            # Future lengths L in [step+2, M]; L ** lp is monotone, so its maximum is at an end of the range.
            denominator = torch.maximum(lp_denominator[step + 2], lp_denominator[M])
            bound = scores.max(dim=1).values / denominator
            keep = ~(has_best[active] & (best_score[active] >= bound))
            if not keep.any():
                if stats is not None:
                    stats["stopped_early"] = stats.get("stopped_early", 0) + b
                break
        rows_per_input = 1 if step == 0 else K
        cache_rows = (torch.arange(b, device=device)[:, None] * rows_per_input + source)[keep].view(-1)
        cache.reorder_(cache_rows)  # beams follow their parents; finished inputs leave the batch
        if not keep.all():
            active, scores, history, token = active[keep], scores[keep], history[keep], token[keep]
        logits = model(token.view(-1, 1), kv_cache=cache)[:, -1]
        if stats is not None:
            stats["steps"] = stats.get("steps", 0) + 1
            stats["beam_rows"] = stats.get("beam_rows", 0) + len(cache_rows)
            stats["stopped_early"] = stats.get("stopped_early", 0) + int((~keep).sum())

    out = []
    for b in range(B):
        n = int(best_len[b]) - (1 if best_finished[b] else 0)
        out.append(Hypothesis(best_ids[b, :n].tolist(), float(best_score[b]), bool(best_finished[b])))
    return out


def apply_bans(logits: torch.Tensor, history: torch.Tensor, step: int, s: BeamSettings) -> torch.Tensor:
    """The reference's logit processing, in its order, on rows [R, V] with generated tokens `history` [R, step].

    Modifies `logits` in place (the caller passes a fresh tensor) and returns it.
    """
    if step > 0 and s.repetition_penalty != 1.0:
        # each distinct generated token once: a repeated index gathers the original value and writes the same result
        seen = logits.gather(1, history)
        logits.scatter_(1, history, torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty))
    if step < s.min_length and s.eos_ids:
        logits[:, list(s.eos_ids)] = float("-inf")
    n = s.no_repeat_ngram_size
    if n == 1 and step > 0:
        logits.scatter_(1, history, float("-inf"))
    elif n > 1 and step >= n:
        # windows[:, j] = tokens j .. j+n-2; the last window is the current (n-1)-token suffix; a match at j bans
        # the token that followed that prefix, history[:, j+n-1]
        windows = history.unfold(1, n - 1, 1)
        match = (windows[:, :-1] == windows[:, -1:]).all(dim=-1)
        rows, starts = match.nonzero(as_tuple=True)
        if len(rows):
            logits[rows, history[rows, starts + n - 1]] = float("-inf")
    return logits


def topk_stable(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k largest values in descending order with ties broken by lower index (= the first k of a
    stable descending sort), so the result depends only on the row's values, never on the batch around it."""
    n = x.shape[1]
    if k >= n:
        return torch.sort(x, dim=1, descending=True, stable=True)
    values, index = torch.topk(x, k + 1, dim=1)
    ambiguous = values[:, k - 1] == values[:, k]  # the k-th value continues past the cut: pick lowest indices
    values, index = values[:, :k].contiguous(), index[:, :k].contiguous()
    for r in ambiguous.nonzero().flatten().tolist():
        row, threshold = x[r], values[r, k - 1]
        above = (row > threshold).nonzero().flatten()
        at = (row == threshold).nonzero().flatten()[: k - len(above)]
        index[r] = torch.cat([above, at])
        values[r] = row[index[r]]
    # canonical order: value descending, then index ascending
    index, by_index = index.sort(dim=1)
    values, order = values.gather(1, by_index).sort(dim=1, descending=True, stable=True)
    return values, index.gather(1, order)


# ------------------------------------------------------------------------------------------ loading
class DecodeError(RunError):
    """A run directory, checkpoint or option that cannot be decoded; the message says what to do."""


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


def load_model(args, cfg) -> tuple[object, str]:
    """(model, description) for --merged, --peft or the run's adapter."""
    from lora_nlg.gpt2 import GPT2

    if args.merged:
        return GPT2.from_pretrained(args.merged), f"merged checkpoint {args.merged}"
    if args.peft:
        base = args.base or _peft_base(args.peft) or (str(cfg.pretrained_path()) if args.run else None)
        if not base:
            raise DecodeError(f"{args.peft}: pass --base <base checkpoint dir> (the adapter's "
                              f"base_model_name_or_path is not an existing path)")
        return GPT2.from_peft_adapter(base, args.peft), f"PEFT adapter {args.peft} on base {base}"
    run_dir = Path(args.runs_dir) / args.run
    return load_run_model(run_dir, cfg, args.checkpoint), f"{adapter_path(run_dir, args.checkpoint)}"


def _peft_base(adapter_dir: str) -> str | None:
    try:
        base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError):
        return None
    return base if base and Path(base).exists() else None


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog="python -m lora_nlg.decode",
                                description="Beam-search every unique input of a split and write predictions plus "
                                            "the reference/hypothesis files the metric scripts read.")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. decode.beam=5 decode.length_penalty=0.9")
    p.add_argument("--run", "--run-name", dest="run",
                   help="run name: checkpoints/<RUN>/ (config.yaml + adapters); output goes to "
                        "checkpoints/<RUN>/decode/<split>/. Under torchrun spell it --run-name (torchrun's own "
                        "--run-path option claims the prefix --run)")
    p.add_argument("--split", default="test", help="data split (default test)")
    p.add_argument("--checkpoint", default="final", help="adapter of the run: final (default), best or step-N")
    p.add_argument("--merged", help="decode a merged Hugging Face checkpoint dir instead of a run adapter")
    p.add_argument("--peft", help="decode a PEFT adapter dir (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--base", help="base checkpoint for --peft (default: the run's base or the adapter's "
                                  "base_model_name_or_path)")
    p.add_argument("--config", help="config YAML for --merged/--peft without --run (default: built-in defaults)")
    p.add_argument("--dataset", choices=("e2e", "webnlg", "dart"), help="default: data.dataset of the config")
    p.add_argument("--data", help="data jsonl (default: <data.dir or data/<dataset>>/<split>.jsonl)")
    p.add_argument("--out", help="output dir (default: checkpoints/<RUN>/decode/<split>/)")
    p.add_argument("--runs-dir", default="checkpoints", help="where run directories live (default checkpoints)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="model precision (default fp32)")
    p.add_argument("--max-inputs", type=int, default=0, help="decode only the first N unique inputs (0 = all)")
    p.add_argument("--max-batch-tokens", type=int, default=0,
                   help="also cap a batch at this many cache slots (inputs x (prompt + beam x max_new_tokens))")
    p.add_argument("--no-early-stop", action="store_true", help="always run max_new_tokens steps (same output)")
    p.add_argument("--tokenize", action=argparse.BooleanOptionalAction, default=None,
                   help="reference/hypothesis tokenisation (default: on for WebNLG/DART, off for E2E)")
    p.add_argument("--lower", action=argparse.BooleanOptionalAction, default=None,
                   help="lower-case references/hypotheses (default: on for WebNLG/DART, off for E2E)")
    args = p.parse_args(argv)
    if sum(bool(x) for x in (args.merged, args.peft)) > 1:
        p.error("--merged and --peft are exclusive")
    if not (args.run or args.merged or args.peft):
        p.error("say what to decode: --run RUN, --merged DIR or --peft DIR")
    if not args.run and not args.out:
        p.error("--out is required without --run")
    if args.max_inputs < 0:
        p.error("--max-inputs must be >= 0")
    return args


def resolve_config(args):
    from lora_nlg.config import load_config

    if args.run:
        return read_config(Path(args.runs_dir) / args.run, args.overrides, run_name=args.run)
    return load_config(args.config, args.overrides)


def run(args) -> dict:
    from lora_nlg import references as refs_mod
    from lora_nlg.tokenizer import get_tokenizer

    env = init_distributed()
    try:
        cfg = resolve_config(args)
        data_path = Path(args.data) if args.data else cfg.data.split_path(args.split)
        dataset = args.dataset or (cfg.data.dataset if args.run or args.config else data_path.resolve().parent.name)
        if dataset not in refs_mod.DATASETS:
            raise DecodeError(f"cannot tell the dataset of {data_path}; pass --dataset e2e|webnlg|dart")
        out_dir = Path(args.out) if args.out else Path(args.runs_dir) / args.run / "decode" / args.split
        examples = refs_mod.read_examples(data_path)
        inputs = refs_mod.unique_inputs(examples, str(data_path))
        if args.max_inputs:
            inputs = inputs[:args.max_inputs]
            kept = {e.context for e in inputs}
            examples = [e for e in examples if e.context in kept]
        if dataset == "webnlg" and examples[0].seen is None:
            raise DecodeError(f"{data_path}: WebNLG data needs the 'seen' field for the seen/unseen/all subsets")
        # dry run of the file writers: data they cannot represent fails now, not after a long decode
        refs_mod.reference_files(dataset, examples, {e.context: "" for e in inputs}, cfg.decode.ref_num,
                                 args.tokenize, args.lower, source=str(data_path))
        model, what = load_model(args, cfg)
        if model.lora_config is not None:
            model.merge_lora()  # inference only: one matmul per projection, no adapter path
        model.to(device=env.device, dtype=DTYPES[args.dtype])
        d = cfg.decode
        settings = BeamSettings(d.beam, d.length_penalty, d.no_repeat_ngram_size, d.repetition_penalty,
                                d.min_length, d.max_new_tokens, tuple(d.eos_ids))
        if env.rank == 0:
            print(f"decode: {what}\n  {len(inputs)} unique inputs of {data_path} ({len(examples)} references), "
                  f"{env.world_size} process(es), {args.dtype}, {env.device}\n  {settings}", file=sys.stderr)
        # Strided shares of the length-sorted inputs give every rank about the same work.
        by_length = sorted(range(len(inputs)), key=lambda i: -len(inputs[i].context_ids))
        mine = by_length[env.rank::env.world_size]
        start = time.time()
        stats: dict = {}
        hyps = generate(model, [list(inputs[i].context_ids) for i in mine], settings, batch_size=d.batch_size,
                        max_batch_tokens=args.max_batch_tokens, early_stop=not args.no_early_stop,
                        progress=env.rank == 0, stats=stats)
        gathered = env.gather(([(i, asdict(h)) for i, h in zip(mine, hyps)], stats))
        summary: dict = {}
        if env.rank == 0:
            results = {i: h for part, _ in gathered for i, h in part}
            if sorted(results) != list(range(len(inputs))):
                raise DecodeError(f"gathered {len(results)} hypotheses for {len(inputs)} inputs")
            summary = {"model": what, "dataset": dataset, "split": args.split, "data": str(data_path),
                       "inputs": len(inputs), "references": len(examples), "processes": env.world_size,
                       "dtype": args.dtype, "seconds": round(time.time() - start, 2),
                       "inputs_per_s": round(len(inputs) / max(time.time() - start, 1e-9), 3),
                       "stopped_early": sum(st.get("stopped_early", 0) for _, st in gathered),
                       "decode": asdict(d)}
            write_outputs(out_dir, dataset, examples, inputs, results, d.ref_num, args, get_tokenizer(), summary)
            print(f"decode: {len(inputs)} inputs in {summary['seconds']} s -> {out_dir}/", file=sys.stderr)
        env.barrier()
        return summary
    finally:
        env.close()


def write_outputs(out_dir: Path, dataset: str, examples, inputs, results: dict[int, dict], ref_num: int, args, tok,
                  summary: dict) -> None:
    """predictions.jsonl, the metric files and decode.json, assembled in a temp dir that replaces `out_dir`."""
    from lora_nlg import references as refs_mod
    from lora_nlg.fsutil import atomic_dir

    grouped = refs_mod.group_references(examples)
    seen = {e.context: e.seen for e in examples}
    texts: dict[str, str] = {}
    lines = []
    for i, e in enumerate(inputs):
        h = results[i]
        texts[e.context] = text = refs_mod.cut_text(tok.decode(h["ids"]))
        row = {"index": i, "context": e.context, "hypothesis": text, "hypothesis_ids": h["ids"],
               "score": h["score"], "finished": h["finished"], "references": grouped[e.context]}
        if seen[e.context] is not None:
            row["seen"] = seen[e.context]
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    files, counts = refs_mod.reference_files(dataset, examples, texts, ref_num, args.tokenize, args.lower,
                                             source="decoded hypotheses")
    summary.update(subsets=counts, files=sorted(files) + ["predictions.jsonl"],
                   finished_by_end_token=sum(bool(h["finished"]) for h in results.values()))
    with atomic_dir(out_dir) as tmp:
        (tmp / "predictions.jsonl").write_text("".join(lines), encoding="utf-8")
        refs_mod.write_files(tmp, files)
        (tmp / "decode.json").write_text(json.dumps(summary, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from lora_nlg.config import ConfigError
    from lora_nlg.model import CheckpointError
    from lora_nlg.references import ReferenceError

    try:
        run(args)
    except (RunError, ConfigError, CheckpointError, ReferenceError) as e:  # RunError includes DecodeError
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
