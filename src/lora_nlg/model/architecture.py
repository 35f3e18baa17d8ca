"""GPT-2's sizes: `GPT2Config` (what config.json holds) and the named `PRESETS`, torch-free, so the config loader can
check a model name and the hub download can list the sizes without importing torch. The network is `network.py`."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # embedding/attention/residual dropout; the reference has none (LoRA dropout is separate)

    @classmethod
    def preset(cls, name: str) -> "GPT2Config":
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
        return PRESETS[name]

    def to_hf_dict(self) -> dict:
        """config.json as transformers writes it for GPT2LMHeadModel."""
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": self.vocab_size,
            "n_positions": self.n_positions, "n_ctx": self.n_positions, "n_embd": self.n_embd,
            "n_layer": self.n_layer, "n_head": self.n_head, "n_inner": None, "activation_function": "gelu_new",
            "layer_norm_epsilon": self.layer_norm_epsilon, "resid_pdrop": self.dropout, "embd_pdrop": self.dropout,
            "attn_pdrop": self.dropout, "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": True,
            "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True,
        }

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> "GPT2Config":
        if d.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"{source}: model_type {d.get('model_type')!r} is not gpt2")
        if d.get("n_inner") not in (None, 4 * d.get("n_embd", 0)):
            raise ValueError(f"{source}: n_inner={d['n_inner']} is not supported (GPT-2 uses 4*n_embd)")
        if d.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"{source}: activation_function {d['activation_function']!r} is not GPT-2's tanh GELU")
        try:
            return cls(vocab_size=int(d["vocab_size"]), n_positions=int(d.get("n_positions", d.get("n_ctx", 1024))),
                       n_embd=int(d["n_embd"]), n_layer=int(d["n_layer"]), n_head=int(d["n_head"]),
                       layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)))
        except KeyError as e:
            raise ValueError(f"{source}: missing field {e.args[0]!r}") from None


PRESETS = {
    "gpt2": GPT2Config(n_embd=768, n_layer=12, n_head=12),          # 124M
    "gpt2-medium": GPT2Config(n_embd=1024, n_layer=24, n_head=16),  # 355M
    "gpt2-large": GPT2Config(n_embd=1280, n_layer=36, n_head=20),   # 774M
    "gpt2-xl": GPT2Config(n_embd=1600, n_layer=48, n_head=25),      # 1.5B
    "small": GPT2Config(n_embd=128, n_layer=4, n_head=4),           # tests and the CPU demo
    "tiny": GPT2Config(n_embd=64, n_layer=2, n_head=2),             # unit tests
}
