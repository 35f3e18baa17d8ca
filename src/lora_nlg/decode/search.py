"""The reference's beam search, batched over many inputs with a KV cache: tensors in, token ids out (no CLI,
no files; the stage around it is `lora_nlg.decode.stage`).

Semantics are those of microsoft/LoRA `gpt2_beam.py` (docs/reference-pipeline.md, "Beam search"):
- each step takes the top-K of the K·V candidates (step 0: of beam 0 only, all beams start identical);
- repetition penalty, min_length (end tokens banned) and no-repeat-ngram (over *generated* tokens only) change
  the logits, which are then renormalised with a log-softmax;
- a candidate ending in an end token is finished with score = sum log-prob / (generated length incl. the end
  token) ** length_penalty, and its slot is dead (-inf) from then on;
- after `max_new_tokens` steps the live beams are candidates too (length = max_new_tokens); the single best
  candidate (first in rank order on equal scores) is the output.
What is faster: many inputs x K beams per forward, each prompt prefilled once (not K times, not padded to 512)
and its cache rows then expanded to K beams, one in-place cache reorder per step, vectorised bans, and an exact
early stop (an input stops once no live beam can beat its best finished hypothesis: with log-probs <= 0 a
beam's sum only falls, so its best possible normalised score is sum / max_L(L ** length_penalty)).
Ties in the top-K are broken by candidate index (a stable sort), so a batch gives the same hypotheses as its
inputs one at a time.

    from lora_nlg.decode import beam_search
    outs = beam_search(model, prompts, beam=10, length_penalty=0.8, no_repeat_ngram_size=4)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm import tqdm

from lora_nlg.decode.beam_settings import BATCH_SIZE, DEFAULT, BeamSettings
from lora_nlg.model.kv_cache import BeamKVCache


@dataclass
class Hypothesis:
    ids: list[int]        # generated ids without the end token
    score: float          # normalised score (the quantity the search maximises)
    finished: bool        # True: ended with an end token; False: still live after max_new_tokens steps


# ------------------------------------------------------------------------------------------ public API
def beam_search(model, prompts: Sequence[Sequence[int]], beam: int = DEFAULT.beam,
                length_penalty: float = DEFAULT.length_penalty,
                no_repeat_ngram_size: int = DEFAULT.no_repeat_ngram_size,
                repetition_penalty: float = DEFAULT.repetition_penalty, min_length: int = DEFAULT.min_length,
                max_new_tokens: int = DEFAULT.max_new_tokens, eos_ids: Sequence[int] = DEFAULT.eos_ids,
                batch_size: int = BATCH_SIZE) -> list[list[int]]:
    """Best hypothesis per prompt (generated ids, cut before the end token), in prompt order; the settings, their
    defaults and checks are `BeamSettings`'.

    prompts: token-id lists (context_ids as in data/<dataset>/<split>.jsonl, ending in 50256).
    """
    settings = BeamSettings(beam=beam, length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                            repetition_penalty=repetition_penalty, min_length=min_length,
                            max_new_tokens=max_new_tokens, eos_ids=tuple(eos_ids))
    return [h.ids for h in generate(model, prompts, settings, batch_size=batch_size)]


def generate(model, prompts: Sequence[Sequence[int]], settings: BeamSettings = DEFAULT, *,
             batch_size: int = BATCH_SIZE, max_batch_tokens: int = 0, early_stop: bool = True,
             progress: bool = False, stats: dict | None = None) -> list[Hypothesis]:
    """Beam search over all prompts; batches of up to `batch_size` inputs (and, if > 0, of at most
    `max_batch_tokens` cache slots = inputs x (longest prompt + beam x max_new_tokens)). Prompt order kept.
    `stats`, if given, accumulates `steps` (forward passes after the prefill), `beam_rows` (rows in them) and
    `stopped_early` (inputs that left before max_new_tokens steps)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompts = [_checked_prompt(p, i, model.config.vocab_size) for i, p in enumerate(prompts)]
    if settings.beam > model.config.vocab_size:
        raise ValueError(f"beam {settings.beam} exceeds the vocabulary size {model.config.vocab_size}")
    if any(not 0 <= e < model.config.vocab_size for e in settings.eos_ids):
        raise ValueError(f"eos_ids {settings.eos_ids} must be token ids below {model.config.vocab_size}")
    limit = model.config.n_positions - settings.max_new_tokens
    if limit < 1:
        raise ValueError(f"max_new_tokens={settings.max_new_tokens} leaves no room for a prompt in "
                         f"{model.config.n_positions} positions")
    # The reference keeps the last tokens of an over-long prompt (left truncation); so do we.
    prompts = [p[-limit:] for p in prompts]
    batches = plan_batches([len(p) for p in prompts], settings, batch_size, max_batch_tokens)
    results: list[Hypothesis | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(prompts), desc="beam search", unit="input",
                                          disable=not progress, dynamic_ncols=True) as bar:
            for batch in batches:
                for i, hyp in zip(batch, search_batch(model, [prompts[i] for i in batch], settings, early_stop, stats)):
                    results[i] = hyp
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def _checked_prompt(p: Sequence[int], index: int, vocab: int) -> list[int]:
    ids = [int(t) for t in p]
    if not ids:
        raise ValueError(f"prompt {index} is empty")
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt {index} has a token id outside [0, {vocab})")
    return ids


def plan_batches(lengths: list[int], settings: BeamSettings, batch_size: int, max_batch_tokens: int = 0) -> list[list[int]]:
    """Input indices grouped into batches of similar prompt length (longest first: padding is per batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (
                max_batch_tokens <= 0 or (len(batches[-1]) + 1)
                * (lengths[batches[-1][0]] + settings.beam * settings.max_new_tokens) <= max_batch_tokens):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# ------------------------------------------------------------------------------------------ the search
def search_batch(model, prompts: list[list[int]], s: BeamSettings, early_stop: bool = True,
                 stats: dict | None = None) -> list[Hypothesis]:
    """Beam search for one batch of prompts: one prefill per prompt, then B x K rows per forward.

    Host-device synchronisations per step (what stalls a GPU): one to learn which inputs may stop (only with
    early_stop), and one inside `topk_stable` to learn whether a tie crosses its window. Everything else (the
    bookkeeping of the best hypotheses, bans, the cache reorder) stays on the device as tensor operations.
    """
    device = model.lm_head_weight.device
    B, K, M, V = len(prompts), s.beam, s.max_new_tokens, model.config.vocab_size
    width = max(len(p) for p in prompts)
    ids = torch.zeros(B, width, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, :len(p)] = torch.tensor(p, dtype=torch.long)
    ids = ids.to(device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    last = torch.zeros(B, width, dtype=torch.bool, device=device)  # a mask (the prefill may sync once per batch)
    last[torch.arange(B, device=device), lengths - 1] = True
    cache = BeamKVCache(n_inputs=B, beam=K, prompt_len=width, max_new_tokens=M, device=device)
    logits = model(ids, kv_cache=cache, input_lengths=lengths, logits_mask=last)  # [B, V]: one row per prompt
    sdt = torch.promote_types(logits.dtype, torch.float32)  # scores never accumulate in bf16
    eos = torch.tensor(s.eos_ids, dtype=torch.long, device=device)
    neg_inf = torch.tensor(float("-inf"), dtype=sdt, device=device)
    # lp_denominator[L] = L ** length_penalty for a hypothesis of L generated tokens (index 0 unused), computed in
    # Python floats as the reference does and copied to the device once
    lp_denominator = torch.tensor([float("-inf")] + [float(L) ** s.length_penalty for L in range(1, M + 1)],
                                  dtype=sdt, device=device)

    active = torch.arange(B, device=device)              # inputs still searching (batch positions)
    n_active = B                                          # len(active), known on the host
    scores = torch.zeros(B, 1, dtype=sdt, device=device)  # [b, beams]: beam log-prob sums
    history = torch.zeros(B, 1, M, dtype=torch.long, device=device)  # generated tokens per beam
    best_score = torch.full((B,), float("-inf"), dtype=sdt, device=device)
    has_best = torch.zeros(B, dtype=torch.bool, device=device)
    best_ids = torch.zeros(B, M, dtype=torch.long, device=device)
    best_len = torch.zeros(B, dtype=torch.long, device=device)
    best_finished = torch.zeros(B, dtype=torch.bool, device=device)

    def offer(candidates: torch.Tensor, norm: torch.Tensor, step_len: int, finished: bool) -> None:
        """Take, per input, the first best of the candidates [b, K] if it beats the best so far (strictly);
        inputs without a candidate or a better one keep theirs (written back unchanged: no data-dependent branch)."""
        masked = torch.where(candidates, norm, neg_inf)
        top = masked.max(dim=1).values
        first = (candidates & (norm == top[:, None])).to(torch.int8).argmax(dim=1)  # first in rank order
        take = candidates.any(dim=1) & (~has_best[active] | (best_score[active] < top))
        best_score[active] = torch.where(take, top, best_score[active])
        has_best[active] = has_best[active] | take
        chosen = history.gather(1, first[:, None, None].expand(-1, 1, M)).squeeze(1)
        best_ids[active] = torch.where(take[:, None], chosen, best_ids[active])
        best_len[active] = torch.where(take, step_len, best_len[active])
        best_finished[active] = torch.where(take, finished, best_finished[active])

    for step in range(M):
        b = n_active
        logp = torch.log_softmax(apply_bans(logits.to(sdt), history.view(-1, M)[:, :step], step, s, eos), dim=-1)
        if step == 0:
            candidates = logp.view(b, V)  # all beams hold the same prompt: expand beam 0 only
        else:
            candidates = (scores[:, :, None] + logp.view(b, K, V)).view(b, K * V)
        scores, index = topk_stable(candidates, K)
        source = torch.div(index, V, rounding_mode="floor")
        token = index % V
        history = history.gather(1, source[:, :, None].expand(-1, -1, M))
        history[:, :, step] = token

        ended = torch.isin(token, eos)
        offer(ended, scores / lp_denominator[step + 1], step + 1, True)
        scores = torch.where(ended, neg_inf, scores)
        if step == M - 1:
            offer(torch.ones_like(ended), scores / lp_denominator[M], M, False)
            break

        leaving = 0
        if early_stop:
            # Future lengths L in [step+2, M]; L ** lp is monotone, so its maximum is at an end of the range.
            denominator = torch.maximum(lp_denominator[step + 2], lp_denominator[M])
            bound = scores.max(dim=1).values / denominator
            keep = ~(has_best[active] & (best_score[active] >= bound))
            leaving = b - int(keep.sum())  # the step's one synchronisation: may inputs stop?
            if stats is not None:
                stats["stopped_early"] = stats.get("stopped_early", 0) + leaving
            if leaving == b:
                break
        if leaving:  # inputs leave the batch: their rows and keys go (a step that is not steady state)
            kept = keep.nonzero().squeeze(1)
            cache.reorder_beams_(source[kept], kept)
            active, scores, history, token = active[kept], scores[kept], history[kept], token[kept]
            n_active = b - leaving
        else:
            cache.reorder_beams_(source)  # beams follow their parents
        logits = model(token.view(-1, 1), kv_cache=cache)[:, -1]
        if stats is not None:
            stats["steps"] = stats.get("steps", 0) + 1
            stats["beam_rows"] = stats.get("beam_rows", 0) + n_active * K

    out = []
    for score, n_ids, finished, row in zip(best_score.tolist(), best_len.tolist(), best_finished.tolist(),
                                           best_ids.tolist()):
        n = n_ids - (1 if finished else 0)
        out.append(Hypothesis(row[:n], score, finished))
    return out


def apply_bans(logits: torch.Tensor, history: torch.Tensor, step: int, s: BeamSettings,
               eos: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's logit processing, in its order, on rows [R, V] with generated tokens `history` [R, step].

    Modifies `logits` in place (the caller passes a fresh tensor) and returns it. `eos`: s.eos_ids as a tensor on
    the logits' device (made here if not given). No operation here waits for the device.
    """
    if step > 0 and s.repetition_penalty != 1.0:
        # each distinct generated token once: a repeated index gathers the original value and writes the same result
        seen = logits.gather(1, history)
        logits.scatter_(1, history, torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty))
    if step < s.min_length and s.eos_ids:
        if eos is None:
            eos = torch.tensor(s.eos_ids, dtype=torch.long, device=logits.device)
        logits.index_fill_(1, eos, float("-inf"))
    n = s.no_repeat_ngram_size
    if n == 1 and step > 0:
        logits.scatter_(1, history, float("-inf"))
    elif n > 1 and step >= n:
        # windows[:, j] = tokens j .. j+n-2; the last window is the current (n-1)-token suffix; a match at j bans
        # the token that followed that prefix, history[:, j+n-1]. A token may follow several prefixes, matched or
        # not: the minimum over -inf (matched) and +inf (not) bans it if any matched, deterministically.
        windows = history.unfold(1, n - 1, 1)
        match = (windows[:, :-1] == windows[:, -1:]).all(dim=-1)
        followers = history[:, n - 1:step]
        logits.scatter_reduce_(1, followers, torch.where(match, float("-inf"), float("inf")).to(logits.dtype),
                               reduce="amin")
    return logits


def topk_stable(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k largest values in descending order with ties broken by lower index (= the first k of a
    stable descending sort), so the result depends only on the row's values, never on the batch around it.

    torch.topk breaks ties arbitrarily, so it takes a window of 2k and orders it by (value descending, index
    ascending): exact unless a tie at the k-th value reaches the window's end, which one synchronisation checks
    (such rows are redone over the whole row; in beam search only an input whose beams all died can tie so).
    """
    n = x.shape[1]
    if k >= n:
        return torch.sort(x, dim=1, descending=True, stable=True)
    w = min(n, 2 * k)
    values, index = torch.topk(x, w, dim=1)
    # canonical order: value descending, then index ascending
    index, by_index = index.sort(dim=1)
    values, order = values.gather(1, by_index).sort(dim=1, descending=True, stable=True)
    index = index.gather(1, order)
    if w < n:
        overflow = values[:, k - 1] == values[:, w - 1]  # the k-th value may continue past the window
        if bool(overflow.any()):
            for r in overflow.nonzero().flatten().tolist():
                row, threshold = x[r], values[r, k - 1]
                above = (row > threshold).nonzero().flatten()
                at = (row == threshold).nonzero().flatten()[: k - len(above)]
                ranked = torch.cat([above, at])
                ranked = ranked[torch.sort(row[ranked], descending=True, stable=True).indices]
                index[r, :k], values[r, :k] = ranked, row[ranked]
    return values[:, :k].contiguous(), index[:, :k].contiguous()
