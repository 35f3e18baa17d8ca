"""LoRA adapters on GPT-2's Conv1D projections.

The fused attention projection `c_attn` maps d -> 3d = [q | k | v]. The paper adapts W_q and W_v only, so
each enabled slice gets its own low-rank pair (A: [r, d], B: [d, r]) and adds `scale * (x A^T) B^T` to its
block of the output. The product is never materialised during training: two thin matmuls cost
O(T·r·(d_in + d_out)) instead of a dense d_in x d_out delta.

The settings, `LoRAConfig`, live in the torch-free `lora_config` (the config loader builds them); importing them
from here keeps working.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lora_nlg.model.lora_config import ATTN_SLICES, MODULE_TARGETS, LoRAConfig


class Conv1D(nn.Module):
    """GPT-2's projection with the weight stored [in, out] (the checkpoint layout): y = x W + b."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class LoRAConv1D(Conv1D):
    """A frozen Conv1D plus one low-rank adapter per output slice (name -> [start, end))."""

    def __init__(self, n_in: int, n_out: int, slices: dict[str, tuple[int, int]], r: int, scale: float,
                 dropout: float = 0.0, init: str = "kaiming") -> None:
        super().__init__(n_in, n_out)
        self.slices = dict(slices)
        self.r, self.scale = r, scale
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterDict({k: nn.Parameter(torch.empty(r, n_in)) for k in self.slices})
        self.lora_B = nn.ParameterDict({k: nn.Parameter(torch.empty(e - s, r)) for k, (s, e) in self.slices.items()})
        self.merged = False
        self.reset_lora(init)

    @torch.no_grad()
    def reset_lora(self, init: str = "kaiming") -> None:
        for name in self.slices:
            if init == "kaiming":
                nn.init.kaiming_uniform_(self.lora_A[name], a=math.sqrt(5))  # = U(±1/sqrt(n_in))
                nn.init.zeros_(self.lora_B[name])
            else:
                nn.init.normal_(self.lora_A[name], std=0.02)
                nn.init.normal_(self.lora_B[name], std=0.02)

    def delta_weight(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense update of one slice in the [in, out_slice] weight layout (for merge/export only)."""
        a, b = self.lora_A[name].to(dtype), self.lora_B[name].to(dtype)
        return (b @ a).T * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        base = torch.addmm(self.bias, flat, self.weight)
        # All slices in two thin matmuls: x·[A_q; A_v]ᵀ, then one product with the B's laid out in their
        # output rows (zero elsewhere), accumulated into the base output by addmm. Per-slice in-place adds into
        # views of the output cost a zero-filled gradient buffer per slice in backward.
        low_rank = F.linear(self.lora_dropout(flat), self.stacked_A())
        y = torch.addmm(base, low_rank, self.placed_B().t(), alpha=self.scale)
        return y.view(*x.shape[:-1], -1)

    def stacked_A(self) -> torch.Tensor:
        """[n_slices·r, in]: the slices' A matrices one above the other, in slice order."""
        return torch.cat([self.lora_A[name] for name in self.slices]) if len(self.slices) > 1 \
            else self.lora_A[next(iter(self.slices))]

    def placed_B(self) -> torch.Tensor:
        """[out, n_slices·r]: slice i's B in its output rows and in columns i·r..(i+1)·r, zeros elsewhere."""
        n_out, width = self.weight.shape[1], self.r * len(self.slices)
        column = {name: i * self.r for i, name in enumerate(self.slices)}
        zeros = next(iter(self.lora_B.values())).new_zeros
        pieces, cursor = [], 0
        for name, (start, end) in sorted(self.slices.items(), key=lambda item: item[1]):
            if start > cursor:
                pieces.append(zeros(start - cursor, width))
            b = self.lora_B[name]
            pieces.append(b if width == self.r else F.pad(b, (column[name], width - column[name] - self.r)))
            cursor = end
        if cursor < n_out:
            pieces.append(zeros(n_out - cursor, width))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._add_delta(+1.0)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self._add_delta(-1.0)
            self.merged = False

    def _add_delta(self, sign: float) -> None:
        # fp32 (or wider) arithmetic, so merging bf16 weights does not round the small delta away twice
        wide = torch.float64 if self.weight.dtype == torch.float64 else torch.float32
        for name, (start, end) in self.slices.items():
            block = self.weight[:, start:end]
            block.copy_((block.to(wide) + sign * self.delta_weight(name, wide)).to(self.weight.dtype))


def target_slices(target: str, n_embd: int, n_out: int) -> dict[str, tuple[int, int]]:
    """Output slices of one module for a target name (q/k/v are the thirds of c_attn)."""
    if target in ATTN_SLICES:
        i = ATTN_SLICES.index(target)
        return {target: (i * n_embd, (i + 1) * n_embd)}
    return {"all": (0, n_out)}


def module_targets(cfg: LoRAConfig) -> dict[str, tuple[str, ...]]:
    """Module path suffix inside a block (e.g. 'attn.c_attn') -> slice names it carries."""
    out: dict[str, tuple[str, ...]] = {}
    attn = tuple(t for t in ATTN_SLICES if t in cfg.targets)
    if attn:
        out["attn.c_attn"] = attn
    for t in cfg.targets:
        if t in MODULE_TARGETS:
            out["attn.c_attn" if t == "c_attn" else t] = ("all",)
    return out


def lora_slices_for(target_module: str, slice_names: tuple[str, ...], n_embd: int, n_out: int) -> dict[str, tuple[int, int]]:
    slices: dict[str, tuple[int, int]] = {}
    for name in slice_names:
        slices.update(target_slices(name, n_embd, n_out))
    return slices


def make_lora_conv(base: Conv1D, slices: dict[str, tuple[int, int]], r: int, scale: float,
                   dropout: float, init: str) -> LoRAConv1D:
    """Wrap a Conv1D (weights shared, not copied) into a LoRAConv1D with freshly initialised adapters."""
    n_in, n_out = base.weight.shape
    with torch.device("meta"):
        conv = LoRAConv1D(n_in, n_out, slices, r, scale, dropout, init)
    conv.weight, conv.bias = base.weight, base.bias
    device, dtype = base.weight.device, base.weight.dtype
    conv.lora_A = nn.ParameterDict({k: nn.Parameter(torch.empty(r, n_in, device=device, dtype=dtype)) for k in slices})
    conv.lora_B = nn.ParameterDict({k: nn.Parameter(torch.empty(e - s, r, device=device, dtype=dtype))
                                    for k, (s, e) in slices.items()})
    conv.reset_lora(init)
    return conv
