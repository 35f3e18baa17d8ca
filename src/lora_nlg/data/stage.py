"""Data stage: fetch (or read) E2E, WebNLG 2017 and DART, convert them exactly as the LoRA reference does,
encode with GPT-2 BPE and write `data/<dataset>/<split>.jsonl` plus `stats.json`.

Serialisation (reference `format_converting_*.py` + `gpt2_encode.py --add_bos --add_eos`):
  E2E     `MR||text` lines: context = MR as written (`name : X | Type : Y`), completion = text.
  WebNLG  context = `subj : prop : obj` joined by ` | ` (modified triples, raw strings); one example per
          lexicalisation with comment="good"; `seen` = category among the 10 training categories.
  DART    same serialisation with the relation lower-cased; one example per annotation.
  context_ids = BPE(context) + [50256];  completion_ids = BPE(" " + completion) + [50256].
BPE is the plain GPT-2 encoder: literal "<|endoftext|>" text in the data is ordinary text, never token 50256.

This module is the stage itself (options, order of work, summary). The datasets are one module each in
`lora_nlg.data.datasets` (the registry), the shared file readers and `DataError` in `lora_nlg.data.readers`, encoding,
statistics and writing in `lora_nlg.data.bpe_records`, the manifest, downloads and `--verify` in `lora_nlg.data.raw_files`.

CLI: `python -m lora_nlg.data --dataset e2e|webnlg|dart|all [--raw-dir DIR] [--splits valid,test] ...`
(or `make data`); errors print `error: ...` and exit 1, leaving no partial files. A dataset's directory is
assembled beside it and swapped in whole (`lora_nlg.atomic.atomic_dir`): its splits and stats.json change together
or not at all, also on Ctrl-C, a kill or a full disk.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lora_nlg.atomic import WriteError, atomic_dir, check_writable
from lora_nlg.data.bpe_records import (
    atomic_write_lines,
    encode_examples,
    jsonl_lines,
    merged_stats,
    split_stats,
    stats_text,
)
from lora_nlg.data.datasets import Dataset, dataset_names, get_dataset, registry
from lora_nlg.data.raw_files import DEFAULT_MANIFEST, ManifestEntry, download_split, read_manifest, verify_files
from lora_nlg.data.readers import SPLITS, DataError, SplitSource

SPLIT_ALIASES = {"dev": "valid"}


@dataclass
class DataStageOptions:
    datasets: tuple[str, ...] = field(default_factory=dataset_names)  # which datasets to prepare (default: all)
    splits: tuple[str, ...] = SPLITS       # which splits; a missing one is an error unless left out here
    raw_dir: Path | None = None            # read raw files from here (../shared/data layout); None = download
    out_dir: Path = Path("data")           # jsonl go to out_dir/<dataset>/, downloads to out_dir/raw/<dataset>/
    source: str = "auto"                   # or one of the dataset's sources (e2e: lora|original|cleaned, ...)
    verify: bool = False                   # with raw_dir: check files against the manifest's sha256 too
    manifest: Path = DEFAULT_MANIFEST      # URL, size and sha256 of every raw file
    progress: bool = True                  # tqdm bars (shown on a terminal only)


def parse_splits(text: str | None) -> tuple[str, ...]:
    if not text:
        return SPLITS
    wanted = set()
    for name in text.split(","):
        name = SPLIT_ALIASES.get(name.strip(), name.strip())
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r} in SPLITS={text!r}; choose from train, valid, test "
                            f"(dev = valid)")
        wanted.add(name)
    return tuple(s for s in SPLITS if s in wanted)


def parse_datasets(text: str) -> tuple[str, ...]:
    if text == "all":
        return dataset_names()
    if text not in dataset_names():
        raise DataError(f"unknown dataset {text!r}; choose from {', '.join(dataset_names())}, all")
    return (text,)


def prepare(config: DataStageOptions, planned: dict[Path, int | None] | None = None) -> dict[str, dict]:
    """Run the stage; returns {output name: stats}. Every dataset is read and encoded before anything is
    written, so an error leaves earlier outputs untouched. `planned`, if given, records what the writing got to
    (how `main` tells what an interrupt changed)."""
    datasets = [get_dataset(name) for name in config.datasets]
    check_writable(config.out_dir / datasets[0].name, "dir")  # before downloads and encoding, not after
    if config.source != "auto" and len(datasets) != 1:
        raise DataError(f"a source (SOURCE=) applies to one dataset; pick DATASET={_one_of(dataset_names())}")
    for dataset in datasets:
        dataset.candidate_sources(config.source)
    manifest = read_manifest(config.manifest) if config.raw_dir is None or config.verify else []
    raw_root = config.raw_dir if config.raw_dir is not None else config.out_dir / "raw"
    if config.raw_dir is None:
        for dataset in datasets:
            for split in config.splits:
                download_split(dataset, split, config.source, raw_root, manifest, config.progress)
    elif not raw_root.is_dir():
        raise DataError(f"RAW_DIR {raw_root} is not a directory")
    located = locate_splits(datasets, raw_root, config)
    outputs = dict(encode_dataset(dataset, splits, raw_root, manifest, config) for dataset, splits in located)
    return write_dataset_files(outputs, config.out_dir, {} if planned is None else planned)


def locate_splits(datasets: list[Dataset], raw_root: Path, config: DataStageOptions
                  ) -> list[tuple[Dataset, dict[str, SplitSource]]]:
    """Every wanted split of every dataset; all missing files are reported at once."""
    located = [(d, {s: d.locate(d.directory(raw_root), s, config.source) for s in config.splits}) for d in datasets]
    missing = [found for _, splits in located for found in splits.values() if isinstance(found, str)]
    if missing:
        raise DataError("missing raw files:\n  " + "\n  ".join(missing) + f"\nAdd them, or leave those splits out "
                        f"(e.g. SPLITS=valid,test; now {','.join(config.splits)}).")
    return located


def encode_dataset(dataset: Dataset, splits: dict[str, SplitSource], raw_root: Path, manifest: list[ManifestEntry],
                   config: DataStageOptions) -> tuple[str, tuple[dict[str, list[dict]], dict[str, dict]]]:
    """(output name, (records, stats) per split) of one dataset, nothing written yet."""
    sources = {s.source for s in splits.values()}
    name = dataset.output_name(next(iter(sources)))
    if len({dataset.output_name(s) for s in sources}) > 1:
        raise DataError(f"{dataset.name}: splits come from sources that are different datasets ({sources})")
    if config.verify:
        for split_source in splits.values():
            verify_files(dataset, dataset.directory(raw_root), split_source.files, manifest)
    records, stats = {}, {}
    for split, split_source in splits.items():
        examples = dataset.read(split_source)
        if not examples:
            raise DataError(f"{dataset.name}/{split}: {split_source.files[0]} holds no examples")
        records[split] = encode_examples(examples, config.progress)
        stats[split] = split_stats(records[split], split_source, raw_root)
    return name, (records, stats)


def write_dataset_files(outputs: dict[str, tuple[dict[str, list[dict]], dict[str, dict]]], out_dir: Path,
                  planned: dict[Path, int | None]) -> dict[str, dict]:
    """Each dataset's directory whole: its new splits, the old splits not rebuilt (hard links) and the merged
    stats.json are assembled beside `out_dir/<name>` and swapped in with one rename. `planned` gets each output
    directory with the inode of its replacement once that is complete (see `describe_interrupt`)."""
    for name in outputs:
        check_writable(out_dir / name, "dir")
    summary = {name: merged_stats(out_dir / name, stats) for name, (_, stats) in outputs.items()}
    planned.update({out_dir / name: None for name in outputs})
    for name, (records, _) in outputs.items():
        with atomic_dir(out_dir / name, keep_old=True) as tmp:
            for split, split_records in records.items():
                atomic_write_lines(tmp / f"{split}.jsonl", jsonl_lines(split_records))
            atomic_write_lines(tmp / "stats.json", [stats_text(summary[name])])
            planned[out_dir / name] = tmp.stat().st_ino
    return summary


def describe_interrupt(planned: dict[Path, int | None]) -> str:
    """What an interrupted run changed: an output directory is new exactly when it is the directory this run
    assembled (same inode); the swap is one rename, so there is no third state."""
    if not planned:
        return "interrupted before writing; no output was changed"
    done = [out for out, ino in planned.items() if ino is not None and _inode(out) == ino]
    kept = [out for out in planned if out not in done]
    parts = ([f"{', '.join(map(str, done))} written completely"] if done else []) + \
            ([f"{', '.join(map(str, kept))} left as before"] if kept else [])
    return "interrupted; " + "; ".join(parts)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def source_help() -> str:
    return ", ".join(f"{d.name}: {'|'.join(d.sources)}" for d in registry().values())


def format_summary(summary: dict[str, dict], out_dir: Path, splits: tuple[str, ...]) -> str:
    lines = []
    for name, stats in summary.items():
        for split in splits:
            s = stats["splits"][split]
            extra = f", seen {s['seen_pairs']} / unseen {s['unseen_pairs']}" if "seen_pairs" in s else ""
            lines.append(f"{name}/{split}: {s['pairs']} pairs, {s['unique_contexts']} unique inputs{extra}; "
                         f"tokens/pair mean {s['tokens']['total']['mean']}, max {s['tokens']['total']['max']} "
                         f"-> {out_dir / name / f'{split}.jsonl'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_nlg.data", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="all", help=f"{', '.join(dataset_names())} or all (default: all)")
    parser.add_argument("--splits", default="", help="comma-separated, e.g. valid,test (default: train,valid,test;"
                                                     " dev = valid)")
    parser.add_argument("--raw-dir", type=Path, help="read raw files from here (../shared/data layout) instead of "
                                                     "downloading them")
    parser.add_argument("--out-dir", type=Path, default=DataStageOptions.out_dir, help="output root (default: data)")
    parser.add_argument("--source", default="auto", help=f"{source_help()} (default: auto)")
    parser.add_argument("--verify", action="store_true", help="with --raw-dir: also check sha256 of the files")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="file list with URL/size/sha256")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    planned: dict[Path, int | None] = {}
    try:
        config = DataStageOptions(datasets=parse_datasets(args.dataset), splits=parse_splits(args.splits),
                            raw_dir=args.raw_dir, out_dir=args.out_dir, source=args.source, verify=args.verify,
                            manifest=args.manifest, progress=not args.no_progress)
        summary = prepare(config, planned)
    except (DataError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {describe_interrupt(planned)}", file=sys.stderr)
        return 130
    print(format_summary(summary, config.out_dir, config.splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
