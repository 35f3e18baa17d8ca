"""The LoRA paper's GPT-2 LoRA results, to print beside ours.

Source: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685 v2 (ICLR 2022):
Table 3 (E2E NLG Challenge), Table 13 (DART), Table 14 (WebNLG; U = unseen, S = seen, A = all categories),
rows "GPT-2 M (LoRA)" (0.35M trainable parameters) and "GPT-2 L (LoRA)" (0.77M). Mean over 3 seeds, "±" as
printed (Tables 13/14: MET and TER variances < 0.01, no ± given). The BLEU columns agree with the summary table
of the microsoft/LoRA README. Numbers are on the paper's scale: E2E BLEU, METEOR, ROUGE-L in percent (the E2E
script prints fractions: 0.704 = 70.4), NIST and CIDEr as printed; WebNLG/DART BLEU 0-100, METEOR and TER 0-1.
"""
from __future__ import annotations

from dataclasses import dataclass

SOURCE = "LoRA paper (arXiv:2106.09685 v2), Tables 3, 13, 14: GPT-2 M/L (LoRA) rows"
MODELS = {"gpt2-medium": "GPT-2 M (LoRA, 0.35M)", "gpt2-large": "GPT-2 L (LoRA, 0.77M)"}


@dataclass(frozen=True)
class PaperScore:
    value: float
    plus_minus: float | None = None  # the paper's "±" (spread over 3 seeds); None where it gives none

    def __str__(self) -> str:
        return f"{self.value:g}" if self.plus_minus is None else f"{self.value:g} ± {self.plus_minus:g}"


def _row(**scores: float | tuple[float, float]) -> dict[str, PaperScore]:
    return {k: PaperScore(*v) if isinstance(v, tuple) else PaperScore(v) for k, v in scores.items()}


# {dataset: {model: {subset: {metric: PaperScore}}}}; E2E and DART have the single subset "all".
PAPER: dict[str, dict[str, dict[str, dict[str, PaperScore]]]] = {
    "e2e": {
        "gpt2-medium": {"all": _row(BLEU=(70.4, .1), NIST=(8.85, .02), METEOR=(46.8, .2), ROUGE_L=(71.8, .1),
                                    CIDEr=(2.53, .02))},
        "gpt2-large": {"all": _row(BLEU=(70.4, .1), NIST=(8.89, .02), METEOR=(46.8, .2), ROUGE_L=(72.0, .2),
                                   CIDEr=(2.47, .02))},
    },
    "dart": {
        "gpt2-medium": {"all": _row(BLEU=(47.1, .2), METEOR=0.39, TER=0.46)},
        "gpt2-large": {"all": _row(BLEU=(47.5, .1), METEOR=0.39, TER=0.45)},
    },
    "webnlg": {
        "gpt2-medium": {"unseen": _row(BLEU=(46.7, .4), METEOR=0.38, TER=0.46),
                        "seen": _row(BLEU=(62.1, .2), METEOR=0.44, TER=0.33),
                        "all": _row(BLEU=(55.3, .2), METEOR=0.41, TER=0.39)},
        "gpt2-large": {"unseen": _row(BLEU=(48.4, .3), METEOR=0.39, TER=0.45),
                       "seen": _row(BLEU=(64.0, .3), METEOR=0.45, TER=0.32),
                       "all": _row(BLEU=(57.0, .1), METEOR=0.42, TER=0.38)},
    },
}

# Multiply a score of a metric family (lora_nlg.data.datasets.METRIC_FAMILIES) by this to put it on the paper's
# scale (the E2E script's fractions -> percent).
TO_PAPER_SCALE = {"e2e_official": {"BLEU": 100.0, "METEOR": 100.0, "ROUGE_L": 100.0, "NIST": 1.0, "CIDEr": 1.0},
                  "geneval": {"BLEU": 1.0, "METEOR": 1.0, "TER": 1.0}}


def paper_scores(dataset: str, model: str, subset: str = "all") -> dict[str, PaperScore] | None:
    """The paper's LoRA row for this dataset, model preset name and WebNLG subset; None if it has none."""
    return PAPER.get(dataset, {}).get(model, {}).get(subset)
