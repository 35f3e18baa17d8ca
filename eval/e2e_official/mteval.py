"""Corpus BLEU (4-gram) and NIST (5-gram) as the E2E challenge script computes them, in its two modes.

`official`: the Perl `mteval-v13a-sig.pl` that `measure_scores.py` runs by default on SGML files it writes
  (one reference set per reference position, shorter groups padded with empty segments). Semantics kept:
  v13a tokenisation with ASCII-only lowercasing; BLEU brevity penalty from the reference closest in length
  (ties: the shorter; empty padding ignored), and the v13a smoothing of zero n-gram matches (1/2^k); NIST
  information weights from all references, length penalty against total reference words divided by the
  mean number of (non-empty) references per input. Like the official script, the result is what mteval
  prints: 4 decimals.
`python`: the `-p` port (`metrics/pymteval.py`): same tokenisation but Unicode lowercasing inside n-grams, an
  empty output counts as one empty token, n-gram totals are `len - n + 1` even when negative, no smoothing
  (zero matches become 1e-15), and NIST's length penalty uses the mean over inputs of each group's average
  reference length. Full float precision, computed in the port's order so that the digits agree.
"""
from __future__ import annotations

import math
import re
from collections import Counter

BLEU_N, NIST_N = 4, 5
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2  # length penalty 0.5 at 1.5x shorter than the references

# Perl's \s on Unicode strings (Python's \s also matches \x1c-\x1f, which Perl does not).
PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_perl_spaces = re.compile(f"[{PERL_SPACE}]+")
# mteval's punctuation class [\{-\~\[-\` -\&\(-\+\:-\@\/], spelled as code point ranges.
_V13A_PUNCT = r"([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def tokenize_official(text: str) -> list[str]:
    """Tokens as mteval-v13a.pl sees a segment (after the SGML reader collapses whitespace runs)."""
    text = _perl_spaces.sub(" ", text)
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    text = f" {text} ".translate(_ASCII_LOWER)
    text = re.sub(_V13A_PUNCT, r" \1 ", text)
    text = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", text)
    text = re.sub(r"([\.,])([^0-9])", r" \1 \2", text)
    text = re.sub(r"([0-9])(-)", r"\1 \2 ", text)
    return [tok for tok in _perl_spaces.split(text) if tok]


def tokenize_python_port(text: str) -> list[str]:
    """Tokens as pymteval's `tokenize` makes them (Python's own \\s and strip; '' -> [''])."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    text = f" {text} "
    text = re.sub(_V13A_PUNCT, r" \1 ", text)
    text = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", text)
    text = re.sub(r"([\.,])([^0-9])", r" \1 \2", text)
    text = re.sub(r"([0-9])(-)", r"\1 \2 ", text)
    return re.sub(r"\s+", " ", text).strip().split(" ")


def ngram_counts(tokens: list[str], max_n: int) -> Counter:
    """Counts of all 1..max_n-grams (tuples), ordered by n, then by first occurrence."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1))


def _clip_counts(ref_counts: list[Counter]) -> dict:
    """For each n-gram, its largest count in any single reference (the clipping limit)."""
    merged: dict = {}
    for counts in ref_counts:
        for gram, count in counts.items():
            if count > merged.get(gram, 0):
                merged[gram] = count
    return merged


# ---- official (Perl mteval-v13a-sig.pl) ---------------------------------------------------------------------

def _closest_ref_length(ref_lengths: list[int], hyp_length: int) -> int:
    """mteval's `brevity_penalty_closest` fold: starts from the first reference, skips empty ones (the -sig
    edit, so that padding segments never count), prefers the shorter reference on ties."""
    best = ref_lengths[0]
    for length in ref_lengths[1:]:
        if length and (abs(hyp_length - length), length) < (abs(hyp_length - best), best):
            best = length
    return best


def _ngram_information(ref_counts: list[list[Counter]], total_words: int) -> dict:
    """NIST info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)) over all reference segments."""
    counts: Counter = Counter()
    for group in ref_counts:
        for ref in group:
            counts.update(ref)
    return {gram: -math.log(count / (counts[gram[:-1]] if len(gram) > 1 else total_words)) / math.log(2)
            for gram, count in counts.items()}


def _official_bleu(ref_length: int, matches: list[int], totals: list[int]) -> float:
    """mteval `bleu_score` (smoothed): zero-match orders count 1/(2^k * total)."""
    brevity = math.exp(min(0.0, 1 - ref_length / totals[1])) if totals[1] > 0 else 0.0
    log_sum, smooth = 0.0, 1
    for n in range(1, BLEU_N + 1):
        if totals[n] == 0:
            log_precision = 0.0
        elif matches[n] == 0:
            smooth *= 2
            log_precision = math.log(1 / (smooth * totals[n]))
        else:
            log_precision = math.log(matches[n] / totals[n])
        log_sum += log_precision
    return math.exp(log_sum / BLEU_N) * brevity


def _nist_length_penalty(ratio: float) -> float:
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-NIST_BETA * math.log(ratio) ** 2)


def mteval_official(refs: list[list[str]], hyps: list[str], rounded: bool = True) -> dict[str, float]:
    """{'BLEU', 'NIST'} as mteval-v13a-sig.pl prints them (rounded to 4 decimals unless `rounded=False`)."""
    top = max(BLEU_N, NIST_N)
    ref_toks = [[tokenize_official(r) for r in group] for group in refs]
    ref_counts = [[ngram_counts(r, top) for r in group] for group in ref_toks]
    ref_words = sum(len(r) for group in ref_toks for r in group)
    info = _ngram_information(ref_counts, ref_words)
    # The -sig edit: NIST's "number of reference sets" is the mean count of non-empty references per input.
    mean_refs = sum(1 for group in ref_toks for r in group if r) / len(ref_toks)
    matches, totals, info_sums = [0] * (top + 1), [0] * (top + 1), [0.0] * (top + 1)
    ref_length = 0
    for group, counts, hyp in zip(ref_toks, ref_counts, map(tokenize_official, hyps)):
        ref_length += _closest_ref_length([len(r) for r in group], len(hyp))
        for n in range(1, top + 1):
            totals[n] += max(0, len(hyp) - n + 1)
        clip = _clip_counts(counts)
        for gram, count in ngram_counts(hyp, top).items():
            if gram in clip:
                hits = min(count, clip[gram])
                matches[len(gram)] += hits
                info_sums[len(gram)] += info[gram] * hits
    bleu = _official_bleu(ref_length, matches, totals)
    nist = sum(info_sums[n] / max(totals[n], 1) for n in range(1, NIST_N + 1))
    nist *= _nist_length_penalty(totals[1] / (ref_words / mean_refs))
    if not rounded:
        return {"BLEU": bleu, "NIST": nist}
    # measure_scores.py parses mteval's printout ('%.4f' / '%2.4f'), so 4 decimals is all it ever reports.
    return {"BLEU": float(f"{bleu:.4f}"), "NIST": float(f"{nist:.4f}")}


# ---- python (-p, pymteval.py) -------------------------------------------------------------------------------

def mteval_python(refs: list[list[str]], hyps: list[str]) -> dict[str, float]:
    """{'BLEU', 'NIST'} as measure_scores.py -p computes them, at full precision (same float operations in the
    same order as the port, so the last digits agree too)."""
    top = max(BLEU_N, NIST_N)
    ref_toks = [[tokenize_python_port(r) for r in group] for group in refs]
    hyp_toks = [tokenize_python_port(h) for h in hyps]
    # The port lowercases inside its n-gram function only; lengths come from the original tokens.
    ref_counts = [[ngram_counts([t.lower() for t in r], top) for r in group] for group in ref_toks]
    hyp_counts = [ngram_counts([t.lower() for t in h], top) for h in hyp_toks]

    bleu_hits, bleu_lens, bleu_ref_len = [0] * (BLEU_N + 1), [0] * (BLEU_N + 1), 0
    nist_hits: list[list[dict]] = [[] for _ in range(NIST_N + 1)]  # per order: one {gram: hits} per input
    nist_lens = [0] * (NIST_N + 1)
    all_ref_counts: Counter = Counter()
    zero_gram_count, avg_ref_len = 0, 0.0
    for group, counts, hyp, hyp_grams in zip(ref_toks, ref_counts, hyp_toks, hyp_counts):
        clip = _clip_counts(counts)
        hits_by_order = [{} for _ in range(top + 1)]
        for gram, count in hyp_grams.items():
            if hits := min(count, clip.get(gram, 0)):
                hits_by_order[len(gram)][gram] = hits
        for n in range(1, BLEU_N + 1):
            bleu_hits[n] += sum(hits_by_order[n].values())
            bleu_lens[n] += len(hyp) - (n - 1)  # can go negative for short outputs, as in the port
        bleu_ref_len += len(min(group, key=lambda r: (abs(len(r) - len(hyp)), len(r))))
        for n in range(1, NIST_N + 1):
            nist_lens[n] += len(hyp) - (n - 1)
            nist_hits[n].append(hits_by_order[n])
        for ref in counts:
            all_ref_counts.update(ref)
        ref_len_sum = sum(len(r) for r in group)
        zero_gram_count += ref_len_sum
        avg_ref_len += ref_len_sum / float(len(group))

    brevity = 1.0
    if bleu_lens[1] <= bleu_ref_len:
        brevity = math.exp(1.0 - bleu_ref_len / (float(bleu_lens[1]) if bleu_lens[1] else 1e-5))
    log_sum = 0.0
    for n in range(1, BLEU_N + 1):
        log_sum += math.log(max(bleu_hits[n], 1e-15) / max(bleu_lens[n], 1e-9))
    bleu = brevity * math.exp((1.0 / BLEU_N) * log_sum)

    def info(gram: tuple) -> float:
        prefix_count = all_ref_counts[gram[:-1]] if len(gram) > 1 else zero_gram_count
        return math.log(prefix_count / float(all_ref_counts[gram]), 2)

    nist_sum = 0
    for n in range(1, NIST_N + 1):
        hit_info = 0.0
        for grams in nist_hits[n]:
            hit_info += sum(info(g) * h for g, h in grams.items())
        # The port divides by zero when no output has n words; count that order as contributing nothing.
        nist_sum += hit_info / nist_lens[n] if nist_lens[n] else 0.0
    nist = _nist_length_penalty(nist_lens[1] / float(avg_ref_len)) * nist_sum
    return {"BLEU": bleu, "NIST": nist}


def count_port_quirk_outputs(hyps: list[str]) -> int:
    """Hypotheses of at most 3 port tokens (an empty one is 1 token), for which the -p port adds negative
    n-gram totals (len - n + 1 < 0) and so inflates BLEU/NIST where mteval counts 0."""
    return sum(len(tokenize_python_port(h)) <= 3 for h in hyps)


def mteval(refs: list[list[str]], hyps: list[str], mode: str = "official") -> dict[str, float]:
    if mode == "official":
        return mteval_official(refs, hyps)
    if mode == "python":
        return mteval_python(refs, hyps)
    raise ValueError(f"unknown mteval mode {mode!r}; use 'official' (Perl mteval-v13a) or 'python' (-p port)")
