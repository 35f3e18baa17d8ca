"""What WebNLG and DART share: triples serialised as `subj : rel : obj | ...`, WebNLG-style XML entries and the
handling of empty references (both datasets derive from the WebNLG format)."""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

from lora_nlg.data.readers import DataError


def triple_context(triples: Iterable[tuple[str, str, str]], lower_relation: bool = False) -> str:
    return " | ".join(f"{s} : {r.lower() if lower_relation else r} : {o}" for s, r, o in triples)


def xml_triples(entry: ET.Element, lines: dict, path: Path, where: str) -> list[tuple[str, str, str]]:
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


def lex_text(lex: ET.Element, where: str) -> str:
    if len(lex):
        raise DataError(f"{where}: <lex> has child elements (not the 2017 challenge format)")
    return reference_text(lex.text or "", where)


def reference_text(text: str, where: str) -> str:
    # The reference keeps empty references (DART test has one) and scores against them, so we keep them too.
    if not text.strip():
        print(f"warning: {where}: empty reference text (kept, as the reference does)", file=sys.stderr)
    return text
