"""The one strict UTF-8 reader of text files, shared by the data stage, the reference writer and eval/.

Strict: bytes that are not UTF-8 are an error that locates them (line, column, byte offset), never replaced. A
leading BOM is dropped. Each caller words the error in its own style (`lora_nlg.data.readers`: `path:line: ...`,
eval/: `path: line N, byte M: ...`) from the fields of `Utf8FileError`. Imports nothing of the package: eval/
uses it and stays free of torch.
"""
from __future__ import annotations

from pathlib import Path


class Utf8FileError(ValueError):
    """A file that cannot be read (`line` is None, `reason` the OS's words) or is not UTF-8 (`line`/`column` are
    1-based, `offset` the 0-based byte offset, `byte` the first bad byte, `reason` the codec's words)."""

    def __init__(self, path: Path, reason: str, line: int | None = None, column: int | None = None,
                 offset: int | None = None, byte: int | None = None):
        self.path, self.reason = path, reason
        self.line, self.column, self.offset, self.byte = line, column, offset, byte
        where = "" if line is None else f":{line}:{column}: invalid UTF-8 byte 0x{byte:02x}"
        super().__init__(f"{path}{where}: {reason}")


def read_utf8_text(path: str | Path) -> str:
    """The file's text as it is (line ends untouched), without a leading BOM."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Utf8FileError(path, str(e.strerror or e)) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise Utf8FileError(path, e.reason, line, column, e.start, data[e.start]) from None


def split_lines(text: str) -> list[str]:
    """Lines of a text split at "\\n" only (CRLF counts as one line end); a final line end ends the last line
    instead of starting an empty one. Other characters Python's splitlines() breaks at (U+2028, U+0085, form
    feed, a lone CR) stay inside the line, so a line-based file can never gain lines by them."""
    text = text.replace("\r\n", "\n")
    if not text:
        return []
    return text.removesuffix("\n").split("\n")


def read_utf8_lines(path: str | Path) -> list[str]:
    """The file's lines (no line ends). 'a\\nb', 'a\\nb\\n' and 'a\\r\\nb\\r\\n' all give ['a', 'b']."""
    return split_lines(read_utf8_text(path))
