"""Fixtures shared by every stage's tests."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` (real data and official metric figures); tests that need it skip on a fresh clone."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"{SHARED_DIR} not found: real-data checks need ../shared beside the repo")
    return SHARED_DIR


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random 'tiny' GPT-2 written as a Hugging Face checkpoint dir (config.json + model.safetensors)."""
    import torch

    from lora_nlg import GPT2

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2.from_preset("tiny").save_pretrained(out)
    return out
