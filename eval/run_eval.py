"""`make eval`: score a run's decode output and put it beside the LoRA paper's numbers.

    python eval/run_eval.py RUN_DIR SPLIT [--mteval official|python]

Reads RUN_DIR/decode/SPLIT/ as `make decode` writes it (E2E: refs.txt + hyp.txt; DART: reference0.. + hyp.txt;
WebNLG: the same under seen/, unseen/ and all/) and writes RUN_DIR/eval/SPLIT.json (full precision, per subset)
and RUN_DIR/eval/SPLIT.md (a table: ours as the official script prints it, ours on the paper's scale, the
paper's GPT-2 M/L LoRA row for the run's model size, the difference). The dataset comes from decode.json or
RUN_DIR/config.yaml, else from the files present; the model size from config.yaml. What each dataset is scored
with (metric family, subsets and their order) comes from the dataset registry (`lora_nlg.data.datasets`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scorer packages beside this file

import paper_numbers  # noqa: E402
from evalcommon.java_tools import JavaToolError  # noqa: E402
from evalcommon.text_files import EvalInputError  # noqa: E402

from lora_nlg.atomic import WriteError, check_writable, json_text, write_files_together  # noqa: E402
from lora_nlg.data.datasets import Dataset, dataset_names, registry  # noqa: E402

# The metrics of each family's report table, in its column order.
REPORTED_METRICS = {"e2e_official": ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"),
                    "geneval": ("BLEU", "METEOR", "TER")}
# Where the metric files of each family are found: the file only that family's output has.
MARKER_FILE = {"e2e_official": "refs.txt", "geneval": "reference0"}
PAPER_SCALE_DECIMALS = {"BLEU": 2, "NIST": 3, "METEOR": 2, "ROUGE_L": 2, "CIDEr": 3, "TER": 2}


def read_yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EvalInputError(f"{path}: cannot read ({e})") from None


def read_run_facts(run_dir: Path, decode_dir: Path) -> tuple[str | None, str | None]:
    """(dataset, model preset name) from decode.json and config.yaml, each None when not recorded."""
    dataset = model = None
    if (decode_dir / "decode.json").is_file():
        try:
            dataset = json.loads((decode_dir / "decode.json").read_text(encoding="utf-8")).get("dataset")
        except (OSError, ValueError) as e:
            raise EvalInputError(f"{decode_dir / 'decode.json'}: not valid JSON ({e})") from None
    if (run_dir / "config.yaml").is_file():
        config = read_yaml(run_dir / "config.yaml")
        dataset = dataset or (config.get("data") or {}).get("dataset")
        model = (config.get("model") or {}).get("name")
    return dataset, model


def expected_layout(dataset: Dataset) -> str:
    """What a decode output directory of the dataset holds, as a message names it: "unseen/seen/all/" or a file."""
    subsets = dataset.scoring.subsets
    return "/".join(subsets) + "/" if subsets else MARKER_FILE[dataset.scoring.metrics]


def detect_dataset(decode_dir: Path) -> str:
    """The first dataset (registry order) whose files are there: its subset directories or its family's file."""
    for dataset in registry().values():
        subsets = dataset.scoring.subsets
        if any((decode_dir / s / "hyp.txt").is_file() for s in subsets) or \
                (not subsets and (decode_dir / MARKER_FILE[dataset.scoring.metrics]).is_file()):
            return dataset.name
    layouts = [f"{expected_layout(d)} ({d.title})" for d in registry().values()]
    raise EvalInputError(f"{decode_dir}: neither {', '.join(layouts[:-1])} nor {layouts[-1]}; "
                         f"is this a `make decode` output directory?")


def subset_dirs(dataset: str, decode_dir: Path) -> dict[str, Path]:
    """{subset: directory holding that subset's files}; subsets without inputs are absent."""
    found = {s: decode_dir / s for s in registry()[dataset].scoring.subsets if (decode_dir / s / "hyp.txt").is_file()}
    return found or {"all": decode_dir}


def score_subset(dataset: str, folder: Path, mteval_mode: str) -> tuple[dict, str, dict]:
    """(scores, official printout, extras) for one directory of metric files."""
    hyp = folder / "hyp.txt"
    if not hyp.is_file():
        raise EvalInputError(f"{hyp}: missing (run `make decode` first)")
    if registry()[dataset].scoring.metrics == "e2e_official":
        from e2e_official import inputs as e2e_inputs
        from e2e_official import mteval
        from e2e_official import scorer as e2e_scorer

        refs, hyps = e2e_inputs.read_references(folder / "refs.txt"), e2e_inputs.read_hypotheses(hyp)
        scores = e2e_scorer.score_e2e(refs, hyps, mteval_mode)
        other = "python" if mteval_mode == "official" else "official"
        by_mode = {mteval_mode: {k: scores[k] for k in ("BLEU", "NIST")}, other: mteval.mteval(refs, hyps, other)}
        extras = {"bleu_nist_by_mteval": by_mode, "port_quirk_outputs": mteval.count_port_quirk_outputs(hyps)}
        return scores, e2e_scorer.format_e2e(scores), extras
    from geneval import scorer as geneval_scorer
    from geneval.inputs import numbered_reference_files

    scores = geneval_scorer.score_generation_eval(numbered_reference_files(folder), hyp)
    return scores, geneval_scorer.format_generation_eval(scores) + "\n", {}


def printed_value(family: str, metric: str, value: float) -> str:
    """The score as the family's official script prints it."""
    if family == "e2e_official":
        return f"{value:.4f}"
    # GenerationEval: multi-bleu's 2 decimals for BLEU, round(x, 2) otherwise, then tabulate's %g
    return format(float(f"{value:.2f}") if metric == "BLEU" else round(value, 2), "g")


def markdown_report(facts: dict, scores: dict[str, dict], paper_model: str) -> str:
    dataset = facts["dataset"]
    family = registry()[dataset].scoring.metrics
    lines = [f"# Evaluation: {facts['run']} / {facts['split']}", "",
             f"- dataset: {dataset}; model: {facts['model'] or 'unknown'}; files: `{facts['decode_dir']}`",
             f"- scorer: {facts['scorer']}"]
    note = "" if paper_model == facts["model"] else \
        f" (the paper has no row for {facts['model'] or 'an unknown model'}; shown for reference)"
    lines.append(f"- paper: {paper_numbers.MODELS[paper_model]}{note}; {paper_numbers.SOURCE}")
    lines += ["", "| subset | metric | ours (as printed) | ours (paper scale) | paper | ours - paper |",
              "|---|---|---|---|---|---|"]
    for subset, subset_scores in scores.items():
        paper = paper_numbers.paper_scores(dataset, paper_model, subset)
        for metric in REPORTED_METRICS[family]:
            value = subset_scores[metric]
            decimals = PAPER_SCALE_DECIMALS[metric] + (1 if family == "geneval" and metric != "BLEU" else 0)
            scaled = value * paper_numbers.TO_PAPER_SCALE[family][metric]
            ref = paper.get(metric) if paper else None
            diff = f"{scaled - ref.value:+.{decimals}f}" if ref else "-"
            lines.append(f"| {subset} | {metric} | {printed_value(family, metric, value)} | "
                         f"{scaled:.{decimals}f} | {ref or '-'} | {diff} |")
    if "bleu_nist_by_mteval" in facts:
        other = next(mode for mode in facts["bleu_nist_by_mteval"] if mode != facts["mteval"])
        label = {"python": "`measure_scores.py -p` (the Python MT-Eval port the LoRA README runs)",
                 "official": "the official Perl mteval-v13a-sig.pl (measure_scores.py default)"}[other]
        o = facts["bleu_nist_by_mteval"][other]
        lines += ["", f"BLEU/NIST with {label}: BLEU {o['BLEU']:.4f}, NIST {o['NIST']:.4f}."]
        if n := facts.get("port_quirk_outputs"):
            lines.append(f"Caution: {n} hypotheses have at most 3 tokens; the -p port gives them negative n-gram "
                         f"totals, which inflates its BLEU/NIST.")
    return "\n".join(lines) + "\n"


def evaluate_run(run_dir: Path, split: str, mteval_mode: str = "official") -> dict:
    decode_dir = run_dir / "decode" / split
    if not decode_dir.is_dir():
        raise EvalInputError(f"{decode_dir}: not found; decode first: `make decode RUN={run_dir.name} SPLIT={split}`")
    check_writable(run_dir / "eval" / f"{split}.json")  # before the scorers run, not after
    dataset, model = read_run_facts(run_dir, decode_dir)
    dataset = dataset or detect_dataset(decode_dir)
    if dataset not in registry():
        names = dataset_names()
        raise EvalInputError(f"{decode_dir}: unknown dataset {dataset!r} ({', '.join(names[:-1])} or {names[-1]})")
    e2e_scored = registry()[dataset].scoring.metrics == "e2e_official"
    start = time.time()
    scores, printed, extras = {}, {}, {}
    for subset, folder in subset_dirs(dataset, decode_dir).items():
        print(f"eval: scoring {folder}", file=sys.stderr)
        scores[subset], printed[subset], extra = score_subset(dataset, folder, mteval_mode)
        extras.update(extra)
    # Other sizes (e.g. the CPU demo's GPT-2 small) are shown beside the paper's GPT-2 M row, flagged as such.
    paper_model = model if model in paper_numbers.MODELS else "gpt2-medium"
    facts = {"run": run_dir.name, "split": split, "dataset": dataset, "model": model,
             "decode_dir": str(decode_dir), "mteval": mteval_mode if e2e_scored else None,
             "scorer": ("tuetschek/e2e-metrics measure_scores.py semantics, BLEU/NIST = "
                        + ("Perl mteval-v13a-sig.pl" if mteval_mode == "official" else "-p Python port"))
             if e2e_scored else "WebNLG GenerationEval eval.py semantics (BLEU multi-bleu-detok, "
                                      "METEOR 1.5 -norm, TER = mean sentence TER)",
             **extras}
    paper = paper_numbers.paper_scores
    report = {**facts, "scores": scores, "printed": printed, "seconds": round(time.time() - start, 1),
              "paper": {"source": paper_numbers.SOURCE, "model": paper_model,
                        "scores": {s: {m: {"value": p.value, "plus_minus": p.plus_minus}
                                       for m, p in (paper(dataset, paper_model, s) or {}).items()}
                                   for s in scores}}}
    write_files_together({run_dir / "eval" / f"{split}.json": json_text(report, indent=1) + "\n",
                          run_dir / "eval" / f"{split}.md": markdown_report(facts, scores, paper_model)})
    return report



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python eval/run_eval.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="checkpoints/<RUN>")
    p.add_argument("split", help="test, valid, ... (the decode/<split>/ directory)")
    p.add_argument("--mteval", choices=("official", "python"), default="official",
                   help="E2E BLEU/NIST mode for the main scores (the other one is recorded too)")
    args = p.parse_args(argv)
    try:
        evaluate_run(args.run_dir, args.split, args.mteval)
    except (EvalInputError, JavaToolError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    json_path, md_path = (args.run_dir / "eval" / f"{args.split}.{ext}" for ext in ("json", "md"))
    sys.stdout.write(md_path.read_text(encoding="utf-8"))
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
