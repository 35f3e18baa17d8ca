"""Text for new inputs: a run directory, a checkpoint or a model, and input lines in, generated sentences out.

An input is one line in the data stage's serialisation (E2E `name : The Eagle | Type : coffee shop`, WebNLG and
DART `subject : property : object | ...`), or, for E2E, an MR in the challenge's own form (`name[The Eagle],
eatType[coffee shop]`), converted by the data stage's own function (`e2e_mr_to_lora`). The prompt is built as
the data stage builds `context_ids` (`encode_contexts`: BPE + 50256) and searched with the run's decode settings
by the reference beam search, batched as `make decode` batches, so an input gives the text `make decode` gives.

    python -m lora_nlg.generate --run demo --input inputs.txt [--jsonl] [decode.beam=5 ...]   (see --help)
    lora_nlg.generate("checkpoints/demo", ["name[The Eagle], eatType[coffee shop]"], beam=5) -> list[str]

CLI exit status: 0 when every line was generated; 1 when any line was bad (each one reported on stderr as
`error: <file>:<line>: ...`, its output line left empty, every other line still generated) or nothing could be
loaded; 2 for a usage error.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from lora_nlg.config import ConfigError, RunConfig, load_config
from lora_nlg.data.bpe_records import encode_contexts
from lora_nlg.data.datasets import dataset_names
from lora_nlg.data.datasets.e2e import E2E_ATTRIBUTE_NAMES, e2e_mr_to_lora
from lora_nlg.decode.beam_settings import BeamSettings
from lora_nlg.decode.reference_files import cut_text
from lora_nlg.decode.search import generate
from lora_nlg.decode.stage import (
    DTYPE_CHOICES,
    DecodeError,
    add_model_source_arguments,
    load_decode_model,
    ready_for_inference,
    resolve_dtype,
)
from lora_nlg.model.gpt2 import GPT2
from lora_nlg.model.network import CheckpointError
from lora_nlg.run_dir import CONFIG_FILE, RunError, read_config
from lora_nlg.tokenizer import get_tokenizer

E2E_NAMES = tuple(dict.fromkeys(E2E_ATTRIBUTE_NAMES.values()))  # LoRA's names: name, Type, food, price, ...
_CHALLENGE_MR = re.compile(r"\s*[^\[\],:|]+\[")  # `eatType[` before any ' : ': the E2E challenge's own form


class InputError(ValueError):
    """One input that cannot be generated; the message says why (the caller adds where)."""


@dataclass
class Generated:
    context: str      # the input's data-stage serialisation (what the model is prompted with, before BPE)
    text: str         # generated text, cut as `make decode` cuts it
    score: float      # the beam search's normalised score
    tokens: int       # generated tokens (without the end token)
    finished: bool    # ended with an end token (False: cut at decode.max_new_tokens)


# ------------------------------------------------------------------------------------------ inputs
def serialise_input(line: str, dataset: str | None) -> str:
    """The data stage's context text for one input line (`dataset` None: only E2E challenge MRs are converted)."""
    text = line.strip()
    if not text:
        raise InputError("empty input")
    if dataset in ("e2e", None) and _CHALLENGE_MR.match(text):
        try:
            return e2e_mr_to_lora(text)
        except ValueError as e:
            raise InputError(str(e)) from None
    if dataset == "e2e":
        check_e2e_context(text)
    elif dataset in ("webnlg", "dart"):  # other datasets' inputs are taken as they are
        check_triples_context(text)
    return text


def check_e2e_context(text: str) -> None:
    for item in text.split(" | "):
        attribute, sep, value = item.partition(" : ")
        if not sep or not value.strip():
            raise InputError(f"{item!r} is not 'attribute : value' (E2E inputs read `name : The Eagle | "
                             f"Type : coffee shop`, or `name[The Eagle], eatType[coffee shop]`)")
        if attribute.strip() not in E2E_NAMES:
            raise InputError(f"unknown E2E attribute {attribute.strip()!r}; known: {', '.join(E2E_NAMES)} "
                             f"(or the challenge's {', '.join(E2E_ATTRIBUTE_NAMES)} in the form name[value])")


def check_triples_context(text: str) -> None:
    for item in text.split(" | "):
        if len([part for part in item.split(" : ") if part.strip()]) < 3:
            raise InputError(f"{item!r} is not a triple 'subject : property : object'")


def prompt_ids(contexts: list[str], model: GPT2, max_new_tokens: int) -> list[list[int] | InputError]:
    """context_ids per context (as the data stage encodes them), or an InputError when it does not fit the window
    together with `max_new_tokens` (make decode would silently keep its last tokens; here that is refused)."""
    limit = model.config.n_positions - max_new_tokens
    out: list[list[int] | InputError] = []
    for ids in encode_contexts(contexts):
        out.append(ids if len(ids) <= limit else InputError(
            f"input is {len(ids)} BPE tokens, longer than the {limit} the context window leaves "
            f"({model.config.n_positions} positions - decode.max_new_tokens {max_new_tokens})"))
    return out


# ------------------------------------------------------------------------------------------ models
def decode_settings(cfg: RunConfig) -> BeamSettings:
    return cfg.decode.beam_settings()


def resolve_device(device: str | torch.device | None):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_for_generation(source, overrides: Sequence[str] = (), checkpoint: str = "final",
                        config: str | None = None) -> tuple[GPT2, RunConfig, str, str | None]:
    """(model, config, description, dataset) for a GPT2 model, a run directory (config.yaml + adapters) or a
    merged checkpoint directory (config.json + weights). `overrides` are dotted (`decode.beam=5`)."""
    if isinstance(source, GPT2):
        cfg = load_config(config, list(overrides))
        return source, cfg, "the given model", cfg.data.dataset if config else None
    path = Path(source)
    if (path / CONFIG_FILE).is_file():
        cfg = read_config(path, list(overrides))
        model, what = load_decode_model(cfg, run_dir=path, checkpoint=checkpoint)
        return model, cfg, what, cfg.data.dataset
    if (path / "config.json").is_file() or path.is_file():
        cfg = load_config(config, list(overrides))
        model, what = load_decode_model(cfg, merged=str(path))
        return model, cfg, what, cfg.data.dataset if config else None
    raise RunError(f"{path}: neither a run directory ({CONFIG_FILE}) nor a checkpoint directory (config.json)")


# ------------------------------------------------------------------------------------------ generation
def generate_batch(model: GPT2, cfg: RunConfig, contexts: list[str], max_batch_tokens: int = 0,
                   progress: bool = False) -> list[Generated | InputError]:
    """Beam search for data-stage contexts with cfg.decode, batched as `make decode` batches (decode.batch_size
    inputs of similar length); an InputError in place of each context that does not fit the window."""
    settings = decode_settings(cfg)
    prompts = prompt_ids(contexts, model, settings.max_new_tokens)
    good = [i for i, p in enumerate(prompts) if not isinstance(p, InputError)]
    hyps = generate(model, [prompts[i] for i in good], settings, batch_size=cfg.decode.batch_size,
                    max_batch_tokens=max_batch_tokens, progress=progress) if good else []
    tok = get_tokenizer()
    out: list[Generated | InputError] = list(prompts)  # errors stay in place
    for i, h in zip(good, hyps):
        out[i] = Generated(contexts[i], cut_text(tok.decode(h.ids)), h.score, len(h.ids), h.finished)
    return out


def generate_text(model_or_run, inputs: Sequence[str], *, checkpoint: str = "final", dataset: str | None = None,
                  config: str | None = None, device: str | None = None, dtype: str = "fp32",
                  **decode_overrides) -> list[str]:
    """Generated text per input, in order: `lora_nlg.generate(run_dir_or_model, ["name : The Eagle | ...", ...])`.

    model_or_run: a run directory (its decode settings, adapter `checkpoint` = final|best|step-N), a merged
    checkpoint directory, or a `GPT2` (used as is, in its current dtype and device). decode_overrides: DecodeConfig
    fields, e.g. `beam=5, length_penalty=0.9`. dataset: e2e|webnlg|dart to check inputs against (default: the
    run's; for a bare model or checkpoint only E2E challenge MRs are converted and nothing else is checked).
    Raises InputError naming every bad input before generating anything.
    """
    overrides = [f"decode.{k}={json.dumps(v)}" for k, v in decode_overrides.items()]
    model, cfg, _, run_dataset = load_for_generation(model_or_run, overrides, checkpoint, config)
    if not isinstance(model_or_run, GPT2):
        target = resolve_device(device)
        ready_for_inference(model, target, resolve_dtype(dtype, target))
    contexts, errors = [], []
    for number, line in enumerate(inputs, 1):
        try:
            contexts.append(serialise_input(line, dataset or run_dataset))
        except InputError as e:
            errors.append(f"input {number}: {e}")
    if not errors:
        results = generate_batch(model, cfg, contexts)
        errors = [f"input {n}: {r}" for n, r in enumerate(results, 1) if isinstance(r, InputError)]
    if errors:
        raise InputError("; ".join(errors))
    return [r.text for r in results]


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(
        prog="python -m lora_nlg.generate",
        description="Generate one text per input line with a trained run (its decode settings, the reference "
                    "beam search). Inputs: the data stage's serialisation (E2E `name : The Eagle | Type : coffee "
                    "shop`, WebNLG/DART `subject : property : object | ...`) or E2E challenge MRs "
                    "(`name[The Eagle], eatType[coffee shop]`). A bad line is reported on stderr and left empty "
                    "on stdout; the others are still generated; the exit status is 1 if any line failed.")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. decode.beam=5 decode.length_penalty=0.9")
    p.add_argument("--run", "--run-name", dest="run",
                   help="run name under --runs-dir (checkpoints/<RUN>/) or a run directory path")
    p.add_argument("-i", "--input", default="-", help="input file, one input per line ('-' = stdin, the default)")
    p.add_argument("--jsonl", action="store_true",
                   help="print one JSON object per line: line, input, context, text, score, tokens, finished "
                        "(or error)")
    add_model_source_arguments(p)
    p.add_argument("--dataset", choices=dataset_names(),
                   help="check inputs as this dataset's (default: the config's data.dataset)")
    p.add_argument("--runs-dir", default="checkpoints", help="where run directories live (default checkpoints)")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32",
                   help="model precision (default fp32; auto: bf16 where the hardware computes it natively)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--max-batch-tokens", type=int, default=0,
                   help="also cap a batch at this many cache slots (inputs x (prompt + beam x max_new_tokens))")
    args = p.parse_args(argv)
    if args.merged and args.peft:
        p.error("--merged and --peft are exclusive")
    if not (args.run or args.merged or args.peft):
        p.error("say what to generate with: --run RUN, --merged DIR or --peft DIR")
    return args


def run_dir_of(run: str, runs_dir: str) -> Path:
    """checkpoints/<run>/ for a run name; the path itself for a run directory given as a path."""
    named = Path(runs_dir) / run
    return named if (named / CONFIG_FILE).is_file() or not (Path(run) / CONFIG_FILE).is_file() else Path(run)


def read_input_lines(name: str) -> list[str]:
    if name == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(name).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DecodeError(f"{name}: cannot read the input file ({getattr(e, 'strerror', None) or e})") from None


def run(args) -> int:
    """Generate for every line of args.input; returns the number of bad lines."""
    run_dir = run_dir_of(args.run, args.runs_dir) if args.run else None
    cfg = read_config(run_dir, args.overrides) if run_dir else load_config(args.config, args.overrides)
    dataset = args.dataset or (cfg.data.dataset if run_dir or args.config else None)
    source = "<stdin>" if args.input == "-" else args.input
    lines = read_input_lines(args.input)
    model, what = load_decode_model(cfg, run_dir=run_dir, checkpoint=args.checkpoint, merged=args.merged,
                                    peft=args.peft, base=args.base)
    device = resolve_device(args.device)
    ready_for_inference(model, device, resolve_dtype(args.dtype, device))
    print(f"generate: {what}, {len(lines)} input line(s) from {source}\n  {decode_settings(cfg)}", file=sys.stderr)
    contexts: dict[int, str] = {}   # line number -> serialisation
    results: dict[int, Generated | InputError] = {}
    for number, line in enumerate(lines, 1):
        try:
            contexts[number] = serialise_input(line, dataset)
        except InputError as e:
            results[number] = e
    results.update(zip(contexts, generate_batch(model, cfg, list(contexts.values()), args.max_batch_tokens,
                                                progress=sys.stderr.isatty())))
    failed = 0
    for number, line in enumerate(lines, 1):
        r = results[number]
        if isinstance(r, InputError):
            failed += 1
            print(f"error: {source}:{number}: {r}", file=sys.stderr)
            print(json.dumps({"line": number, "input": line, "error": str(r)}, ensure_ascii=False)
                  if args.jsonl else "")
            continue
        print(json.dumps({"line": number, "input": line, "context": r.context, "text": r.text,
                          "score": round(r.score, 6), "tokens": r.tokens, "finished": r.finished},
                         ensure_ascii=False) if args.jsonl else r.text)
    if failed:
        print(f"generate: {failed} of {len(lines)} line(s) failed (see the errors above)", file=sys.stderr)
    return failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        failed = run(args)
    except (RunError, ConfigError, CheckpointError) as e:  # RunError includes DecodeError
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
