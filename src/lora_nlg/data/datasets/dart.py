"""DART v1.1.1, from its JSON (the default) or its WebNLG-style XML release, chosen per split. Serialised like
WebNLG with the relation lower-cased (as the reference does); one example per annotation."""
from __future__ import annotations

from pathlib import Path

from lora_nlg.data.datasets import Dataset, Scoring, Source, first_file
from lora_nlg.data.datasets._triples import lex_text, reference_text, triple_context, xml_triples
from lora_nlg.data.readers import DataError, Example, read_json, read_xml, require_field


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
        context = triple_context(triples, lower_relation=True)
        annotations = require_field(item, "annotations", list, where)
        if not annotations:
            raise DataError(f"{where}: no annotations (every input needs at least one reference)")
        for number, annotation in enumerate(annotations, 1):
            annotation_where = f"{where} annotations[{number}]"
            examples.append(Example(context, reference_text(require_field(annotation, "text", str, annotation_where),
                                                            annotation_where)))
    return examples


def read_dart_xml(path: Path) -> list[Example]:
    """DART v1.1.1 in the WebNLG-style XML release; every <lex> is a reference (comment = its source)."""
    root, lines = read_xml(path)
    examples = []
    for entry in root.iter("entry"):
        where = f"{path}:{lines[entry]}: entry eid={entry.get('eid')!r}"
        context = triple_context(xml_triples(entry, lines, path, where), lower_relation=True)
        lexes = entry.findall("lex")
        if not lexes:
            raise DataError(f"{where}: no <lex> (every input needs at least one reference)")
        for lex in lexes:
            examples.append(Example(context, lex_text(lex, f"{path}:{lines[lex]}: entry eid={entry.get('eid')!r}")))
    return examples


def _files(extension: str) -> dict[str, str]:
    return {split: f"dart-v1.1.1-full-{name}.{extension}"
            for split, name in (("train", "train"), ("valid", "dev"), ("test", "test"))}


# Scored like the reference: GenerationEval on lower-cased, tokenised text.
DATASET = Dataset(
    name="dart", title="DART", order=3, raw_dirs=("dart",), auto=("json", "xml"),
    scoring=Scoring(metrics="geneval", tokenize=True, lower=True),
    sources={"json": Source(_files("json"), first_file(read_dart_json)),
             "xml": Source(_files("xml"), first_file(read_dart_xml))})
