"""Bad input: every error names the file, the line (or entry) and the problem; nothing half-written is left."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lora_nlg.data import stage as data
from lora_nlg.data.datasets import dart, e2e, webnlg
from lora_nlg.data.readers import DataError

RAW = Path(__file__).resolve().parent / "fixtures" / "data" / "raw"
GOOD_XML_ENTRY = """<benchmark><entries>
<entry category="Airport" eid="Id1" size="1">
  <modifiedtripleset>
    <mtriple>Aarhus | leaderName | Jacob_Bundsgaard</mtriple>
  </modifiedtripleset>
  <lex comment="good" lid="Id1">The leader of Aarhus is Jacob Bundsgaard.</lex>
</entry>
</entries></benchmark>
"""


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def expect_error(reader, path: Path, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("content, fragments", [
    ("name : A||ok\nname : B no separator\n", (":2: no '||' separator",)),
    ("||a reference\n", (":1: empty MR before '||'",)),
    ("name : A||ok\nname : B||   \n", (":2: empty reference after '||'",)),
    ("name : A||x||y\n", (":1: 2 '||' separators",)),
    ("name : A||ok\n\nname : B||ok\n", (":2: blank line",)),
    (b"name : A||ok\nname : B||caf\xe9\n", (":2: invalid UTF-8 byte 0xe9 at column 14",)),
])
def test_e2e_txt_errors(tmp_path, content, fragments):
    expect_error(e2e.read_e2e_txt, write(tmp_path, "valid.txt", content), *fragments)


@pytest.mark.parametrize("content, fragments", [
    ("mr,text\n\"name[A]\",x\n", (":1: CSV header", "lacks column(s) ref")),
    ("mr,ref\n\"name[A]\",ok\n\"name[B\",bad\n", (":3: field 'mr': cannot parse MR 'name[B'",)),
    ("mr,ref\n\"name[A], rating[5]\",x\n", (":2: field 'mr': unknown MR attribute 'rating'",)),
    ("mr,ref\n\"name[A], food[]\",x\n", (":2: field 'mr': empty value for MR attribute 'food'",)),
    ("mr,ref\n\"name[A]\",\"  \"\n", (":2: field 'ref' is empty",)),
    ("mr,ref\n\"name[A]\"\n", (":2: row has too few fields",)),
])
def test_e2e_csv_errors(tmp_path, content, fragments):
    expect_error(e2e.read_e2e_csv, write(tmp_path, "devset.csv", content), *fragments)


def xml_reader(path: Path):
    return webnlg.read_webnlg_xml([path])


@pytest.mark.parametrize("content, fragments", [
    (GOOD_XML_ENTRY.replace("</lex>", "</le>"), (":6:", "invalid XML: mismatched tag")),
    (GOOD_XML_ENTRY.replace("<modifiedtripleset>", "<tripleset>").replace("</modifiedtripleset>", "</tripleset>"),
     (":2: entry eid='Id1': missing <modifiedtripleset>",)),
    (GOOD_XML_ENTRY.replace("Aarhus | leaderName", "Aarhus leaderName"),
     (":4: <mtriple> 'Aarhus leaderName | Jacob_Bundsgaard' does not split",)),
    (GOOD_XML_ENTRY.replace(' comment="good"', ""),
     (":6: entry eid='Id1' lex lid='Id1': missing attribute 'comment'",)),
    (GOOD_XML_ENTRY.replace(' category="Airport"', ""), (":2: entry eid='Id1': missing attribute 'category'",)),
    (GOOD_XML_ENTRY.encode().replace(b"Aarhus is", b"\xc3(rhus is"), (":6: invalid UTF-8 byte 0xc3",)),
])
def test_webnlg_xml_errors(tmp_path, content, fragments):
    expect_error(xml_reader, write(tmp_path, "1triple_x.xml", content), *fragments)


JSON_ENTRY = ('{"entries": [{"1": {"category": "Food", "modifiedtripleset": [{"subject": "A", "property": "p", '
              '"object": "B"}], "lexicalisations": [{"comment": "good", "lex": "A p B."}]}}]}')


@pytest.mark.parametrize("content, fragments", [
    (JSON_ENTRY[:-2], (":1:", "invalid JSON")),
    ('{\n  "entries": [\n    {"1": {}},\n  ]\n}', (":4:3: invalid JSON: Expecting value",)),
    ('{"items": []}', (": missing field 'entries'",)),
    (JSON_ENTRY.replace('"modifiedtripleset"', '"tripleset"'), (": entry '1': missing field 'modifiedtripleset'",)),
    (JSON_ENTRY.replace('"object"', '"obj"'), (": entry '1' modifiedtripleset[1]: missing field 'object'",)),
    (JSON_ENTRY.replace('"lex":', '"text":'), (": entry '1' lexicalisations[1]: missing field 'lex'",)),
    (JSON_ENTRY.replace('"category": "Food"', '"category": 3'), ("field 'category' should be str, got int",)),
    (JSON_ENTRY.replace('{"1": {', '{"1": {}, "2": {'), (": entry #1: expected a one-key object",)),
])
def test_webnlg_json_errors(tmp_path, content, fragments):
    expect_error(webnlg.read_webnlg_json, write(tmp_path, "dev.json", content), *fragments)


DART_ENTRY = '[{"tripleset": [["A", "REL", "B"]], "annotations": [{"source": "x", "text": "A rel B."}]}'


@pytest.mark.parametrize("content, fragments", [
    ('{"tripleset": []}', (": expected a JSON list of entries, got dict",)),
    (DART_ENTRY + ', {"tripleset": [["A", "R", "B"]]}]', (": entry #2: missing field 'annotations'",)),
    (DART_ENTRY.replace('["A", "REL", "B"]', '["A", "REL"]') + "]", (": entry #1 tripleset[1]: expected [subject",)),
    (DART_ENTRY.replace('[{"source": "x", "text": "A rel B."}]', "[]") + "]", (": entry #1: no annotations",)),
    (DART_ENTRY.replace('"text"', '"txt"') + "]", (": entry #1 annotations[1]: missing field 'text'",)),
    (b"[\n" + DART_ENTRY[1:].encode().replace(b"rel B", b"rel \xff") + b"]", (":2: invalid UTF-8 byte 0xff",)),
])
def test_dart_json_errors(tmp_path, content, fragments):
    expect_error(dart.read_dart_json, write(tmp_path, "dart-v1.1.1-full-dev.json", content), *fragments)


def test_dart_xml_entry_without_references_is_an_error(tmp_path):
    content = re.sub(r"<lex .*</lex>", "", GOOD_XML_ENTRY)
    expect_error(dart.read_dart_xml, write(tmp_path, "dart.xml", content), ":2: entry eid='Id1': no <lex>")


@pytest.fixture
def raw_copy(tmp_path) -> Path:
    shutil.copytree(RAW, tmp_path / "raw")
    return tmp_path / "raw"


def run_cli(*args: str) -> int:
    return data.main([*args, "--no-progress"])


def test_cli_bad_file_writes_nothing_for_the_dataset_and_keeps_old_outputs(raw_copy, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--dataset", "e2e", "--raw-dir", str(raw_copy), "--out-dir", str(out)) == 0
    before = {p: p.read_bytes() for p in (out / "e2e").iterdir()}
    (raw_copy / "e2e" / "train.txt").write_text("name : X||fine\n", encoding="utf-8")
    with open(raw_copy / "e2e" / "test.txt", "a", encoding="utf-8") as f:
        f.write("name : X no separator\n")
    capsys.readouterr()
    assert run_cli("--dataset", "e2e", "--raw-dir", str(raw_copy), "--out-dir", str(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {raw_copy / 'e2e' / 'test.txt'}:4: no '||' separator") and "Traceback" not in err
    assert {p: p.read_bytes() for p in (out / "e2e").iterdir()} == before  # train.jsonl not replaced, no temp files


def test_cli_missing_splits_are_listed_and_skipped_only_when_asked(raw_copy, tmp_path, capsys):
    (raw_copy / "e2e" / "train.txt").unlink()
    (raw_copy / "dart" / "dart-v1.1.1-full-train.json").unlink()
    out = tmp_path / "out"
    assert run_cli("--dataset", "all", "--raw-dir", str(raw_copy), "--out-dir", str(out)) == 1
    err = capsys.readouterr().err
    assert f"e2e/train: no train.txt in {raw_copy / 'e2e'}" in err
    assert "dart/train: no dart-v1.1.1-full-train.json or dart-v1.1.1-full-train.xml" in err
    assert "SPLITS=valid,test" in err and not out.exists()
    assert run_cli("--dataset", "all", "--raw-dir", str(raw_copy), "--out-dir", str(out), "--splits", "dev,test") == 0
    assert sorted(p.name for p in (out / "dart").iterdir()) == ["stats.json", "test.jsonl", "valid.jsonl"]


@pytest.mark.parametrize("args, message", [
    (["--splits", "valid,tset"], "unknown split 'tset'"),
    (["--dataset", "webnlg2020"], "unknown dataset 'webnlg2020'"),
    (["--dataset", "all", "--source", "xml"], "a source (SOURCE=) applies to one dataset"),
    (["--dataset", "dart", "--source", "csv"], "unknown source 'csv' for dart; choose from auto, json, xml"),
    (["--raw-dir", "/nonexistent/raw"], "RAW_DIR /nonexistent/raw is not a directory"),
])
def test_cli_rejects_bad_options(tmp_path, capsys, args, message):
    assert run_cli("--raw-dir", str(RAW), "--out-dir", str(tmp_path / "out"), *args) == 1
    assert message in capsys.readouterr().err


def test_cli_verify_rejects_a_file_whose_sha256_differs(raw_copy, tmp_path, capsys):
    from lora_nlg.download import sha256_file
    test_txt = raw_copy / "e2e" / "test.txt"
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("dataset\tsource\tsplit\tpath\tsize\tsha256\turl\n"
                        f"e2e\tlora\ttest\ttest.txt\t-\t{sha256_file(test_txt)}\thttp://127.0.0.1:9/test.txt\n")
    args = ["--dataset", "e2e", "--splits", "test", "--raw-dir", str(raw_copy), "--out-dir", str(tmp_path / "out"),
            "--manifest", str(manifest), "--verify"]
    assert run_cli(*args) == 0
    test_txt.write_text(test_txt.read_text(encoding="utf-8").replace("Blue Spice", "Red Spice"), encoding="utf-8")
    assert run_cli(*args) == 1
    assert f"error: {test_txt}: sha256 " in capsys.readouterr().err


def test_module_entry_point_prints_error_without_traceback(tmp_path):
    (tmp_path / "raw" / "e2e").mkdir(parents=True)
    (tmp_path / "raw" / "e2e" / "test.txt").write_bytes(b"name : A||ok\n\xff\n")
    result = subprocess.run([sys.executable, "-m", "lora_nlg.data", "--dataset", "e2e", "--splits", "test",
                             "--raw-dir", str(tmp_path / "raw"), "--out-dir", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {tmp_path / 'raw' / 'e2e' / 'test.txt'}:2: invalid UTF-8 byte 0xff "
                                     f"at column 1 (byte offset 13); the file must be UTF-8")
    assert not (tmp_path / "out").exists()
