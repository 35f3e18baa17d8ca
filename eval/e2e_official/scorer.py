"""E2E NLG Challenge scores as tuetschek/e2e-metrics `measure_scores.py` computes and prints them.

BLEU and NIST: `mteval.py` on the raw text (mode `official` = the Perl script, `python` = the `-p` port).
METEOR, ROUGE-L, CIDEr: `coco_caption.py` on PTB-tokenised text. All five on the official scale (fractions,
CIDEr and NIST unbounded).
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from evalcommon.text_files import EvalInputError, check_same_count

from . import coco_caption, mteval

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")
MTEVAL_MODES = ("official", "python")


def score_e2e(refs: list[list[str]], hyps: list[str], mteval_mode: str = "official",
              meteor: coco_caption.MeteorScorer | None = None) -> dict[str, float]:
    """{'BLEU', 'NIST', 'METEOR', 'ROUGE_L', 'CIDEr'} for hypotheses and their reference groups.

    `meteor`: a running MeteorScorer to reuse (scoring several systems with one jar start); else one is started
    here and stopped at the end."""
    if mteval_mode not in MTEVAL_MODES:
        raise ValueError(f"unknown mteval mode {mteval_mode!r}; choose from {MTEVAL_MODES}")
    check_same_count(len(refs), "the references", len(hyps), "the hypotheses")
    if not hyps:
        raise EvalInputError("nothing to score: no hypotheses")
    with contextlib.ExitStack() as stack:
        # Both Java programs start first: the jars load while Python computes BLEU and NIST.
        meteor = meteor or stack.enter_context(coco_caption.MeteorScorer())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="e2e-eval-")))
        ref_job = coco_caption.start_ptb_tokenizer([r for group in refs for r in group], tmp, "refs")
        hyp_job = coco_caption.start_ptb_tokenizer(hyps, tmp, "hyps")
        scores = mteval.mteval(refs, hyps, mteval_mode)
        tok_hyps = coco_caption.finish_ptb_tokenizer(hyp_job)
        tok_flat = iter(coco_caption.finish_ptb_tokenizer(ref_job))
        tok_refs = [[next(tok_flat) for _ in group] for group in refs]
        scores["ROUGE_L"] = coco_caption.rouge_l(tok_hyps, tok_refs)[0]
        scores["CIDEr"] = coco_caption.cider_d(tok_hyps, tok_refs)[0]
        scores["METEOR"] = meteor.score(tok_hyps, tok_refs)[0]
    return {name: scores[name] for name in METRICS}


def format_e2e(scores: dict[str, float]) -> str:
    """The block measure_scores.py prints ('%.4f' per metric)."""
    lines = ["SCORES:", "=============="] + [f"{name}: {scores[name]:.4f}" for name in METRICS]
    return "\n".join(lines) + "\n\n"  # measure_scores.py ends with an empty print()
