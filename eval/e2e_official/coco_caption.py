"""The MS-COCO caption metrics the E2E script reports: METEOR 1.5, ROUGE-L and CIDEr(-D), on PTB-tokenised text.

Re-implemented from coco-caption (`pycocoevalcap`) so that every float matches:
- `ptb_tokenize`: Stanford CoreNLP 3.4.1 PTBTokenizer (`-preserveLines -lowerCase`), then the punctuation
  tokens coco-caption drops. (PTB turns '£' into '#', so '£20' scores as '# 20'.)
- `rouge_l`: sentence ROUGE-L F-measure with beta 1.2 against the best precision and best recall over the
  references, averaged over inputs.
- `cider_d`: coco-caption's `Cider` class, which is the CIDEr-D variant: tf-idf n-gram vectors (n <= 4) with
  document frequencies taken from the references being scored, clipped hypothesis weights, a Gaussian length
  penalty (sigma 6, on the *bigram* counts, as the original code does), mean over references, times 10.
- `MeteorScorer`: the METEOR 1.5 jar in `-stdio -l en -norm` mode, started once; one SCORE request per input
  and one EVAL request over all of them (corpus-level statistics, not a mean of sentence scores).
"""
from __future__ import annotations

import math
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from evalcommon.java_tools import JavaToolError, find_jars, find_java, meteor_command

PTB_PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                             ".", "?", "!", ",", ":", "-", "--", "...", ";"])
PTB_LINE_BREAKS = str.maketrans({c: " " for c in "\r\n\x0b\x0c\u2028\u2029"})
ROUGE_BETA = 1.2
CIDER_N, CIDER_SIGMA = 4, 6.0


# ---- PTB tokenizer ------------------------------------------------------------------------------------------

def start_ptb_tokenizer(sentences: list[str], workdir: Path, name: str) -> tuple[subprocess.Popen, int]:
    """Launch the CoreNLP PTBTokenizer on one file holding `sentences` (one per line); collect with
    `finish_ptb_tokenizer`. Separate launches let references and hypotheses tokenise in parallel."""
    path = workdir / f"{name}.txt"
    # coco-caption replaces '\n' inside a sentence by a space; PTB also breaks lines at these, so they go too
    path.write_bytes("\n".join(s.translate(PTB_LINE_BREAKS) for s in sentences).encode("utf-8"))
    cmd = [find_java(), "-cp", str(find_jars().corenlp), "edu.stanford.nlp.process.PTBTokenizer",
           "-preserveLines", "-lowerCase", str(path)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE), len(sentences)


def finish_ptb_tokenizer(job: tuple[subprocess.Popen, int]) -> list[str]:
    proc, n_sentences = job
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise JavaToolError(f"PTBTokenizer failed (exit {proc.returncode}): {err.decode(errors='replace')}")
    lines = out.decode("utf-8").split("\n")
    if len(lines) == n_sentences + 1 and not lines[-1]:
        lines.pop()
    if len(lines) != n_sentences:  # coco-caption would silently shift sentences; we refuse
        raise JavaToolError(f"PTBTokenizer returned {len(lines)} lines for {n_sentences} sentences")
    return [" ".join(tok for tok in line.rstrip().split(" ") if tok not in PTB_PUNCTUATION) for line in lines]


def ptb_tokenize(sentences: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="ptb-") as tmp:
        return finish_ptb_tokenizer(start_ptb_tokenizer(sentences, Path(tmp), "sentences"))


# ---- ROUGE-L ------------------------------------------------------------------------------------------------

def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one DP row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l_sentence(hyp: str, refs: list[str]) -> float:
    """coco-caption `Rouge.calc_score`; tokens are split on single spaces, so '' is one empty token."""
    hyp_tokens = hyp.split(" ")
    precisions, recalls = [], []
    for ref in refs:
        ref_tokens = ref.split(" ")
        lcs = lcs_length(ref_tokens, hyp_tokens)
        precisions.append(lcs / float(len(hyp_tokens)))
        recalls.append(lcs / float(len(ref_tokens)))
    p, r = max(precisions), max(recalls)
    if p == 0 or r == 0:
        return 0.0
    return ((1 + ROUGE_BETA ** 2) * p * r) / float(r + ROUGE_BETA ** 2 * p)


def rouge_l(hyps: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
    scores = np.array([rouge_l_sentence(h, r) for h, r in zip(hyps, refs)])
    return float(np.mean(scores)), scores


# ---- CIDEr-D ------------------------------------------------------------------------------------------------

def _ngram_counts(sentence: str) -> dict[tuple, int]:
    words = sentence.split()
    counts: dict[tuple, int] = defaultdict(int)
    for n in range(1, CIDER_N + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i:i + n])] += 1
    return counts


def _tfidf(counts: dict, idf: dict) -> tuple[list[dict], list[float], int]:
    """Per-order tf-idf vectors, their norms, and the 'length' coco-caption uses: its bigram count."""
    vec: list[dict] = [{} for _ in range(CIDER_N)]
    norm = [0.0] * CIDER_N
    bigrams = 0
    for gram, tf in counts.items():
        order = len(gram) - 1
        weight = float(tf) * idf[gram]
        vec[order][gram] = weight
        norm[order] += pow(weight, 2)
        if order == 1:
            bigrams += tf
    return vec, [math.sqrt(x) for x in norm], bigrams


def _cider_similarity(hyp, ref) -> list[float]:
    (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
    delta = float(len_h - len_r)
    length_penalty = np.e ** (-(delta ** 2) / (2 * CIDER_SIGMA ** 2))  # the "-D" Gaussian penalty
    val = [0.0] * CIDER_N
    for n in range(CIDER_N):
        ref_vec = vec_r[n]
        for gram, weight in vec_h[n].items():
            ref_weight = ref_vec.get(gram, 0.0)
            val[n] += min(weight, ref_weight) * ref_weight  # the "-D" clipping
        if norm_h[n] != 0 and norm_r[n] != 0:
            val[n] /= norm_h[n] * norm_r[n]
        val[n] *= length_penalty
    return val


def cider_d(hyps: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
    """Corpus CIDEr-D (coco-caption `Cider`), document frequencies from these references."""
    ref_counts = [[_ngram_counts(r) for r in group] for group in refs]
    doc_freq: dict[tuple, float] = defaultdict(float)
    for group in ref_counts:
        for gram in {g for counts in group for g in counts}:
            doc_freq[gram] += 1
    log_n_docs = np.log(float(len(ref_counts)))

    class Idf(dict):  # log(N) - log(max(1, df)), memoised (n-grams missing from the references get df 1)
        def __missing__(self, gram):
            value = self[gram] = float(log_n_docs - np.log(max(1.0, doc_freq.get(gram, 0.0))))
            return value

    idf = Idf()
    scores = []
    for hyp, group in zip(hyps, ref_counts):
        hyp_vec = _tfidf(_ngram_counts(hyp), idf)
        total = [0.0] * CIDER_N
        for counts in group:
            for n, sim in enumerate(_cider_similarity(hyp_vec, _tfidf(counts, idf))):
                total[n] += sim
        score = np.mean(np.array(total))
        score /= len(group)
        score *= 10.0
        scores.append(score)
    scores = np.array(scores)
    return float(np.mean(scores)), scores


# ---- METEOR (jar, -stdio) -----------------------------------------------------------------------------------

class MeteorScorer:
    """METEOR 1.5 as coco-caption drives it: `java -jar meteor-1.5.jar - - -stdio -l en -norm`, started once.

    Start it early (the jar spends seconds loading the paraphrase table) and call `score` later."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(meteor_command(["-", "-", "-stdio", "-l", "en", "-norm"]),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)

    def _ask(self, line: str, n_answers: int = 1) -> list[str]:
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._fail()
        answers = [self.proc.stdout.readline().decode("utf-8") for _ in range(n_answers)]
        if not all(a.endswith("\n") for a in answers):
            self._fail()
        return [a.strip() for a in answers]

    def _fail(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", errors="replace").strip()
        raise JavaToolError(f"METEOR jar stopped unexpectedly (exit {self.proc.returncode}): {err[-2000:]}")

    def score(self, hyps: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
        """(corpus METEOR, per-input METEOR) on PTB-tokenised text."""
        stats = []
        for hyp, group in zip(hyps, refs):
            hyp = hyp.replace("|||", "").replace("  ", " ")  # as coco-caption sanitises the hypothesis
            stats.append(self._ask(" ||| ".join(("SCORE", " ||| ".join(group), hyp)))[0])
        answers = self._ask("EVAL ||| " + " ||| ".join(stats), n_answers=len(stats) + 1)
        return float(answers[-1]), [float(a) for a in answers[:-1]]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> "MeteorScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
