"""The LoRA settings (`LoRAConfig`): their names, defaults, types and checks, in this one place.

The config's `lora:` section is a `LoRAConfig` (keys lora.r, lora.alpha, ...), the model's layers are built from
it (`network.GPT2Network.add_lora`) and adapter files store it. Torch-free, so the config loader can use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lora_nlg.setting_checks import require, require_finite

ATTN_SLICES = ("q", "k", "v")                                     # the thirds of the fused c_attn projection
MODULE_TARGETS = ("c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # whole projections of a block
TARGETS = ATTN_SLICES + MODULE_TARGETS
INITS = ("kaiming", "gaussian")
# The largest LoRA scale (alpha/r, or alpha/sqrt(r) with rsLoRA) accepted. The recipes use 8 (paper: 32/4) to 32
# (product default 128/4); even alpha 128 at r 1 is 128. The scale multiplies the adapter's gradients, so an
# absurd one makes the adapter useless rather than fast: Adam squares those gradients (at ~1e19 they overflow in
# fp32 and every update is 0, e.g. alpha 1e30 leaves the adapter at zero), and under fp16 autocast the scaled
# product must stay below fp16's largest value, 65504. 1e4 keeps two orders of magnitude above every recipe and
# stays below both limits.
MAX_SCALE = 1e4


@dataclass(frozen=True)
class LoRAConfig:
    r: int = 4                              # rank of every adapter (paper: r_q = r_v = 4)
    alpha: float = 128.0                    # scale = alpha / r (the product default = reference lora_attn_alpha;
                                            #   paper recipes use 32)
    dropout: float = 0.0                    # dropout on the LoRA input only, one mask shared by all slices
                                            #   (paper recipes: 0.1 E2E/WebNLG, 0.0 DART)
    targets: tuple[str, ...] = ("q", "v")   # c_attn slices q/k/v, whole "c_attn", "attn.c_proj", "mlp.c_fc",
                                            #   "mlp.c_proj"
    use_rslora: bool = False                # rank-stabilised scale alpha / sqrt(r)
    init: str = "kaiming"                   # "kaiming": A ~ U(±1/sqrt(d_in)), B = 0 (reference HEAD);
                                            #   "gaussian": both N(0, 0.02) (paper-era code)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        targets = list(self.targets)
        require(self.r >= 1, "lora.r", self.r, "must be >= 1: training updates the LoRA parameters only")
        require_finite("lora.alpha", self.alpha)
        require(self.alpha > 0, "lora.alpha", self.alpha, "must be > 0")
        require(self.scale <= MAX_SCALE, "lora.alpha", self.alpha,
                f"LoRA scale alpha/{'sqrt(r)' if self.use_rslora else 'r'} = {self.scale:g} is above {MAX_SCALE:g}, "
                f"where the adapter's gradients overflow instead of training it")
        require(0.0 <= self.dropout < 1.0, "lora.dropout", self.dropout, "must be in [0, 1)")
        require(self.init in INITS, "lora.init", self.init, f"must be one of {', '.join(INITS)}")
        require(bool(targets), "lora.targets", targets, "empty")
        for t in targets:
            require(t in TARGETS, "lora.targets", targets, f"{t!r} is not one of {', '.join(TARGETS)}")
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        require(not repeated, "lora.targets", targets, f"{', '.join(map(repr, repeated))} listed twice")
        require(not ("c_attn" in targets and set(ATTN_SLICES) & set(targets)), "lora.targets", targets,
                "'c_attn' (the whole fused projection) excludes the q/k/v slices")

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def check_width(self, n_embd: int) -> None:
        """A rank above the model width adds parameters but no rank: every adapted projection has d_in or d_out
        equal to n_embd, so its update has rank <= n_embd whatever r is."""
        require(self.r <= n_embd, "lora.r", self.r, f"above the model width n_embd={n_embd}")

    def to_dict(self) -> dict:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets),
                "use_rslora": self.use_rslora, "init": self.init}
