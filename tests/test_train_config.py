"""Config system and the paper presets (issue 4)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_nlg.config import ConfigError, RunConfig, load_config, save_config, valid_keys
from lora_nlg.model.lora_config import LoRAConfig
from lora_nlg.train.loop import main
from lora_nlg.train.optim import derive_max_steps

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONTRACT_KEYS = ["train.lr", "train.batch_size", "train.grad_acc", "train.max_steps", "train.epochs",
                 "train.warmup_steps", "train.log_interval", "train.eval_interval", "train.save_interval",
                 "train.seed", "train.resume", "lora.r", "lora.alpha", "lora.dropout"]


def test_contract_override_keys_exist():
    assert set(CONTRACT_KEYS) <= set(valid_keys())


@pytest.mark.parametrize("name,ls,wd,dropout,lp", [("e2e", 0.1, 0.01, 0.1, 0.9), ("webnlg", 0.1, 0.01, 0.1, 0.8),
                                                   ("dart", 0.0, 0.0, 0.0, 0.8)])
def test_paper_presets_match_table_11(name, ls, wd, dropout, lp):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    t, lo = cfg.train, cfg.lora
    assert cfg.model.name == "gpt2-medium" and cfg.data.dataset == name and cfg.data.max_seq_len == 512
    assert (t.lr, t.batch_size, t.grad_acc, t.epochs, t.warmup_steps, t.schedule) == (2e-4, 8, 1, 5, 500, "linear")
    assert (t.label_smoothing, t.weight_decay, lo.dropout) == (ls, wd, dropout)
    assert (lo.r, lo.alpha, lo.targets) == (4, 32.0, ("q", "v"))
    assert (t.betas, t.eps, t.clip, t.seed, t.optimizer, t.max_steps) == ([0.9, 0.999], 1e-6, 0.0, 110,
                                                                         "adamw_reference", 0)
    d = cfg.decode
    assert (d.beam, d.length_penalty, d.no_repeat_ngram_size, d.max_new_tokens, d.eos_ids) == (10, lp, 4, 64,
                                                                                               (50256, 628))


def test_decode_defaults_are_the_contract():
    d = RunConfig().decode
    assert (d.beam, d.length_penalty, d.no_repeat_ngram_size, d.repetition_penalty, d.min_length,
            d.max_new_tokens, d.eos_ids, d.batch_size, d.ref_num) == (10, 0.8, 4, 1.0, 0, 64, (50256, 628), 16, 6)


def test_demo_preset_loads():
    cfg = load_config(CONFIGS / "demo.yaml")
    assert cfg.train.max_steps > 0 and cfg.model.name == "small" and cfg.model.pretrained == "demo/base"


def test_max_steps_from_epochs_is_the_references_arithmetic():
    # docs/reference-pipeline.md, "Optimizer and schedule": E2E 5 x ceil(42061/8) = 26,290; WebNLG ends at
    # 11,270 (microsoft/LoRA issue #94)
    assert derive_max_steps(42061, 8, 1, 1, 5) == 26290
    assert derive_max_steps(18025, 8, 1, 1, 5) == 11270
    assert derive_max_steps(42061, 8, 1, 2, 5) == 5 * 2629       # accumulation halves the updates
    assert derive_max_steps(42061, 4, 2, 1, 5) == 26290          # same global batch on 2 ranks


def test_overrides_typed_and_applied():
    cfg = load_config(CONFIGS / "e2e.yaml", ["train.lr=1e-3", "lora.r=8", "train.resume=true", "lora.targets=q,k,v",
                                             "train.betas=[0.9, 0.98]", "train.max_steps=1e3", "model.pretrained="])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.lora.r == 8 and cfg.train.resume is True and cfg.lora.targets == ("q", "k", "v")
    assert cfg.train.betas == [0.9, 0.98] and cfg.train.max_steps == 1000 and cfg.model.pretrained == ""
    assert isinstance(cfg.lora, LoRAConfig) and cfg.lora.scale == 32 / 8  # the section is the model's LoRAConfig


def test_unknown_key_lists_every_valid_key():
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "e2e.yaml", ["train.lrate=1e-3"])
    msg = str(e.value)
    assert "train.lrate" in msg and all(k in msg for k in valid_keys())


@pytest.mark.parametrize("override,fragment", [
    ("train.lr=abc", "train.lr"), ("train.batch_size=0", "train.batch_size"), ("train.batch_size=2.5", "train.batch_size"),
    ("train.precision=fp8", "train.precision"), ("lora.dropout=1.5", "lora.dropout"), ("train.resume=maybe", "train.resume"),
    ("lora.targets=q,z", "lora.targets"), ("train", "key=value"), ("decode.eos_ids=[99999]", "decode.eos_ids")])
def test_bad_values_rejected_with_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(CONFIGS / "e2e.yaml", [override])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1.0e-3\n  warmup: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.warmup"):
        load_config(bad)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(CONFIGS / "webnlg.yaml", ["train.lr=3e-4", "lora.targets=[q, v, mlp.c_fc]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_cli_unknown_key_exits_nonzero_with_key_list(capsys):
    assert main([str(CONFIGS / "e2e.yaml"), "train.lrr=1"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'train.lrr'" in err and "train.lr" in err and "lora.dropout" in err


def test_missing_pretrained_says_how_to_get_it(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "e2e.yaml", [f"model.pretrained={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match=f"not found at {re.escape(str(tmp_path / 'nope'))}/"):
        cfg.pretrained_path()
    # Without model.pretrained the weights are looked up in checkpoints/pretrained/<name> of the working directory.
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CONFIGS / "e2e.yaml", ["model.name=gpt2-xl"])
    with pytest.raises(ConfigError, match=r"not found at checkpoints/pretrained/gpt2-xl/: run `make pretrained "
                                          r"MODEL=gpt2-xl`"):
        cfg.pretrained_path()
    (tmp_path / "checkpoints" / "pretrained" / "gpt2-xl").mkdir(parents=True)
    assert cfg.pretrained_path() == Path("checkpoints/pretrained/gpt2-xl")
