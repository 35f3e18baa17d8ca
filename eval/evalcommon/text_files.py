"""The text files metrics score, read with the library's one strict UTF-8 reader (`lora_nlg.utf8_files`): one item
per line, errors that name the file and line and say the input is wrong (EvalInputError, exit status 2)."""
from __future__ import annotations

from pathlib import Path

from lora_nlg.utf8_files import Utf8FileError, read_utf8_lines


class EvalInputError(ValueError):
    """An input file is missing, unreadable or malformed; the message names the file (and line when known)."""


def read_lines(path: str | Path) -> list[str]:
    """The file's lines (no line ends): UTF-8, a leading BOM dropped, 'a\\nb', 'a\\nb\\n' and 'a\\r\\nb\\r\\n' all
    give ['a', 'b']."""
    try:
        return read_utf8_lines(path)
    except Utf8FileError as e:
        if e.line is None:
            raise EvalInputError(f"{e.path}: cannot read ({e.reason})") from None
        raise EvalInputError(f"{e.path}: line {e.line}, byte {e.column}: not valid UTF-8 ({e.reason}, byte "
                             f"0x{e.byte:02x}); metric inputs must be UTF-8 text") from None


def check_same_count(n_refs: int, refs_name: str, n_hyps: int, hyps_name: str) -> None:
    """Hypotheses and reference groups must pair up one to one."""
    if n_refs != n_hyps:
        raise EvalInputError(f"count mismatch: {hyps_name} has {n_hyps} hypotheses but {refs_name} has "
                             f"{n_refs} inputs (reference groups); they must be equal")
