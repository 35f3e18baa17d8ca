"""Settings that cannot work are refused before anything is written (issue 16, class 3): one `error:` line that
names the key and the value, exit 1, no run directory. The checks live where the settings are declared (issue 15):
`LoRAConfig`, `BeamSettings`, the config sections."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lora_nlg.config import ConfigError, load_config
from lora_nlg.decode.beam_settings import BeamSettings
from lora_nlg.model.lora_config import MAX_SCALE, LoRAConfig
from lora_nlg.train.loop import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_tiny_data(data_dir: Path) -> Path:
    """Two splits of three token-id examples each, in the data stage's jsonl format."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid"):
        rows = [{"context_ids": [10 + i, 11, 50256], "completion_ids": [20 + i, 21, 50256]} for i in range(3)]
        (data_dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data_dir


def tiny_run(tmp_path: Path, *extra: str) -> list[str]:
    return ["model.name=tiny", "model.random_init=true", f"data.dir={write_tiny_data(tmp_path / 'data')}",
            f"train.out_dir={tmp_path / 'runs'}", "train.run=r", "train.max_steps=1", "train.device=cpu", *extra]


def refused(capsys, tmp_path: Path, argv: list[str], *fragments: str) -> str:
    """Run the training CLI; assert exit 1, one `error:` line containing `fragments`, and no run directory."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "runs").exists()
    return err


@pytest.mark.parametrize("override,key,shown", [
    ("train.lr=inf", "train.lr", "inf"), ("train.lr=.nan", "train.lr", "nan"), ("lora.alpha=inf", "lora.alpha", "inf"),
    ("lora.alpha=-.inf", "lora.alpha", "-inf"), ("lora.alpha=nan", "lora.alpha", "nan"),
    ("lora.dropout=nan", "lora.dropout", "nan"), ("train.betas=[0.9, .inf]", "train.betas[1]", "inf"),
    ("decode.length_penalty=nan", "decode.length_penalty", "nan"), ("train.eps=1e400", "train.eps", "1e400"),
    ("train.batch_size=.inf", "train.batch_size", "inf"), ("train.seed=nan", "train.seed", "nan"),
    ("train.max_steps=1e30", "train.max_steps", "1e30")])
def test_non_finite_numbers_are_refused_anywhere(override, key, shown, tmp_path, capsys):
    err = refused(capsys, tmp_path, [str(CONFIGS / "demo.yaml"), *tiny_run(tmp_path, override)], key, shown)
    assert f"bad value for {key}" in err and "override: " in err


def test_alpha_so_large_that_the_adapter_cannot_train_is_refused(tmp_path, capsys):
    err = refused(capsys, tmp_path, [str(CONFIGS / "demo.yaml"), *tiny_run(tmp_path, "lora.r=4", "lora.alpha=1e30")],
                  "lora.alpha", "1e+30", "scale")
    assert "alpha/r = 2.5e+29" in err  # the scale it would give


def test_scale_bound_follows_the_rank_and_rslora():
    assert LoRAConfig(r=4, alpha=4 * MAX_SCALE).scale == MAX_SCALE              # the bound itself is allowed
    with pytest.raises(ValueError, match="lora.alpha"):
        LoRAConfig(r=4, alpha=4 * MAX_SCALE * 1.01)
    assert LoRAConfig(r=16, alpha=4 * MAX_SCALE, use_rslora=True).scale == MAX_SCALE  # alpha/sqrt(r)
    with pytest.raises(ValueError, match="sqrt"):
        LoRAConfig(r=16, alpha=5 * MAX_SCALE, use_rslora=True)
    for alpha in (math.inf, math.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match="lora.alpha"):
            LoRAConfig(alpha=alpha)


def test_rank_above_the_model_width_is_refused_before_the_run_dir(tmp_path, capsys):
    refused(capsys, tmp_path, [str(CONFIGS / "demo.yaml"), *tiny_run(tmp_path, "lora.r=65")],
            "lora.r", "65", "n_embd=64")


def test_rank_up_to_the_model_width_is_allowed():
    LoRAConfig(r=64, alpha=64).check_width(64)
    with pytest.raises(ValueError, match=r"lora\.r: 65 \(above the model width n_embd=64\)"):
        LoRAConfig(r=65, alpha=65).check_width(64)


@pytest.mark.parametrize("targets", ["q,v,q", "[mlp.c_fc, v, mlp.c_fc]"])
def test_duplicated_lora_targets_are_refused(targets, tmp_path, capsys):
    refused(capsys, tmp_path, [str(CONFIGS / "demo.yaml"), *tiny_run(tmp_path, f"lora.targets={targets}")],
            "lora.targets", "listed twice")
    with pytest.raises(ValueError, match="'q' listed twice"):
        LoRAConfig(targets=("q", "v", "q"))


def test_yaml_with_a_section_twice_names_the_file_line_and_key(tmp_path, capsys):
    cfg = tmp_path / "twice.yaml"
    cfg.write_text("lora:\n  r: 8\ntrain:\n  lr: 1.0e-3\nlora:\n  alpha: 16\n")
    refused(capsys, tmp_path, [str(cfg), *tiny_run(tmp_path)], str(cfg), "line 5", "'lora' appears twice",
            "first on line 1")


def test_yaml_with_a_key_twice_in_a_section_is_refused(tmp_path):
    cfg = tmp_path / "twice.yaml"
    cfg.write_text("train:\n  lr: 1.0e-3\n  batch_size: 4\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: line 4: .*'lr' appears twice \(first on line 2\)"):
        load_config(cfg)
    cfg.write_text("train: {lr: 1.0e-3, lr: 2.0e-3}\n")
    with pytest.raises(ConfigError, match="'lr' appears twice"):
        load_config(cfg)


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("lora:\n  alpha: .inf\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: bad value for lora\.alpha: inf"):
        load_config(cfg)
    cfg.write_text("lora:\n  targets: [q, q]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: bad value for lora\.targets: \['q', 'q'\]"):
        load_config(cfg)


def test_checks_live_with_the_runtime_objects():
    """The config's sections are the runtime objects: its lora section is the model's LoRAConfig and its decode
    section builds the search's BeamSettings, with the same defaults."""
    cfg = load_config(None)
    assert type(cfg.lora) is LoRAConfig and cfg.lora == LoRAConfig()
    assert cfg.decode.beam_settings() == BeamSettings()
    with pytest.raises(ValueError, match="decode.beam"):
        BeamSettings(beam=0)
    with pytest.raises(ConfigError, match=r"override: bad value for decode\.beam: 0"):
        load_config(None, ["decode.beam=0"])


@pytest.mark.slow  # a Python process that imports torch: ~7 s here
def test_cli_refuses_a_duplicated_section_without_a_traceback(tmp_path):
    cfg = tmp_path / "twice.yaml"
    cfg.write_text("train:\n  lr: 1.0e-3\ntrain:\n  lr: 2.0e-3\n")
    proc = subprocess.run([sys.executable, "-m", "lora_nlg.train", str(cfg), f"train.out_dir={tmp_path / 'runs'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {cfg}: line 3: invalid YAML (key 'train' appears twice (first on line 1))"
    assert not (tmp_path / "runs").exists()


def test_the_config_and_the_settings_it_builds_do_not_import_torch():
    code = ("import sys, lora_nlg.config; from lora_nlg import LoRAConfig, GPT2Config; "
            "from lora_nlg.decode import BeamSettings; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
