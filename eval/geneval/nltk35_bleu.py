"""nltk 3.5 `corpus_bleu(..., smoothing_function=SmoothingFunction().method3)`: GenerationEval's "BLEU NLTK".

Kept to the 3.5 arithmetic: per-sentence precision denominators are max(1, n-gram count) (so a hypothesis
shorter than n adds 1), zero unigram matches give 0, zero higher-order matches are replaced by
1 / (2^k * denominator) (k = 1, 2, ... per zero order), and the weighted logs are summed with math.fsum.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

MAX_ORDER = 4


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    return Counter(zip(*(tokens[i:] for i in range(n))))


def corpus_bleu(references: Sequence[Sequence[Sequence[str]]], hypotheses: Sequence[Sequence[str]]) -> float:
    """BLEU (0-1) of token lists `hypotheses[i]` against the token lists `references[i]`."""
    numerators, denominators = [0] * (MAX_ORDER + 1), [0] * (MAX_ORDER + 1)
    hyp_total = ref_total = 0
    for refs, hyp in zip(references, hypotheses, strict=True):
        for n in range(1, MAX_ORDER + 1):
            counts = ngram_counts(hyp, n)
            ref_counts = [ngram_counts(ref, n) for ref in refs]
            numerators[n] += sum(min(c, max(rc[g] for rc in ref_counts)) for g, c in counts.items())
            denominators[n] += max(1, sum(counts.values()))
        hyp_total += len(hyp)
        ref_total += min((len(ref) for ref in refs), key=lambda length: (abs(length - len(hyp)), length))
    if numerators[1] == 0:
        return 0.0
    if hyp_total > ref_total:
        bp = 1.0
    elif hyp_total == 0:
        bp = 0.0
    else:
        bp = math.exp(1 - ref_total / hyp_total)
    precisions, k = [], 1
    for n in range(1, MAX_ORDER + 1):
        if numerators[n] == 0:
            precisions.append(1 / (2 ** k * denominators[n]))
            k += 1
        else:
            precisions.append(numerators[n] / denominators[n])
    return bp * math.exp(math.fsum(0.25 * math.log(p) for p in precisions))
