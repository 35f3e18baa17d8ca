"""Reference/hypothesis file writers: the reference pipeline's conventions (gpt2_decode.py), checked by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_nlg.decode import reference_files as R
from lora_nlg.tokenizer import get_tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "decode"
WEBNLG = FIXTURES / "webnlg_test.jsonl"
E2E = FIXTURES / "e2e_test.jsonl"
AARHUS = 'Aarhus_Airport : cityServed : "Aarhus, Denmark"'
WILDER = "Ace_Wilder : genre : Hip_hop_music"


def test_fixture_ids_are_the_data_stage_encoding():
    tok = get_tokenizer()
    for path in (WEBNLG, E2E):
        for e in R.read_examples(path):
            assert list(e.context_ids) == tok.encode(e.context) + [50256]


def test_grouping_keeps_first_appearance_order_and_all_references():
    examples = R.read_examples(WEBNLG)
    refs = R.group_references(examples)
    assert list(refs) == [AARHUS, "Alan_Bean : nationality : United_States | Alan_Bean : occupation : Test_pilot",
                          WILDER, "Abraham_A._Ribicoff : spouse : Casey_Ribicoff",
                          "1. FC Magdeburg : ground : MDCC-Arena"]
    assert refs[AARHUS] == ["The Aarhus is the airport of Aarhus, Denmark.",
                            "Aarhus Airport serves the city of Aarhus, Denmark.",
                            "Aarhus, Denmark is served by Aarhus Airport."]
    assert len(refs[WILDER]) == 7
    assert [e.context for e in R.unique_inputs(examples)] == list(refs)


def test_cut_text_matches_the_reference_cut():
    assert R.cut_text(" A pub .<|endoftext|>junk") == "A pub ."
    assert R.cut_text("First part.\n\nSecond part") == "First part."
    assert R.cut_text("  a\nb  ") == "a b"  # a lone newline would shift a line-based file
    assert R.cut_text("\n\nonly after") == ""


def test_tokenize_and_lower_as_gpt2_decode():
    assert R.normalise("Ace Wilder's genre is Hip-Hop music.", tokenize=True, lower=True) == \
        "ace wilder ' s genre is hip - hop music ."
    assert R.normalise("1. FC Magdeburg_x (MDCC)", tokenize=True, lower=False) == "1 . FC Magdeburg_x ( MDCC )"
    assert R.normalise("Keep  As Is.", tokenize=False, lower=False) == "Keep  As Is."


def test_webnlg_files_pad_with_first_reference_drop_beyond_ref_num_and_split_seen_unseen():
    examples = R.read_examples(WEBNLG)
    hyps = {c: f"Hyp {i}.\n\nignored" for i, c in enumerate(R.group_references(examples))}
    files, counts = R.reference_files("webnlg", examples, hyps, ref_num=6)
    assert counts == {"seen": 3, "unseen": 2, "all": 5}
    assert sorted(files) == sorted(f"{s}/{n}" for s in ("seen", "unseen", "all")
                                   for n in [f"reference{k}" for k in range(6)] + ["hyp.txt"])
    all0, all2, all5 = (files[f"all/reference{k}"].splitlines() for k in (0, 2, 5))
    assert all0[0] == "the aarhus is the airport of aarhus , denmark ."
    assert all2[0] == "aarhus , denmark is served by aarhus airport ."
    assert all5[0] == all0[0]                                   # 3 references: padded with the first one
    assert all5[1] == all0[1] == "alan bean is a us national who was a test pilot ."
    assert all5[2] == "ace wilder makes hip hop ."               # 6th of 7; the 7th is dropped
    assert not any("seventh" in text for text in files.values())
    assert files["all/hyp.txt"] == "hyp 0 .\nhyp 1 .\nhyp 2 .\nhyp 3 .\nhyp 4 .\n"
    assert files["seen/hyp.txt"] == "hyp 0 .\nhyp 1 .\nhyp 4 .\n"
    assert files["unseen/hyp.txt"] == "hyp 2 .\nhyp 3 .\n"
    assert files["unseen/reference1"].splitlines() == ["ace wilder plays hip hop music .",
                                                       "abraham a . ribicoff ' s spouse was casey ribicoff ."]
    for subset, n in counts.items():
        assert all(files[f"{subset}/reference{k}"].count("\n") == n for k in range(6))


def test_dart_files_sit_in_the_top_directory_and_ref_num_is_configurable():
    examples = R.read_examples(WEBNLG)
    hyps = {c: "x" for c in R.group_references(examples)}
    files, counts = R.reference_files("dart", examples, hyps, ref_num=2, tokenize=False, lower=False)
    assert sorted(files) == ["hyp.txt", "reference0", "reference1"] and counts == {"all": 5}
    assert files["reference1"].splitlines()[1] == "Alan Bean is a US national who was a test pilot."


def test_e2e_refs_blocks_and_hypotheses(tmp_path):
    examples = R.read_examples(E2E)
    hyps = {c: f"h{i} <|endoftext|>" for i, c in enumerate(R.group_references(examples))}
    files, counts = R.reference_files("e2e", examples, hyps)
    assert counts == {"all": 3}
    assert files["refs.txt"] == (
        "A coffee shop in the city centre area called Blue Spice .\nBlue Spice is a coffee shop in city centre .\n"
        "In the city centre there is Blue Spice , a coffee shop .\n\n"
        "Aromi is a pub serving Chinese food .\nChinese food is served at the Aromi pub .\n\n"
        "The Eagle has a customer rating of 5 out of 5 .\nRated 5 out of 5 , The Eagle is near the river .\n\n")
    assert files["hyp.txt"] == "h0\nh1\nh2\n"
    R.write_files(tmp_path, files)
    assert (tmp_path / "refs.txt").read_text() == files["refs.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_missing_or_extra_prediction_is_an_error():
    examples = R.read_examples(E2E)
    keys = list(R.group_references(examples))
    with pytest.raises(R.ReferenceError, match="1 of 3 inputs have references but no prediction"):
        R.reference_files("e2e", examples, {k: "x" for k in keys[:2]})
    with pytest.raises(R.ReferenceError, match="not in the data"):
        R.reference_files("e2e", examples, {**{k: "x" for k in keys}, "name : Nowhere": "y"})


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("row, message", [
    ('{"context": "a", "completion": "b"}', ":2: missing field 'context_ids'"),
    ('{"context": 3, "completion": "b", "context_ids": [1]}', ":2: field 'context' should be str"),
    ('{"context": "a", "completion": "b", "context_ids": []}', ":2: field 'context_ids' must be a non-empty"),
    ('not json', ":2: invalid JSON"),
    ('{"context": "a", "completion": "b", "context_ids": [5]}', ":2: field 'context_ids' differs from line 1"),
])
def test_bad_data_lines_name_file_line_and_field(tmp_path, row, message):
    path = _write_jsonl(tmp_path / "test.jsonl", [{"context": "a", "completion": "x", "context_ids": [1, 50256]}, row])
    with pytest.raises(R.ReferenceError, match=message):
        R.unique_inputs(R.read_examples(path), str(path))


def test_cli_rewrites_files_from_predictions_and_rejects_missing_ones(tmp_path, capsys):
    examples = R.read_examples(WEBNLG)
    contexts = list(R.group_references(examples))
    preds = _write_jsonl(tmp_path / "predictions.jsonl",
                         [{"context": c, "hypothesis": f"Sentence {i}."} for i, c in enumerate(contexts)])
    out = tmp_path / "out"
    assert R.main(["--data", str(WEBNLG), "--predictions", str(preds), "--out", str(out), "--dataset", "webnlg",
                   "--ref-num", "3"]) == 0
    assert (out / "all" / "hyp.txt").read_text().splitlines()[4] == "sentence 4 ."
    assert sorted(p.name for p in (out / "seen").iterdir()) == ["hyp.txt", "reference0", "reference1", "reference2"]

    partial = _write_jsonl(tmp_path / "partial.jsonl", [{"context": contexts[0], "hypothesis": "x"}])
    out2 = tmp_path / "out2"
    assert R.main(["--data", str(WEBNLG), "--predictions", str(partial), "--out", str(out2),
                   "--dataset", "webnlg"]) == 1
    assert "4 of 5 inputs have references but no prediction" in capsys.readouterr().err
    assert not out2.exists()  # nothing half-written

    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"context": contexts[0], "hypothesis": "x"}] * 2)
    assert R.main(["--data", str(WEBNLG), "--predictions", str(dup), "--out", str(out2), "--dataset", "webnlg"]) == 1
    assert ":2: a second prediction for the context of line 1" in capsys.readouterr().err


@pytest.mark.shared
def test_e2e_refs_file_equals_the_lora_pipeline_file(shared_dir):
    """Grouping the 4,693 lines of the real E2E test set gives, byte for byte, the refs file the LoRA pipeline
    writes (../shared/eval-checks/e2e/test-lora-refs.txt: 630 inputs)."""
    lines = (shared_dir / "data" / "e2e" / "test.txt").read_text(encoding="utf-8").splitlines()
    examples = [R.DataRecord(mr.strip(), text.strip(), (0,), None, n)
                for n, (mr, text) in enumerate((line.split("||") for line in lines), start=1)]
    refs = R.group_references(examples)
    assert len(examples) == 4693 and len(refs) == 630
    files = R.e2e_files(refs, {k: "" for k in refs})
    assert files["refs.txt"] == (shared_dir / "eval-checks" / "e2e" / "test-lora-refs.txt").read_text(encoding="utf-8")
