"""lora-nlg: GPT-2 + LoRA for data-to-text generation (E2E, WebNLG 2017, DART).

Stages: `lora_nlg.data` (raw files -> BPE records), `lora_nlg.train` (LoRA fine-tuning), `lora_nlg.decode` (beam
search -> metric files) and `lora_nlg.demo`; the network and its files are `lora_nlg.model`. The public names below
are imported on first use, so the data stage and the metric code never import torch.
"""
from lora_nlg.lazy_exports import lazy_exports

__all__ = ["GPT2", "GPT2Config", "KVCache", "LoRAConfig", "get_tokenizer"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "GPT2": "lora_nlg.model.gpt2",
    "GPT2Config": "lora_nlg.model.architecture",
    "KVCache": "lora_nlg.model.kv_cache",
    "LoRAConfig": "lora_nlg.model.lora_config",
    "get_tokenizer": "lora_nlg.tokenizer",
})
