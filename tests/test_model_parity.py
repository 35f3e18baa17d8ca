"""Our GPT-2 against transformers' GPT2LMHeadModel (test-only oracle), minGPT-style."""
from __future__ import annotations

import pytest
import torch

from lora_nlg import GPT2, KVCache

transformers = pytest.importorskip("transformers")


def make_hf(n_embd: int, n_layer: int, n_head: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                                  attn_pdrop=0.0, attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # random biases and LayerNorm affine params, so every tensor matters
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return hf


def hf_logits(hf, ids):
    with torch.no_grad():
        return hf(ids).logits


@pytest.fixture(scope="module")
def tiny_hf():
    return make_hf(128, 2, 2)  # head size 64, as legacy checkpoints without config.json assume


@pytest.mark.parametrize("layout", ["hf_safetensors", "hf_bin", "legacy_bin", "legacy_bin_with_buffers", "single_file"])
def test_logits_match_transformers(tiny_hf, tmp_path, layout):
    ids = torch.randint(0, 50257, (3, 11), generator=torch.Generator().manual_seed(1))
    if layout == "hf_safetensors":
        tiny_hf.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").is_file()
        src = tmp_path
    elif layout == "hf_bin":
        tiny_hf.config.save_pretrained(tmp_path)
        torch.save(tiny_hf.state_dict(), tmp_path / "pytorch_model.bin")
        src = tmp_path
    else:  # bare `h.0.…` keys as in the legacy gpt2-medium-pytorch_model.bin, no config.json: size inferred
        state = tiny_hf.transformer.state_dict()
        if layout == "legacy_bin_with_buffers":
            for i in range(2):
                state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 1024, 1024))
                state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        src = tmp_path / "gpt2-pytorch_model.bin"
        torch.save(state, src)
    ours = GPT2.from_pretrained(src).eval()
    assert ours.config.n_layer == 2 and ours.config.n_head == 2 and ours.config.n_embd == 128
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf_logits(tiny_hf, ids), atol=1e-4, rtol=0)


def test_real_gpt2_shape_matches_transformers(tmp_path):
    hf = make_hf(768, 12, 12, seed=3)
    hf.save_pretrained(tmp_path)
    ours = GPT2.from_pretrained(tmp_path).eval()
    assert ours.num_parameters() == 124_439_808
    ids = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_save_pretrained_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    ours = GPT2.from_preset("tiny").eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf_logits(hf, ids), atol=1e-5, rtol=0)


def test_logits_mask_selects_positions():
    torch.manual_seed(0)
    model = GPT2.from_preset("tiny").eval()
    ids = torch.randint(0, 50257, (2, 6))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 2:4] = True
    mask[1, 5] = True
    with torch.no_grad():
        full = model(ids)
        picked = model(ids, logits_mask=mask)
    assert picked.shape == (3, 50257)
    torch.testing.assert_close(picked, full[mask], atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kv_cache_rows_with_different_prompt_lengths(dtype):
    torch.manual_seed(0)
    model = GPT2.from_preset("tiny").to(dtype).eval()
    gen = torch.Generator().manual_seed(5)
    lengths = [5, 2, 8]
    prompts = [torch.randint(0, 50257, (n,), generator=gen) for n in lengths]
    steps = torch.randint(0, 50257, (3, 4), generator=gen)
    padded = torch.zeros(3, max(lengths), dtype=torch.long)
    for i, p in enumerate(prompts):
        padded[i, : len(p)] = p
    cache = KVCache(batch_size=3, max_len=max(lengths) + 4)
    with torch.no_grad():
        last = torch.tensor(lengths) - 1
        mask = torch.zeros_like(padded, dtype=torch.bool)
        mask[torch.arange(3), last] = True
        prefill = model(padded, kv_cache=cache, input_lengths=torch.tensor(lengths), logits_mask=mask)
        assert cache.lengths.tolist() == lengths
        incremental = [prefill]
        for t in range(4):
            incremental.append(model(steps[:, t : t + 1], kv_cache=cache)[:, 0])
        for i, p in enumerate(prompts):
            full = model(torch.cat([p, steps[i]])[None])[0]
            expected = full[len(p) - 1 :]
            got = torch.stack([step[i] for step in incremental])
            torch.testing.assert_close(got, expected, atol=1e-5 if dtype == torch.float32 else 1e-10, rtol=0)
    assert cache.k[0].dtype == dtype


def test_kv_cache_reorder_expands_rows():
    torch.manual_seed(0)
    model = GPT2.from_preset("tiny").eval()
    prompt = torch.randint(0, 50257, (2, 4))
    cache = KVCache(batch_size=2, max_len=8)
    with torch.no_grad():
        model(prompt, kv_cache=cache)
        cache.reorder_(torch.tensor([1, 1, 0]))
        nxt = torch.tensor([[7], [9], [11]])
        out = model(nxt, kv_cache=cache)[:, 0]
        for row, (src, tok) in enumerate([(1, 7), (1, 9), (0, 11)]):
            full = model(torch.cat([prompt[src], torch.tensor([tok])])[None])[0, -1]
            torch.testing.assert_close(out[row], full, atol=1e-5, rtol=0)


def test_positions_beyond_context_are_an_error():
    model = GPT2.from_preset("tiny")
    with pytest.raises(ValueError, match="beyond the limit 1024"):
        model(torch.zeros(1, 1025, dtype=torch.long))


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="unknown model preset 'gpt3'"):
        GPT2.from_preset("gpt3")
