"""LoRA math (litgpt-style): B=0 => base output, merge == unmerged, low-rank == dense delta, freezing."""
from __future__ import annotations

import math

import pytest
import torch

from lora_nlg import GPT2, LoRAConfig
from lora_nlg.model.lora import LoRAConv1D


def lora_model(seed=0, **kw) -> GPT2:
    torch.manual_seed(seed)
    return GPT2.from_preset("tiny", lora=LoRAConfig(**{"r": 4, "alpha": 32, **kw}))


def randomise_b(model: GPT2) -> None:
    with torch.no_grad():
        for p_name, p in model.named_parameters():
            if ".lora_B." in p_name:
                p.normal_(std=0.05)


IDS = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(3))


def base_logits(model: GPT2) -> torch.Tensor:
    base = GPT2(model.config)
    base.load_state_dict(model.base_state_dict(), strict=True)
    with torch.no_grad():
        return base.eval()(IDS)


def test_zero_b_gives_exactly_the_base_output():
    model = lora_model(dropout=0.5).train()  # LoRA dropout is on the adapter input only
    with torch.no_grad():
        assert torch.equal(model(IDS), base_logits(model))


def test_defaults_are_the_products():
    cfg = LoRAConfig()
    assert (cfg.r, cfg.alpha, cfg.dropout, cfg.targets, cfg.scale) == (4, 128, 0.0, ("q", "v"), 32.0)
    assert LoRAConfig(r=4, alpha=32).scale == 8.0
    assert LoRAConfig(r=16, alpha=32, use_rslora=True).scale == 8.0


def test_adapter_shapes_init_and_trainable_params():
    model = lora_model()
    conv = model.transformer.h[0].attn.c_attn
    assert isinstance(conv, LoRAConv1D) and conv.slices == {"q": (0, 64), "v": (128, 192)}
    assert conv.lora_A["q"].shape == (4, 64) and conv.lora_B["v"].shape == (64, 4)
    bound = 1 / math.sqrt(64)
    assert conv.lora_A["q"].abs().max() <= bound and conv.lora_A["q"].std() > bound / 4
    assert torch.count_nonzero(conv.lora_B["q"]) == 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(model.lora_state_dict()) and len(trainable) == 2 * 2 * 2  # layers x slices x (A,B)
    assert model.num_parameters(trainable_only=True) == 2 * 2 * (4 * 64 + 64 * 4)
    gaussian = lora_model(init="gaussian").transformer.h[0].attn.c_attn
    assert 0.015 < gaussian.lora_B["v"].std() < 0.025 and 0.015 < gaussian.lora_A["q"].std() < 0.025


def test_low_rank_path_equals_dense_delta_formula():
    model = lora_model()
    randomise_b(model)
    conv = model.transformer.h[1].attn.c_attn
    x = torch.randn(3, 5, 64)
    dense = conv.weight.detach().clone()
    for name, (s, e) in conv.slices.items():
        dense[:, s:e] += 8.0 * (conv.lora_B[name] @ conv.lora_A[name]).T.detach()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), x @ dense + conv.bias, atol=1e-6, rtol=0)
        assert not torch.allclose(conv(x), x @ conv.weight + conv.bias, atol=1e-3)  # the adapter matters


@pytest.mark.parametrize("targets", [("q", "v"), ("q", "k", "v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"), ("c_attn",)])
def test_merge_equals_unmerged_and_is_explicit(targets):
    model = lora_model(targets=targets).eval()
    randomise_b(model)
    before = {k: v.clone() for k, v in model.base_state_dict().items()}
    with torch.no_grad():
        unmerged = model(IDS)
        model.train(); model.eval()  # mode switches never merge
        assert not model.lora_merged and all(torch.equal(before[k], v) for k, v in model.base_state_dict().items())
        model.merge_lora()
        once = {k: v.clone() for k, v in model.base_state_dict().items()}
        model.merge_lora()  # idempotent
        assert all(torch.equal(once[k], v) for k, v in model.base_state_dict().items())
        torch.testing.assert_close(model(IDS), unmerged, atol=1e-5, rtol=0)
        model.unmerge_lora()
        model.unmerge_lora()
        for k, v in model.base_state_dict().items():
            torch.testing.assert_close(v, before[k], atol=1e-6, rtol=0)
        torch.testing.assert_close(model(IDS), unmerged, atol=1e-5, rtol=0)


def test_every_adapter_gets_a_gradient():
    model = lora_model(init="gaussian", targets=("q", "k", "v", "mlp.c_fc"))
    loss = model(IDS).logsumexp(-1).mean()
    loss.backward()
    # tiny has 2 layers, each with A and B for q, k, v (fused c_attn) and for mlp.c_fc.
    assert sum(".lora_" in name for name, _ in model.named_parameters()) == 2 * (3 + 1) * 2
    for name, p in model.named_parameters():
        if ".lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_dropout_only_on_lora_input():
    model = lora_model(dropout=0.5)
    randomise_b(model)
    model.train()
    with torch.no_grad():
        a, b = model(IDS), model(IDS)
        assert not torch.allclose(a, b)  # active in training
        model.eval()
        assert torch.equal(model(IDS), model(IDS))


def test_lora_state_dict_round_trip_and_strictness(tmp_path):
    model = lora_model()
    randomise_b(model)
    model.save_lora(tmp_path / "lora.safetensors")
    other = lora_model(seed=1)
    other.load_lora(tmp_path / "lora.safetensors")
    for k, v in model.lora_state_dict().items():
        assert torch.equal(v, other.lora_state_dict()[k])
    with pytest.raises(ValueError, match="r: file 4 vs model 8"):
        lora_model(r=8).load_lora(tmp_path / "lora.safetensors")
    state = model.lora_state_dict()
    state.pop("transformer.h.1.attn.c_attn.lora_A.v")
    with pytest.raises(ValueError, match="missing tensor transformer.h.1.attn.c_attn.lora_A.v"):
        other.load_lora_state_dict(state)


def test_bad_lora_configs_are_rejected():
    with pytest.raises(ValueError, match="lora.targets"):
        LoRAConfig(targets=("q", "x"))
    with pytest.raises(ValueError, match="lora.r"):
        LoRAConfig(r=0)
    with pytest.raises(ValueError, match="excludes"):
        LoRAConfig(targets=("c_attn", "q"))
