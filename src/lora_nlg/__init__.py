"""lora-nlg: GPT-2 + LoRA for data-to-text generation (E2E, WebNLG 2017, DART)."""
from lora_nlg.gpt2 import GPT2
from lora_nlg.kv_cache import KVCache
from lora_nlg.lora import LoRAConfig
from lora_nlg.model import GPT2Config
from lora_nlg.tokenizer import get_tokenizer

__all__ = ["GPT2", "GPT2Config", "KVCache", "LoRAConfig", "get_tokenizer"]
