"""A training run as training writes it and decoding reads it: `checkpoints/<RUN>/` with the resolved
config.yaml and the adapters final/, best/, step-N/ (layout in `checkpoint`), and the model of a run: its base
(pretrained or seeded random) with the LoRA adapters of one of those checkpoints."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from lora_nlg.checkpoint import ADAPTER_FILE
from lora_nlg.checkpoint_io import read_lora_config
from lora_nlg.config import RunConfig, load_config, save_config
from lora_nlg.gpt2 import GPT2

CONFIG_FILE = "config.yaml"


class RunError(ValueError):
    """A run directory or checkpoint that cannot be used; the message says what to do."""


def config_path(run_dir: Path) -> Path:
    return run_dir / CONFIG_FILE


def write_config(cfg: RunConfig, run_dir: Path) -> None:
    save_config(cfg, config_path(run_dir))


def read_config(run_dir: Path, overrides: list[str] = (), run_name: str | None = None) -> RunConfig:
    """The run's resolved config with dotted overrides applied (decode.* keys change decoding only)."""
    path = config_path(run_dir)
    if not path.is_file():
        name = run_name or run_dir.name
        raise RunError(f"{path}: not found; is {run_dir} a training run directory (`make train RUN={name}`)?")
    return load_config(path, overrides)


def base_model_name(cfg: RunConfig) -> str:
    """What adapters record as their base: the pretrained path, or random:<preset> for model.random_init."""
    return f"random:{cfg.model.name}" if cfg.model.random_init else str(cfg.pretrained_path())


def build_run_model(cfg: RunConfig, lora) -> GPT2:
    """The run's base model with fresh LoRA adapters, built right after seeding with train.seed: the LoRA init is
    then identical on every rank, and a model.random_init base is a function of the seed, so decode rebuilds the
    very base a run was trained on by calling this again."""
    torch.manual_seed(cfg.train.seed)
    if cfg.model.random_init:
        return GPT2.from_preset(cfg.model.name, lora=lora)
    return GPT2.from_pretrained(cfg.pretrained_path(), lora=lora)


def adapter_path(run_dir: Path, checkpoint: str = "final") -> Path:
    """`run_dir/<checkpoint>/lora.safetensors` for checkpoint final, best or step-N; an error lists the others."""
    adapter = run_dir / checkpoint / ADAPTER_FILE
    if not adapter.is_file():
        found = sorted(p.name for p in run_dir.iterdir() if (p / ADAPTER_FILE).is_file()) if run_dir.is_dir() else []
        raise RunError(f"{adapter}: no adapter here (checkpoints of {run_dir} with one: {found or 'none'}; "
                       f"choose with --checkpoint final|best|step-N, or train first)")
    return adapter


def load_run_model(run_dir: Path, cfg: RunConfig, checkpoint: str = "final") -> GPT2:
    """Base model of the run's config plus the adapter of `run_dir/<checkpoint>/lora.safetensors`."""
    adapter = adapter_path(run_dir, checkpoint)
    lora_cfg = read_lora_config(adapter) or cfg.lora.to_lora_config()
    if cfg.model.random_init:
        print(f"note: {run_dir} was trained on a randomly initialised {cfg.model.name} (model.random_init); "
              f"its scores are meaningless", file=sys.stderr)
    model = build_run_model(cfg, lora_cfg)  # the same call training made, so a random base comes back identical
    model.load_lora(adapter)
    return model
