"""The data stage's output format, whatever the dataset: GPT-2 BPE records, their statistics and the files.

  context_ids = BPE(context) + [50256];  completion_ids = BPE(" " + completion) + [50256]
(reference `gpt2_encode.py --add_bos --add_eos`). BPE is the plain GPT-2 encoder: literal "<|endoftext|>" text in
the data is ordinary text, never token 50256. Files are written through a temp file and a rename, so a reader
never sees half of one; `load_jsonl` reads them back checking every record.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from lora_nlg.atomic import atomic_file, json_text
from lora_nlg.data.readers import SPLITS, Example, SplitSource, read_jsonl_objects, require_field
from lora_nlg.tokenizer import EOT_ID, get_tokenizer

EVAL_LEN = 64  # the reference's beam-search `eval_len`: longer references cannot be generated in full


def encode_examples(examples: list[Example], progress: bool = True, chunk: int = 4096) -> list[dict]:
    """Records in the output format. Distinct contexts are encoded once (E2E repeats each MR ~8 times)."""
    enc = get_tokenizer()
    unique_contexts = list(dict.fromkeys(ex.context for ex in examples))
    context_ids = dict(zip(unique_contexts, encode_contexts(unique_contexts, progress, chunk)))
    completion_ids = _encode_batch(enc, [" " + ex.completion for ex in examples], progress, chunk, "completions")
    records = []
    for index, (ex, ids) in enumerate(zip(examples, completion_ids)):
        record = {"id": index, "context": ex.context, "completion": ex.completion,
                  "context_ids": context_ids[ex.context], "completion_ids": ids + [EOT_ID]}
        if ex.seen is not None:
            record["seen"] = ex.seen
        records.append(record)
    return records


def encode_contexts(contexts: list[str], progress: bool = False, chunk: int = 4096) -> list[list[int]]:
    """`context_ids` of each context text: BPE(context) + [50256], the prompt a model is given (also for new
    inputs at generation time, so that they are encoded exactly as the training data was)."""
    return [ids + [EOT_ID] for ids in _encode_batch(get_tokenizer(), contexts, progress, chunk, "contexts")]


def _encode_batch(enc, texts: list[str], progress: bool, chunk: int, what: str) -> list[list[int]]:
    # encode_ordinary: like the reference's BPE encoder, no special-token handling at all.
    out = []
    with tqdm(total=len(texts), desc=f"encoding {what}", unit="text", disable=None if progress else True,
              leave=False) as bar:
        for start in range(0, len(texts), chunk):
            out.extend(enc.encode_ordinary_batch(texts[start:start + chunk]))
            bar.update(len(texts[start:start + chunk]))
    return out


def length_stats(lengths: list[int]) -> dict:
    values = np.asarray(lengths)
    percentiles = dict(zip(("p50", "p90", "p95", "p99"), np.percentile(values, [50, 90, 95, 99]).tolist()))
    return {"min": int(values.min()), "mean": round(float(values.mean()), 2),
            **{k: round(v, 2) for k, v in percentiles.items()}, "max": int(values.max())}


def split_stats(records: list[dict], split_source: SplitSource, raw_dir: Path) -> dict:
    context = [len(r["context_ids"]) for r in records]
    completion = [len(r["completion_ids"]) for r in records]
    stats = {
        "pairs": len(records),
        "unique_contexts": len({r["context"] for r in records}),
        "source": {"format": split_source.source,
                   "files": [_display_path(p, raw_dir) for p in split_source.files]},
        "tokens": {"context": length_stats(context), "completion": length_stats(completion),
                   "total": length_stats([a + b for a, b in zip(context, completion)])},
        "completions_over_eval_len": {"eval_len": EVAL_LEN, "count": sum(n > EVAL_LEN for n in completion)},
        "empty_completions": sum(not r["completion"].strip() for r in records),
    }
    if records and "seen" in records[0]:
        stats["seen_pairs"] = sum(r["seen"] for r in records)
        stats["unseen_pairs"] = len(records) - stats["seen_pairs"]
    return stats


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def merged_stats(out: Path, new: dict[str, dict]) -> dict:
    """stats.json for `out` after this run: its new splits plus the old splits whose jsonl stays."""
    path = out / "stats.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("splits", {}) if path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        old = {}
    splits = {s: new.get(s, old.get(s)) for s in SPLITS if s in new or (s in old and (out / f"{s}.jsonl").exists())}
    return {"dataset": out.name, "splits": splits}


def stats_text(stats: dict) -> str:
    return json_text(stats, indent=2, ensure_ascii=False) + "\n"


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write to a temp file in the same directory, then rename: readers never see a half-written file."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)


def jsonl_lines(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def load_jsonl(path: Path) -> list[dict]:
    """Read a split written by the data stage, checking every record's fields."""
    records = []
    for where, record in read_jsonl_objects(path):
        for key, kind in (("id", int), ("context", str), ("completion", str), ("context_ids", list),
                          ("completion_ids", list)):
            require_field(record, key, kind, where)
        records.append(record)
    return records
