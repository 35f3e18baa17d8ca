"""Helpers for `make demo`: the demo's data splits and its closing summary.

The Makefile chains the real stages (data -> base model -> LoRA training -> decode -> eval), each keyed on its
output file so an interrupted demo resumes. This module only does what is demo-specific:

    python -m lora_nlg.demo prepare DEMO_DIR [--raw-dir ../shared/data]   -> DEMO_DIR/data/e2e/{train,valid,test}.jsonl
    python -m lora_nlg.demo summary DEMO_DIR RUN_DIR OUT_JSON             -> the results table
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from lora_nlg.atomic import atomic_file
from lora_nlg.data.bpe_records import jsonl_lines, load_jsonl
from lora_nlg.data.readers import read_jsonl_objects


def group_by_context(records: list[dict]) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["context"], []).append(r)
    return list(groups.values())


def write_split(path: Path, groups: list[list[dict]]) -> int:
    records = [dict(r, id=i) for i, r in enumerate(r for g in groups for r in g)]
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.writelines(jsonl_lines(records))
    return len(records)


def split_for_demo(src_train: Path, src_test: Path, out_dir: Path, valid_inputs: int, test_inputs: int) -> dict:
    """train/valid from one source split (held-out inputs, never shared), test = the first test inputs."""
    train_groups = group_by_context(load_jsonl(src_train))
    if len(train_groups) <= valid_inputs:
        raise ValueError(f"{src_train}: {len(train_groups)} inputs, need more than {valid_inputs} to hold some out")
    test_groups = group_by_context(load_jsonl(src_test))[:test_inputs]
    # E2E files are sorted by restaurant name: hold out inputs spread over the whole file, not its tail
    stride = len(train_groups) / valid_inputs
    held_out = {int(i * stride + stride / 2) for i in range(valid_inputs)}
    return {
        "train": write_split(out_dir / "train.jsonl", [g for i, g in enumerate(train_groups) if i not in held_out]),
        "valid": write_split(out_dir / "valid.jsonl", [g for i, g in enumerate(train_groups) if i in held_out]),
        "test": write_split(out_dir / "test.jsonl", test_groups),
        "test_inputs": len(test_groups),
    }


VALID_INPUTS, TEST_INPUTS = 40, 100


def prepare(demo_dir: Path, raw_dir: Path | None) -> dict:
    """Real E2E when `raw_dir` holds it (train on its validation set), else the generated restaurant set."""
    from lora_nlg.data import stage as data
    from lora_nlg.demo import synthetic

    out = demo_dir / "data" / "e2e"
    if raw_dir is not None and (raw_dir / "e2e" / "valid.txt").is_file() and (raw_dir / "e2e" / "test.txt").is_file():
        source = demo_dir / "source"
        if data.main(["--dataset", "e2e", "--raw-dir", str(raw_dir), "--splits", "valid,test",
                      "--out-dir", str(source), "--no-progress"]) != 0:
            raise ValueError(f"the data stage failed on {raw_dir}")
        counts = split_for_demo(source / "e2e" / "valid.jsonl", source / "e2e" / "test.jsonl", out,
                                VALID_INPUTS, TEST_INPUTS)
        description = {
            "kind": "real", "dataset": "E2E NLG (LoRA's tokenised files)", "raw_dir": str(raw_dir),
            "train": f"E2E validation set minus {VALID_INPUTS} held-out inputs ({counts['train']} pairs; the E2E "
                     f"training set is not available offline)",
            "valid": f"{VALID_INPUTS} held-out inputs of the E2E validation set ({counts['valid']} pairs)",
            "test": f"the first {counts['test_inputs']} inputs of the E2E test set ({counts['test']} references)"}
    else:
        raw = demo_dir / "raw"
        lines = synthetic.write_dataset(raw, seed=0)
        if data.main(["--dataset", "e2e", "--raw-dir", str(raw), "--out-dir", str(demo_dir / "data"),
                      "--no-progress"]) != 0:
            raise ValueError(f"the data stage failed on the generated data in {raw}")
        description = {"kind": "synthetic", "dataset": "generated E2E-style restaurant descriptions (seed 0)",
                       "raw_dir": str(raw), **{k: f"{v} pairs" for k, v in lines.items()},
                       "why": "no real data found (RAW_DIR unset and ../shared/data absent)"}
    with atomic_file(demo_dir / "data_source.json", "w") as f:
        json.dump(description, f, indent=2)
    return description


def read_scores(eval_json: Path) -> dict:
    """The single subset's full-precision scores from an `eval/run_eval.py` report."""
    report = json.loads(eval_json.read_text())
    return next(iter(report["scores"].values()))


EXAMPLES = 3
TRY_INPUT = "name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], area[riverside]"


def pick_examples(lora_predictions: Path, base_predictions: Path, n: int = EXAMPLES) -> list[dict]:
    """`n` test inputs spread over the file, each with the base model's output, the LoRA output and a reference."""
    lora = [row for _, row in read_jsonl_objects(lora_predictions)]
    base = {row["context"]: row["hypothesis"] for _, row in read_jsonl_objects(base_predictions)}
    picks = sorted({(2 * k + 1) * len(lora) // (2 * n) for k in range(n)})
    return [{"input": lora[i]["context"], "base": base.get(lora[i]["context"], ""), "lora": lora[i]["hypothesis"],
             "reference": lora[i]["references"][0]} for i in picks]


def summarise(demo_dir: Path, run_dir: Path) -> dict:
    from lora_nlg.train.report import read_metrics  # here, so `demo prepare` does not import torch

    val = [m for m in read_metrics(run_dir / "metrics.jsonl") if m.get("val_loss") is not None]
    lora_preds = run_dir / "decode" / "test" / "predictions.jsonl"
    base_preds = demo_dir / "base-run" / "decode" / "test" / "predictions.jsonl"
    runs_dir = "" if run_dir.parent == Path("checkpoints") else f" ARGS='--runs-dir {run_dir.parent}'"
    return {
        "data": json.loads((demo_dir / "data_source.json").read_text()),
        "base_model": json.loads((demo_dir / "base" / "pretrain_summary.json").read_text()),
        "first_val_loss": val[0]["val_loss"], "last_val_loss": val[-1]["val_loss"],
        "val_loss_curve": [(m["step"], m["val_loss"]) for m in val],
        "base_scores": read_scores(demo_dir / "base-run" / "eval" / "test.json"),
        "lora_scores": read_scores(run_dir / "eval" / "test.json"),
        "run_dir": str(run_dir), "train_curves": str(run_dir / "train_curves.png"),
        "predictions": str(lora_preds), "base_predictions": str(base_preds),
        "examples": pick_examples(lora_preds, base_preds),
        "try": f'echo "{TRY_INPUT}" | make generate RUN={run_dir.name}{runs_dir}',
    }


def base_model_format(base_model: dict) -> str:
    """How the pretraining documents were made, as the table's base-model line says it ('' for the plain one)."""
    notes = (["the references of an input as one document"] if base_model.get("group_references") else []) + \
        (["names made up"] if base_model.get("random_names") else [])
    return f" ({', '.join(notes)})" if notes else ""


def format_table(summary: dict) -> str:
    base, lora = summary["base_scores"], summary["lora_scores"]
    keys = [k for k in ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr") if k in lora]
    data = summary["data"]
    lines = [f"Demo data ({data['kind']}): {data['dataset']}",
             f"  train: {data['train']}", f"  valid: {data['valid']}", f"  test:  {data['test']}",
             f"Base model: GPT-2 '{summary['base_model']['preset']}' pretrained here for "
             f"{summary['base_model']['steps']} steps on the training texts"
             f"{base_model_format(summary['base_model'])}"
             f" (NOT GPT-2 M; not the paper's setting)",
             "", f"{'test scores':<14}{'base model':>12}{'+ LoRA':>12}", "-" * 38]
    lines += [f"{k:<14}{base.get(k, math.nan):>12.4f}{lora[k]:>12.4f}" for k in keys]
    curve = summary["val_loss_curve"]
    lines += ["", f"validation loss {summary['first_val_loss']:.3f} (step {curve[0][0]}) -> "
                  f"{summary['last_val_loss']:.3f} (step {curve[-1][0]})",
              f"run dir:      {summary['run_dir']}", f"curves:       {summary['train_curves']}",
              f"predictions:  {summary['predictions']}", f"base preds:   {summary['base_predictions']}"]
    lines += ["", f"{len(summary['examples'])} test inputs: the base model's output, the LoRA output and one of "
                  f"their human references"]
    for k, ex in enumerate(summary["examples"], 1):
        lines += [f"[{k}] {ex['input']}", f"    base model: {ex['base']}", f"    + LoRA:     {ex['lora']}",
                  f"    reference:  {ex['reference'].strip()}"]
    lines += ["", "Try your own input on the demo run (one per line; E2E `name : X | Type : Y` or the challenge's "
                  "own form):", f"  {summary['try']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("demo_dir", type=Path)
    p.add_argument("--raw-dir", type=Path, default=None, help="E2E raw files (../shared/data layout)")
    m = sub.add_parser("summary")
    m.add_argument("demo_dir", type=Path)
    m.add_argument("run_dir", type=Path)
    m.add_argument("out_json", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            description = prepare(args.demo_dir, args.raw_dir)
            print(f"demo data ({description['kind']}): " + "; ".join(
                f"{k}: {description[k]}" for k in ("train", "valid", "test")))
        else:
            summary = summarise(args.demo_dir, args.run_dir)
            with atomic_file(args.out_json, "w") as f:
                json.dump(summary, f, indent=2)
            print(format_table(summary))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
