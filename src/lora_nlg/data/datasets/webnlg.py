"""WebNLG 2017: the official challenge XML (the default; train/dev are directories of per-size files) or LoRA's
JSON. Context = the modified triples `subj : prop : obj` joined by ` | `; one example per lexicalisation with
comment="good"; `seen` = the entry's category is one of the 10 training categories."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from lora_nlg.data.datasets import Dataset, Scoring, Source, first_file, single_file
from lora_nlg.data.datasets._triples import lex_text, reference_text, triple_context, xml_triples
from lora_nlg.data.readers import DataError, Example, read_json, read_xml, require_field

WEBNLG_SEEN_CATEGORIES = frozenset({"Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food",
                                    "Monument", "SportsTeam", "University", "WrittenWork"})


def webnlg_xml_files(directory: Path) -> list[Path]:
    """`<N>triples/*.xml` ordered by N then file name: the order of LoRA's train/dev.json."""
    keyed = []
    for path in directory.glob("*/*.xml"):
        match = re.fullmatch(r"(\d+)triples?", path.parent.name)
        if not match:
            raise DataError(f"{path}: unexpected directory {path.parent.name!r} (expected '<N>triples')")
        keyed.append(((int(match.group(1)), path.name), path))
    return [path for _, path in sorted(keyed)]


def find_xml(directory: Path, relative: str) -> tuple[list[Path], str]:
    """The test split is one file; train and dev are a directory of per-size files."""
    if relative.endswith(".xml"):
        return single_file(directory, relative)
    path = directory / relative
    return (webnlg_xml_files(path) if path.is_dir() else []), f"{relative}/<N>triples/*.xml"


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
            context = triple_context(xml_triples(entry, lines, path, where))
            for lex in entry.findall("lex"):
                lex_where = f"{path}:{lines[lex]}: entry eid={entry.get('eid')!r} lex lid={lex.get('lid')!r}"
                comment = lex.get("comment")
                if comment is None:
                    raise DataError(f"{lex_where}: missing attribute 'comment'")
                if comment != "good":
                    continue
                examples.append(Example(context, lex_text(lex, lex_where), category in WEBNLG_SEEN_CATEGORIES))
    return examples


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
        context = triple_context(triples)
        for number, lex in enumerate(require_field(entry, "lexicalisations", list, where), 1):
            lex_where = f"{where} lexicalisations[{number}]"
            if require_field(lex, "comment", str, lex_where) != "good":
                continue
            text = reference_text(require_field(lex, "lex", str, lex_where), lex_where)
            examples.append(Example(context, text, category in WEBNLG_SEEN_CATEGORIES))
    return examples


# The raw directory may also carry the name LoRA's repository and ../shared give it. Scored like the reference
# (GenerationEval on lower-cased, tokenised text) per category subset, in the paper's column order (U, S, A).
DATASET = Dataset(
    name="webnlg", title="WebNLG", order=2, raw_dirs=("webnlg", "webnlg_challenge_2017"), auto=("xml", "json"),
    scoring=Scoring(metrics="geneval", tokenize=True, lower=True, subsets=("unseen", "seen", "all")),
    sources={
        "xml": Source({"train": "xml/train", "valid": "xml/dev", "test": "xml/test/testdata_with_lex.xml"},
                      read_webnlg_xml, find=find_xml),
        "json": Source({"train": "train.json", "valid": "dev.json", "test": "test.json"},
                       first_file(read_webnlg_json)),
    })
