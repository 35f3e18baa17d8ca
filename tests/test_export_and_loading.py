"""PEFT / merged exports through the real libraries, and strict checkpoint loading."""
from __future__ import annotations

import os

import pytest
import torch

from lora_nlg import GPT2, LoRAConfig
from lora_nlg.model.weights import CheckpointError

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

IDS = torch.randint(0, 50257, (2, 10), generator=torch.Generator().manual_seed(4))


@pytest.fixture()
def trained_lora(tiny_checkpoint):
    def build(**kw):
        torch.manual_seed(0)
        model = GPT2.from_pretrained(tiny_checkpoint, lora=LoRAConfig(**{"r": 4, "alpha": 32, **kw})).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".lora_B." in name:
                    p.normal_(std=0.05)
        return model
    return build


def hf_from(path):
    return transformers.GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager").eval()


@pytest.mark.parametrize("kw", [{}, {"targets": ("q", "k", "v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")},
                                {"use_rslora": True, "r": 2}])
def test_peft_adapter_loads_in_peft_with_identical_logits(trained_lora, tiny_checkpoint, tmp_path, kw):
    model = trained_lora(**kw)
    model.save_peft_adapter(tmp_path / "adapter", base_model_name_or_path=str(tiny_checkpoint))
    peft_model = peft.PeftModel.from_pretrained(hf_from(tiny_checkpoint), tmp_path / "adapter").eval()
    with torch.no_grad():
        ours = model(IDS)
        torch.testing.assert_close(peft_model(IDS).logits, ours, atol=1e-4, rtol=0)
        back = GPT2.from_peft_adapter(tiny_checkpoint, tmp_path / "adapter").eval()
        torch.testing.assert_close(back(IDS), ours, atol=1e-5, rtol=0)
    assert {n for n, p in back.named_parameters() if p.requires_grad} == set(back.lora_state_dict())


def test_peft_fused_adapter_layout(trained_lora, tmp_path):
    import json

    from safetensors.torch import load_file
    model = trained_lora()
    model.save_peft_adapter(tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["fan_in_fan_out"], cfg["target_modules"]) == (8, 64.0, True, ["attn.c_attn"])
    t = load_file(tmp_path / "adapter_model.safetensors")
    a, b = t["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"], t["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
    conv = model.transformer.h[0].attn.c_attn
    assert a.shape == (8, 64) and b.shape == (192, 8)
    assert torch.equal(a[:4], conv.lora_A["q"]) and torch.equal(a[4:], conv.lora_A["v"])
    assert torch.equal(b[:64, :4], conv.lora_B["q"]) and torch.equal(b[128:, 4:], conv.lora_B["v"])
    assert torch.count_nonzero(b[64:128]) == 0 and torch.count_nonzero(b[:64, 4:]) == 0


def test_merged_export_loads_in_transformers(trained_lora, tmp_path):
    model = trained_lora(targets=("q", "v", "mlp.c_fc"))
    model.save_merged(tmp_path)
    assert not model.lora_merged  # export does not touch the live model
    with torch.no_grad():
        torch.testing.assert_close(hf_from(tmp_path)(IDS).logits, model(IDS), atol=1e-4, rtol=0)
        torch.testing.assert_close(GPT2.from_pretrained(tmp_path).eval()(IDS), model(IDS), atol=1e-5, rtol=0)


def test_save_pretrained_refuses_merged_weights(trained_lora, tmp_path):
    model = trained_lora()
    model.merge_lora()
    with pytest.raises(CheckpointError, match="unmerge_lora"):
        model.save_pretrained(tmp_path)


# ---------------------------------------------------------------------------- strict loading
@pytest.fixture()
def tiny_state(tiny_checkpoint):
    from safetensors.torch import load_file
    return load_file(tiny_checkpoint / "model.safetensors")


def write_bin(tmp_path, state):
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    return path


def test_missing_tensor_is_named(tmp_path, tiny_state):
    tiny_state.pop("transformer.h.1.mlp.c_fc.bias")
    with pytest.raises(CheckpointError, match=r"missing tensor transformer\.h\.1\.mlp\.c_fc\.bias \(256,\)"):
        GPT2.from_pretrained(write_bin(tmp_path, tiny_state))


def test_unexpected_tensor_is_named(tmp_path, tiny_state):
    tiny_state["transformer.h.0.attn.q_proj.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointError, match=r"unexpected tensor transformer\.h\.0\.attn\.q_proj\.weight"):
        GPT2.from_pretrained(write_bin(tmp_path, tiny_state))


def test_wrong_shape_is_named(tmp_path, tiny_state, tiny_checkpoint):
    import shutil
    tiny_state["transformer.h.0.attn.c_attn.weight"] = tiny_state["transformer.h.0.attn.c_attn.weight"].T.contiguous()
    (tmp_path / "ck").mkdir()
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "ck" / "config.json")
    write_bin(tmp_path / "ck", tiny_state)
    with pytest.raises(CheckpointError, match=r"transformer\.h\.0\.attn\.c_attn\.weight has shape \(192, 64\), expected \(64, 192\)"):
        GPT2.from_pretrained(tmp_path / "ck")


def test_untied_head_is_refused(tmp_path, tiny_state):
    tiny_state["lm_head.weight"] = tiny_state["transformer.wte.weight"] + 1
    with pytest.raises(CheckpointError, match="tied"):
        GPT2.from_pretrained(write_bin(tmp_path, tiny_state))


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_running_pickle_is_refused(tmp_path, tiny_state):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    tiny_state["transformer.extra"] = exploit
    path = tmp_path / "evil.bin"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError, match="refused: the file holds pickled Python objects"):
        GPT2.from_pretrained(path)
    assert not marker.exists()


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        GPT2.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        GPT2.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        GPT2.from_pretrained(tmp_path)
