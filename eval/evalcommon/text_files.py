"""Reading the text files metrics score: strict UTF-8, one item per line, errors that name the file and line."""
from __future__ import annotations

from pathlib import Path


class EvalInputError(ValueError):
    """An input file is missing, unreadable or malformed; the message names the file (and line when known)."""


def read_text(path: str | Path) -> str:
    """The whole file as text: UTF-8 (a leading BOM is dropped), CRLF turned into LF."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvalInputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise EvalInputError(f"{path}: line {line}, byte {column}: not valid UTF-8 ({e.reason}, byte "
                             f"0x{data[e.start]:02x}); metric inputs must be UTF-8 text") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def split_lines(text: str) -> list[str]:
    """Lines of a text; a final newline ends the last line instead of starting an empty one."""
    if not text:
        return []
    return text.removesuffix("\n").split("\n")


def read_lines(path: str | Path) -> list[str]:
    """The file's lines (no line ends). 'a\\nb', 'a\\nb\\n' and 'a\\r\\nb\\r\\n' all give ['a', 'b']."""
    return split_lines(read_text(path))


def check_same_count(n_refs: int, refs_name: str, n_hyps: int, hyps_name: str) -> None:
    """Hypotheses and reference groups must pair up one to one."""
    if n_refs != n_hyps:
        raise EvalInputError(f"count mismatch: {hyps_name} has {n_hyps} hypotheses but {refs_name} has "
                             f"{n_refs} inputs (reference groups); they must be equal")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write via a temp file and a rename (lora_nlg.atomic): readers never see half a file; a failure raises
    WriteError, "cannot write <path>: <reason>"."""
    write_texts_together({path: text})


def write_texts_together(files: dict[str | Path, str]) -> None:
    """Several text files that appear together or not at all (e.g. eval/<split>.json and .md)."""
    from lora_nlg.atomic import write_files_together  # torch-free

    write_files_together(files)
