"""score_generation_eval end to end on a hand-checkable fixture, METEOR through the real jar, and bad inputs."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from evalcommon.text_files import EvalInputError
from geneval import inputs, scorer

REPO = Path(__file__).resolve().parents[1]

TINY = REPO / "tests" / "fixtures" / "eval_webnlg" / "tiny"
REFS = [TINY / "reference0", TINY / "reference1"]
HYP = TINY / "hypothesis"


def rewrite_crlf(src: Path, dst: Path) -> Path:
    """CRLF line ends, and no final line end unless the last line is empty (then its end is what makes it a
    line: 'a\\n\\n' is two lines, 'a\\n' one)."""
    data = src.read_bytes()
    if not data.endswith(b"\n\n"):
        data = data.removesuffix(b"\n")
    dst.write_bytes(data.replace(b"\n", b"\r\n"))
    return dst


@pytest.fixture(scope="module")
def tiny_scores(tmp_path_factory) -> tuple[dict, dict]:
    """The fixture scored as shipped (LF, final newlines) and rewritten with CRLF and without final newlines;
    the two runs (two METEOR JVMs) go side by side."""
    tmp = tmp_path_factory.mktemp("crlf")
    refs = [rewrite_crlf(p, tmp / p.name) for p in REFS]
    hyp = rewrite_crlf(HYP, tmp / HYP.name)
    with ThreadPoolExecutor(2) as pool:
        as_shipped = pool.submit(scorer.score_generation_eval, REFS, HYP)
        rewritten = pool.submit(scorer.score_generation_eval, refs, hyp)
        return as_shipped.result(), rewritten.result()


@pytest.mark.slow
def test_tiny_fixture_scores_by_hand(tiny_scores):
    scores, _ = tiny_scores
    # 4 items; hypotheses 2 and 4 are empty, reference1 of item 2 is empty.
    # BLEU: every hypothesis n-gram matches (7+3 unigrams, 6+2, 5+1, 4+0); hypothesis length 7+0+3+0 = 10;
    # closest reference lengths 7, 0 (the empty reference), 4 (4 vs 4: tie, shorter), 2 -> 13; BP = exp(1-13/10).
    assert scores["BLEU"] == pytest.approx(100 * math.exp(-0.3), rel=1e-14)
    # BLEU NLTK: empty references dropped, denominators max(1, count): p = 10/12, 8/10, 6/8, 4/7;
    # closest reference lengths 7, 4, 4, 2 -> 17.
    p = [10 / 12, 8 / 10, 6 / 8, 4 / 7]
    assert scores["BLEU_NLTK"] == pytest.approx(math.exp(1 - 17 / 10) * math.prod(p) ** 0.25, rel=1e-14)
    # TER per item: 0 (identical), 1 (empty hypothesis; the empty reference also scores 1), 1/4 (one
    # insertion), 1 (empty hypothesis) -> mean 0.5625.
    assert scores["TER"] == 0.5625
    # Corpus TER: edits 0 + 4 + 1 + 2 over mean reference lengths 7 + 4 + 4 + 2.5 (the empty one is absent).
    assert scores["TER_corpus"] == pytest.approx(7 / 17.5, rel=1e-15)
    # METEOR: what the METEOR 1.5 jar prints as Final score for these files driven as eval.py drives it
    # (-l en -norm -r 2, references interleaved); 4 segments, so the empty last hypothesis is a segment.
    assert scores["METEOR"] == pytest.approx(0.36989618649516914, abs=1e-12)


@pytest.mark.slow
def test_crlf_and_missing_final_newline_change_nothing(tiny_scores):
    as_shipped, rewritten = tiny_scores
    assert rewritten == as_shipped


def test_inputs_read_as_lines(tmp_path):
    refs, hyps = inputs.read_generation_inputs(REFS, HYP)
    assert hyps == ["the cat sat on the mat .", "", "the dog barked", ""]
    assert refs[1] == ["a man walks .", ""]
    rewritten = [rewrite_crlf(p, tmp_path / p.name) for p in [*REFS, HYP]]
    assert b"\r\n" in rewritten[0].read_bytes() and not rewritten[0].read_bytes().endswith(b"\n")
    assert inputs.read_generation_inputs(rewritten[:2], rewritten[2]) == (refs, hyps)


def test_dropping_the_line_end_of_an_empty_last_hypothesis_is_a_count_error(tmp_path):
    # eval.py would read 'a\\n\\nb\\n' as 4 items (split('\\n')); as lines it is 3, so the last, empty
    # hypothesis is missing and the counts disagree instead of silently pairing the wrong lines.
    hyp = tmp_path / "hypothesis"
    hyp.write_bytes(HYP.read_bytes().removesuffix(b"\n"))
    with pytest.raises(EvalInputError, match="3 hypotheses .* 4 reference lines"):
        inputs.read_generation_inputs(REFS, hyp)


def test_count_mismatch_names_both_counts_and_files(tmp_path):
    short = tmp_path / "reference1"
    short.write_text("only one line\nand two\n", encoding="utf-8")
    with pytest.raises(EvalInputError) as err:
        scorer.score_generation_eval([REFS[0], short], HYP)
    message = str(err.value)
    assert "4 hypotheses" in message and "2 reference lines" in message
    assert str(HYP) in message and str(short) in message


def test_non_utf8_and_empty_inputs_are_errors(tmp_path):
    bad = tmp_path / "hypothesis"
    bad.write_bytes(b"fine\n\xff\xfe broken\nx\ny\n")
    with pytest.raises(EvalInputError, match=r"line 2.*UTF-8"):
        scorer.score_generation_eval(REFS, bad)
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(EvalInputError, match="no hypotheses"):
        scorer.score_generation_eval(REFS, empty)
    with pytest.raises(EvalInputError, match="no reference files"):
        scorer.score_generation_eval([], HYP)
    blank = tmp_path / "reference0"
    blank.write_text("\n\n \n\n", encoding="utf-8")
    with pytest.raises(EvalInputError, match="every reference line is empty"):
        scorer.score_generation_eval([blank], HYP)


@pytest.mark.slow
def test_meteor_jar_by_hand():
    # 3 exact matches of 3 hypothesis and 6 reference words (all content words) in 1 chunk; METEOR 1.5's English
    # parameters alpha 0.85, beta 0.2, gamma 0.6: Fmean = P R / (alpha P + (1 - alpha) R), and the score is
    # Fmean (1 - gamma (chunks / matches)^beta).
    precision, recall = 1.0, 0.5
    fmean = precision * recall / (0.85 * precision + 0.15 * recall)
    expected = fmean * (1 - 0.6 * (1 / 3) ** 0.2)
    meteor = scorer.meteor_score(["river stone cloud"], [["river stone cloud music garden window"]])
    assert meteor == pytest.approx(expected, abs=1e-12)
