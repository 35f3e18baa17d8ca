"""The public `GPT2` (`from lora_nlg import GPT2`): the network of `model.network` plus loading and saving as methods,
delegated to `weights`. Living above both keeps the network free of file code and the imports one-way."""
from __future__ import annotations

from pathlib import Path

from lora_nlg.model import weights
from lora_nlg.model.lora import LoRAConfig
from lora_nlg.model.network import GPT2Network


class GPT2(GPT2Network):
    """GPT-2 with LoRA that reads and writes Hugging Face checkpoints, LoRA files and PEFT adapters."""

    @classmethod
    def from_pretrained(cls, path: str | Path, lora: LoRAConfig | None = None) -> "GPT2":
        """A Hugging Face GPT-2 directory or a single .safetensors/.bin file, loaded strictly."""
        return weights.load_pretrained(cls, path, lora)

    @classmethod
    def from_peft_adapter(cls, base_path: str | Path, adapter_dir: str | Path) -> "GPT2":
        return weights.load_peft_adapter(cls, base_path, adapter_dir)

    def save_lora(self, path: str | Path) -> None:
        weights.save_lora(self, path)

    def load_lora(self, path: str | Path) -> None:
        weights.load_lora(self, path)

    def save_peft_adapter(self, out_dir: str | Path, base_model_name_or_path: str | None = None) -> None:
        weights.save_peft_adapter(self, out_dir, base_model_name_or_path)

    def save_merged(self, out_dir: str | Path) -> None:
        weights.save_pretrained(self, out_dir, merge_lora=True)

    def save_pretrained(self, out_dir: str | Path) -> None:
        """The base weights (LoRA not included) as a Hugging Face GPT-2 checkpoint."""
        weights.save_pretrained(self, out_dir, merge_lora=False)
