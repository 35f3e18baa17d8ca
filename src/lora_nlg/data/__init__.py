"""The data stage (`make data`, `python -m lora_nlg.data`): raw E2E / WebNLG / DART files -> BPE records.

`stage` is the command (options, order of work, summary); `datasets/` holds one module per dataset; `readers` the
file readers every dataset shares (errors say path:line); `bpe_records` the output format (encoding, stats.json,
all-or-nothing writes); `raw_files` the manifest (`manifest.tsv`, package data), downloads and `--verify`.
Importing any of it does not import torch.
"""
from lora_nlg.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"main": "lora_nlg.data.stage"})
