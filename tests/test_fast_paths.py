"""The training fast paths against their plain definitions: fused head + loss, explicit causal attention, fused
LoRA slices, bf16 weight storage (issue 11)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lora_nlg import GPT2, LoRAConfig
from lora_nlg.model.lm_loss import fused_head_loss_sum
from lora_nlg.model.network import EXPLICIT_ATTENTION_MAX_LEN, causal_attention


def unfused_loss(h, weight, targets, eps):
    logits = F.linear(h, weight)
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return F.cross_entropy(logits, targets, reduction="sum", label_smoothing=eps)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("rows,chunk", [(37, 8), (16, 16), (5, 128)])
def test_fused_head_loss_equals_cross_entropy_and_its_gradient(eps, rows, chunk):
    torch.manual_seed(0)
    weight = torch.randn(301, 24, dtype=torch.float64)
    h = torch.randn(rows, 24, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 301, (rows,))
    got = fused_head_loss_sum(h, weight, targets, eps, chunk=chunk)
    (grad_got,) = torch.autograd.grad(3.0 * got, h)
    want = unfused_loss(h, weight, targets, eps)
    (grad_want,) = torch.autograd.grad(3.0 * want, h)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    torch.testing.assert_close(grad_got, grad_want, rtol=1e-10, atol=1e-12)


def test_fused_head_loss_under_bf16_autocast_matches_the_unfused_bf16_computation():
    torch.manual_seed(1)
    weight = (0.1 * torch.randn(1000, 64)).bfloat16()
    h0 = torch.randn(50, 64)
    targets = torch.randint(0, 1000, (50,))
    results = []
    for fn in (lambda h: fused_head_loss_sum(h, weight, targets, 0.1, chunk=16),
               lambda h: unfused_loss(h, weight, targets, 0.1)):
        h = h0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(h)
        loss.backward()
        results.append((loss.item(), h.grad))
    (fused, g_fused), (plain, g_plain) = results
    assert fused == pytest.approx(plain, rel=1e-5)       # same bf16 logits, both reduced in fp32
    assert (g_fused - g_plain).norm() / g_plain.norm() < 1e-2   # d/dlogits rounded to bf16 before the head


def test_fused_head_loss_refuses_a_trainable_head():
    with pytest.raises(ValueError, match="frozen"):
        fused_head_loss_sum(torch.randn(2, 4), torch.randn(5, 4, requires_grad=True), torch.tensor([0, 1]), 0.0)


def test_model_loss_targets_equal_logits_then_cross_entropy():
    torch.manual_seed(2)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=2, alpha=4)).double()
    ids = torch.randint(0, 50257, (3, 9))
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[:, 4:] = True
    targets = torch.randint(0, 50257, (int(mask.sum()),))
    fused = model(ids, logits_mask=mask, loss_targets=targets, label_smoothing=0.1)
    plain = F.cross_entropy(model(ids, logits_mask=mask), targets, reduction="sum", label_smoothing=0.1)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
    with pytest.raises(ValueError, match="logits_mask"):
        model(ids, loss_targets=targets)


# ---------------------------------------------------------------------------------------------- attention
def test_explicit_causal_attention_equals_sdpa_for_reduced_precision_on_cpu():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    got = causal_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.dtype == torch.bfloat16
    assert (got.double() - want).abs().max() < 3e-2
    # the same computation in float64 is exact: the explicit path differs from SDPA only by rounding
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(17, 17, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(torch.softmax(scores, -1) @ v.double(), want, rtol=1e-12, atol=1e-12)


def test_explicit_attention_backward_matches_sdpa():
    torch.manual_seed(4)
    base = [torch.randn(2, 2, 12, 8) for _ in range(3)]
    grads = []
    for explicit in (True, False):
        qkv = [t.clone().bfloat16().requires_grad_(True) for t in base]
        out = causal_attention(*qkv) if explicit else F.scaled_dot_product_attention(*qkv, is_causal=True)
        (out.float() * torch.linspace(-1, 1, 8)).sum().backward()
        grads.append([t.grad.float() for t in qkv])
    for a, b in zip(*grads):
        assert (a - b).norm() / b.norm() < 2e-2


def test_long_sequences_keep_sdpa():
    T = EXPLICIT_ATTENTION_MAX_LEN + 1
    q = torch.randn(1, 1, T, 4).bfloat16()
    torch.testing.assert_close(causal_attention(q, q, q), F.scaled_dot_product_attention(q, q, q, is_causal=True))


# ---------------------------------------------------------------------------------------------- LoRA slices
@pytest.mark.parametrize("targets", [("q", "v"), ("k",), ("q", "k", "v"), ("v", "q"), ("c_attn",), ("mlp.c_fc",)])
def test_fused_lora_forward_equals_per_slice_definition(targets):
    torch.manual_seed(5)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=3, alpha=6, targets=targets, init="gaussian")).double()
    x = torch.randn(2, 5, 64, dtype=torch.float64)
    assert len(list(model.lora_modules())) == 2  # one adapted matrix in each of tiny's 2 layers
    for _, module in model.lora_modules():
        n_in = module.weight.shape[0]
        x_in = x if n_in == 64 else torch.randn(2, 5, n_in, dtype=torch.float64)
        want = x_in @ module.weight + module.bias
        for name, (start, end) in module.slices.items():
            want[..., start:end] += (x_in @ module.lora_A[name].T @ module.lora_B[name].T) * module.scale
        torch.testing.assert_close(module(x_in), want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------- bf16 storage
def test_store_frozen_weights_casts_only_frozen_matmul_weights():
    torch.manual_seed(6)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=2))
    ids = torch.randint(0, 50257, (2, 7))
    want = model(ids)
    model.store_frozen_weights(torch.bfloat16)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["transformer.wte.weight"] == torch.bfloat16
    assert dtypes["transformer.h.0.attn.c_attn.weight"] == torch.bfloat16
    assert dtypes["transformer.h.1.mlp.c_proj.weight"] == torch.bfloat16
    for name in ("transformer.wpe.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_attn.bias",
                 "transformer.h.0.attn.c_attn.lora_A.q", "transformer.h.0.attn.c_attn.lora_B.v"):
        assert dtypes[name] == torch.float32, name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(ids)
    assert (got.float() - want).abs().max() < 0.05 * want.abs().max()
