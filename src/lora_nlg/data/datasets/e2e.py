"""E2E NLG: LoRA's tokenised `MR||reference` txt files (the default, what the paper trains on) and the challenge's
CSV releases (original and cleaned), whose MRs are converted to LoRA's `name : X | Type : Y` form.

The CSV references are untokenised, so those sources are different datasets and are written to
`data/e2e_original/` and `data/e2e_cleaned/`; `auto` never picks them.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from lora_nlg.data.datasets import Dataset, Scoring, Source, first_file
from lora_nlg.data.readers import DataError, Example, read_utf8

# E2E CSV attribute -> name used in LoRA's `name : X | Type : Y` serialisation (checked on devset.csv/valid.txt).
E2E_ATTRIBUTE_NAMES = {"name": "name", "eatType": "Type", "food": "food", "priceRange": "price",
                       "customer rating": "customer rating", "area": "area", "familyFriendly": "family friendly",
                       "near": "near"}


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


# Scored by the official E2E script on references as they are (the reference runs gpt2_decode.py without
# --tokenize/--lower for E2E).
DATASET = Dataset(
    name="e2e", title="E2E", order=1, raw_dirs=("e2e",), auto=("lora",),
    scoring=Scoring(metrics="e2e_official", tokenize=False, lower=False),
    sources={
        "lora": Source({"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}, first_file(read_e2e_txt)),
        "original": Source({"train": "trainset.csv", "valid": "devset.csv", "test": "testset_w_refs.csv"},
                           first_file(read_e2e_csv), output="e2e_original"),
        "cleaned": Source({"train": "train-fixed.no-ol.csv", "valid": "devel-fixed.no-ol.csv",
                           "test": "test-fixed.csv"}, first_file(read_e2e_csv), output="e2e_cleaned"),
    })
