"""Beam search: the fast batched/cached search against a slow, literal re-implementation of gpt2_beam.py.

The test model is the real GPT-2 (tiny preset, LoRA with non-zero B, KV cache, per-row prompt lengths) with
one change: the output rows of ~40 tokens, both end tokens among them, are independent random vectors with a
large norm. Beams then move among those tokens, so 4-grams repeat (the ban fires), end tokens win at some
steps (hypotheses finish early) and other hypotheses run to max_new_tokens. The comparison runs in float64,
so fast and slow differ by ~1e-15 and agreement token for token is a real check, not a tie-breaking lottery.
"""
from __future__ import annotations

import inspect
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from lora_nlg import GPT2, GPT2Config, LoRAConfig
from lora_nlg.decode.search import BeamSettings, apply_bans, beam_search, generate, plan_batches, topk_stable

EOS = (50256, 628)


class PeakyGPT2(GPT2):
    """GPT-2 whose LM head has large random rows for a few tokens (the body, LoRA and cache are untouched)."""

    def forward(self, input_ids, *, logits_mask=None, kv_cache=None, input_lengths=None):
        h = self.hidden(input_ids, kv_cache, input_lengths)
        if logits_mask is not None:
            h = h[logits_mask]
        return F.linear(h, self.head.to(h.dtype))


def make_model(seed: int = 0, dtype: torch.dtype = torch.float64, scale: float = 0.6) -> PeakyGPT2:
    torch.manual_seed(seed)
    model = PeakyGPT2(GPT2Config.preset("tiny"), lora=LoRAConfig(r=4, alpha=32))
    with torch.no_grad():
        for p in model.lora_parameters():
            p.normal_(0, 0.2)  # B = 0 at init would make LoRA a no-op
        head = model.transformer.wte.weight.detach().clone()
        hot = torch.randperm(50000)[:40].tolist() + list(EOS)
        head[hot] = torch.randn(len(hot), head.shape[1]) * scale
    model.register_buffer("head", head)
    return model.to(dtype).eval()


def random_prompts(n: int, seed: int, max_len: int = 30) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len, (n,), generator=g)
    return [torch.randint(0, 50000, (int(k),), generator=g).tolist() + [50256] for k in lengths]


# ------------------------------------------------------------------------------------------ slow reference
def banned_ngram_tokens(history: list[int], n: int) -> list[int]:
    """fairseq/_calc_banned_ngram_tokens for one hypothesis: a dict from (n-1)-gram to the tokens that followed."""
    step = len(history)
    if step + 1 < n:
        return []
    followers: dict[tuple, list[int]] = {}
    for gram in zip(*[history[i:] for i in range(n)]):
        followers.setdefault(tuple(gram[:-1]), []).append(gram[-1])
    return followers.get(tuple(history[step + 1 - n:]), [])


def slow_beam_search(model, prompt: list[int], s: BeamSettings, stats: Counter) -> tuple[list[int], float]:
    """gpt2_beam.py for one prompt, literally: a full forward per step (no cache), Python loops per hypothesis,
    bans on the logits then log_softmax, top-K of all K·V candidates (ties: lower candidate index first),
    finished slots scored sum/len**lp and set to -inf, best = first strictly greater, live beams at the end."""
    K, V, M = s.beam, model.config.vocab_size, s.max_new_tokens
    beams, scores = [[]], [0.0]  # step 0: one row; the reference's K identical copies expand beam 0 only
    best: tuple[float, list[int]] | None = None
    for step in range(M):
        seqs = torch.tensor([prompt + h for h in beams])
        last = torch.zeros_like(seqs, dtype=torch.bool)
        last[:, -1] = True
        with torch.no_grad():
            logits = model(seqs, logits_mask=last).double()
        candidates = []
        for r, (hist, score) in enumerate(zip(beams, scores)):
            row = logits[r].clone()
            unbanned_top = set(torch.topk(row, K).indices.tolist())
            if step > 0 and s.repetition_penalty != 1.0:
                for t in set(hist):
                    row[t] = row[t] * s.repetition_penalty if row[t] < 0 else row[t] / s.repetition_penalty
            if step < s.min_length:
                for e in s.eos_ids:
                    row[e] = -math.inf
            if s.no_repeat_ngram_size > 0 and step > 0:
                banned = banned_ngram_tokens(hist, s.no_repeat_ngram_size)
                stats["bans_in_top_k"] += len(unbanned_top & set(banned))
                for t in banned:
                    row[t] = -math.inf
            logp = torch.log_softmax(row, dim=-1)
            top = torch.topk(logp, K + 1)
            assert top.values[K - 1] != top.values[K], "a tie at the cut would make the row's K best ambiguous"
            candidates += [(score + v, r * V + t) for v, t in zip(top.values[:K].tolist(), top.indices[:K].tolist())]
        candidates.sort(key=lambda c: (-c[0], c[1]))
        beams = [beams[i // V] + [i % V] for _, i in candidates[:K]]
        scores = [c for c, _ in candidates[:K]]
        for j, hist in enumerate(beams):
            if hist[-1] in s.eos_ids:
                norm = scores[j] / (step + 1) ** s.length_penalty
                if best is None or best[0] < norm:
                    best = (norm, hist[:-1])
                scores[j] = -math.inf
                stats["finished"] += 1
    for j, hist in enumerate(beams):
        norm = scores[j] / M ** s.length_penalty
        if best is None or best[0] < norm:
            best = (norm, hist)
    stats["ran_to_max_length"] += len(best[1]) == M
    return best[1], best[0]


# ------------------------------------------------------------------------------------------ tests
SETTINGS = [
    BeamSettings(beam=5, length_penalty=0.8, no_repeat_ngram_size=4, max_new_tokens=20),
    BeamSettings(beam=5, length_penalty=0.9, no_repeat_ngram_size=4, max_new_tokens=20),
    BeamSettings(beam=3, length_penalty=0.8, no_repeat_ngram_size=2, repetition_penalty=1.5, min_length=3,
                 max_new_tokens=16),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["lp0.8", "lp0.9", "rep1.5-min3-ngram2"])
def test_fast_search_equals_slow_reference_token_for_token(settings):
    model = make_model(seed=1)
    prompts = random_prompts(12, seed=2)
    stats: Counter = Counter()
    expected = [slow_beam_search(model, p, settings, stats) for p in prompts]
    got = generate(model, prompts, settings, batch_size=5)
    assert [h.ids for h in got] == [ids for ids, _ in expected]
    for h, (_, score) in zip(got, expected):
        assert h.score == pytest.approx(score, rel=1e-12, abs=1e-12)
    # the comparison exercised every rule: early ends, max-length outputs, n-gram bans that changed the top-K
    assert stats["finished"] > 0 and stats["bans_in_top_k"] > 0
    assert 0 < stats["ran_to_max_length"] < len(prompts)
    assert sum(h.finished for h in got) == len(prompts) - stats["ran_to_max_length"]


def test_batched_equals_one_at_a_time_fp32_with_lora():
    model = make_model(seed=3, dtype=torch.float32)
    prompts = random_prompts(11, seed=4, max_len=40)
    assert len({len(p) for p in prompts}) > 5
    batched = beam_search(model, prompts, beam=10, max_new_tokens=24, batch_size=4)
    single = [beam_search(model, [p], beam=10, max_new_tokens=24, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert beam_search(model, prompts, beam=10, max_new_tokens=24, batch_size=16) == single
    assert all(not set(ids) & set(EOS) and len(ids) <= 24 for ids in batched)


@pytest.mark.parametrize("dtype, length_penalty", [(torch.float64, 0.8), (torch.float32, 0.8),
                                                    (torch.float64, 2.0), (torch.float64, 0.0)])
def test_early_stop_never_changes_the_output(dtype, length_penalty):
    model = make_model(seed=5, dtype=dtype)
    prompts = random_prompts(14, seed=6)
    settings = BeamSettings(beam=4, length_penalty=length_penalty, max_new_tokens=40)
    fast_stats, full_stats = {}, {}
    fast = generate(model, prompts, settings, batch_size=7, stats=fast_stats)
    full = generate(model, prompts, settings, batch_size=7, early_stop=False, stats=full_stats)
    assert [(h.ids, h.finished) for h in fast] == [(h.ids, h.finished) for h in full]
    assert [h.score for h in fast] == pytest.approx([h.score for h in full], rel=1e-5)
    assert fast_stats["stopped_early"] > 0 and fast_stats["beam_rows"] < full_stats["beam_rows"]
    assert full_stats.get("stopped_early", 0) == 0


class MarkovLM(torch.nn.Module):
    """A scripted 'language model': the next-token distribution depends on the last token only."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 8) -> None:
        super().__init__()
        self.config = GPT2Config(vocab_size=vocab, n_positions=1024)
        probs = torch.full((vocab, vocab), 1 / vocab, dtype=torch.float64)  # unlisted rows: uniform
        for last, row in table.items():
            probs[last] = 0.0
            for tok, p in row.items():
                probs[last, tok] = p
        self.register_buffer("log_probs", probs.log())
        self.lm_head_weight = self.log_probs

    def forward(self, input_ids, *, logits_mask=None, kv_cache=None, input_lengths=None):
        if kv_cache is not None:  # nothing to store, but the cache still counts tokens, as GPT2.hidden makes it
            kv_cache.advance(input_lengths if input_lengths is not None else input_ids.shape[1])
        logits = self.log_probs[input_ids]
        return logits[logits_mask] if logits_mask is not None else logits


# Each scenario: after step 0 an end token has finished and one live beam remains that wins only later, so a
# bound one notch too optimistic (L = step+2 instead of max_new_tokens for lp > 0)
# would stop too early and return the empty hypothesis.
MARGIN_CASES = {
    # lp > 0: the live beam wins at max length (its sum is divided by 10 ** 1)
    "lp=1.0": (1.0, {0: {7: 0.7, 1: 0.3}, 1: {2: 1.0}, 2: {3: 1.0}, 3: {1: 1.0}}, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]),
}


@pytest.mark.parametrize("case", list(MARGIN_CASES))
def test_early_stop_bound_is_exact_at_the_margin(case):
    length_penalty, table, expected = MARGIN_CASES[case]
    model = MarkovLM(table)
    settings = BeamSettings(beam=2, length_penalty=length_penalty, no_repeat_ngram_size=0, max_new_tokens=10,
                            eos_ids=(7,))
    for early_stop in (True, False):
        assert [h.ids for h in generate(model, [[0]], settings, early_stop=early_stop)] == [expected]


@pytest.mark.parametrize("length_penalty", [-0.5, -1e-9, float("nan"), float("inf"), float("-inf")])
def test_a_length_penalty_that_cannot_rank_descriptions_is_refused(length_penalty):
    with pytest.raises(ValueError, match="decode.length_penalty.*must be a finite number >= 0"):
        BeamSettings(length_penalty=length_penalty)


def test_bfloat16_and_float64_models_decode():
    prompts = random_prompts(4, seed=7)
    for dtype in (torch.bfloat16, torch.float64):
        model = make_model(seed=8, dtype=dtype)
        outs = generate(model, prompts, BeamSettings(beam=3, max_new_tokens=12), batch_size=2)
        assert len(outs) == 4 and all(len(h.ids) <= 12 and math.isfinite(h.score) for h in outs)


def test_greedy_is_beam_one():
    model = make_model(seed=9)
    prompt = random_prompts(1, seed=10)[0]
    ids = beam_search(model, [prompt], beam=1, no_repeat_ngram_size=0, max_new_tokens=10, eos_ids=())[0]
    seq = list(prompt)
    for _ in range(10):
        with torch.no_grad():
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert ids == seq[len(prompt):]


def test_over_long_prompt_keeps_its_last_tokens():
    model = make_model(seed=11)
    prompt = torch.randint(0, 50000, (1030,), generator=torch.Generator().manual_seed(0)).tolist() + [50256]
    kept = prompt[-(1024 - 8):]
    assert beam_search(model, [prompt], beam=2, max_new_tokens=8) == beam_search(model, [kept], beam=2, max_new_tokens=8)


def test_apply_bans_matches_the_per_hypothesis_rules():
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 4):
        for step in (0, 1, 3, 4, 9):
            history = torch.randint(0, 6, (7, step), generator=g)  # small alphabet: many repeats
            logits = torch.randn(7, 12, generator=g, dtype=torch.float64)
            s = BeamSettings(no_repeat_ngram_size=n, repetition_penalty=1.7, min_length=4, eos_ids=(10, 11))
            got = apply_bans(logits.clone(), history, step, s)
            for r in range(7):
                want = logits[r].clone()
                hist = history[r].tolist()
                if step > 0:
                    for t in set(hist):
                        want[t] = want[t] * 1.7 if want[t] < 0 else want[t] / 1.7
                    for t in banned_ngram_tokens(hist, n):
                        want[t] = -math.inf
                if step < 4:
                    want[[10, 11]] = -math.inf
                assert torch.equal(got[r], want), (n, step, r)


def test_topk_stable_breaks_ties_by_index_like_a_stable_sort():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (6, 50), generator=g).float()  # nearly everything ties
    x[0] = float("-inf")
    x[1, :3] = 5.0
    for k in (1, 3, 10, 50):
        values, index = topk_stable(x, k)
        ref_values, ref_index = torch.sort(x, dim=1, descending=True, stable=True)
        assert torch.equal(index, ref_index[:, :k]) and torch.equal(values, ref_values[:, :k])


def test_public_signature_is_the_contract():
    params = inspect.signature(beam_search).parameters
    assert {k: v.default for k, v in params.items() if k not in ("model", "prompts")} == dict(
        beam=10, length_penalty=0.8, no_repeat_ngram_size=4, repetition_penalty=1.0, min_length=0,
        max_new_tokens=64, eos_ids=(50256, 628), batch_size=16)


def test_batches_group_similar_lengths_and_respect_the_cache_slot_cap():
    settings = BeamSettings(beam=2, max_new_tokens=4)
    assert plan_batches([3, 10, 8], settings, batch_size=2) == [[1, 2], [0]]  # longest first, 2 per batch
    # a batch costs inputs x (its longest prompt + beam x max_new_tokens) slots: 2 x (10 + 8) = 36
    assert plan_batches([10, 8, 3], settings, batch_size=16, max_batch_tokens=36) == [[0, 1], [2]]
    assert plan_batches([10, 8, 3], settings, batch_size=16, max_batch_tokens=35) == [[0], [1, 2]]  # 2 x 16 = 32
