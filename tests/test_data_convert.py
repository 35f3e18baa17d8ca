"""Data stage on self-written fixtures: each raw format, the serialisation, encoding, output files and stats."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_nlg.data import bpe_records as encoding
from lora_nlg.data import stage as data
from lora_nlg.data.datasets import dart, e2e, webnlg
from lora_nlg.data.readers import Example
from lora_nlg.tokenizer import get_tokenizer

RAW = Path(__file__).resolve().parent / "fixtures" / "data" / "raw"


def contexts(examples):
    return [ex.context for ex in examples]


def test_e2e_txt_is_split_on_double_bar_and_stripped_like_the_reference():
    examples = e2e.read_e2e_txt(RAW / "e2e" / "valid.txt")
    assert examples == [
        Example("name : Zizzi | Type : restaurant | price : less than £ 20 | area : riverside",
                "Zizzi is a cheap restaurant by the riverside , under £ 20 ."),
        Example("name : Zizzi | Type : restaurant | price : less than £ 20 | area : riverside",
                "At the riverside , Zizzi isn 't expensive : less than £ 20 ."),
        Example("name : Wildwood | Type : coffee shop | customer rating : high | family friendly : no",
                "Wildwood is a highly rated coffee shop that is not family - friendly ."),
    ]


def test_e2e_txt_keeps_inner_spaces_and_accepts_crlf(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"name : A ||  text here \r\nname : B||t\r\n\r\n")
    # the reference strips the whole line only: the MR keeps its trailing space, the text its leading ones
    assert e2e.read_e2e_txt(path) == [Example("name : A ", "  text here"), Example("name : B", "t")]


def test_e2e_csv_mr_maps_to_the_lora_serialisation():
    original = e2e.read_e2e_csv(RAW / "e2e" / "devset.csv")
    lora = e2e.read_e2e_txt(RAW / "e2e" / "valid.txt")
    assert contexts(original) == contexts(lora)
    # references stay as published (untokenised), outer whitespace stripped
    assert [ex.completion for ex in original] == [
        "Zizzi is a cheap restaurant by the riverside, under £20.",
        "At the riverside, Zizzi isn't expensive: less than £20.",
        "Wildwood is a highly rated coffee shop that is not family-friendly.",
    ]


def test_cleaned_e2e_csv_ignores_extra_columns_and_uses_the_fixed_mr():
    examples = e2e.read_e2e_csv(RAW / "e2e" / "test-fixed.csv")
    assert contexts(examples) == ["name : The Punter | price : more than £ 30 | near : Rainbow Vegetarian Café",
                                  "name : Blue Spice | Type : coffee shop | area : city centre"]


@pytest.mark.parametrize("mr, expected", [
    ("name[The Eagle], eatType[coffee shop], priceRange[£20-25], customer rating[3 out of 5]",
     "name : The Eagle | Type : coffee shop | price : £ 20 - 25 | customer rating : 3 out of 5"),
    ("name[Café Brazil],familyFriendly[yes] , near[Crowne Plaza Hotel]",
     "name : Café Brazil | family friendly : yes | near : Crowne Plaza Hotel"),
    ("food[Fast food], area[city centre], priceRange[cheap]", "food : Fast food | area : city centre | price : cheap"),
])
def test_e2e_mr_mapping(mr, expected):
    assert e2e.e2e_mr_to_lora(mr) == expected


def test_webnlg_xml_files_are_ordered_by_triple_count_then_file_name():
    files = webnlg.webnlg_xml_files(RAW / "webnlg" / "xml" / "dev")
    assert [f.name for f in files] == ["1triple_allSolutions_Airport_dev_challenge.xml",
                                       "1triple_allSolutions_Food_dev_challenge.xml",
                                       "2triples_Astronaut_dev_challenge.xml"]


AARHUS = 'Aarhus_Airport : cityServed : "Aarhus, Denmark"'


def test_webnlg_xml_keeps_good_lexicalisations_in_order_with_seen_flag():
    examples = webnlg.read_webnlg_xml(webnlg.webnlg_xml_files(RAW / "webnlg" / "xml" / "train"))
    assert examples == [
        Example(AARHUS, "The Aarhus is the airport of Aarhus, Denmark.", True),
        Example(AARHUS, "Aarhus Airport serves the city of Aarhus & its region.", True),  # toFix lex dropped
        Example("Alan_Bean : nationality : United_States | Alan_Bean : mission : Apollo_12",
                "Alan Bean, a US national, flew on Apollo 12.", True),
    ]
    test = webnlg.read_webnlg_xml([RAW / "webnlg" / "xml" / "test" / "testdata_with_lex.xml"])
    assert [ex.seen for ex in test] == [True, True, False]  # Artist is one of the 5 unseen categories
    assert test[2].completion == "Aaron Turner, from Massachusetts, plays post-metal – «loud»."


def test_webnlg_xml_and_lora_json_give_the_same_examples():
    from_xml = webnlg.read_webnlg_xml(webnlg.webnlg_xml_files(RAW / "webnlg" / "xml" / "dev"))
    from_json = webnlg.read_webnlg_json(RAW / "webnlg" / "dev.json")
    assert len(from_xml) == 4 and from_xml == from_json


def test_dart_json_lowercases_relations_and_keeps_every_annotation():
    examples = dart.read_dart_json(RAW / "dart" / "dart-v1.1.1-full-dev.json")
    context = ("[TABLECONTEXT] : [title] : Jeff Daniels | [TABLECONTEXT] : title : Planet Sheen | "
               "Planet Sheen : role : Glonb")
    assert examples == [
        Example(context, "Jeff Daniels was in Planet Sheen in the role of Glonb."),
        Example(context, "Jeff Daniels voiced Glonb in Planet Sheen."),
        Example("Bananaman : firstaired : 1983-10-03", "Bananaman first aired on 3 October 1983."),
    ]
    assert dart.read_dart_xml(RAW / "dart" / "dart-v1.1.1-full-dev.xml") == examples


def test_dart_xml_keeps_an_empty_reference_like_the_reference_does(capsys):
    examples = dart.read_dart_xml(RAW / "dart" / "dart-v1.1.1-full-test.xml")
    assert [ex.completion for ex in examples][:2] == [
        "reserved (previously G721) has 1 channel and 8000 Hz clock rate", ""]
    assert "dart-v1.1.1-full-test.xml:10: entry eid='Id1': empty reference text" in capsys.readouterr().err


def test_encoding_appends_eot_and_prefixes_the_completion_with_a_space():
    enc = get_tokenizer()
    [record] = encoding.encode_examples([Example("name : Zizzi | Type : pub", "Zizzi is a pub .")], progress=False)
    assert list(record) == ["id", "context", "completion", "context_ids", "completion_ids"]
    assert record["context_ids"] == enc.encode_ordinary("name : Zizzi | Type : pub") + [50256]
    assert record["completion_ids"] == [1168, 6457, 72, 318, 257, 2240, 764, 50256]  # " Z izz i is a pub ." EOT
    assert enc.decode(record["completion_ids"][:-1]) == " Zizzi is a pub ."


def test_literal_endoftext_text_is_not_the_special_token():
    [record] = encoding.encode_examples([Example("a <|endoftext|> b", "x<|endoftext|>")], progress=False)
    assert record["context_ids"].count(50256) == 1 and record["context_ids"][-1] == 50256
    assert record["completion_ids"].count(50256) == 1
    assert get_tokenizer().decode(record["completion_ids"][:-1]) == " x<|endoftext|>"


def test_length_stats_are_numpy_percentiles():
    stats = encoding.length_stats(list(range(1, 101)))
    assert stats == {"min": 1, "mean": 50.5, "p50": 50.5, "p90": 90.1, "p95": 95.05, "p99": 99.01, "max": 100}


def test_cli_writes_every_split_of_every_dataset(tmp_path, capsys):
    assert data.main(["--raw-dir", str(RAW), "--out-dir", str(tmp_path), "--no-progress"]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == [f"{d}/{f}" for d in ("dart", "e2e", "webnlg")
                       for f in ("stats.json", "test.jsonl", "train.jsonl", "valid.jsonl")]
    records = encoding.load_jsonl(tmp_path / "webnlg" / "test.jsonl")
    assert [r["id"] for r in records] == [0, 1, 2]
    assert [r["seen"] for r in records] == [True, True, False]
    assert list(records[0]) == ["id", "context", "completion", "context_ids", "completion_ids", "seen"]
    stats = json.loads((tmp_path / "webnlg" / "stats.json").read_text())["splits"]
    assert (stats["test"]["pairs"], stats["test"]["unique_contexts"], stats["test"]["unseen_pairs"]) == (3, 2, 1)
    assert stats["valid"]["source"] == {"format": "xml", "files": [
        "webnlg/xml/dev/1triples/1triple_allSolutions_Airport_dev_challenge.xml",
        "webnlg/xml/dev/1triples/1triple_allSolutions_Food_dev_challenge.xml",
        "webnlg/xml/dev/2triples/2triples_Astronaut_dev_challenge.xml"]}
    e2e = json.loads((tmp_path / "e2e" / "stats.json").read_text())["splits"]["test"]
    e2e_records = encoding.load_jsonl(tmp_path / "e2e" / "test.jsonl")
    lengths = [len(r["context_ids"]) + len(r["completion_ids"]) for r in e2e_records]
    assert e2e["tokens"]["total"]["max"] == max(lengths) and e2e["tokens"]["total"]["min"] == min(lengths)
    assert "e2e/test: 3 pairs, 2 unique inputs" in capsys.readouterr().out


def test_cli_csv_source_goes_to_its_own_directory_and_stats_merge(tmp_path):
    args = ["--raw-dir", str(RAW), "--out-dir", str(tmp_path), "--no-progress", "--dataset", "e2e"]
    assert data.main(args + ["--source", "original", "--splits", "dev"]) == 0
    assert data.main(args + ["--source", "cleaned", "--splits", "test"]) == 0
    assert data.main(args + ["--splits", "valid"]) == 0
    assert data.main(args + ["--splits", "test"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e2e", "e2e_cleaned", "e2e_original"]
    assert encoding.load_jsonl(tmp_path / "e2e_original" / "valid.jsonl")[1]["completion"] == \
        "At the riverside, Zizzi isn't expensive: less than £20."
    stats = json.loads((tmp_path / "e2e" / "stats.json").read_text())
    assert list(stats["splits"]) == ["valid", "test"]  # the second run kept the first run's split
    assert stats["splits"]["valid"]["pairs"] == 3


def test_webnlg_json_source_is_used_when_asked(tmp_path):
    assert data.main(["--raw-dir", str(RAW), "--out-dir", str(tmp_path), "--no-progress", "--dataset", "webnlg",
                      "--source", "json", "--splits", "valid"]) == 0
    stats = json.loads((tmp_path / "webnlg" / "stats.json").read_text())["splits"]["valid"]
    assert stats["source"] == {"format": "json", "files": ["webnlg/dev.json"]} and stats["pairs"] == 4
