"""The dataset registry: every module of lora_nlg.data.datasets is found, in the stage's order, and misuse is named."""
from __future__ import annotations

import pytest

from lora_nlg.data.datasets import dataset_names, get_dataset
from lora_nlg.data.readers import DataError


def test_registry_finds_the_dataset_modules_in_order():
    assert dataset_names() == ("e2e", "webnlg", "dart")
    assert get_dataset("webnlg").raw_dirs == ("webnlg", "webnlg_challenge_2017")
    assert [get_dataset("e2e").output_name(s) for s in ("lora", "original", "cleaned")] == \
        ["e2e", "e2e_original", "e2e_cleaned"]


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'webnlg2020'; known: e2e, webnlg, dart"):
        get_dataset("webnlg2020")
