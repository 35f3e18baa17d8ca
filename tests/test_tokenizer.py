from __future__ import annotations

import pytest

from lora_nlg import get_tokenizer
from lora_nlg.tokenizer import _vocab_file


def test_known_ids():
    tok = get_tokenizer()
    assert tok.encode("\n\n") == [628]
    assert tok.encode(" A coffee shop") == [317, 6891, 6128]
    assert tok.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert tok.n_vocab == 50257


def test_unicode_round_trip():
    tok = get_tokenizer()
    text = "Café Olé – “naïve” 日本語 🍕 name : Blue Spice | Type : coffee shop\n\n"
    assert tok.decode(tok.encode(text)) == text


def test_matches_an_independent_bpe_implementation(tmp_path):
    import shutil
    transformers = pytest.importorskip("transformers")
    shutil.copy(_vocab_file("encoder.json"), tmp_path / "vocab.json")
    shutil.copy(_vocab_file("vocab.bpe"), tmp_path / "merges.txt")
    ref = transformers.GPT2Tokenizer.from_pretrained(tmp_path)
    tok = get_tokenizer()
    for text in ["name : The Eagle | Type : pub", " It's 5 o'clock,   they've   said!", "Aarhus_Airport : runwayLength : 2776.0"]:
        assert tok.encode(text) == ref.encode(text)
