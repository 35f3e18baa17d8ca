"""The one strict UTF-8 reader (lora_nlg.utf8_files): the data stage and eval/ locate a bad byte alike, each in its
own words, and a JSON-lines file splits only at line ends."""
from __future__ import annotations

import json

import pytest
from evalcommon.text_files import EvalInputError, read_lines

from lora_nlg.data.readers import DataError, read_jsonl_objects, read_utf8
from lora_nlg.utf8_files import Utf8FileError, read_utf8_lines, split_lines


def test_lines_split_at_line_ends_only():
    assert split_lines("a\nb") == split_lines("a\nb\n") == split_lines("a\r\nb\r\n") == ["a", "b"]
    assert split_lines("") == [] and split_lines("\n") == [""]
    assert split_lines("a\u2028b\x85c\x0cd\n") == ["a\u2028b\x85c\x0cd"]  # str.splitlines() would make 4 lines


def test_a_bad_byte_is_located_for_both_callers(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xef\xbb\xbfok\nab\xe9c\n")  # a BOM, then a Latin-1 byte at column 3 of line 2
    with pytest.raises(Utf8FileError) as located:
        read_utf8_lines(bad)
    assert (located.value.line, located.value.column, located.value.offset, located.value.byte) == (2, 3, 8, 0xe9)
    with pytest.raises(DataError, match=rf"^{bad}:2: invalid UTF-8 byte 0xe9 at column 3 \(byte offset 8\)"):
        read_utf8(bad)
    with pytest.raises(EvalInputError, match=rf"^{bad}: line 2, byte 3: not valid UTF-8 \(.*, byte 0xe9\)"):
        read_lines(bad)
    with pytest.raises(EvalInputError, match=rf"^{tmp_path / 'none'}: cannot read \(No such file"):
        read_lines(tmp_path / "none")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'none'}: cannot read: No such file"):
        read_utf8(tmp_path / "none")


def test_predictions_with_unicode_line_separators_read_one_object_per_line(tmp_path):
    # json.dumps(ensure_ascii=False), as the data and decode stages write, leaves U+2028 and U+0085 unescaped
    rows = [{"context": "a", "hypothesis": "x\u2028y"}, {"context": "b", "hypothesis": "z\x85w"}]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [obj for _, obj in read_jsonl_objects(path)] == rows
