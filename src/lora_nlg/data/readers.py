"""What the data-reading modules share: the `Example` record, `DataError` and the readers of UTF-8, JSON, XML and
JSON-lines files whose errors name `path:line`.

Kept apart from the data stage so that the dataset modules (`lora_nlg.data.datasets`), batching, references and
predictions all read files the same way, and report a bad file the same way, without importing the stage's CLI.
The bytes are decoded by the library's one strict UTF-8 reader (`lora_nlg.utf8_files`), which eval/ shares.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from xml.parsers import expat

from lora_nlg.utf8_files import Utf8FileError, read_utf8_text, split_lines

SPLITS = ("train", "valid", "test")  # every dataset has these; the stage writes and lists them in this order


class DataError(ValueError):
    """Bad or missing input; the message names the file, the line or entry, and the problem."""


@dataclass(frozen=True)
class Example:
    context: str
    completion: str
    seen: bool | None = None  # WebNLG only


@dataclass
class SplitSource:
    """Where one split was found: the source format it is read as and its files, in reading order."""
    split: str
    source: str
    files: list[Path] = field(default_factory=list)


def read_utf8(path: Path, error: type[Exception] = DataError) -> str:
    """The file's text (the library's one strict reader, `lora_nlg.utf8_files`); an unreadable file or invalid
    UTF-8 is an `error` naming the file, line and byte."""
    try:
        return read_utf8_text(path)
    except Utf8FileError as e:
        if e.line is None:
            raise error(f"{path}: cannot read: {e.reason}") from None
        raise error(f"{path}:{e.line}: invalid UTF-8 byte 0x{e.byte:02x} at column {e.column} "
                    f"(byte offset {e.offset}); the file must be UTF-8") from None


def read_jsonl_objects(path: Path, error: type[Exception] = DataError) -> Iterator[tuple[str, dict]]:
    """("path:line", object) for every line of a JSON-lines file: the one reader of the data, reference and
    prediction files. Unreadable files, invalid UTF-8, empty lines, invalid JSON and lines that are not
    objects raise `error` naming the line (the writers never produce an empty line, so one means damage)."""
    for number, line in enumerate(split_lines(read_utf8(path, error)), 1):
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
