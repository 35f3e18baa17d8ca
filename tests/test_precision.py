"""train.precision / decode --dtype `auto` and the warning for emulated bf16 (issue 17), with the machine's
capability monkeypatched so both kinds of CPU are tested on either."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lora_nlg import precision
from lora_nlg.train.loop import main

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def play(monkeypatch, flags: set[str], capability: str) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(precision, "cpu_capability", lambda: capability)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


def test_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    play(monkeypatch, {"avx2", "amx_bf16", "amx_tile"}, "AVX512")
    assert precision.resolve("auto", "cpu", "x") == ("bf16", None)
    play(monkeypatch, {"avx512f", "avx512_bf16"}, "AVX512")
    assert precision.resolve("auto", "cpu", "x") == ("bf16", None)
    play(monkeypatch, {"avx2", "fma"}, "AVX2")  # the AVX2-only machines
    assert precision.resolve("auto", "cpu", "x") == ("fp32", None)
    play(monkeypatch, {"avx512_bf16"}, "AVX2")  # ATEN_CPU_CAPABILITY=avx2 holds ATen off its bf16 kernels
    assert precision.resolve("auto", "cpu", "x") == ("fp32", None)
    play(monkeypatch, {"avx512_bf16"}, "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # and this holds oneDNN's matmuls off them
    assert precision.resolve("auto", "cpu", "x") == ("fp32", None)


def test_explicit_bf16_on_an_emulating_cpu_warns_and_says_what_to_use(monkeypatch):
    play(monkeypatch, {"avx2"}, "AVX2")
    chosen, warning = precision.resolve("bf16", "cpu", "train.precision")
    assert chosen == "bf16" and "train.precision=bf16" in warning and "emulates" in warning
    assert "use fp32" in warning and "AVX2" in warning
    assert precision.resolve("fp32", "cpu", "x") == ("fp32", None)
    play(monkeypatch, {"amx_bf16"}, "AVX512")
    assert precision.resolve("bf16", "cpu", "x") == ("bf16", None)
    with pytest.raises(ValueError, match="'fp8' not fp32|bf16|fp16|auto"):
        precision.resolve("fp8", "cpu", "x")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_training_records_the_resolved_precision(monkeypatch, tmp_path_factory, data_dir, write_learnable_checkpoint,
                                                 capsys, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    ckpt = write_learnable_checkpoint(tmp_path_factory.mktemp("tiny"), "tiny")
    out = tmp_path_factory.mktemp("runs")
    args = [str(REPO / "configs" / "e2e.yaml"), f"model.pretrained={ckpt}", f"data.dir={data_dir}",
            f"train.out_dir={out}", "train.run=r", "train.batch_size=4", "train.max_steps=1", "train.warmup_steps=0",
            "train.eval_at_start=false", "train.eval_interval=0", "train.precision=auto", "train.device=cpu"]
    assert main(args) == 0
    assert yaml.safe_load((out / "r" / "config.yaml").read_text())["train"]["precision"] == expected
    assert f"train.precision=auto -> {expected} on cpu" in capsys.readouterr().err
    # resuming with auto on the same machine resolves the same way: nothing differs from config.yaml
    assert main(args + ["train.resume=true", "train.max_steps=2"]) == 0
