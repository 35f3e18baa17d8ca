"""The data stage, the reference writer and the eval helpers never import torch (issue 15): `make data`, the
reference files and `make eval` neither pay torch's import time (seconds) nor need it. Checked in a fresh
interpreter (this process has torch loaded already), after each import in turn, so that a failure names the first
module that pulled torch in; `sys.modules` is read rather than torch blocked, so that a guarded
`try: import torch` counts too."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "src" / "lora_nlg"

# argv[1:] are module names, or `-m NAME ARG...` to run a command the way `python -m` does.
CHECK = """
import importlib, runpy, sys
names = sys.argv[1:]
if names[0] == "-m":
    sys.argv = [names[1], *names[2:]]
    try:
        runpy.run_module(names[1], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        assert stop.code in (0, None), f"{names[1]} exited with {stop.code}"
    names = [names[1]]
else:
    for name in names:
        importlib.import_module(name)
        if "torch" in sys.modules:
            sys.exit(f"importing {name} imported torch")
if "torch" in sys.modules:
    sys.exit(f"running {names[0]} imported torch")
print(len(names))
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def data_stage_modules() -> list[str]:
    """`lora_nlg.data` and every module under it, from the files so that a module added later is checked too
    (`__main__` runs the command, so it is checked by running it)."""
    return sorted(module_name(p) for p in (PACKAGE_DIR / "data").rglob("*.py") if p.name != "__main__.py")


def check_torch_free(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_data_stage_modules_are_found():
    names = data_stage_modules()
    assert {"lora_nlg.data", "lora_nlg.data.stage", "lora_nlg.data.readers", "lora_nlg.data.bpe_records",
            "lora_nlg.data.raw_files", "lora_nlg.data.datasets", "lora_nlg.data.datasets.e2e"} <= set(names)


def test_data_stage_and_reference_writer_import_without_torch():
    names = [*data_stage_modules(), "lora_nlg.decode.reference_files", "lora_nlg.references"]
    proc = check_torch_free(*names)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) == len(names)


def test_eval_helpers_import_without_torch(eval_modules):
    # In eval/, as its scripts run (their folder first on sys.path).
    proc = check_torch_free(*eval_modules, cwd=REPO / "eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) == len(eval_modules) >= 20


@pytest.mark.parametrize("command", ["lora_nlg.data", "lora_nlg.references"])
def test_commands_parse_their_arguments_without_torch(command):
    proc = check_torch_free("-m", command, "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout and int(proc.stdout.split()[-1]) == 1


def test_a_module_that_imports_torch_is_named(tmp_path):
    # A stand-in torch package, so that the check's own failure path costs no real torch import.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    (tmp_path / "clean.py").write_text("import json\n")
    (tmp_path / "heavy.py").write_text("import clean\nimport torch\n")
    proc = check_torch_free("clean", "heavy", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip() == "importing heavy imported torch"
