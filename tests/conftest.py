"""Fixtures shared by every stage's tests: ../shared, small GPT-2 checkpoints, generated E2E-like datasets.

The generated data are in the data stage's jsonl format, made on demand (no large files in the repo): each line is
{"id", "context", "completion", "context_ids", "completion_ids"} with context_ids = BPE(context) + [50256] and
completion_ids = BPE(" " + completion) + [50256], as `make data` writes them. The completion is a deterministic
function of the attributes, so a model can learn it; optional attributes vary the lengths.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
EVAL_DIR = REPO_ROOT / "eval"
EOT = 50256

NAMES = ["Blue Spice", "The Eagle", "Aromi", "Zizzi", "The Punter", "Cotto", "Strada", "Alimentum"]
TYPES = ["coffee shop", "pub", "restaurant"]
FOODS = ["Italian", "French", "Chinese", "English", "Japanese", "Indian"]
AREAS = ["city centre", "riverside"]
NEAR = ["Burger King", "Crowne Plaza Hotel", "The Sorrento", "Café Sicilia"]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` (real data and official metric figures); tests that need it skip on a fresh clone."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"{SHARED_DIR} not found: real-data checks need ../shared beside the repo")
    return SHARED_DIR


@pytest.fixture
def one_thread():
    """One torch thread for the test: on 2 shared cores spinning OpenMP threads only slow the tests down."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def eval_modules() -> list[str]:
    """Every module under eval/ as its scripts import them (eval/ first on sys.path): the entry points and each
    package with its modules, found from the files so that a module added later is checked too."""
    names = [p.stem for p in EVAL_DIR.glob("*.py")]
    for package in (p.parent for p in EVAL_DIR.glob("*/__init__.py")):
        names += [package.name] + [f"{package.name}.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"]
    return sorted(names)


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random 'tiny' GPT-2 written as a Hugging Face checkpoint dir (config.json + model.safetensors)."""
    import torch

    from lora_nlg import GPT2

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2.from_preset("tiny").save_pretrained(out)
    return out


def _decoding_tiny_model(seed: int = 0):
    """A random tiny GPT-2 with random (non-zero) LoRA adapters that writes hypotheses of several tokens: a random
    tiny GPT-2 predicts the token it was just given, and every prompt ends in the 50256 separator, which would end
    every hypothesis at once, so the end tokens' embeddings are shrunk."""
    import torch

    from lora_nlg import GPT2, LoRAConfig

    torch.manual_seed(seed)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=4, alpha=32))
    with torch.no_grad():
        model.transformer.wte.weight[[EOT, 628]] *= 0.05
        for p in model.lora_parameters():
            p.normal_(0, 0.2)
    return model


@pytest.fixture(scope="session")
def decoding_tiny_model() -> Callable[..., object]:
    """`decoding_tiny_model(seed=0)`: see `_decoding_tiny_model`; each call builds a fresh model."""
    return _decoding_tiny_model


def _write_learnable_checkpoint(out: Path, preset: str) -> Path:
    import torch

    from lora_nlg import GPT2

    torch.manual_seed(0)
    model = GPT2.from_preset(preset)
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(10)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def write_learnable_checkpoint() -> Callable[[Path, str], Path]:
    """`write(out, preset)`: a random GPT-2 of `preset` whose final LayerNorm gain is 10, as a HF checkpoint dir.
    With gain 1 and 0.02-scale embeddings the logits cannot leave ~N(0, 0.16), so no adapter could lower the loss
    much below ln(50257)."""
    return _write_learnable_checkpoint


# ---------------------------------------------------------------------------------------------- data
def _example(rng: random.Random) -> tuple[str, str]:
    name, kind, food, area = rng.choice(NAMES), rng.choice(TYPES), rng.choice(FOODS), rng.choice(AREAS)
    context = f"name : {name} | Type : {kind} | food : {food} | area : {area}"
    completion = f"{name} is a {food} {kind} in the {area}"
    if rng.random() < 0.5:
        near = rng.choice(NEAR)
        context += f" | near : {near}"
        completion += f" near {near}"
    if rng.random() < 0.3:
        context += " | familyFriendly : yes"
        completion += " . It is family - friendly"
    return context, completion + " ."


def _write_split(path: Path, n: int, seed: int) -> Path:
    from lora_nlg import get_tokenizer

    enc = get_tokenizer()
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            context, completion = _example(rng)
            f.write(json.dumps({"id": i, "context": context, "completion": completion,
                                "context_ids": enc.encode(context) + [EOT],
                                "completion_ids": enc.encode(" " + completion) + [EOT]}) + "\n")
    return path


def _write_dataset(data_dir: Path, n_train: int = 48, n_valid: int = 16,
                   splits: Sequence[str] = ("train", "valid")) -> Path:
    for split, n, seed in zip(splits, (n_train, n_valid), (0, 1)):
        _write_split(Path(data_dir) / f"{split}.jsonl", n, seed)
    return Path(data_dir)


@pytest.fixture(scope="session")
def write_dataset() -> Callable[..., Path]:
    """`write(data_dir, n_train=48, n_valid=16, splits=("train", "valid"))`: an E2E-like dataset in `data_dir`
    (train seeded 0, valid seeded 1, so the same sizes give the same files)."""
    return _write_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """48 training and 16 validation examples, `{train,valid}.jsonl`."""
    return _write_dataset(tmp_path_factory.mktemp("train-data"))
