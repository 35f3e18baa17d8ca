"""Reference and hypothesis files for the metric scripts, with the reference pipeline's conventions.

What `gpt2_decode.py` of microsoft/LoRA does (docs/reference-pipeline.md, "From token ids to text files"), kept
exactly:
- references are grouped by the identical context *string*, keys in order of first appearance;
- every text (reference and hypothesis) is cut at `<|endoftext|>` and at the first blank line, then stripped;
- E2E (metric family e2e_official): `refs.txt` holds each input's references one per line and a blank line after
  each input, `hyp.txt` one line per input;
- WebNLG/DART (geneval): `reference0..reference{ref_num-1}`, line j of file k = k-th reference of input j, or its
  first reference when it has fewer (the reference's padding), references beyond `ref_num` dropped;
- `--lower` then `--tokenize` (every non-word character its own token) on references and hypotheses alike, by
  default as the reference runs gpt2_decode.py for the dataset (WebNLG/DART: both, E2E: neither);
- WebNLG is written three times, for the `unseen`, `seen` and `all` categories (subdirectories).
What a dataset needs (its metric family, default normalisation, subsets) is its `Scoring` in the dataset registry
(`lora_nlg.data.datasets`); nothing here names a dataset.
Differences on purpose: an input with references but no hypothesis, a hypothesis for an unknown input, or a
duplicated hypothesis is an error (the reference raises KeyError or silently keeps the last one), and a single
newline left inside a text becomes a space, so a line-based file can never be shifted by one.

CLI (rewrite the files from an existing predictions.jsonl, e.g. with another ref_num):
    python -m lora_nlg.references --data data/webnlg/test.jsonl --predictions DIR/predictions.jsonl --out DIR
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lora_nlg.atomic import WriteError, write_files_together
from lora_nlg.data.datasets import SUBSET_SEEN, Scoring, dataset_names, registry
from lora_nlg.data.readers import read_jsonl_objects, require_field

END_OF_TEXT = "<|endoftext|>"
DEFAULT_REF_NUM = 6


class ReferenceError(ValueError):
    """Inconsistent data or predictions; the message names the file, line and field when there is one."""


@dataclass(frozen=True)
class DataRecord:
    """One line of data/<dataset>/<split>.jsonl (one (input, reference) pair)."""
    context: str
    completion: str
    context_ids: tuple[int, ...]
    seen: bool | None   # WebNLG only: category among the 10 seen in training
    line: int           # 1-based line number in the source file


# ------------------------------------------------------------------------------------------ reading
def _field(obj: dict, name: str, kind: type, where: str):
    return require_field(obj, name, kind, where, ReferenceError)


def read_examples(path: str | Path) -> list[DataRecord]:
    """Parse and validate a data jsonl; every problem names the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"{path}: no such data file (run `make data` first, or pass --data)")
    examples: list[DataRecord] = []
    for n, (where, obj) in enumerate(read_jsonl_objects(path, ReferenceError), start=1):
        ids = _field(obj, "context_ids", list, where)
        if not ids or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
            raise ReferenceError(f"{where}: field 'context_ids' must be a non-empty list of token ids")
        seen = _field(obj, "seen", bool, where) if "seen" in obj else None
        examples.append(DataRecord(_field(obj, "context", str, where), _field(obj, "completion", str, where),
                                tuple(ids), seen, n))
    if not examples:
        raise ReferenceError(f"{path}: no examples")
    if len({e.seen is None for e in examples}) > 1:
        first = next(e for e in examples if e.seen is None)
        raise ReferenceError(f"{path}:{first.line}: missing field 'seen' (other lines have it)")
    return examples


# ------------------------------------------------------------------------------------------ text
def cut_text(text: str) -> str:
    """The reference's cut: up to `<|endoftext|>`, up to the first blank line, stripped; one line."""
    text = text.split(END_OF_TEXT)[0].split("\n\n")[0].strip()
    return re.sub(r"[\r\n]", " ", text)


def normalise(text: str, tokenize: bool, lower: bool) -> str:
    """`--lower` then `--tokenize` of gpt2_decode.py (split around every non-word char, squeeze spaces)."""
    if lower:
        text = text.lower()
    if tokenize:
        text = " ".join(" ".join(re.split(r"(\W)", text)).split())
    return text


# ------------------------------------------------------------------------------------------ grouping
def unique_inputs(examples: list[DataRecord], source: str = "data") -> list[DataRecord]:
    """The first example of each distinct context string, in order of first appearance."""
    first: dict[str, DataRecord] = {}
    for e in examples:
        kept = first.setdefault(e.context, e)
        if kept.context_ids != e.context_ids:
            raise ReferenceError(f"{source}:{e.line}: field 'context_ids' differs from line {kept.line}, "
                                 f"which has the same context text")
    return list(first.values())


def select_subset(examples: list[DataRecord], subset: str) -> list[DataRecord]:
    if subset not in SUBSET_SEEN:
        raise ValueError(f"unknown subset {subset!r}; choose from {tuple(SUBSET_SEEN)}")
    if (seen := SUBSET_SEEN[subset]) is None:
        return examples
    if any(e.seen is None for e in examples):
        raise ReferenceError(f"subset {subset!r} needs the 'seen' field (WebNLG data)")
    return [e for e in examples if e.seen == seen]


def group_references(examples: list[DataRecord]) -> dict[str, list[str]]:
    """context -> its references (cut as the reference does), keys in order of first appearance."""
    refs: dict[str, list[str]] = {}
    for e in examples:
        refs.setdefault(e.context, []).append(cut_text(e.completion))
    return refs


def check_hypotheses(refs: dict[str, list[str]], hyps: dict[str, str], source: str = "predictions") -> None:
    """Every input with references needs exactly one hypothesis; a hypothesis for an unknown input is an error."""
    missing = [k for k in refs if k not in hyps]
    extra = [k for k in hyps if k not in refs]
    if missing:
        raise ReferenceError(f"{source}: {len(missing)} of {len(refs)} inputs have references but no prediction, "
                             f"e.g. context {missing[0]!r}")
    if extra:
        raise ReferenceError(f"{source}: {len(extra)} predictions are for contexts that are not in the data "
                             f"({len(refs)} inputs), e.g. {extra[0]!r}")


# ------------------------------------------------------------------------------------------ file contents
def e2e_files(refs: dict[str, list[str]], hyps: dict[str, str], tokenize: bool = False,
              lower: bool = False) -> dict[str, str]:
    for context, rs in refs.items():
        if any(not normalise(r, tokenize, lower) for r in rs):
            # a blank line is the input separator of refs.txt: an empty reference would shift every later input
            raise ReferenceError(f"input {context!r} has an empty reference, which refs.txt cannot represent")
    ref_text = "".join("".join(normalise(r, tokenize, lower) + "\n" for r in rs) + "\n" for rs in refs.values())
    return {"refs.txt": ref_text, "hyp.txt": _hyp_text(refs, hyps, tokenize, lower)}


def multi_ref_files(refs: dict[str, list[str]], hyps: dict[str, str], ref_num: int = DEFAULT_REF_NUM,
                    tokenize: bool = True, lower: bool = True) -> dict[str, str]:
    if ref_num < 1:
        raise ValueError(f"ref_num must be >= 1, got {ref_num}")
    files = {}
    for k in range(ref_num):
        # the reference's convention: an input with fewer than k+1 references repeats its first one
        files[f"reference{k}"] = "".join(normalise(rs[k] if k < len(rs) else rs[0], tokenize, lower) + "\n"
                                         for rs in refs.values())
    files["hyp.txt"] = _hyp_text(refs, hyps, tokenize, lower)
    return files


def _hyp_text(refs: dict[str, list[str]], hyps: dict[str, str], tokenize: bool, lower: bool) -> str:
    return "".join(normalise(cut_text(hyps[k]), tokenize, lower) + "\n" for k in refs)


def dataset_scoring(dataset: str) -> Scoring:
    """The registry's scoring of a dataset; ValueError naming the known ones."""
    if dataset not in registry():
        raise ValueError(f"unknown dataset {dataset!r}; choose from {dataset_names()}")
    return registry()[dataset].scoring


def metric_files(scoring: Scoring, refs: dict[str, list[str]], hyps: dict[str, str], ref_num: int, tokenize: bool,
                 lower: bool) -> dict[str, str]:
    """The files of one (sub)set for the dataset's metric family."""
    if scoring.metrics == "e2e_official":
        return e2e_files(refs, hyps, tokenize, lower)
    return multi_ref_files(refs, hyps, ref_num, tokenize, lower)


def reference_files(dataset: str, examples: list[DataRecord], hyps: dict[str, str],
                    ref_num: int = DEFAULT_REF_NUM, tokenize: bool | None = None, lower: bool | None = None,
                    source: str = "predictions") -> tuple[dict[str, str], dict[str, int]]:
    """All metric input files as {relative path: content} plus {subset: number of inputs}.

    E2E: refs.txt + hyp.txt; DART: reference0.. + hyp.txt; WebNLG: the same under unseen/, seen/ and all/
    (a subset without inputs, e.g. unseen in the dev split, is left out). Nothing is written here.
    """
    scoring = dataset_scoring(dataset)
    tokenize = scoring.tokenize if tokenize is None else tokenize
    lower = scoring.lower if lower is None else lower
    check_hypotheses(group_references(examples), hyps, source)
    if not scoring.subsets:
        refs = group_references(examples)
        return metric_files(scoring, refs, hyps, ref_num, tokenize, lower), {"all": len(refs)}
    files, counts = {}, {}
    for subset in scoring.subsets:
        refs = group_references(select_subset(examples, subset))
        counts[subset] = len(refs)
        if refs:
            files.update({f"{subset}/{name}": text
                          for name, text in metric_files(scoring, refs, hyps, ref_num, tokenize, lower).items()})
    return files, counts


def normalisation_help(flag: str) -> str:
    """"(default: on for WebNLG/DART, off for E2E)" for `--tokenize`/`--lower`, from the registry."""
    on, off = ("/".join(d.title for d in registry().values() if getattr(d.scoring, flag) == value) or "none"
               for value in (True, False))
    return f"(default: on for {on}, off for {off})"


def write_files(out_dir: str | Path, files: dict[str, str]) -> None:
    """All files replaced together or none (reference files must pair up); line counts checked first."""
    _check_line_counts(files)
    write_files_together({Path(out_dir) / rel: text for rel, text in files.items()})


def _check_line_counts(files: dict[str, str]) -> None:
    by_dir: dict[str, dict[str, int]] = {}
    for rel, text in files.items():
        folder, _, name = rel.rpartition("/")
        by_dir.setdefault(folder, {})[name] = text.count("\n")
    for folder, counts in by_dir.items():
        expected = counts.get("hyp.txt")
        ref_counts = {n: c for n, c in counts.items() if n.startswith("reference")}
        if expected is not None and any(c != expected for c in ref_counts.values()):
            raise ReferenceError(f"{folder or '.'}: line counts disagree: hyp.txt {expected}, {ref_counts}")


# ------------------------------------------------------------------------------------------ predictions
def read_hypotheses(path: str | Path) -> dict[str, str]:
    """context -> hypothesis text from a predictions.jsonl written by `python -m lora_nlg.decode`."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"{path}: no such predictions file")
    hyps: dict[str, str] = {}
    lines: dict[str, int] = {}
    for n, (where, obj) in enumerate(read_jsonl_objects(path, ReferenceError), start=1):
        context = _field(obj, "context", str, where)
        if context in hyps:
            raise ReferenceError(f"{where}: a second prediction for the context of line {lines[context]}")
        hyps[context], lines[context] = _field(obj, "hypothesis", str, where), n
    return hyps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lora_nlg.references", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="data/<dataset>/<split>.jsonl (the references)")
    p.add_argument("--predictions", required=True, help="predictions.jsonl from python -m lora_nlg.decode")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dataset", choices=dataset_names(), help="default: the data file's parent directory name")
    p.add_argument("--ref-num", type=int, default=DEFAULT_REF_NUM,
                   help=f"reference0..N-1 files of the multi-reference datasets (default {DEFAULT_REF_NUM})")
    p.add_argument("--tokenize", action=argparse.BooleanOptionalAction, default=None,
                   help=f"split around non-word characters {normalisation_help('tokenize')}")
    p.add_argument("--lower", action=argparse.BooleanOptionalAction, default=None,
                   help=f"lower-case {normalisation_help('lower')}")
    args = p.parse_args(argv)
    dataset = args.dataset or Path(args.data).resolve().parent.name
    try:
        if dataset not in dataset_names():
            raise ReferenceError(f"cannot tell the dataset from {args.data}; pass --dataset "
                                 f"{'|'.join(dataset_names())}")
        examples = read_examples(args.data)
        files, counts = reference_files(dataset, examples, read_hypotheses(args.predictions), args.ref_num,
                                        args.tokenize, args.lower, source=args.predictions)
        write_files(args.out, files)
    except (ValueError, WriteError) as e:  # ReferenceError included
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files to {args.out} ({', '.join(f'{k}: {v} inputs' for k, v in counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
