"""E2E NLG Challenge metrics as tuetschek/e2e-metrics `measure_scores.py` computes and prints them.

- `inputs`: the script's reference (text or challenge CSV) and hypothesis readers.
- `mteval`: BLEU and NIST, both the Perl mteval-v13a-sig.pl figures and the `-p` Python port.
- `coco_caption`: METEOR (jar), ROUGE-L and CIDEr-D on Stanford PTB-tokenised text.
- `scorer`: all five together (`score_e2e`) and the block the script prints (`format_e2e`).

Named `e2e_official` rather than `e2e_metrics` (the upstream repository's name); no PyPI project had the
name when it was chosen. This file imports nothing: the command line imports the modules it needs when it
scores E2E, so a WebNLG/DART run never loads numpy.
"""
