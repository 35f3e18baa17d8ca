"""lora-nlg: GPT-2 + LoRA for data-to-text generation (E2E, WebNLG 2017, DART)."""
from lora_nlg.lora import LoRAConfig
from lora_nlg.model import GPT2, GPT2Config, KVCache
from lora_nlg.tokenizer import get_tokenizer

__all__ = ["GPT2", "GPT2Config", "KVCache", "LoRAConfig", "get_tokenizer"]
