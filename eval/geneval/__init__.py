"""WebNLG 2017 / DART metrics as WebNLG GenerationEval `eval.py` (the copy microsoft/LoRA ships) computes them.

- `inputs`: the reference0..N-1 / hypothesis files and their naming.
- `scorer`: BLEU, BLEU NLTK, METEOR, TER and TER_corpus together (`score_generation_eval`) and eval.py's
  printed table (`format_generation_eval`).
- `multi_bleu_detok`: Moses multi-bleu-detok.perl BLEU.  `nltk35_bleu`: nltk 3.5 corpus_bleu.
- `nltk35_tokenize`, `nltk35_punkt`: nltk 3.5 word_tokenize, the tokenisation of METEOR/TER/BLEU NLTK.
- `ter`: pyter sentence TER.  `corpus_ter`: sacrebleu corpus TER.

Named `geneval`, not `generation_eval`: that was the scorer module's name, and a branch that still has
`eval/generation_eval.py` beside a package of the same name would silently import the package. No PyPI
project had the name when it was chosen. This file imports nothing, so `score.py` can import `geneval.inputs`
at start-up without loading the metrics.
"""
