"""WebNLG 2017 / DART scores exactly as WebNLG GenerationEval `eval.py` (the copy microsoft/LoRA ships) computes them.

`eval.py -R reference -H hypothesis -nr N -m bleu,meteor,ter` does, and so does this module:
- BLEU: Moses `multi-bleu-detok.perl reference0 .. referenceN-1 < hypothesis` on the raw files (0-100; eval.py
  keeps the 2 decimals it prints, we keep full precision and print the same 2 decimals).
- BLEU NLTK: nltk 3.5 corpus_bleu (Chen & Cherry method 3) on nltk-tokenised text, items without any non-empty
  reference dropped (0-1).
- METEOR: the METEOR 1.5 jar, `java -Xmx2G -jar meteor-1.5.jar hyp refs -l en -norm -r N`, on nltk-tokenised text
  with the N references of each item interleaved; its "Final score" (0-1).
- TER: pyter sentence TER on nltk-tokenised text, minimum over the N references (an empty reference scores 1),
  mean over items (0-1).
Tokenisation is nltk 3.5 `word_tokenize` (nltk35_tokenize), no lowercasing (eval.py lowercases nothing; the
WebNLG references are lower-case already). As an extra, TER_corpus is sacrebleu's corpus TER (Tercom-style
shifts, default options, which lowercase; re-implemented for speed in corpus_ter) on the same tokenised text, as
a fraction 0-1 like TER (sacrebleu prints it x100); empty references are left out of it.

Not copied from eval.py: it reads files with `read().split('\\n')`, so a final newline adds an empty item (METEOR
then fails and reports -1, and TER averages in an extra 1), and its Perl BLEU drops the last character of a file
without a final newline. Here every file is read as lines: a final newline or CRLF line ends change no score.
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evalcommon.java_tools import parse_meteor_final_score, run_meteor

from . import corpus_ter, multi_bleu_detok, nltk35_bleu
from .inputs import read_generation_inputs
from .nltk35_tokenize import tokenize_line
from .ter import segment_ter


def meteor_score(hyps_tok: list[str], refs_tok: list[list[str]]) -> float:
    """The jar's Final score, run once on files: hypotheses one per line, references N per item, interleaved."""
    n_refs = len(refs_tok[0])
    with tempfile.TemporaryDirectory(prefix="meteor-") as tmp:
        hyp_file, ref_file = Path(tmp) / "hypothesis", Path(tmp) / "references"
        # A final newline keeps a trailing empty line a line for Java's readLine.
        hyp_file.write_text("".join(h + "\n" for h in hyps_tok), encoding="utf-8")
        ref_file.write_text("".join(r + "\n" for group in refs_tok for r in group), encoding="utf-8")
        stdout = run_meteor([str(hyp_file), str(ref_file), "-l", "en", "-norm", "-r", str(n_refs)])
    return parse_meteor_final_score(stdout)


def bleu_nltk(hyps_tok: list[str], refs_tok: list[list[str]]) -> float:
    kept = [(h.split(), [r.split() for r in refs if r.strip()]) for h, refs in zip(hyps_tok, refs_tok)]
    kept = [(h, refs) for h, refs in kept if refs]
    return nltk35_bleu.corpus_bleu([refs for _, refs in kept], [h for h, _ in kept])


def ter_corpus(hyps_tok: list[str], refs_tok: list[list[str]]) -> float:
    """sacrebleu corpus TER (fraction); empty references count as absent, items without any reference are skipped."""
    kept = [(h, [r or None for r in refs]) for h, refs in zip(hyps_tok, refs_tok) if any(refs)]
    return corpus_ter.corpus_ter([h for h, _ in kept], [refs for _, refs in kept])


def score_generation_eval(ref_paths: list[Path], hyp_path: Path) -> dict:
    """BLEU (0-100), BLEU_NLTK, METEOR, TER and TER_corpus (0-1), full precision, for WebNLG/DART files."""
    references, hypotheses = read_generation_inputs([Path(p) for p in ref_paths], Path(hyp_path))
    tokenized: dict[str, str] = {}  # DART repeats references across items; tokenise each text once
    for text in [*hypotheses, *(r for group in references for r in group)]:
        if text not in tokenized:
            tokenized[text] = tokenize_line(text)
    hyps_tok = [tokenized[h] for h in hypotheses]
    refs_tok = [[tokenized[r] for r in group] for group in references]
    # The JVM (mostly loading the paraphrase table) runs on the second core while Python does the rest.
    with ThreadPoolExecutor(max_workers=1) as pool:
        meteor = pool.submit(meteor_score, hyps_tok, refs_tok)
        scores = {
            "BLEU": multi_bleu_detok.corpus_bleu(hypotheses, references).score,
            "BLEU_NLTK": bleu_nltk(hyps_tok, refs_tok),
            "TER": segment_ter(hyps_tok, refs_tok),
            "TER_corpus": ter_corpus(hyps_tok, refs_tok),
        }
        scores["METEOR"] = meteor.result()
    return {key: scores[key] for key in ("BLEU", "BLEU_NLTK", "METEOR", "TER", "TER_corpus")}


def format_generation_eval(scores: dict) -> str:
    """The table eval.py prints (tabulate, 'simple' style): BLEU as multi-bleu's 2 decimals, others round(x, 2),
    every number in '%g' form as tabulate writes it (so 0.20 prints as 0.2, as eval.py prints it)."""
    columns = [("BLEU", float(f"{scores['BLEU']:.2f}"))]
    if "BLEU_NLTK" in scores:
        columns.append(("BLEU NLTK", round(scores["BLEU_NLTK"], 2)))
    columns += [("METEOR", round(scores["METEOR"], 2)), ("TER", round(scores["TER"], 2))]
    cells = [format(value, "g") for _, value in columns]
    widths = [max(len(header) + 2, len(cell)) for (header, _), cell in zip(columns, cells)]
    return "\n".join([
        "  ".join(header.rjust(w) for (header, _), w in zip(columns, widths)),
        "  ".join("-" * w for w in widths),
        "  ".join(cell.rjust(w) for cell, w in zip(cells, widths)),
    ])
