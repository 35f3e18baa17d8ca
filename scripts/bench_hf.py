"""Hugging Face transformers as a benchmark baseline (bench-only: `src/` never imports transformers).

Decode: `build_hf_model_from_ours(model)` gives a `transformers.GPT2LMHeadModel` holding our model's very weight
tensors (shared storage, same dtype: no second copy in memory), and `hf_generate(...)` runs HF's own beam search
(`model.generate(num_beams=K, ...)`) on our prompts, left-padded in the batches our search would use.

Train: `build_hf_peft_for_training(model)` gives GPT2LMHeadModel + PEFT LoRA with a copy of our base weights in
fp32 (as a transformers user trains: fp32 weights, bf16 by autocast), and `hf_training_step(...)` one step of it.
"""
from __future__ import annotations

from typing import Sequence

import torch

from lora_nlg.train.objective import REFERENCE_DENOM_EPS, token_loss_sum


def require_transformers():
    """The transformers module, or SystemExit saying how to get it (it is a test/bench-only dependency)."""
    try:
        import transformers
    except ImportError as e:
        raise SystemExit(f"--hf needs the `transformers` package (a bench/test-only dependency; "
                         f"pip install transformers): {e}") from None
    return transformers


def load_base_weights(hf, state: dict[str, torch.Tensor], assign: bool, who: str) -> None:
    """Our base state dict into a GPT2LMHeadModel (the same names); only the tied lm_head may be absent."""
    result = hf.load_state_dict(state, strict=False, assign=assign)
    missing = [k for k in result.missing_keys if k != "lm_head.weight"]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"{who}: missing {missing}, unexpected {result.unexpected_keys}")


# ---------------------------------------------------------------------------------------------- decode
def build_hf_model_from_ours(model, attn_implementation: str = "sdpa"):
    """GPT2LMHeadModel in eval mode with our model's base weights, shared (not copied), in our model's dtype.

    Our parameter names are GPT2LMHeadModel's (Conv1D layout), so the state dict loads as is; the LM head is
    tied to wte as in ours. LoRA adapters must be merged first (HF's model would not see them otherwise).
    """
    transformers = require_transformers()
    if getattr(model, "lora_config", None) is not None and not model.lora_merged:
        raise ValueError("build_hf_model_from_ours: merge the LoRA adapters first (model.merge_lora())")
    cfg = transformers.GPT2Config.from_dict(model.config.to_hf_dict())
    cfg._attn_implementation = attn_implementation
    hf = transformers.GPT2LMHeadModel(cfg)
    # assign: HF's parameters become our tensors
    load_base_weights(hf, model.base_state_dict(), assign=True, who="build_hf_model_from_ours")
    hf.tie_weights()
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("build_hf_model_from_ours: HF's LM head is not tied to wte")
    hf.generation_config.pad_token_id = 50256
    return hf.eval()


def hf_generate(hf, prompts: Sequence[Sequence[int]], batches: list[list[int]], *, beam: int, max_new_tokens: int,
                length_penalty: float, no_repeat_ngram_size: int, repetition_penalty: float = 1.0,
                min_new_tokens: int = 0, eos_ids: Sequence[int] = (50256, 628), pad_id: int = 50256,
                early_stopping: bool | str = False) -> list[list[int]]:
    """HF beam search's best sequence per prompt (new tokens only, cut at the first end token), in prompt order.

    `batches` are lists of prompt indices (e.g. decode.plan_batches'); each batch is left-padded, as HF needs
    for decoder-only generation. End tokens: `eos_token_id=eos_ids` and `min_new_tokens` (HF's
    MinNewTokensLengthLogitsProcessor sets them to -inf while fewer tokens were generated: the same ban as our
    min_length; min_new_tokens = max_new_tokens bans them at every step, so every batch runs all steps).
    HF's algorithm differs from the reference's (2K candidates per step, n-gram ban over prompt + generated
    tokens, its own early-stop heuristic), so its hypotheses are not expected to equal ours.
    """
    out: list[list[int] | None] = [None] * len(prompts)
    for batch in batches:
        rows = [list(prompts[i]) for i in batch]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[j, width - len(r):] = 1
        seqs = hf.generate(input_ids=ids.to(hf.device), attention_mask=mask.to(hf.device), num_beams=beam, num_return_sequences=1,
                           max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                           length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                           repetition_penalty=repetition_penalty, early_stopping=early_stopping, do_sample=False,
                           eos_token_id=list(eos_ids), pad_token_id=pad_id)
        new = seqs[:, width:]
        if min_new_tokens >= max_new_tokens and new.shape[1] != max_new_tokens:
            raise RuntimeError(f"hf_generate: end tokens banned, yet {new.shape[1]} of {max_new_tokens} steps ran")
        for i, row in zip(batch, new.tolist()):
            ends = [k for k, t in enumerate(row) if t in eos_ids]
            if ends and min_new_tokens >= max_new_tokens:
                raise RuntimeError(f"hf_generate: end token {row[ends[0]]} generated although banned")
            out[i] = row[:ends[0]] if ends else row
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- train
def build_hf_peft_for_training(model, dropout: float, r: int = 4, alpha: float = 32):
    """GPT2LMHeadModel with an fp32 copy of our base weights, wrapped by PEFT LoRA as a PEFT user sets it up for
    GPT-2 (the fused c_attn, fan_in_fan_out; PEFT cannot adapt only its q and v thirds), in train mode."""
    transformers = require_transformers()
    try:
        import peft
    except ImportError as e:
        raise SystemExit(f"--hf needs the `peft` package (a bench/test-only dependency; pip install peft): {e}") from None
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config.from_dict(model.config.to_hf_dict()))
    load_base_weights(hf, {k: v.float().clone() for k, v in model.base_state_dict().items()}, assign=False,
                      who="build_hf_peft_for_training")
    lora = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=["c_attn"], fan_in_fan_out=True)
    return peft.get_peft_model(hf, lora).train()


def padding_mask(lengths: Sequence[int], width: int) -> torch.Tensor:
    """The attention mask a tokenizer's dynamic padding gives right-padded rows of these lengths."""
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return mask


def hf_training_step(hf, batch, attention_mask: torch.Tensor, precision_context, label_smoothing: float) -> None:
    """Forward + backward of a transformers user's step: logits at every position, then the reference's loss on
    the loss positions (label-smoothed, fp32, mean over them); kinder to HF than its Trainer's LabelSmoother,
    which log-softmaxes every position."""
    with precision_context():
        logits = hf(input_ids=batch.input_ids, attention_mask=attention_mask).logits
        loss = token_loss_sum(logits[batch.loss_mask], batch.targets, label_smoothing) / (
            batch.n_loss + REFERENCE_DENOM_EPS)
    loss.backward()
