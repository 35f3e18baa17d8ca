"""The raw files of every dataset: the manifest (`manifest.tsv` beside this module: URL, size, sha256 per file), their
download into `<out>/raw/<dataset>/` and the sha256 check of files supplied by hand (`--verify`).

Downloads themselves (resume, progress, verification before the rename) are `lora_nlg.download`'s; this module
maps the manifest's rows onto the datasets of the registry and turns failures into `DataError`s that say how to
supply the files offline.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lora_nlg.data.datasets import Dataset, registry
from lora_nlg.data.readers import SPLITS, DataError, read_utf8
from lora_nlg.download import DownloadError, download, sha256_file

# Package data, so an installed lora-nlg finds it too (not a file of the repository checkout).
DEFAULT_MANIFEST = Path(__file__).resolve().with_name("manifest.tsv")
MANIFEST_COLUMNS = ["dataset", "source", "split", "path", "size", "sha256", "url"]


@dataclass(frozen=True)
class ManifestEntry:
    dataset: str
    source: str
    split: str
    path: str
    size: int | None
    sha256: str | None
    url: str


def read_manifest(path: Path) -> list[ManifestEntry]:
    lines = [(n, line) for n, line in enumerate(read_utf8(path).splitlines(), 1)
             if line.strip() and not line.startswith("#")]
    if not lines or lines[0][1].split("\t") != MANIFEST_COLUMNS:
        raise DataError(f"{path}: header must be the tab-separated columns {' '.join(MANIFEST_COLUMNS)}")
    datasets = registry()
    entries = []
    for number, line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(MANIFEST_COLUMNS):
            raise DataError(f"{path}:{number}: expected {len(MANIFEST_COLUMNS)} tab-separated fields, got {len(cells)}")
        dataset, source, split, rel, size, sha, url = cells
        if dataset not in datasets or source not in datasets[dataset].sources or split not in SPLITS:
            raise DataError(f"{path}:{number}: unknown dataset/source/split {dataset}/{source}/{split}")
        if size != "-" and not size.isdigit():
            raise DataError(f"{path}:{number}: field 'size' must be a byte count or '-', got {size!r}")
        if sha != "-" and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise DataError(f"{path}:{number}: field 'sha256' must be 64 hex digits or '-', got {sha!r}")
        entries.append(ManifestEntry(dataset, source, split, rel, None if size == "-" else int(size),
                                     None if sha == "-" else sha, url))
    return entries


def download_split(dataset: Dataset, split: str, source: str, raw_root: Path, manifest: list[ManifestEntry],
                   progress: bool) -> None:
    rows = [e for e in manifest if e.dataset == dataset.name and e.split == split
            and e.source in dataset.candidate_sources(source)]
    if rows:  # several sources allowed (auto): the manifest lists the preferred one first
        rows = [e for e in rows if e.source == rows[0].source]
    if not rows:
        raise DataError(f"{dataset.name}/{split}: the manifest lists no file for source {source!r}")
    directory = raw_root / dataset.raw_dirs[0]
    for entry in tqdm(rows, desc=f"{dataset.name}/{split} files", unit="file", disable=None if progress and
                      len(rows) > 1 else True, leave=False):
        try:
            download(entry.url, directory / entry.path, entry.sha256, entry.size, progress=progress)
        except OSError as e:
            raise DataError(f"cannot write {directory / entry.path}: {e}") from e
        except DownloadError as e:
            raise DataError(f"{e}\nOr put all raw files in a directory laid out like ../shared/data (see README "
                            f"'## Data') and pass RAW_DIR=that_dir; leave out unavailable splits with SPLITS=.") from e


def verify_files(dataset: Dataset, directory: Path, files: list[Path], manifest: list[ManifestEntry]) -> None:
    pinned = {e.path: e for e in manifest if e.dataset == dataset.name}
    for path in files:
        entry = pinned.get(path.relative_to(directory).as_posix())
        if entry is None or entry.sha256 is None:
            print(f"warning: {path} has no pinned sha256 in the manifest: not verified", file=sys.stderr)
            continue
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise DataError(f"{path}: sha256 {digest} does not match the manifest ({entry.sha256}, {entry.url})")
