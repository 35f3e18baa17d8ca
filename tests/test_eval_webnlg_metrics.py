"""WebNLG/DART metric pieces, no Java: multi-bleu-detok BLEU, pyter TER, sacrebleu corpus TER, nltk 3.5 tokenizer."""
from __future__ import annotations

import math
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from geneval import corpus_ter, multi_bleu_detok, nltk35_bleu, scorer, ter
from geneval.nltk35_punkt import english_model, sent_tokenize
from geneval.nltk35_tokenize import treebank_tokenize, word_tokenize

REPO = Path(__file__).resolve().parents[1]

# ---- BLEU (multi-bleu-detok.perl) -------------------------------------------------------------------------------


def test_bleu_brevity_penalty_by_hand():
    # Every n-gram matches; 5 words against a 7-word reference: BLEU = exp(1 - 7/5).
    result = multi_bleu_detok.corpus_bleu(["a b c d e"], [["a b c d e f g"]])
    assert result.precisions == (1.0, 1.0, 1.0, 1.0)
    assert (result.hyp_len, result.ref_len) == (5, 7)
    assert result.score == pytest.approx(100 * math.exp(1 - 7 / 5), rel=1e-15)


def test_bleu_multi_reference_by_hand():
    # Two references 1 word away from the 5-word hypothesis (6 and 4 words): the script takes the shorter, so
    # no brevity penalty. Matches: 4/5 unigrams, 3/4 bigrams, 2/3 trigrams, 1/2 4-grams.
    result = multi_bleu_detok.corpus_bleu(["a b c d x"], [["a b c d y z", "p q r s"]])
    assert result.ref_len == 4 and result.brevity_penalty == 1.0
    assert result.precisions == (4 / 5, 3 / 4, 2 / 3, 1 / 2)
    assert result.score == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, rel=1e-14)
    # Clipping takes the maximum count over references: "the" x3 against at most 2 in one reference.
    clipped = multi_bleu_detok.corpus_bleu(["the the the"], [["the cat", "the the dog"]])
    assert clipped.precisions[0] == 2 / 3


def test_bleu_counts_an_empty_reference_as_zero_words():
    # DART items with fewer references have empty lines; the Perl script lets an empty reference be "closest".
    result = multi_bleu_detok.corpus_bleu(["a b", ""], [["a b c d e f", "a b"], ["x y z", ""]])
    assert (result.hyp_len, result.ref_len) == (2, 2)


def test_bleu_tokenisation_is_mteval_13a():
    tok = multi_bleu_detok.tokenize
    assert tok("Hello,world. 3.5 1,000 x-y 1-2 (ok)") == "Hello , world . 3.5 1,000 x-y 1 - 2 ( ok )"
    assert tok("&quot;a&quot; &amp; &lt;b&gt; <skipped>c") == '" a " & < b > c'
    assert tok("don't U.S.") == "don't U . S ."
    # Perl's \s: no split on U+001C (Python's str.split() would), a split on a no-break space.
    assert multi_bleu_detok.words("a\x1cb c\xa0d") == ["a\x1cb", "c", "d"]


def test_bleu_perl_line_format():
    result = multi_bleu_detok.corpus_bleu(["a b c d x"], [["a b c d y z", "p q r s"]])
    assert result.perl_line() == "BLEU = 66.87, 80.0/75.0/66.7/50.0 (BP=1.000, ratio=1.250, hyp_len=5, ref_len=4)"


PERL_SCRIPT = os.environ.get("MULTI_BLEU_DETOK")


@pytest.mark.skipif(not PERL_SCRIPT, reason="set MULTI_BLEU_DETOK=/path/to/multi-bleu-detok.perl (Moses) and have "
                                            "perl on PATH to cross-check against the real script")
def test_bleu_identical_to_the_perl_script(tmp_path):
    # The script with its printf also printing 100*BLEU at full precision.
    script = Path(PERL_SCRIPT).read_text(encoding="utf-8").replace(
        'printf "BLEU = %.2f, ', 'printf "FULL %.17g\\n", 100*$bleu;\nprintf "BLEU = %.2f, ', 1)
    (tmp_path / "mbd.perl").write_text(script, encoding="utf-8")
    rng = random.Random(1)
    vocab = ["the", "The", "cat", "3.5", "1,000", "12-13", "x-y", "U.S.", "don't", "&quot;", "<skipped>", "(", ")",
             ".", ",", "..", "-", "--", "$", "“", "é", "\xa0", "\u2003", "\x1c", "\t", "e.g.", "{x}", "~", "@"]
    for trial in range(8):
        n, n_refs = rng.randint(1, 40), rng.randint(1, 4)
        line = lambda: " ".join(rng.choice(vocab) for _ in range(rng.choice([0, 1, 3, 8, 20])))  # noqa: E731
        hyps = [line() for _ in range(n)]
        refs = [[line() for _ in range(n)] for _ in range(n_refs)]
        for k, lines in enumerate(refs):
            (tmp_path / f"ref{k}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp_path / "hyp").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        with open(tmp_path / "hyp", "rb") as stdin:
            out = subprocess.run(["perl", str(tmp_path / "mbd.perl"), *(str(tmp_path / f"ref{k}") for k in
                                                                          range(n_refs))],
                                 stdin=stdin, capture_output=True, text=True)
        ours = multi_bleu_detok.corpus_bleu(hyps, list(zip(*refs)))
        if out.returncode != 0:  # all-empty input: the script dies or prints 0; we score 0
            assert ours.bleu == 0.0
            continue
        full, printed = out.stdout.strip().split("\n")
        assert printed == ours.perl_line()
        assert float(full.split()[1]) == ours.score


# ---- BLEU NLTK (nltk 3.5 corpus_bleu, method 3) ------------------------------------------------------------------


def test_bleu_nltk_by_hand():
    # Short hypotheses add 1 to each order's denominator; a zero 4-gram count becomes 1/(2 * denominator).
    refs = [[["a", "b", "c", "d"]], [["x", "y"]]]
    hyps = [["a", "b", "c"], []]
    # numerators 3, 2, 1, 0; denominators 3+1, 2+1, 1+1, max(1,0)+1 = 2 -> p4 = 1/(2*2)
    expected = math.exp(1 - 6 / 3) * math.exp(0.25 * sum(map(math.log, [3 / 4, 2 / 3, 1 / 2, 1 / 4])))
    assert nltk35_bleu.corpus_bleu(refs, hyps) == pytest.approx(expected, rel=1e-15)
    assert nltk35_bleu.corpus_bleu([[["a"]]], [["b"]]) == 0.0


# ---- TER (pyter sentence TER, GenerationEval segment mean) ------------------------------------------------------


def test_sentence_ter_by_hand():
    # "a b c d" -> "c d a b": Levenshtein 4, but one shift of "a b" behind "c d" makes them equal: (1 + 0) / 4.
    assert ter.sentence_ter("a b c d".split(), "c d a b".split()) == 0.25
    # Three insertions; moving "the" to the end does not lower the distance, so no shift: 3 / 6.
    assert ter.sentence_ter("the cat sat".split(), "the cat sat on the mat".split()) == 0.5
    assert ter.sentence_ter([], "a b c".split()) == 1.0
    with pytest.raises(ValueError, match="empty reference"):
        ter.sentence_ter(["a"], [])


def test_segment_ter_is_the_mean_of_per_item_minima():
    hyps = ["a b c d", "x y z w v"]
    refs = [["a b c d e", "c d"], ["x", ""]]
    # Item 1: 1 insertion / 5 words, or 2 deletions / 2 words (moving "c d" first gains nothing): min 0.2.
    # Item 2: 4 deletions / 1 word = 4, or the empty reference, which GenerationEval scores 1: min 1.
    assert ter.sentence_ter("a b c d".split(), ["c", "d"]) == 1.0
    assert ter.sentence_ter("x y z w v".split(), ["x"]) == 4.0
    assert ter.segment_ter(hyps, refs) == pytest.approx((0.2 + 1) / 2, rel=1e-15)


def test_sentence_ter_identical_to_pyter():
    pyter = pytest.importorskip("pyter", reason="pyter3 (requirements-test.txt) is the TER GenerationEval uses")
    rng = random.Random(0)
    for _ in range(300):
        vocab = rng.choice([["a", "b"], ["a", "b", "c"], list("abcdef"), ["the", "The", ",", ".", "é", "x"]])
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        assert ter.sentence_ter(hyp, ref) == pyter.ter(hyp, ref), (hyp, ref)


# ---- corpus TER (sacrebleu) --------------------------------------------------------------------------------------


def random_pair(rng: random.Random, max_len: int) -> tuple[list[str], list[str]]:
    """A reference and a hypothesis made from it by deletions, insertions and phrase moves (or unrelated)."""
    vocab = list("abcdefghij")
    ref = [rng.choice(vocab) for _ in range(rng.randint(1, max_len))]
    hyp = list(ref)
    for _ in range(rng.randint(0, 6)):
        k, op = rng.randrange(len(hyp) + 1), rng.random()
        if op < 0.3 and hyp:
            del hyp[min(k, len(hyp) - 1)]
        elif op < 0.6:
            hyp.insert(k, rng.choice(vocab))
        elif hyp:
            start = rng.randrange(len(hyp))
            phrase = hyp[start:start + rng.randint(1, 12)]
            del hyp[start:start + len(phrase)]
            target = rng.randrange(len(hyp) + 1)
            hyp[target:target] = phrase
    if rng.random() < 0.2:
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, max_len))]
    return hyp, ref


def test_corpus_ter_identical_to_sacrebleu(monkeypatch):
    from sacrebleu.metrics import TER
    from sacrebleu.metrics.lib_ter import translation_edit_rate

    banded = []
    original = corpus_ter.best_banded_shift
    monkeypatch.setattr(corpus_ter, "best_banded_shift", lambda *a: banded.append(1) or original(*a))
    rng = random.Random(0)
    pairs = [random_pair(rng, max_len) for max_len in [12] * 150 + [70] * 6]
    # Unrelated long pairs, the reference about twice as long: sacrebleu's beam band (25 cells each side of
    # the scaled diagonal) then changes distances and the exact band DP is needed.
    for _ in range(6):
        n = rng.randint(25, 33)
        pairs.append(([rng.choice("abcdefgh") for _ in range(n)], [rng.choice("abcdefgh") for _ in range(2 * n)]))
    for hyp, ref in pairs:
        hyp_ids, ref_ids = corpus_ter.encode(hyp, ref)
        assert corpus_ter.translation_edit_rate(hyp_ids, ref_ids) == translation_edit_rate(hyp, ref)[0], (hyp, ref)
    assert len(banded) >= 6
    # The corpus figure: lowercasing, per-segment minimum edits, mean reference length, absent references.
    hyps = ["The cat sat on the mat", "a b c", "x y"]
    refs = [["the cat is on the mat", "a cat sat on a mat"], ["c b a", None], ["x y z w", "y x"]]
    expected = TER().corpus_score(hyps, [list(stream) for stream in zip(*refs)]).score / 100
    assert corpus_ter.corpus_ter(hyps, refs) == pytest.approx(expected, rel=1e-15)


def test_corpus_ter_helpers_against_brute_force():
    rng = random.Random(2)
    for _ in range(300):
        n_hyp, n_ref = rng.randint(0, 120), rng.randint(1, 120)
        bands = corpus_ter.bands(n_hyp, n_ref)
        brute = min([abs(i - j) + abs((n_hyp - i) - (n_ref - j)) for i, (lo, hi) in enumerate(bands, 1)
                     for j in range(n_ref + 1) if not lo <= j < hi] or [corpus_ter.INF])
        assert corpus_ter.out_of_band_bound(bands, n_hyp, n_ref) == brute
        hyp = [rng.randrange(4) for _ in range(min(n_hyp, 40))]
        ref = [rng.randrange(4) for _ in range(min(n_ref, 40))]
        rows = corpus_ter.beam_rows(hyp, ref, [(0, len(ref) + 1)] * len(hyp), [list(range(len(ref) + 1))], 0)
        matrix = corpus_ter.FullMatrix(hyp, ref)
        assert all(rows[i][j] == matrix(i, j) for i in range(len(hyp) + 1) for j in range(len(ref) + 1))


# ---- nltk 3.5 word_tokenize ----------------------------------------------------------------------------------------

# Outputs of nltk 3.5's word_tokenize (run with the same English Punkt parameters) where nltk 3.10 differs.
NLTK35_CASES = {
    "he said 'abc def .": ["he", "said", "'abc", "def", "."],
    "1990–1995 and a—b": ["1990–1995", "and", "a—b"],
    "mor'n that": ["mor", "'", "n", "that"],
    "rock 'n' roll": ["rock", "'", "n", "'", "roll"],
    "'tis true": ["'t", "is", "true"],
    "He said “Hi.” Then he left.": ["He", "said", "“", "Hi.", "”", "Then", "he", "left", "."],
    "Go there.” She said": ["Go", "there.", "”", "She", "said"],
}


@pytest.mark.parametrize("text", NLTK35_CASES)
def test_word_tokenize_is_nltk_3_5(text):
    assert word_tokenize(text) == NLTK35_CASES[text]


def test_the_3_5_cases_differ_from_the_installed_nltk():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    newer = NLTKWordTokenizer()
    single_sentence = [t for t in NLTK35_CASES if len(sent_tokenize(t)) == 1 and "“" not in t and "”" not in t]
    assert len(single_sentence) == 5
    for text in single_sentence:
        assert newer.tokenize(text) != treebank_tokenize(text), text


def test_sentence_split_decides_where_final_periods_are_split():
    # Only a sentence's last period is split off, so the Punkt decisions show in the tokens.
    assert sent_tokenize("Mr. Smith went to Washington. He was tired.") == [
        "Mr. Smith went to Washington.", "He was tired."]
    assert word_tokenize("the u.s. is big. it has 50 states.") == [
        "the", "u.s.", "is", "big", ".", "it", "has", "50", "states", "."]
    assert word_tokenize("alan b. shepard was born in 1923 .") == [
        "alan", "b.", "shepard", "was", "born", "in", "1923", "."]
    assert sent_tokenize("") == [] and word_tokenize("   ") == []
    model = english_model()
    assert len(model.abbrev_types) == 156 and {"dr", "mr", "u.s", "jan"} <= model.abbrev_types


def test_treebank_rules():
    assert treebank_tokenize('"Hello," she said -- can\'t stop (now)!') == [
        "``", "Hello", ",", "''", "she", "said", "--", "ca", "n't", "stop", "(", "now", ")", "!"]
    assert treebank_tokenize("cannot gonna $5 a;b") == ["can", "not", "gon", "na", "$", "5", "a", ";", "b"]


# ---- printing ----------------------------------------------------------------------------------------------------


def test_format_is_eval_py_tabulate_table():
    scores = {"BLEU": 33.236483899412164, "BLEU_NLTK": 0.32386541112050826, "METEOR": 0.23543595051539076,
              "TER": 0.6168865440222807, "TER_corpus": 0.61}
    assert scorer.format_generation_eval(scores) == ("  BLEU    BLEU NLTK    METEOR    TER\n"
                                                     "------  -----------  --------  -----\n"
                                                     " 33.24         0.32      0.24   0.62")
    tabulate = pytest.importorskip("tabulate").tabulate
    # eval.py: float of multi-bleu's "%.2f", round(x, 2) for the rest, tabulate's "%g": 40.10 prints as 40.1.
    scores = {"BLEU": 40.1012, "METEOR": 0.2049, "TER": 1.0}
    assert scorer.format_generation_eval(scores) == tabulate([[40.1, 0.2, 1.0]],
                                                              headers=["BLEU", "METEOR", "TER"])
    assert re.fullmatch(r"\s*40\.1\s+0\.2\s+1", scorer.format_generation_eval(scores).splitlines()[2])
