"""GPT-2 (pre-LayerNorm, tanh-GELU, learned positions, LM head tied to the token embedding) with LoRA: the blocks
and `GPT2Network`, which knows nothing of files (`weights` reads and writes them, `gpt2.GPT2` is the public class
with both). Its sizes (`GPT2Config`, `PRESETS`) are the torch-free `architecture`.

Parameter names follow Hugging Face's GPT2LMHeadModel (`transformer.h.0.attn.c_attn.weight`, Conv1D
weights stored [in, out]), so checkpoints load without renaming or transposing.
"""
from __future__ import annotations

import functools
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lora_nlg.model.architecture import PRESETS, GPT2Config  # noqa: F401 (PRESETS: re-exported)
from lora_nlg.model.kv_cache import KVCache
from lora_nlg.model.lm_loss import fused_head_loss_sum
from lora_nlg.model.lora import Conv1D, LoRAConfig, LoRAConv1D, lora_slices_for, make_lora_conv, module_targets


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.dropout = cfg.n_head, cfg.n_embd, cfg.dropout
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int, positions: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p_drop = self.dropout if self.training else 0.0
        if cache is None:
            y = causal_attention(q, k, v, p_drop)
        else:
            y = cache.attend(layer, q, k, v, positions, p_drop)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


# Sequences up to this length take the explicit-matmul attention path in bf16/fp16 on CPU (see causal_attention).
EXPLICIT_ATTENTION_MAX_LEN = 256


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal softmax(q k^T / sqrt(d)) v over [B, H, T, d].

    PyTorch's CPU flash kernel for bf16 is slow in backward at data-to-text lengths: for B=8, 12 heads, T=60 its
    forward + backward takes 2.3x as long as two batched matmuls with an additive causal mask and an fp32 softmax
    (the crossover is between 256 and 512 tokens). fp32 and CUDA keep SDPA, which is the faster kernel there.
    """
    B, H, T, D = q.shape
    explicit = (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and dropout_p == 0.0
                and T == k.shape[2] and T <= EXPLICIT_ATTENTION_MAX_LEN)
    if not explicit:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
    scores = torch.baddbmm(_causal_mask(T, q.dtype, q.device).expand(B * H, T, T), q.reshape(B * H, T, D),
                           k.reshape(B * H, T, D).transpose(1, 2), alpha=1.0 / math.sqrt(D))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.bmm(probs, v.reshape(B * H, T, D)).view(B, H, T, D)


@functools.lru_cache(maxsize=16)
def _causal_mask(T: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.full((T, T), float("-inf"), dtype=dtype, device=device).triu(1)


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x, cache=None, layer=0, positions=None):
        x = x + self.attn(self.ln_1(x), cache, layer, positions)
        return x + self.mlp(self.ln_2(x))


def project_to_vocab(h: torch.Tensor, weight: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """h @ weight.T (the tied LM head). Without autograd on CPU it runs in blocks of `block` vocabulary rows:
    one [rows, 50257] GEMM there is ~1.5x slower than the same work in blocks whose output stays in cache
    (160 x 768 x 50257 fp32 on 2 cores: 120 ms vs 80 ms; never slower from 10 to 1000 rows)."""
    if h.device.type != "cpu" or (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):
        return F.linear(h, weight)
    flat = h.reshape(-1, h.shape[-1])
    out = flat.new_empty(flat.shape[0], weight.shape[0])
    for start in range(0, weight.shape[0], block):
        rows = weight[start:start + block]
        torch.mm(flat, rows.t(), out=out[:, start:start + rows.shape[0]])
    return out.view(*h.shape[:-1], weight.shape[0])


# Buffers some checkpoints carry that we recompute (causal masks) and the tied head.
IGNORABLE_SUFFIXES = (".attn.bias", ".attn.masked_bias")
TIED_HEAD_KEY = "lm_head.weight"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names every offending tensor."""


class GPT2Network(nn.Module):
    """The network without files: forward, LoRA adapters and state dicts. The public `lora_nlg.GPT2` adds loading
    and saving (module `gpt2`), so this module never needs to know about checkpoints on disk."""

    def __init__(self, config: GPT2Config, lora: LoRAConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.lora_config: LoRAConfig | None = None
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.n_positions, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self._init_weights()
        if lora is not None:
            self.add_lora(lora)

    # ---------------------------------------------------------------------------------- construction
    @torch.no_grad()
    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2 scales residual projections by depth
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.config.n_layer))
            elif name.endswith(("wte.weight", "wpe.weight", "c_attn.weight", "c_fc.weight")):
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    @classmethod
    def from_preset(cls, name: str, lora: LoRAConfig | None = None) -> "GPT2Network":
        return cls(GPT2Config.preset(name), lora=lora)

    def add_lora(self, cfg: LoRAConfig) -> None:
        """Attach adapters to every block and freeze everything else."""
        if self.lora_config is not None:
            raise RuntimeError("this model already has LoRA adapters")
        cfg.check_width(self.config.n_embd)
        for block in self.transformer.h:
            for path, slice_names in module_targets(cfg).items():
                parent_name, attr = path.split(".")
                parent = getattr(block, parent_name)
                base = getattr(parent, attr)
                slices = lora_slices_for(path, slice_names, self.config.n_embd, base.weight.shape[1])
                setattr(parent, attr, make_lora_conv(base, slices, cfg.r, cfg.scale, cfg.dropout, cfg.init))
        self.lora_config = cfg
        for name, p in self.named_parameters():
            p.requires_grad_(".lora_" in name)

    # ---------------------------------------------------------------------------------- forward
    @property
    def lm_head_weight(self) -> torch.Tensor:
        return self.transformer.wte.weight

    def hidden(self, input_ids: torch.Tensor, kv_cache: KVCache | None = None,
               input_lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        steps = torch.arange(T, device=input_ids.device)
        if kv_cache is None:
            positions = None
            pos_ids = steps[None, :]
        else:
            if kv_cache.batch_size != B:
                raise ValueError(f"kv_cache holds {kv_cache.batch_size} rows but input has {B}")
            positions = kv_cache.lengths.to(input_ids.device)[:, None] + steps[None, :]
            pos_ids = positions
        # known on the host (the cache tracks its longest row): reading pos_ids.max() would stall a GPU every step
        furthest = T - 1 + (kv_cache.max_length if kv_cache is not None else 0)
        limit = self.config.n_positions if kv_cache is None else min(self.config.n_positions, kv_cache.max_len)
        if furthest >= limit:
            raise ValueError(f"sequence reaches position {furthest}, beyond the limit {limit}")
        if kv_cache is not None:
            kv_cache.slots_in_use = max(kv_cache.slots_in_use, furthest + 1)
        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(pos_ids))
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, i, positions)
        if kv_cache is not None:
            kv_cache.advance(input_lengths.to(kv_cache.lengths.device) if input_lengths is not None else T)
        return self.transformer.ln_f(x)

    def forward(self, input_ids: torch.Tensor, *, logits_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, input_lengths: torch.Tensor | None = None,
                loss_targets: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
        """Logits [B,T,V]; with `logits_mask` [B,T] (bool) only at the True positions, as [N,V] (row-major).
        `logits_mask` may also be those positions as flat indices b * T + t ([N] long, ascending): the same rows
        without the host-device synchronisation a boolean mask costs (its row count is data-dependent).

        With `loss_targets` [N] (needs `logits_mask`): instead of logits, the summed label-smoothed cross-entropy
        of those N positions (fp32 scalar), the head and loss fused so that no [N, V] tensor is kept (lm_loss.py).
        """
        h = self.hidden(input_ids, kv_cache, input_lengths)
        if logits_mask is not None:
            h = h.flatten(0, 1).index_select(0, logits_mask) if logits_mask.dtype == torch.long else h[logits_mask]
        if loss_targets is not None:
            if logits_mask is None:
                raise ValueError("loss_targets needs logits_mask (the positions the targets belong to)")
            return fused_head_loss_sum(h, self.lm_head_weight, loss_targets, label_smoothing)
        return project_to_vocab(h, self.lm_head_weight)

    @torch.no_grad()
    def store_frozen_weights(self, dtype: torch.dtype) -> None:
        """Keep the frozen matmul weights (projections and the tied embedding / LM head) in `dtype` for good.

        Under autocast a frozen fp32 weight is re-cast at every use (autocast caches casts only of weights
        that require grad); stored in bf16 it is cast never, and takes half the memory. Biases, LayerNorms,
        position embeddings and LoRA stay fp32: autocast runs LayerNorm in fp32, token + position embedding
        sums to fp32, so the residual stream keeps fp32, and the optimizer updates fp32 LoRA weights.
        """
        for name, p in self.named_parameters():
            if not p.requires_grad and p.dim() == 2 and not name.endswith("wpe.weight"):
                p.data = p.data.to(dtype)

    # ---------------------------------------------------------------------------------- LoRA
    def lora_modules(self) -> Iterator[tuple[str, LoRAConv1D]]:
        return ((n, m) for n, m in self.named_modules() if isinstance(m, LoRAConv1D))

    def lora_parameters(self) -> Iterator[nn.Parameter]:
        return (p for n, p in self.named_parameters() if ".lora_" in n)

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named_parameters() if ".lora_" in n}

    def load_lora_state_dict(self, state: dict[str, torch.Tensor], source: str = "LoRA state") -> None:
        expected = self.lora_state_dict()
        if not expected:
            raise CheckpointError(f"{source}: the model has no LoRA adapters to load into")
        _check_keys_and_shapes(expected, state, source)
        with torch.no_grad():
            for name, p in expected.items():
                p.copy_(state[name])

    def merge_lora(self) -> None:
        for _, m in self.lora_modules():
            m.merge()

    def unmerge_lora(self) -> None:
        for _, m in self.lora_modules():
            m.unmerge()

    @property
    def lora_merged(self) -> bool:
        return any(m.merged for _, m in self.lora_modules())

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """Base weights under their Hugging Face names (no LoRA tensors)."""
        return {n: p.detach() for n, p in self.named_parameters() if ".lora_" not in n}

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _check_keys_and_shapes(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], source: str) -> None:
    problems = [f"missing tensor {k} {tuple(v.shape)}" for k, v in expected.items() if k not in got]
    problems += [f"unexpected tensor {k} {tuple(got[k].shape)}" for k in got if k not in expected]
    problems += [f"tensor {k} has shape {tuple(got[k].shape)}, expected {tuple(v.shape)}"
                 for k, v in expected.items() if k in got and tuple(got[k].shape) != tuple(v.shape)]
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CheckpointError(f"{source}: {len(problems)} problem(s) loading the checkpoint:\n  " + "\n  ".join(shown))


__all__ = ["GPT2Network", "GPT2Config", "KVCache", "PRESETS", "CheckpointError", "LoRAConfig"]
