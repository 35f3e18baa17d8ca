"""TER as GenerationEval computes it: pyter's sentence TER, minimum over references, mean over segments.

pyter (`pyter3==0.3`, the version GenerationEval pins) is not Tercom: its shifts are greedy over *every* pair of
equal words at different positions (extended to the longest common run, no length or distance limit), the shifted
phrase is inserted at the reference position of the match, and among the shifts that lower the Levenshtein
distance most it takes the one whose shifted word list sorts last (it sorts (gain, words) tuples and takes the
final one). It stops when no shift lowers the distance. TER = (shifts + Levenshtein distance) / reference length.

This module makes those same choices, so the numbers are identical, but computes the distances with rapidfuzz
(C++) and prunes shifts that cannot win; pyter itself needs ~50 s for the 1862 WebNLG test items, and DART has
three times as many items with twice as many references.
"""
from __future__ import annotations

from typing import Sequence

from rapidfuzz.distance import Levenshtein


def _encode(hyp: Sequence[str], ref: Sequence[str]) -> tuple[list[int], list[int]]:
    """Words as ints numbered in string order, so comparing id lists compares the word lists."""
    ids = {word: i for i, word in enumerate(sorted(set(hyp) | set(ref)))}
    return [ids[w] for w in hyp], [ids[w] for w in ref]


def _best_shift(hyp: list[int], ref: list[int], distance: int, positions: dict[int, list[int]]) -> list[int] | None:
    """pyter's `_shift`: the shifted hypothesis with the largest positive gain (ties: largest list), or None."""
    if distance == 0:
        return None
    best_gain, best_words = 0, None
    n_hyp, n_ref = len(hyp), len(ref)
    for i1, word in enumerate(hyp):
        for i2 in positions.get(word, ()):
            if i1 == i2:
                continue
            length = 1
            while i1 + length < n_hyp and i2 + length < n_ref and hyp[i1 + length] == ref[i2 + length]:
                length += 1
            shifted = hyp[:i1] + hyp[i1 + length:]
            shifted[i2:i2] = hyp[i1:i1 + length]
            # Only gains >= max(best, 1) can change the outcome, so cap the distance computation there.
            cutoff = distance - max(best_gain, 1)
            new_distance = Levenshtein.distance(shifted, ref, score_cutoff=cutoff)
            if new_distance > cutoff:
                continue
            gain = distance - new_distance
            if gain > best_gain or (gain == best_gain and shifted > best_words):
                best_gain, best_words = gain, shifted
    return best_words


def sentence_ter(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """pyter.ter(hyp, ref) for token lists; `ref` must not be empty (pyter divides by its length)."""
    if not ref:
        raise ValueError("TER of an empty reference is undefined (pyter raises ZeroDivisionError)")
    hyp_ids, ref_ids = _encode(hyp, ref)
    positions: dict[int, list[int]] = {}
    for i, word in enumerate(ref_ids):
        positions.setdefault(word, []).append(i)
    shifts = 0
    distance = Levenshtein.distance(hyp_ids, ref_ids)
    while (shifted := _best_shift(hyp_ids, ref_ids, distance, positions)) is not None:
        shifts += 1
        hyp_ids = shifted
        distance = Levenshtein.distance(hyp_ids, ref_ids)
    return (shifts + distance) / len(ref_ids)


def segment_ter(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """GenerationEval `ter_score`: mean over items of the minimum sentence TER over the item's references.

    Inputs are whitespace-tokenised strings (GenerationEval passes nltk-tokenised text). An empty reference
    scores 1, as GenerationEval scores it (it may still be the minimum), so items with fewer references are
    handled the same way; an empty hypothesis against a non-empty reference scores 1 (all deletions).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    if not hypotheses:
        raise ValueError("TER of zero segments is undefined")
    total = 0.0
    for hyp, refs in zip(hypotheses, references):
        hyp_words = hyp.split()
        # dict.fromkeys: the same reference twice (LoRA pads missing DART references with the first) scores once
        total += min(sentence_ter(hyp_words, ref.split()) if ref.split() else 1 for ref in dict.fromkeys(refs))
    return total / len(hypotheses)
