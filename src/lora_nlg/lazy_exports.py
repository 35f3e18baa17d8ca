"""Names a package re-exports from its modules, imported on first use.

The package `__init__`s stay cheap this way: `import lora_nlg.data.readers` or the metric code must not pay for
torch (seconds) because `lora_nlg/__init__.py` offers `GPT2`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`: name -> the module that defines it, imported when first asked."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
