"""Data stage: fetch (or read) E2E, WebNLG 2017 and DART, convert them exactly as the LoRA reference does,
encode with GPT-2 BPE and write `data/<dataset>/<split>.jsonl` plus `stats.json`.

Serialisation (reference `format_converting_*.py` + `gpt2_encode.py --add_bos --add_eos`):
  E2E     `MR||text` lines: context = MR as written (`name : X | Type : Y`), completion = text.
  WebNLG  context = `subj : prop : obj` joined by ` | ` (modified triples, raw strings); one example per
          lexicalisation with comment="good"; `seen` = category among the 10 training categories.
  DART    same serialisation with the relation lower-cased; one example per annotation.
  context_ids = BPE(context) + [50256];  completion_ids = BPE(" " + completion) + [50256].
BPE is the plain GPT-2 encoder: literal "<|endoftext|>" text in the data is ordinary text, never token 50256.

CLI: `python -m lora_nlg.data --dataset e2e|webnlg|dart|all [--raw-dir DIR] [--splits valid,test] ...`
(or `make data`); errors print `error: ...` and exit 1, leaving no partial files.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from xml.parsers import expat

import numpy as np
from tqdm import tqdm

from lora_nlg.fsutil import atomic_file
from lora_nlg.download import DownloadError, download, sha256_file
from lora_nlg.tokenizer import EOT_ID, get_tokenizer

DATASETS = ("e2e", "webnlg", "dart")
SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"dev": "valid"}
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = REPO_ROOT / "scripts" / "manifest.tsv"
EVAL_LEN = 64  # the reference's beam-search `eval_len`: longer references cannot be generated in full

# Directory of each dataset inside a raw root; WebNLG also under LoRA's/../shared's name.
RAW_DIR_NAMES = {"e2e": ("e2e",), "webnlg": ("webnlg", "webnlg_challenge_2017"), "dart": ("dart",)}

# Source files per dataset, source and split, relative to the dataset's raw directory.
SOURCE_FILES: dict[str, dict[str, dict[str, str]]] = {
    "e2e": {
        "lora": {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"},
        "original": {"train": "trainset.csv", "valid": "devset.csv", "test": "testset_w_refs.csv"},
        "cleaned": {"train": "train-fixed.no-ol.csv", "valid": "devel-fixed.no-ol.csv", "test": "test-fixed.csv"},
    },
    "webnlg": {
        "xml": {"train": "xml/train", "valid": "xml/dev", "test": "xml/test/testdata_with_lex.xml"},
        "json": {"train": "train.json", "valid": "dev.json", "test": "test.json"},
    },
    "dart": {
        "json": {s: f"dart-v1.1.1-full-{f}.json" for s, f in (("train", "train"), ("valid", "dev"), ("test", "test"))},
        "xml": {s: f"dart-v1.1.1-full-{f}.xml" for s, f in (("train", "train"), ("valid", "dev"), ("test", "test"))},
    },
}
# `auto` tries these in order per split. The E2E CSV sources are never picked automatically: their references
# are untokenised, so they are a different dataset (written to data/e2e_original, data/e2e_cleaned).
AUTO_SOURCES = {"e2e": ("lora",), "webnlg": ("xml", "json"), "dart": ("json", "xml")}
OUTPUT_NAMES = {("e2e", "original"): "e2e_original", ("e2e", "cleaned"): "e2e_cleaned"}

WEBNLG_SEEN_CATEGORIES = frozenset({"Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food",
                                    "Monument", "SportsTeam", "University", "WrittenWork"})
# E2E CSV attribute -> name used in LoRA's `name : X | Type : Y` serialisation (checked on devset.csv/valid.txt).
E2E_ATTRIBUTE_NAMES = {"name": "name", "eatType": "Type", "food": "food", "priceRange": "price",
                       "customer rating": "customer rating", "area": "area", "familyFriendly": "family friendly",
                       "near": "near"}


class DataError(ValueError):
    """Bad or missing input; the message names the file, the line or entry, and the problem."""


@dataclass(frozen=True)
class Example:
    context: str
    completion: str
    seen: bool | None = None  # WebNLG only


@dataclass
class DataConfig:
    datasets: tuple[str, ...] = DATASETS   # which datasets to prepare
    splits: tuple[str, ...] = SPLITS       # which splits; a missing one is an error unless left out here
    raw_dir: Path | None = None            # read raw files from here (../shared/data layout); None = download
    out_dir: Path = Path("data")           # jsonl go to out_dir/<dataset>/, downloads to out_dir/raw/<dataset>/
    source: str = "auto"                   # e2e: lora|original|cleaned; webnlg: xml|json; dart: json|xml
    verify: bool = False                   # with raw_dir: check files against the manifest's sha256 too
    manifest: Path = DEFAULT_MANIFEST      # URL, size and sha256 of every raw file
    progress: bool = True                  # tqdm bars (shown on a terminal only)


@dataclass
class SplitSource:
    split: str
    source: str
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Reading raw files

def read_utf8(path: Path, error: type[Exception] = DataError) -> str:
    """The file's text; invalid UTF-8 is an error naming the line and byte."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise error(f"{path}:{line}: invalid UTF-8 byte 0x{data[e.start]:02x} at column {column} "
                    f"(byte offset {e.start}); the file must be UTF-8") from None


def read_jsonl_objects(path: Path, error: type[Exception] = DataError) -> Iterator[tuple[str, dict]]:
    """("path:line", object) for every line of a JSON-lines file: the one reader of the data, reference and
    prediction files. Unreadable files, invalid UTF-8, empty lines, invalid JSON and lines that are not
    objects raise `error` naming the line (the writers never produce an empty line, so one means damage)."""
    for number, line in enumerate(read_utf8(path, error).splitlines(), 1):
        where = f"{path}:{number}"
        if not line.strip():
            raise error(f"{where}: empty line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{where}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield where, obj


def read_json(path: Path) -> object:
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def read_xml(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """Parse XML keeping each element's line number (ElementTree alone drops them)."""
    data = read_utf8(path).encode("utf-8")
    builder, lines = ET.TreeBuilder(), {}
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise DataError(f"{path}:{e.lineno}:{e.offset + 1}: invalid XML: {expat.ErrorString(e.code)}") from None
    return builder.close(), lines


def read_e2e_txt(path: Path) -> list[Example]:
    """LoRA's `MR||reference` lines. Like the reference: strip the line, MR = left part as is."""
    text = read_utf8(path).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # trailing blank lines carry nothing
        lines.pop()
    examples = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        parts = line.split("||")
        if not line:
            raise DataError(f"{path}:{number}: blank line, expected 'MR||reference'")
        if len(parts) == 1:
            raise DataError(f"{path}:{number}: no '||' separator, expected 'MR||reference'")
        if len(parts) > 2:
            raise DataError(f"{path}:{number}: {len(parts) - 1} '||' separators, expected exactly one")
        context, completion = parts
        if not context.strip():
            raise DataError(f"{path}:{number}: empty MR before '||'")
        if not completion.strip():
            raise DataError(f"{path}:{number}: empty reference after '||'")
        examples.append(Example(context, completion))
    return examples


_MR_ITEM = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*(,|$)")
_VALUE_TOKEN = re.compile(r"\w+|[^\w\s]")  # "£20-25" -> "£", "20", "-", "25"


def e2e_mr_to_lora(mr: str) -> str:
    """`name[The Eagle], priceRange[£20-25]` -> `name : The Eagle | price : £ 20 - 25` (LoRA's E2E form).

    Attribute names are renamed (E2E_ATTRIBUTE_NAMES) and values tokenised like LoRA's files: every character
    that is neither a word character nor a space becomes its own token. Raises ValueError on a malformed MR.
    """
    items, position = [], 0
    while position < len(mr):
        match = _MR_ITEM.match(mr, position)
        if not match:
            raise ValueError(f"cannot parse MR {mr!r} at character {position + 1}: expected 'attribute[value]'")
        attribute, value, _ = match.groups()
        if attribute not in E2E_ATTRIBUTE_NAMES:
            raise ValueError(f"unknown MR attribute {attribute!r}; known: {', '.join(E2E_ATTRIBUTE_NAMES)}")
        if not value.strip():
            raise ValueError(f"empty value for MR attribute {attribute!r}")
        items.append(f"{E2E_ATTRIBUTE_NAMES[attribute]} : {' '.join(_VALUE_TOKEN.findall(value))}")
        position = match.end()
    if not items:
        raise ValueError("empty MR")
    return " | ".join(items)


def read_e2e_csv(path: Path) -> list[Example]:
    """E2E challenge CSVs (original and cleaned release; columns `mr`,`ref`, others ignored).

    context = the MR in LoRA's serialisation (exactly what LoRA's txt files hold for the same MR);
    completion = the reference as published, untokenised, outer whitespace stripped. LoRA's txt references are
    tokenised by a tool the reference does not ship (and not even consistently: valid.txt has "isn 't", test.txt
    "is n't"), so re-tokenising would be a guess; the official E2E metrics tokenise for themselves anyway.
    """
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    missing = {"mr", "ref"} - set(reader.fieldnames or ())
    if missing:
        raise DataError(f"{path}:1: CSV header {reader.fieldnames} lacks column(s) {', '.join(sorted(missing))}")
    examples = []
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if row["mr"] is None or row["ref"] is None:
                raise DataError(f"{where}: row has too few fields (needs 'mr' and 'ref')")
            try:
                context = e2e_mr_to_lora(row["mr"])
            except ValueError as e:
                raise DataError(f"{where}: field 'mr': {e}") from None
            if not row["ref"].strip():
                raise DataError(f"{where}: field 'ref' is empty")
            examples.append(Example(context, row["ref"].strip()))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {e}") from None
    return examples


def _triple_context(triples: Iterable[tuple[str, str, str]], lower_relation: bool = False) -> str:
    return " | ".join(f"{s} : {r.lower() if lower_relation else r} : {o}" for s, r, o in triples)


def require_field(obj: object, key: str, kind: type, where: str, error: type[Exception] = DataError):
    """obj[key], which must exist and be a `kind` (a bool is not an int); otherwise `error` naming `where`."""
    if not isinstance(obj, dict):
        raise error(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise error(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise error(f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def webnlg_xml_files(directory: Path) -> list[Path]:
    """`<N>triples/*.xml` ordered by N then file name: the order of LoRA's train/dev.json."""
    keyed = []
    for path in directory.glob("*/*.xml"):
        match = re.fullmatch(r"(\d+)triples?", path.parent.name)
        if not match:
            raise DataError(f"{path}: unexpected directory {path.parent.name!r} (expected '<N>triples')")
        keyed.append(((int(match.group(1)), path.name), path))
    return [path for _, path in sorted(keyed)]


def read_webnlg_xml(paths: Iterable[Path]) -> list[Example]:
    """Official WebNLG 2017 challenge XML, entries in file order."""
    examples = []
    for path in paths:
        root, lines = read_xml(path)
        for entry in root.iter("entry"):
            where = f"{path}:{lines[entry]}: entry eid={entry.get('eid')!r}"
            category = entry.get("category")
            if not category:
                raise DataError(f"{where}: missing attribute 'category'")
            triples = _xml_triples(entry, lines, path, where)
            context = _triple_context(triples)
            for lex in entry.findall("lex"):
                lex_where = f"{path}:{lines[lex]}: entry eid={entry.get('eid')!r} lex lid={lex.get('lid')!r}"
                comment = lex.get("comment")
                if comment is None:
                    raise DataError(f"{lex_where}: missing attribute 'comment'")
                if comment != "good":
                    continue
                examples.append(Example(context, _lex_text(lex, lex_where), category in WEBNLG_SEEN_CATEGORIES))
    return examples


def _xml_triples(entry: ET.Element, lines: dict, path: Path, where: str) -> list[tuple[str, str, str]]:
    tripleset = entry.find("modifiedtripleset")
    if tripleset is None:
        raise DataError(f"{where}: missing <modifiedtripleset>")
    triples = []
    for mtriple in tripleset.findall("mtriple"):
        parts = (mtriple.text or "").split(" | ")
        if len(parts) != 3:
            raise DataError(f"{path}:{lines[mtriple]}: <mtriple> {mtriple.text!r} does not split into "
                            f"'subject | relation | object'")
        triples.append(tuple(parts))
    if not triples:
        raise DataError(f"{where}: <modifiedtripleset> has no <mtriple>")
    return triples


def _lex_text(lex: ET.Element, where: str) -> str:
    if len(lex):
        raise DataError(f"{where}: <lex> has child elements (not the 2017 challenge format)")
    return _reference_text(lex.text or "", where)


def _reference_text(text: str, where: str) -> str:
    # The reference keeps empty references (DART test has one) and scores against them, so we keep them too.
    if not text.strip():
        print(f"warning: {where}: empty reference text (kept, as the reference does)", file=sys.stderr)
    return text


def read_webnlg_json(path: Path) -> list[Example]:
    """LoRA's WebNLG json: {"entries": [{"1": {...}}, {"2": {...}}, ...]}."""
    entries = require_field(read_json(path), "entries", list, str(path))
    examples = []
    for index, item in enumerate(entries):
        if not (isinstance(item, dict) and len(item) == 1):
            raise DataError(f"{path}: entry #{index + 1}: expected a one-key object {{\"{index + 1}\": {{...}}}}")
        (key, entry), = item.items()
        where = f"{path}: entry {key!r}"
        category = require_field(entry, "category", str, where)
        triples = []
        for number, triple in enumerate(require_field(entry, "modifiedtripleset", list, where), 1):
            triple_where = f"{where} modifiedtripleset[{number}]"
            triples.append(tuple(require_field(triple, k, str, triple_where) for k in ("subject", "property", "object")))
        if not triples:
            raise DataError(f"{where}: empty 'modifiedtripleset'")
        context = _triple_context(triples)
        for number, lex in enumerate(require_field(entry, "lexicalisations", list, where), 1):
            lex_where = f"{where} lexicalisations[{number}]"
            if require_field(lex, "comment", str, lex_where) != "good":
                continue
            text = _reference_text(require_field(lex, "lex", str, lex_where), lex_where)
            examples.append(Example(context, text, category in WEBNLG_SEEN_CATEGORIES))
    return examples


def read_dart_json(path: Path) -> list[Example]:
    """DART v1.1.1 json: [{"tripleset": [[s, r, o], ...], "annotations": [{"text": ...}, ...]}, ...]."""
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(items).__name__}")
    examples = []
    for index, item in enumerate(items):
        where = f"{path}: entry #{index + 1}"
        triples = []
        for number, triple in enumerate(require_field(item, "tripleset", list, where), 1):
            if not (isinstance(triple, list) and len(triple) == 3 and all(isinstance(x, str) for x in triple)):
                raise DataError(f"{where} tripleset[{number}]: expected [subject, relation, object] strings, "
                                f"got {triple!r}")
            triples.append(tuple(triple))
        if not triples:
            raise DataError(f"{where}: empty 'tripleset'")
        context = _triple_context(triples, lower_relation=True)
        annotations = require_field(item, "annotations", list, where)
        if not annotations:
            raise DataError(f"{where}: no annotations (every input needs at least one reference)")
        for number, annotation in enumerate(annotations, 1):
            annotation_where = f"{where} annotations[{number}]"
            examples.append(Example(context, _reference_text(require_field(annotation, "text", str, annotation_where),
                                                             annotation_where)))
    return examples


def read_dart_xml(path: Path) -> list[Example]:
    """DART v1.1.1 in the WebNLG-style XML release; every <lex> is a reference (comment = its source)."""
    root, lines = read_xml(path)
    examples = []
    for entry in root.iter("entry"):
        where = f"{path}:{lines[entry]}: entry eid={entry.get('eid')!r}"
        context = _triple_context(_xml_triples(entry, lines, path, where), lower_relation=True)
        lexes = entry.findall("lex")
        if not lexes:
            raise DataError(f"{where}: no <lex> (every input needs at least one reference)")
        for lex in lexes:
            examples.append(Example(context, _lex_text(lex, f"{path}:{lines[lex]}: entry eid={entry.get('eid')!r}")))
    return examples


def read_split(dataset: str, split_source: SplitSource) -> list[Example]:
    files, source = split_source.files, split_source.source
    if dataset == "e2e":
        return read_e2e_txt(files[0]) if source == "lora" else read_e2e_csv(files[0])
    if dataset == "webnlg":
        return read_webnlg_xml(files) if source == "xml" else read_webnlg_json(files[0])
    return read_dart_json(files[0]) if source == "json" else read_dart_xml(files[0])


# ---------------------------------------------------------------------------------------------------------------
# Locating sources, manifest, downloads

@dataclass(frozen=True)
class ManifestEntry:
    dataset: str
    source: str
    split: str
    path: str
    size: int | None
    sha256: str | None
    url: str


MANIFEST_COLUMNS = ["dataset", "source", "split", "path", "size", "sha256", "url"]


def read_manifest(path: Path) -> list[ManifestEntry]:
    lines = [(n, line) for n, line in enumerate(read_utf8(path).splitlines(), 1)
             if line.strip() and not line.startswith("#")]
    if not lines or lines[0][1].split("\t") != MANIFEST_COLUMNS:
        raise DataError(f"{path}: header must be the tab-separated columns {' '.join(MANIFEST_COLUMNS)}")
    entries = []
    for number, line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(MANIFEST_COLUMNS):
            raise DataError(f"{path}:{number}: expected {len(MANIFEST_COLUMNS)} tab-separated fields, got {len(cells)}")
        dataset, source, split, rel, size, sha, url = cells
        if dataset not in SOURCE_FILES or source not in SOURCE_FILES[dataset] or split not in SPLITS:
            raise DataError(f"{path}:{number}: unknown dataset/source/split {dataset}/{source}/{split}")
        if size != "-" and not size.isdigit():
            raise DataError(f"{path}:{number}: field 'size' must be a byte count or '-', got {size!r}")
        if sha != "-" and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise DataError(f"{path}:{number}: field 'sha256' must be 64 hex digits or '-', got {sha!r}")
        entries.append(ManifestEntry(dataset, source, split, rel, None if size == "-" else int(size),
                                     None if sha == "-" else sha, url))
    return entries


def dataset_dir(raw_root: Path, dataset: str) -> Path:
    for name in RAW_DIR_NAMES[dataset]:
        if (raw_root / name).is_dir():
            return raw_root / name
    return raw_root / RAW_DIR_NAMES[dataset][0]


def candidate_sources(dataset: str, source: str) -> tuple[str, ...]:
    if source == "auto":
        return AUTO_SOURCES[dataset]
    if source not in SOURCE_FILES[dataset]:
        raise DataError(f"unknown source {source!r} for {dataset}; choose from auto, "
                        f"{', '.join(SOURCE_FILES[dataset])}")
    return (source,)


def locate_split(dataset: str, directory: Path, split: str, source: str) -> SplitSource | str:
    """The files of one split, or a message saying what was looked for."""
    tried = []
    for name in candidate_sources(dataset, source):
        relative = SOURCE_FILES[dataset][name][split]
        path = directory / relative
        if dataset == "webnlg" and name == "xml" and split != "test":  # a directory of per-size files
            tried.append(f"{relative}/<N>triples/*.xml")
            files = webnlg_xml_files(path) if path.is_dir() else []
            if files:
                return SplitSource(split, name, files)
        else:
            tried.append(relative)
            if path.is_file():
                return SplitSource(split, name, [path])
    return f"{dataset}/{split}: no {' or '.join(tried)} in {directory}"


def output_name(dataset: str, source: str) -> str:
    return OUTPUT_NAMES.get((dataset, source), dataset)


def download_split(dataset: str, split: str, source: str, raw_root: Path, manifest: list[ManifestEntry],
                   progress: bool) -> None:
    rows = [e for e in manifest if e.dataset == dataset and e.split == split
            and e.source in candidate_sources(dataset, source)]
    if rows:  # several sources allowed (auto): the manifest lists the preferred one first
        rows = [e for e in rows if e.source == rows[0].source]
    if not rows:
        raise DataError(f"{dataset}/{split}: the manifest lists no file for source {source!r}")
    directory = raw_root / RAW_DIR_NAMES[dataset][0]
    for entry in tqdm(rows, desc=f"{dataset}/{split} files", unit="file", disable=None if progress and
                      len(rows) > 1 else True, leave=False):
        try:
            download(entry.url, directory / entry.path, entry.sha256, entry.size, progress=progress)
        except OSError as e:
            raise DataError(f"cannot write {directory / entry.path}: {e}") from e
        except DownloadError as e:
            raise DataError(f"{e}\nOr put all raw files in a directory laid out like ../shared/data (see README "
                            f"'## Data') and pass RAW_DIR=that_dir; leave out unavailable splits with SPLITS=.") from e


def verify_files(dataset: str, directory: Path, files: list[Path], manifest: list[ManifestEntry]) -> None:
    pinned = {e.path: e for e in manifest if e.dataset == dataset}
    for path in files:
        entry = pinned.get(path.relative_to(directory).as_posix())
        if entry is None or entry.sha256 is None:
            print(f"warning: {path} has no pinned sha256 in the manifest: not verified", file=sys.stderr)
            continue
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise DataError(f"{path}: sha256 {digest} does not match the manifest ({entry.sha256}, {entry.url})")


# ---------------------------------------------------------------------------------------------------------------
# Encoding, statistics, writing

def encode_examples(examples: list[Example], progress: bool = True, chunk: int = 4096) -> list[dict]:
    """Records in the output format. Distinct contexts are encoded once (E2E repeats each MR ~8 times)."""
    enc = get_tokenizer()
    unique_contexts = list(dict.fromkeys(ex.context for ex in examples))
    context_ids = dict(zip(unique_contexts, _encode_batch(enc, unique_contexts, progress, chunk, "contexts")))
    completion_ids = _encode_batch(enc, [" " + ex.completion for ex in examples], progress, chunk, "completions")
    records = []
    for index, (ex, ids) in enumerate(zip(examples, completion_ids)):
        record = {"id": index, "context": ex.context, "completion": ex.completion,
                  "context_ids": context_ids[ex.context] + [EOT_ID], "completion_ids": ids + [EOT_ID]}
        if ex.seen is not None:
            record["seen"] = ex.seen
        records.append(record)
    return records


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


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write to a temp file in the same directory, then rename: readers never see a half-written file."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)


def jsonl_lines(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def load_jsonl(path: Path) -> list[dict]:
    """Read a split written by this module, checking every record's fields."""
    records = []
    for where, record in read_jsonl_objects(path):
        for key, kind in (("id", int), ("context", str), ("completion", str), ("context_ids", list),
                          ("completion_ids", list)):
            require_field(record, key, kind, where)
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------------------------
# The stage

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
        return DATASETS
    if text not in DATASETS:
        raise DataError(f"unknown dataset {text!r}; choose from {', '.join(DATASETS)}, all")
    return (text,)


def prepare(config: DataConfig) -> dict[str, dict]:
    """Run the stage; returns {output name: stats}. Every dataset is read and encoded before anything is
    written, so an error leaves earlier outputs untouched."""
    if config.source != "auto" and len(config.datasets) != 1:
        raise DataError("a source (SOURCE=) applies to one dataset; pick DATASET=e2e, webnlg or dart")
    for dataset in config.datasets:
        candidate_sources(dataset, config.source)
    manifest = read_manifest(config.manifest) if config.raw_dir is None or config.verify else []
    raw_root = config.raw_dir if config.raw_dir is not None else config.out_dir / "raw"
    if config.raw_dir is None:
        for dataset in config.datasets:
            for split in config.splits:
                download_split(dataset, split, config.source, raw_root, manifest, config.progress)
    elif not raw_root.is_dir():
        raise DataError(f"RAW_DIR {raw_root} is not a directory")

    located = {d: {s: locate_split(d, dataset_dir(raw_root, d), s, config.source) for s in config.splits}
               for d in config.datasets}
    missing = [found for splits in located.values() for found in splits.values() if isinstance(found, str)]
    if missing:
        raise DataError("missing raw files:\n  " + "\n  ".join(missing) + f"\nAdd them, or leave those splits out "
                        f"(e.g. SPLITS=valid,test; now {','.join(config.splits)}).")

    outputs = {}
    for dataset, splits in located.items():
        directory = dataset_dir(raw_root, dataset)
        sources = {s.source for s in splits.values()}
        name = output_name(dataset, next(iter(sources)))
        if len({output_name(dataset, s) for s in sources}) > 1:
            raise DataError(f"{dataset}: splits come from sources that are different datasets ({sources})")
        if config.verify:
            for split_source in splits.values():
                verify_files(dataset, directory, split_source.files, manifest)
        records, stats = {}, {}
        for split, split_source in splits.items():
            examples = read_split(dataset, split_source)
            if not examples:
                raise DataError(f"{dataset}/{split}: {split_source.files[0]} holds no examples")
            records[split] = encode_examples(examples, config.progress)
            stats[split] = split_stats(records[split], split_source, raw_root)
        outputs[name] = (records, stats)

    summary = {}
    for name, (records, stats) in outputs.items():
        out = config.out_dir / name
        for split, split_records in records.items():
            atomic_write_lines(out / f"{split}.jsonl", jsonl_lines(split_records))
        summary[name] = write_stats(out, stats)
    return summary


def write_stats(out: Path, new: dict[str, dict]) -> dict:
    """Merge this run's splits into stats.json, keeping other splits whose jsonl still exists."""
    path = out / "stats.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("splits", {}) if path.exists() else {}
    except (json.JSONDecodeError, AttributeError):
        old = {}
    splits = {s: new.get(s, old.get(s)) for s in SPLITS if s in new or (s in old and (out / f"{s}.jsonl").exists())}
    stats = {"dataset": out.name, "splits": splits}
    atomic_write_lines(path, [json.dumps(stats, indent=2, ensure_ascii=False) + "\n"])
    return stats


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
    parser.add_argument("--dataset", default="all", help="e2e, webnlg, dart or all (default: all)")
    parser.add_argument("--splits", default="", help="comma-separated, e.g. valid,test (default: train,valid,test;"
                                                     " dev = valid)")
    parser.add_argument("--raw-dir", type=Path, help="read raw files from here (../shared/data layout) instead of "
                                                     "downloading them")
    parser.add_argument("--out-dir", type=Path, default=DataConfig.out_dir, help="output root (default: data)")
    parser.add_argument("--source", default="auto", help="e2e: lora|original|cleaned, webnlg: xml|json, "
                                                         "dart: json|xml (default: auto)")
    parser.add_argument("--verify", action="store_true", help="with --raw-dir: also check sha256 of the files")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="file list with URL/size/sha256")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        config = DataConfig(datasets=parse_datasets(args.dataset), splits=parse_splits(args.splits),
                            raw_dir=args.raw_dir, out_dir=args.out_dir, source=args.source, verify=args.verify,
                            manifest=args.manifest, progress=not args.no_progress)
        summary = prepare(config)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was written", file=sys.stderr)
        return 130
    print(format_summary(summary, config.out_dir, config.splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
