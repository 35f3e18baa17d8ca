"""The datasets the data stage knows, one module each, found by looking into this package.

Every module here whose name does not start with "_" defines one dataset as `DATASET = Dataset(...)`: where its
raw files live, the source formats it can be read from and the reader of each, and how its outputs are scored
(`Scoring`: the metric files, their default normalisation, the subsets). The data stage (`lora_nlg.data.stage`), the
manifest (`lora_nlg.data.raw_files`), the reference writer and decode stage (`lora_nlg.decode`) and `eval/` only go
through this registry, so adding a dataset means adding one module; helpers shared by several datasets live in
"_"-modules (`_triples`). Importing it does not import torch (eval/ reads it).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from lora_nlg.data.readers import SPLITS, DataError, Example, SplitSource

Reader = Callable[[list[Path]], list[Example]]
# (dataset's raw directory, Source.files[split]) -> (the files found, in reading order; what was looked for)
Finder = Callable[[Path, str], tuple[list[Path], str]]


def single_file(directory: Path, relative: str) -> tuple[list[Path], str]:
    path = directory / relative
    return ([path] if path.is_file() else []), relative


def first_file(read: Callable[[Path], list[Example]]) -> Reader:
    """A Reader for sources whose split is one file."""
    return lambda files: read(files[0])


@dataclass(frozen=True)
class Source:
    """One format a dataset is published in."""
    files: Mapping[str, str]      # split -> path relative to the dataset's raw directory
    read: Reader
    find: Finder = single_file
    output: str | None = None     # output directory when this source is a different dataset (not the name)


# The metric families eval/ has, each with the files it scores (written by lora_nlg.decode.reference_files):
#   e2e_official  tuetschek/e2e-metrics measure_scores.py: `refs.txt` (each input's references one per line, a
#                 blank line after each) and `hyp.txt`;
#   geneval       WebNLG GenerationEval eval.py: `reference0..reference{ref_num-1}` (line j of file k = k-th
#                 reference of input j) and `hyp.txt`.
METRIC_FAMILIES = ("e2e_official", "geneval")
# The subsets a dataset can be scored on, by the `seen` flag of its examples (None: every example).
SUBSET_SEEN = {"unseen": False, "seen": True, "all": None}


@dataclass(frozen=True)
class Scoring:
    """How a dataset's outputs are scored: what the decode stage writes and eval/ reads for it."""
    metrics: str                  # one of METRIC_FAMILIES; fixes the metric files and the scorer
    tokenize: bool                # default --tokenize / --lower of references and hypotheses (how the reference
    lower: bool                   #   runs gpt2_decode.py for this dataset)
    subsets: tuple[str, ...] = ()  # from SUBSET_SEEN, each written to and scored in its own subdirectory, in this
                                   # order (reports list them so); () = one set, in the output directory itself

    def __post_init__(self) -> None:
        if self.metrics not in METRIC_FAMILIES:
            raise ValueError(f"metrics {self.metrics!r} must be one of {METRIC_FAMILIES}")
        if any(s not in SUBSET_SEEN for s in self.subsets) or len(set(self.subsets)) != len(self.subsets):
            raise ValueError(f"subsets {self.subsets} must be distinct names among {tuple(SUBSET_SEEN)}")


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str                    # how people write it in messages and help ("WebNLG")
    order: int                    # position in `--dataset all`, listings and messages
    raw_dirs: tuple[str, ...]     # its directory inside a raw root, by any of these names; downloads use the first
    sources: Mapping[str, Source]  # in the order help and errors list them
    auto: tuple[str, ...]         # the sources `--source auto` tries per split, in order
    scoring: Scoring

    def __post_init__(self) -> None:  # a mistake in a new dataset module shows on import, not mid-run
        if not self.auto or any(s not in self.sources for s in self.auto):
            raise ValueError(f"dataset {self.name!r}: auto sources {self.auto} must be among {tuple(self.sources)}")
        for name, source in self.sources.items():
            if set(source.files) != set(SPLITS):
                raise ValueError(f"dataset {self.name!r} source {name!r}: files must name the splits {SPLITS}")

    def directory(self, raw_root: Path) -> Path:
        for name in self.raw_dirs:
            if (raw_root / name).is_dir():
                return raw_root / name
        return raw_root / self.raw_dirs[0]

    def candidate_sources(self, source: str) -> tuple[str, ...]:
        if source == "auto":
            return self.auto
        if source not in self.sources:
            raise DataError(f"unknown source {source!r} for {self.name}; choose from auto, {', '.join(self.sources)}")
        return (source,)

    def locate(self, directory: Path, split: str, source: str) -> SplitSource | str:
        """The files of one split, or a message saying what was looked for."""
        tried = []
        for name in self.candidate_sources(source):
            files, looked_for = self.sources[name].find(directory, self.sources[name].files[split])
            tried.append(looked_for)
            if files:
                return SplitSource(split, name, files)
        return f"{self.name}/{split}: no {' or '.join(tried)} in {directory}"

    def output_name(self, source: str) -> str:
        return self.sources[source].output or self.name

    def read(self, split_source: SplitSource) -> list[Example]:
        return self.sources[split_source.source].read(split_source.files)


@functools.cache
def registry() -> dict[str, Dataset]:
    """{name: dataset} in `order`; imported on first use, so dataset modules can import this package."""
    found: dict[str, Dataset] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        dataset = getattr(importlib.import_module(f"{__name__}.{module.name}"), "DATASET", None)
        if not isinstance(dataset, Dataset):
            raise TypeError(f"{__name__}.{module.name} defines no DATASET = Dataset(...)")
        if dataset.name in found:
            raise TypeError(f"{__name__}.{module.name}: dataset name {dataset.name!r} is already taken")
        found[dataset.name] = dataset
    return dict(sorted(found.items(), key=lambda item: item[1].order))


def dataset_names() -> tuple[str, ...]:
    return tuple(registry())


def get_dataset(name: str) -> Dataset:
    try:
        return registry()[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(registry())}") from None
