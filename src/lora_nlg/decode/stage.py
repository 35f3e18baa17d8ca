"""The decode stage: rebuild a run's model (or a merged checkpoint, or a PEFT adapter), shard the unique inputs
of a split over the processes, beam-search them and write predictions.jsonl, the reference/hypothesis files the
metric scripts read and decode.json, all at once.

CLI: `python -m lora_nlg.decode --run RUN --split test [decode.beam=5 ...]` (see `--help`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lora_nlg import precision
from lora_nlg.atomic import WriteError, atomic_dir, atomic_file, check_writable, json_text
from lora_nlg.config import ConfigError, load_config
from lora_nlg.data.datasets import SUBSET_SEEN, dataset_names, get_dataset
from lora_nlg.decode import reference_files as refs_mod
from lora_nlg.decode.reference_files import ReferenceError
from lora_nlg.decode.search import BeamSettings, generate
from lora_nlg.distributed import init_distributed
from lora_nlg.model.gpt2 import GPT2
from lora_nlg.model.network import CheckpointError
from lora_nlg.run_dir import RunError, adapter_path, load_run_model, read_config
from lora_nlg.tokenizer import get_tokenizer


# ------------------------------------------------------------------------------------------ loading
class DecodeError(RunError):
    """A run directory, checkpoint or option that cannot be decoded; the message says what to do."""


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


DTYPE_CHOICES = (*DTYPES, "auto")


def resolve_dtype(requested: str, device, announce: bool = True) -> str:
    """--dtype auto -> bf16 or fp32 for `device` (lora_nlg.precision); bf16 where it is emulated warns."""
    if requested not in ("auto", "bf16"):
        return requested
    dtype, warning = precision.resolve(requested, device, "--dtype")
    if warning and announce:
        print(warning, file=sys.stderr)
    return dtype


def load_model(args, cfg) -> tuple[object, str]:
    """(model, description) for --merged, --peft or the run's adapter."""
    return load_decode_model(cfg, run_dir=Path(args.runs_dir) / args.run if args.run else None,
                             checkpoint=args.checkpoint, merged=args.merged, peft=args.peft, base=args.base)


def load_decode_model(cfg, run_dir: Path | None = None, checkpoint: str = "final", merged: str | None = None,
                      peft: str | None = None, base: str | None = None) -> tuple[GPT2, str]:
    """(model, description): a merged checkpoint dir, a PEFT adapter dir on `base`, or the adapter `checkpoint`
    (final, best, step-N) of the run in `run_dir` (whose config is `cfg`). Shared by decode and generate."""
    if merged:
        return GPT2.from_pretrained(merged), f"merged checkpoint {merged}"
    if peft:
        base = base or _peft_base(peft) or (str(cfg.pretrained_path()) if run_dir is not None else None)
        if not base:
            raise DecodeError(f"{peft}: pass --base <base checkpoint dir> (the adapter's "
                              f"base_model_name_or_path is not an existing path)")
        return GPT2.from_peft_adapter(base, peft), f"PEFT adapter {peft} on base {base}"
    if run_dir is None:
        raise DecodeError("nothing to load: give a run directory, a merged checkpoint or a PEFT adapter")
    return load_run_model(run_dir, cfg, checkpoint), f"{adapter_path(run_dir, checkpoint)}"


def ready_for_inference(model: GPT2, device, dtype: str = "fp32") -> GPT2:
    """LoRA merged into the weights (one matmul per projection, no adapter path), on `device` in `dtype`."""
    if model.lora_config is not None:
        model.merge_lora()
    return model.to(device=device, dtype=DTYPES[dtype]).eval()


def _peft_base(adapter_dir: str) -> str | None:
    try:
        base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError):
        return None
    return base if base and Path(base).exists() else None


# ------------------------------------------------------------------------------------------ CLI
def add_model_source_arguments(p: argparse.ArgumentParser) -> None:
    """What to decode with besides a run (decode and generate take the same options)."""
    p.add_argument("--checkpoint", default="final", help="adapter of the run: final (default), best or step-N")
    p.add_argument("--merged", help="a merged Hugging Face checkpoint dir instead of a run adapter")
    p.add_argument("--peft", help="a PEFT adapter dir (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--base", help="base checkpoint for --peft (default: the run's base or the adapter's "
                                  "base_model_name_or_path)")
    p.add_argument("--config", help="config YAML for --merged/--peft without --run (default: built-in defaults)")


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
    add_model_source_arguments(p)
    p.add_argument("--dataset", choices=dataset_names(), help="default: data.dataset of the config")
    p.add_argument("--data", help="data jsonl (default: <data.dir or data/<dataset>>/<split>.jsonl)")
    p.add_argument("--out", help="output dir (default: checkpoints/<RUN>/decode/<split>/)")
    p.add_argument("--runs-dir", default="checkpoints", help="where run directories live (default checkpoints)")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32",
                   help="model precision (default fp32; auto: bf16 where the hardware computes it natively, else "
                        "fp32; decode.json records the resolved one)")
    p.add_argument("--max-inputs", type=int, default=0, help="decode only the first N unique inputs (0 = all)")
    p.add_argument("--max-batch-tokens", type=int, default=0,
                   help="also cap a batch at this many cache slots (inputs x (prompt + beam x max_new_tokens))")
    p.add_argument("--no-early-stop", action="store_true", help="always run max_new_tokens steps (same output)")
    p.add_argument("--tokenize", action=argparse.BooleanOptionalAction, default=None,
                   help=f"reference/hypothesis tokenisation {refs_mod.normalisation_help('tokenize')}")
    p.add_argument("--lower", action=argparse.BooleanOptionalAction, default=None,
                   help=f"lower-case references/hypotheses {refs_mod.normalisation_help('lower')}")
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
    if args.run:
        return read_config(Path(args.runs_dir) / args.run, args.overrides, run_name=args.run)
    return load_config(args.config, args.overrides)


def run(args) -> dict:
    env = init_distributed()
    try:
        cfg = resolve_config(args)
        data_path = Path(args.data) if args.data else cfg.data.split_path(args.split)
        dataset = args.dataset or (cfg.data.dataset if args.run or args.config else data_path.resolve().parent.name)
        if dataset not in dataset_names():
            raise DecodeError(f"cannot tell the dataset of {data_path}; pass --dataset {'|'.join(dataset_names())}")
        out_dir = Path(args.out) if args.out else Path(args.runs_dir) / args.run / "decode" / args.split
        if env.rank == 0:
            check_writable(out_dir, "dir")  # now, not after the whole beam search
        settings = cfg.decode.beam_settings()  # checked when the config was loaded
        examples = refs_mod.read_examples(data_path)
        inputs = refs_mod.unique_inputs(examples, str(data_path))
        if args.max_inputs:
            inputs = inputs[:args.max_inputs]
            kept = {e.context for e in inputs}
            examples = [e for e in examples if e.context in kept]
        subsets = get_dataset(dataset).scoring.subsets
        if any(SUBSET_SEEN[s] is not None for s in subsets) and examples[0].seen is None:
            raise DecodeError(f"{data_path}: {get_dataset(dataset).title} data needs the 'seen' field for the "
                              f"{'/'.join(subsets)} subsets")
        # dry run of the file writers: data they cannot represent fails now, not after a long decode
        refs_mod.reference_files(dataset, examples, {e.context: "" for e in inputs}, cfg.decode.ref_num,
                                 args.tokenize, args.lower, source=str(data_path))
        model, what = load_model(args, cfg)
        dtype = resolve_dtype(args.dtype, env.device, announce=env.rank == 0)
        ready_for_inference(model, env.device, dtype)
        d = cfg.decode
        truncated = check_fits_model(settings, model.config, [len(e.context_ids) for e in inputs], what)
        if env.rank == 0:
            if truncated:
                print(f"note: {truncated} of {len(inputs)} inputs are longer than the {model.config.n_positions} "
                      f"positions less decode.max_new_tokens={settings.max_new_tokens}; their first tokens are "
                      f"dropped (the reference's left truncation)", file=sys.stderr)
            print(f"decode: {what}\n  {len(inputs)} unique inputs of {data_path} ({len(examples)} references), "
                  f"{env.world_size} process(es), {dtype}"
                  f"{' (auto)' if args.dtype == 'auto' else ''}, {env.device}\n  {settings}", file=sys.stderr)
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
                       "dtype": dtype, "dtype_requested": args.dtype, "seconds": round(time.time() - start, 2),
                       "inputs_per_s": round(len(inputs) / max(time.time() - start, 1e-9), 3),
                       "stopped_early": sum(st.get("stopped_early", 0) for _, st in gathered),
                       "decode": asdict(d)}
            write_decode_outputs(out_dir, dataset, examples, inputs, results, d.ref_num, args, get_tokenizer(), summary)
            print(f"decode: {len(inputs)} inputs in {summary['seconds']} s -> {out_dir}/", file=sys.stderr)
        env.barrier()
        return summary
    finally:
        env.close()


def check_fits_model(settings: BeamSettings, config, prompt_lengths: list[int], what: str) -> int:
    """Refuse settings the model cannot run; returns how many prompts lose their first tokens to make room."""
    if settings.beam > config.vocab_size:
        raise DecodeError(f"decode.beam={settings.beam} exceeds the vocabulary of {what} ({config.vocab_size} "
                          f"tokens): at most that many beams can differ")
    if settings.max_new_tokens >= config.n_positions:
        raise DecodeError(f"decode.max_new_tokens={settings.max_new_tokens} leaves no room for a prompt in the "
                          f"{config.n_positions} positions of {what}; use at most {config.n_positions - 1} "
                          f"(the reference's eval_len is 64)")
    bad_eos = [t for t in settings.eos_ids if not 0 <= t < config.vocab_size]
    if bad_eos:
        raise DecodeError(f"decode.eos_ids: {bad_eos} are not token ids of {what} (vocabulary {config.vocab_size})")
    limit = config.n_positions - settings.max_new_tokens
    return sum(n > limit for n in prompt_lengths)


def write_decode_outputs(out_dir: Path, dataset: str, examples, inputs, results: dict[int, dict], ref_num: int, args, tok,
                  summary: dict) -> None:
    """predictions.jsonl, the metric files and decode.json, assembled in a temp dir that replaces `out_dir`."""
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
        lines.append(json_text(row, ensure_ascii=False) + "\n")
    files, counts = refs_mod.reference_files(dataset, examples, texts, ref_num, args.tokenize, args.lower,
                                             source="decoded hypotheses")
    summary.update(subsets=counts, files=sorted(files) + ["predictions.jsonl"],
                   finished_by_end_token=sum(bool(h["finished"]) for h in results.values()))
    with atomic_dir(out_dir) as tmp:
        with atomic_file(tmp / "predictions.jsonl", encoding="utf-8") as f:  # a failure names the file
            f.writelines(lines)
        refs_mod.write_files(tmp, files)
        with atomic_file(tmp / "decode.json", encoding="utf-8") as f:
            f.write(json_text(summary, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (RunError, ConfigError, CheckpointError, ReferenceError, WriteError) as e:  # RunError: DecodeError too
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
