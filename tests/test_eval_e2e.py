"""E2E metrics on hand-checkable sentences: every expected number is worked out here from the definitions."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from e2e_official import coco_caption, inputs, mteval
from evalcommon.text_files import EvalInputError, check_same_count, read_lines

REPO = Path(__file__).resolve().parents[1]

FIXTURES = REPO / "tests" / "fixtures" / "eval"
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2


def both_modes(refs, hyps):
    return mteval.mteval_official(refs, hyps, rounded=False), mteval.mteval_python(refs, hyps)


# ---- BLEU ---------------------------------------------------------------------------------------------------

def test_bleu_brevity_penalty():
    # All n-grams of the 5-word output match, the only reference has 10 words: BLEU = exp(1 - 10/5) = e^-1.
    official, python = both_modes([["a b c d e f g h i j"]], ["a b c d e"])
    assert official["BLEU"] == pytest.approx(math.exp(-1), abs=1e-12)
    assert python["BLEU"] == pytest.approx(math.exp(-1), abs=1e-12)


def test_bleu_multi_reference_clipping_and_closest_length():
    hyp = "the cat is on the mat"
    refs = ["the cat is on a mat", "there is a cat on the mat"]
    # unigrams: 'the' appears twice but at most once in either reference -> 5/6
    # bigrams: the cat, cat is, is on (ref 1); on the, the mat (ref 2) -> 5/5
    # trigrams: the cat is, cat is on (ref 1), on the mat (ref 2); 'is on the' nowhere -> 3/4
    # 4-grams: only 'the cat is on' -> 1/3
    # closest reference length: 6 (ref 1) -> no brevity penalty
    expected = (5 / 6 * 5 / 5 * 3 / 4 * 1 / 3) ** 0.25
    official, python = both_modes([refs], [hyp])
    assert official["BLEU"] == pytest.approx(expected, abs=1e-12)
    assert python["BLEU"] == pytest.approx(expected, abs=1e-12)


def test_bleu_closest_reference_prefers_the_shorter_on_ties():
    # 4-word output, references of 2 and 6 words are equally close: the shorter (2) is taken -> no penalty.
    # A 5-word reference would be closer and give exp(1 - 5/4).
    assert mteval._closest_ref_length([6, 2], 4) == 2
    assert mteval._closest_ref_length([6, 2, 5], 4) == 5
    assert mteval._closest_ref_length([6, 0, 5], 4) == 5  # empty padding segments never count (-sig edit)


def test_official_bleu_smooths_missing_orders_python_port_does_not():
    # 'a x b y': 4 unigrams, 2 match; no bigram/trigram/4-gram matches.
    # mteval: precisions 2/4, then 1/(2*3), 1/(4*2), 1/(8*1) (the 1/2^k smoothing); reference as long -> BP 1.
    official = mteval.mteval_official([["a b c d"]], ["a x b y"], rounded=False)["BLEU"]
    assert official == pytest.approx((2 / 4 * 1 / 6 * 1 / 8 * 1 / 8) ** 0.25, abs=1e-12)
    # the port floors zero matches at 1e-15
    python = mteval.mteval_python([["a b c d"]], ["a x b y"])["BLEU"]
    assert python == pytest.approx((2 / 4 * 1e-15 / 3 * 1e-15 / 2 * 1e-15 / 1) ** 0.25, rel=1e-9)


# ---- NIST ---------------------------------------------------------------------------------------------------

def test_nist_information_weights_and_the_two_length_penalties():
    # Input 1: two identical 8-word references, output = that sentence; input 2: one 5-word reference, output = it.
    refs = [["a b c d e f g h", "a b c d e f g h"], ["i j k l m"]]
    hyps = ["a b c d e f g h", "i j k l m"]
    # 21 reference words; a..h occur twice, i..m once: info(w) = log2(21 / count(w)). Every longer n-gram occurs
    # exactly as often as its prefix, so its information log2(count(prefix) / count(n-gram)) is 0.
    nist_sum = (8 * math.log2(21 / 2) + 5 * math.log2(21)) / 13  # summed info over the 13 output words
    # Perl -sig: average reference length = 21 words / (3 references / 2 inputs) = 14 -> ratio 13/14.
    official_penalty = math.exp(-NIST_BETA * math.log(13 / 14) ** 2)
    # -p port: sum over inputs of each group's mean reference length = 8 + 5 = 13 -> ratio 1, no penalty.
    official, python = both_modes(refs, hyps)
    assert official["NIST"] == pytest.approx(nist_sum * official_penalty, abs=1e-12)
    assert python["NIST"] == pytest.approx(nist_sum, abs=1e-12)
    assert official["NIST"] < python["NIST"]


def test_nist_repeated_word_weights():
    # References 'a b' and 'a c' (4 words): info(a) = log2(4/2) = 1, info(b) = log2(4/1) = 2,
    # info('a b') = log2(count(a) / count(a b)) = log2(2/1) = 1. Output 'a b': unigrams (1 + 2)/2, bigram 1/1.
    # Average reference length 4 / 2 = 2 = output length: no penalty.
    assert mteval.mteval_official([["a b", "a c"]], ["a b"], rounded=False)["NIST"] == pytest.approx(2.5, abs=1e-12)


def test_official_results_are_rounded_as_mteval_prints_them():
    scores = mteval.mteval_official([["a b c d e f g h i j"]], ["a b c d e"])
    assert scores["BLEU"] == 0.3679  # e^-1 = 0.36787...


# ---- tokenisation -------------------------------------------------------------------------------------------

def test_v13a_tokenisation_rules():
    assert mteval.tokenize_official("It's 5-star, £20.50 &amp; more!") == \
        ["it's", "5", "-", "star", ",", "£20.50", "&", "more", "!"]
    assert mteval.tokenize_official("") == []
    assert mteval.tokenize_python_port("") == [""]  # the port's empty output is one empty token
    # Perl lowercases ASCII only (tr/[A-Z]/[a-z]/); the port keeps case in tokens and lowercases n-grams later.
    assert mteval.tokenize_official("ÉCOLE Café") == ["École", "café"]
    assert mteval.tokenize_python_port("ÉCOLE Café") == ["ÉCOLE", "Café"]


def test_ptb_tokenizer_as_coco_caption_uses_it():
    # CoreNLP 3.4.1 PTBTokenizer, lower-cased, punctuation tokens dropped; '£' is PTB's '#'; empty lines stay;
    # characters PTB treats as line breaks become spaces so that no sentence shifts to the next line.
    # Brackets survive: -lowerCase makes them '-lrb-', and coco-caption's list only has '-LRB-'.
    assert coco_caption.ptb_tokenize(["Less than £20, at Café \"Rouge\".", "", "a\u2028b\rc", "(x) -- y!"]) == \
        ["less than # 20 at café rouge", "", "a b c", "-lrb- x -rrb- y"]


def test_port_quirk_counter():
    assert mteval.count_port_quirk_outputs(["", "a b", "a b c", "a b c d"]) == 3


# ---- ROUGE-L ------------------------------------------------------------------------------------------------

def test_lcs_length():
    assert coco_caption.lcs_length("the cat sat on the mat".split(), "the cat was on the red mat".split()) == 5
    assert coco_caption.lcs_length("a b c".split(), "c b a".split()) == 1
    assert coco_caption.lcs_length([], "a".split()) == 0


def test_rouge_l_takes_best_precision_and_best_recall_separately():
    hyp = "the cat sat on the mat"
    refs = ["the cat was on the red mat", "cat sat"]
    # ref 1: LCS 5 (the cat on the mat) -> P 5/6, R 5/7; ref 2: LCS 2 -> P 2/6, R 2/2.
    # coco-caption combines max P = 5/6 and max R = 1 with beta = 1.2.
    p, r, b2 = 5 / 6, 1.0, 1.2 ** 2
    assert coco_caption.rouge_l_sentence(hyp, refs) == pytest.approx((1 + b2) * p * r / (r + b2 * p), abs=1e-12)
    assert coco_caption.rouge_l_sentence("", refs) == 0.0
    mean, per_input = coco_caption.rouge_l([hyp, "x"], [refs, ["y"]])
    assert per_input[1] == 0.0 and mean == pytest.approx(per_input[0] / 2, abs=1e-12)


# ---- CIDEr-D ------------------------------------------------------------------------------------------------

def test_cider_d_two_documents_with_idf_from_the_references():
    # Document frequencies over the 2 inputs' references: 'a' is in both (idf ln2 - ln2 = 0); every other n-gram
    # in one (idf ln 2; n-grams absent from the references count df 1 as well).
    hyps = ["a b", "c d"]
    refs = [["a b"], ["c a"]]
    # input 1: identical vectors -> cosine 1 for unigrams and bigrams, 0 for 3-/4-grams, same bigram count (no
    # length penalty): 10 * mean(1, 1, 0, 0) = 5.
    # input 2: unigrams {c: ln2, d: ln2} vs {c: ln2, a: 0}: (ln2 * ln2) / (sqrt(2) ln2 * ln2) = 1/sqrt(2);
    # bigrams 'c d' vs 'c a': 0 -> 10 * (1/sqrt(2)) / 4.
    expected = [5.0, 10 * (1 / math.sqrt(2)) / 4]
    mean, per_input = coco_caption.cider_d(hyps, refs)
    assert list(per_input) == pytest.approx(expected, abs=1e-12)
    assert mean == pytest.approx(sum(expected) / 2, abs=1e-12)


def test_cider_d_length_penalty_counts_bigrams():
    # 'a b c' vs reference 'a b' (+ a second document so that idf is not 0): the Gaussian penalty uses the
    # difference in *bigram* counts (2 - 1), exp(-1 / (2 * 6^2)), as coco-caption's code does.
    hyps, refs = ["a b c", "x"], [["a b"], ["y"]]
    penalty = math.exp(-1 / 72)
    # unigrams: hyp {a, b, c} vs ref {a, b}, all weights ln 2: 2 ln2^2 / (sqrt(3) ln2 * sqrt(2) ln2) = 2/sqrt(6)
    # bigrams: {ab, bc} vs {ab}: 1/sqrt(2); trigrams: ref has none (norm 0) -> 0
    expected = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) * penalty / 4
    assert coco_caption.cider_d(hyps, refs)[1][0] == pytest.approx(expected, abs=1e-12)


# ---- METEOR through the jar ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_meteor_jar_stdio_corpus_score():
    with coco_caption.MeteorScorer() as meteor:
        corpus, per_input = meteor.score(["the cat sat on the mat", "a dog", ""],
                                         [["the cat sat on the mat"], ["the cat sat", "a dog barked"], ["x y"]])
    assert per_input[0] == 1.0  # identical text
    assert per_input[2] == 0.0  # empty output: scored, not dropped
    assert 0.0 < per_input[1] < 1.0
    # the corpus figure comes from pooled statistics (EVAL over all inputs), not the mean of sentence scores
    assert 0.0 < corpus < 1.0 and corpus != pytest.approx(sum(per_input) / 3, abs=1e-3)


# ---- inputs -------------------------------------------------------------------------------------------------

def test_reference_formats_agree():
    text = inputs.read_references(FIXTURES / "e2e_refs.txt")
    csv_refs = inputs.read_references(FIXTURES / "e2e_refs.csv")
    assert [len(g) for g in text] == [2, 3, 1]
    assert csv_refs == text


def test_single_reference_file_without_blank_lines(tmp_path):
    (tmp_path / "r.txt").write_text("one\ntwo\nthree\n")
    assert inputs.read_references(tmp_path / "r.txt") == [["one"], ["two"], ["three"]]


def test_trailing_newline_and_crlf_do_not_change_inputs(tmp_path):
    refs = (FIXTURES / "e2e_refs.txt").read_text()
    hyps = (FIXTURES / "e2e_hyp.txt").read_text()
    variants = {"plain": (refs, hyps), "no_final_newline": (refs.rstrip("\n"), hyps.rstrip("\n")),
                "crlf": (refs.replace("\n", "\r\n"), hyps.replace("\n", "\r\n")),
                "trailing_blank_ref_line": (refs + "\n", hyps)}
    loaded = []
    for name, (r, h) in variants.items():
        (tmp_path / f"{name}.refs").write_bytes(r.encode())
        (tmp_path / f"{name}.hyp").write_bytes(h.encode())
        loaded.append((inputs.read_references(tmp_path / f"{name}.refs"),
                       inputs.read_hypotheses(tmp_path / f"{name}.hyp")))
    assert all(x == loaded[0] for x in loaded)
    assert len(loaded[0][1]) == 3


def test_empty_hypothesis_lines_are_kept(tmp_path):
    (tmp_path / "h.txt").write_text("first\n\nthird\n\n")
    assert inputs.read_hypotheses(tmp_path / "h.txt") == ["first", "", "third", ""]


def test_count_mismatch_names_both_counts():
    with pytest.raises(EvalInputError, match=r"hyp\.txt has 2 hypotheses but refs\.txt has 3 inputs"):
        check_same_count(3, "refs.txt", 2, "hyp.txt")


def test_non_utf8_is_an_error_naming_file_and_line(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(EvalInputError, match=r"latin1\.txt: line 2, byte 4: not valid UTF-8"):
        read_lines(bad)


def test_bad_reference_files(tmp_path):
    (tmp_path / "double_blank.txt").write_text("a\n\n\nb\n")
    with pytest.raises(EvalInputError, match=r"double_blank\.txt: line 3"):
        inputs.read_references(tmp_path / "double_blank.txt")
    (tmp_path / "no_header.csv").write_text('"x","y"\n"1","2"\n')
    with pytest.raises(EvalInputError, match=r"no_header\.csv: line 1: the header must name"):
        inputs.read_references(tmp_path / "no_header.csv")
    (tmp_path / "ragged.csv").write_text('mr,ref\n"m1","r1"\n"m2"\n')
    with pytest.raises(EvalInputError, match=r"ragged\.csv: lines \[3\]"):
        inputs.read_references(tmp_path / "ragged.csv")
