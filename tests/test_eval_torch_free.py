"""eval/ scores text files only: none of its scripts or packages may need torch (README, Metrics)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "eval"
ENTRY_POINTS = ("score", "run_eval", "bench_generation_eval", "paper_numbers")
PACKAGES = ("e2e_official", "geneval", "evalcommon")


def test_layout_is_entry_points_plus_scorer_packages():
    assert sorted(p.stem for p in EVAL.glob("*.py")) == sorted(ENTRY_POINTS)
    assert sorted(p.name for p in EVAL.iterdir() if (p / "__init__.py").is_file()) == sorted(PACKAGES)


def test_every_eval_module_imports_with_torch_blocked(eval_modules):
    # None in sys.modules makes `import torch` raise ImportError, even through a third-party import; a fresh
    # interpreter, because this test process has torch loaded already. `python -c` in eval/ puts eval/ first on
    # sys.path, as the scripts run.
    code = (f"import importlib, sys\nsys.modules['torch'] = None\n"
            f"for name in {eval_modules!r}:\n    importlib.import_module(name)\n"
            f"print(len({eval_modules!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=EVAL, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) == len(eval_modules) >= 20
