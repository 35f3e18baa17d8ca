"""Moses `multi-bleu-detok.perl` in Python: the BLEU GenerationEval reports for WebNLG and DART.

Same numbers as the Perl script: its mteval-v13a-style tokenisation (case-sensitive, no lowercasing), 4-gram
precision clipped by the maximum count over references, closest reference length with ties going to the shorter
one, brevity penalty exp(1 - r/c), and log(0) taken as -9999999999. Differences, all on inputs where the Perl
script is broken:
- lines are lines: the Perl script `chop`s every line, so on a file without a final newline it deletes the last
  character of the last line; here a final newline (or its absence) and CRLF line ends change nothing;
- all-empty hypotheses (Perl dies dividing by zero) and all-empty references (Perl prints 0 and exits 1) score 0.
Empty references are kept, as the Perl script keeps them: a reference line that is empty (DART items with fewer
references than the file count) counts as a 0-word reference when picking the closest reference length.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

MAX_ORDER = 4
LOG_ZERO = -9999999999  # the script's my_log(0)
NO_CLOSEST = 9999  # the script's initial closest diff/length

# Perl's \s on (UTF-8 decoded) strings. Python's str.split() would also split on \x1c-\x1f, Perl does not.
PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SPACES = re.compile(f"[{PERL_SPACE}]+")
SGML_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")
PERIOD_COMMA_AFTER_NON_DIGIT = re.compile(r"([^0-9])([\.,])")
PERIOD_COMMA_BEFORE_NON_DIGIT = re.compile(r"([\.,])([^0-9])")
DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def tokenize(line: str) -> str:
    """The script's `tokenization` sub (mteval-v13a's internal tokeniser, Western languages)."""
    text = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in SGML_ENTITIES:
        text = text.replace(entity, char)
    text = PUNCT.sub(r" \1 ", f" {text} ")
    text = PERIOD_COMMA_AFTER_NON_DIGIT.sub(r"\1 \2 ", text)
    text = PERIOD_COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", text)
    text = DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    return SPACES.sub(" ", text).strip(" ")


def words(line: str) -> list[str]:
    text = tokenize(line)
    return text.split(" ") if text else []


def ngram_counts(tokens: list[str], n: int) -> Counter:
    return Counter(zip(*(tokens[i:] for i in range(n))))


@dataclass(frozen=True)
class BleuResult:
    bleu: float  # 0-1; the script prints 100 * bleu with %.2f
    precisions: tuple[float, ...]  # 1..4-gram, 0-1
    brevity_penalty: float
    hyp_len: int
    ref_len: int

    @property
    def score(self) -> float:
        """BLEU on the 0-100 scale the script prints."""
        return 100 * self.bleu

    def perl_line(self) -> str:
        """The script's output line, byte for byte."""
        ratio = self.hyp_len / self.ref_len if self.ref_len else 0.0
        return ("BLEU = %.2f, %.1f/%.1f/%.1f/%.1f (BP=%.3f, ratio=%.3f, hyp_len=%d, ref_len=%d)"
                % (100 * self.bleu, *(100 * p for p in self.precisions), self.brevity_penalty, ratio,
                   self.hyp_len, self.ref_len))


def closest_ref_length(hyp_len: int, ref_lens: list[int]) -> int:
    best_diff, best_len = NO_CLOSEST, NO_CLOSEST
    for length in ref_lens:
        diff = abs(hyp_len - length)
        if diff < best_diff:
            best_diff, best_len = diff, length
        elif diff == best_diff:
            best_len = min(best_len, length)
    return best_len


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> BleuResult:
    """BLEU of detokenised `hypotheses[i]` against the raw strings `references[i]` (one list per hypothesis)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    correct, total = [0] * (MAX_ORDER + 1), [0] * (MAX_ORDER + 1)
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp_words = words(hyp)
        # Repeated references (LoRA pads DART items with the first one) change neither the clipping maxima
        # nor the closest length, so each distinct one is tokenised and counted once.
        ref_words = [words(ref) for ref in dict.fromkeys(refs)]
        hyp_len += len(hyp_words)
        ref_len += closest_ref_length(len(hyp_words), [len(r) for r in ref_words])
        for n in range(1, MAX_ORDER + 1):
            hyp_ngrams = ngram_counts(hyp_words, n)
            if not hyp_ngrams:
                continue
            max_ref = Counter()
            for r in ref_words:
                max_ref |= ngram_counts(r, n)  # | keeps the maximum count per n-gram
            total[n] += sum(hyp_ngrams.values())
            correct[n] += sum(min(count, max_ref[g]) for g, count in hyp_ngrams.items())
    precisions = tuple(correct[n] / total[n] if total[n] else 0.0 for n in range(1, MAX_ORDER + 1))
    if ref_len == 0 or hyp_len == 0:
        return BleuResult(0.0, precisions, 0.0, hyp_len, ref_len)
    bp = math.exp(1 - ref_len / hyp_len) if hyp_len < ref_len else 1.0
    log_sum = 0.0
    for p in precisions:  # summed in the script's order, so the float result is identical
        log_sum += math.log(p) if p else LOG_ZERO
    return BleuResult(bp * math.exp(log_sum / 4), precisions, bp, hyp_len, ref_len)
