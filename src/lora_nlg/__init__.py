"""lora-nlg: GPT-2 + LoRA for data-to-text generation (E2E, WebNLG 2017, DART).

Stages: `lora_nlg.data` (raw files -> BPE records), `lora_nlg.train` (LoRA fine-tuning), `lora_nlg.decode` (beam
search -> metric files) and `lora_nlg.demo`; the network and its files are `lora_nlg.model`. The public names below
are imported on first use, so the data stage and the metric code never import torch.

`lora_nlg.generate(run_dir_or_model, inputs, **decode_overrides) -> list[str]` is the module `lora_nlg.generate`
(also `python -m lora_nlg.generate`), which is callable; `lora_nlg.generate_text` is the same function.
"""
import importlib

from lora_nlg.lazy_exports import lazy_exports

__all__ = ["GPT2", "GPT2Config", "KVCache", "LoRAConfig", "generate", "generate_text", "get_tokenizer"]
_getattr, _dir = lazy_exports(__name__, {
    "generate_text": "lora_nlg.decode.generation",
    "GPT2": "lora_nlg.model.gpt2",
    "GPT2Config": "lora_nlg.model.architecture",
    "KVCache": "lora_nlg.model.kv_cache",
    "LoRAConfig": "lora_nlg.model.lora_config",
    "get_tokenizer": "lora_nlg.tokenizer",
})


def __getattr__(name: str):
    # `generate` is the callable command module itself: the same object before and after `import lora_nlg.generate`
    if name == "generate":
        return importlib.import_module("lora_nlg.generate")
    return _getattr(name)


def __dir__() -> list[str]:
    return sorted([*_dir(), "generate"])
