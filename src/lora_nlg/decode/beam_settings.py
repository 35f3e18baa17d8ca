"""The beam-search settings (`BeamSettings`): their names, defaults, types and checks, in this one place.

The config's `decode:` section extends them (`config.DecodeConfig`, keys decode.beam, ...), `search.generate` runs
them and `search.beam_search` takes them as keywords. Torch-free, so the config loader can use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from lora_nlg.setting_checks import require
from lora_nlg.tokenizer import DOUBLE_NEWLINE_ID, EOT_ID

BATCH_SIZE = 16  # unique inputs per beam-search batch (speed and memory only: the hypotheses do not depend on it)


@dataclass(frozen=True)
class BeamSettings:
    beam: int = 10                       # K beams per input (1 = greedy)
    length_penalty: float = 0.8          # finished score = sum logp / generated_len ** length_penalty
                                         #   (paper: E2E 0.9, WebNLG/DART 0.8; README E2E 0.8)
    no_repeat_ngram_size: int = 4        # ban n-grams already generated, over generated tokens only (0 = off)
    repetition_penalty: float = 1.0      # CTRL penalty on tokens already generated (1.0 = off)
    min_length: int = 0                  # end tokens banned while fewer tokens have been generated
    max_new_tokens: int = 64             # the reference's eval_len
    eos_ids: tuple[int, ...] = (EOT_ID, DOUBLE_NEWLINE_ID)  # <|endoftext|> and "\n\n"

    def __post_init__(self) -> None:
        object.__setattr__(self, "eos_ids", tuple(int(t) for t in self.eos_ids))
        require(self.beam >= 1, "decode.beam", self.beam, "must be >= 1")
        # NaN/inf would rank every finished hypothesis NaN or 0 and write scores that are not numbers. A negative
        # exponent multiplies a (negative) log-prob sum by L^|lp|, so every extra token costs more: the search then
        # returns whatever ends first, never a description (the recipes use 0.8 / 0.9; 0 = plain sum).
        require(math.isfinite(self.length_penalty) and self.length_penalty >= 0, "decode.length_penalty",
                self.length_penalty, "must be a finite number >= 0")
        require(self.no_repeat_ngram_size >= 0, "decode.no_repeat_ngram_size", self.no_repeat_ngram_size,
                "must be >= 0")
        require(math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0, "decode.repetition_penalty",
                self.repetition_penalty, "must be a finite number > 0")
        require(self.min_length >= 0, "decode.min_length", self.min_length, "must be >= 0")
        require(self.max_new_tokens >= 1, "decode.max_new_tokens", self.max_new_tokens, "must be >= 1")

    def beam_settings(self) -> "BeamSettings":
        """Just the search settings (a `DecodeConfig` carries more)."""
        return BeamSettings(**{f.name: getattr(self, f.name) for f in fields(BeamSettings)})


DEFAULT = BeamSettings()
