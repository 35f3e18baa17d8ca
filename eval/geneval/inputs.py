"""The files GenerationEval `eval.py` scores: N reference files (line i of each = the references of item i)
and a hypothesis file, plus the reference0..N-1 naming its `-R reference` option expects."""
from __future__ import annotations

import re
from pathlib import Path

from evalcommon.text_files import EvalInputError, read_lines


def numbered_reference_files(where: Path) -> list[Path]:
    """reference0..referenceN-1 inside a directory, or `<prefix>0..` for a path prefix like dir/reference."""
    folder, prefix = (where, "reference") if where.is_dir() else (where.parent, where.name)
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    numbered = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if (m := pattern.fullmatch(path.name)) and path.is_file():
                numbered[int(m.group(1))] = path
    if not numbered:
        raise EvalInputError(f"{where}: no reference files ({folder}/{prefix}0, {prefix}1, ...)")
    missing = sorted(set(range(max(numbered) + 1)) - set(numbered))
    if missing:
        raise EvalInputError(f"{where}: reference files must be numbered from 0 without gaps; missing "
                             f"{', '.join(f'{prefix}{i}' for i in missing)}")
    return [numbered[i] for i in sorted(numbered)]


def read_generation_inputs(ref_paths: list[Path], hyp_path: Path) -> tuple[list[list[str]], list[str]]:
    """Reference groups (the i-th line of every reference file) and hypotheses; counts must agree."""
    if not ref_paths:
        raise EvalInputError("no reference files given")
    hypotheses = read_lines(hyp_path)
    if not hypotheses:
        raise EvalInputError(f"{hyp_path}: no hypotheses (empty file)")
    columns = []
    for path in ref_paths:
        lines = read_lines(path)
        if len(lines) != len(hypotheses):
            raise EvalInputError(f"count mismatch: {hyp_path} has {len(hypotheses)} hypotheses (lines) but "
                                 f"{path} has {len(lines)} reference lines; every reference file needs exactly "
                                 f"one line per hypothesis (an empty line where an item has fewer references)")
        columns.append(lines)
    if not any(line.strip() for lines in columns for line in lines):
        raise EvalInputError(f"{', '.join(map(str, ref_paths))}: every reference line is empty")
    return [list(group) for group in zip(*columns)], hypotheses
