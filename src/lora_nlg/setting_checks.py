"""How a setting refuses a value that cannot work: `SettingError`, which names the setting's dotted config key.

The runtime objects that own settings (`LoRAConfig`, `BeamSettings`, the sections of `RunConfig`) check their
own values when they are built and raise this; the config loader adds where the value came from (file or
override). Torch-free, so that `lora_nlg.config` and the data stage stay cheap to import.
"""
from __future__ import annotations

import math
from typing import Any


class SettingError(ValueError):
    """A setting whose value cannot work; `key` is its dotted config name, e.g. `lora.r`."""

    def __init__(self, key: str, value: Any, why: str) -> None:
        super().__init__(f"bad value for {key}: {value!r} ({why})")
        self.key = key


def require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise SettingError(key, value, why)


def require_finite(key: str, value: float) -> None:
    """inf and nan pass every `>` / `<` check or none; refused by name so no setting relies on comparisons."""
    require(math.isfinite(value), key, value, "must be a finite number")
