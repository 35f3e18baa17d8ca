"""E2E inputs exactly as tuetschek/e2e-metrics `measure_scores.py` reads them.

References: a text file with one reference per line and a blank line between inputs (a file without any blank
line is single-reference: one input per line), or the challenge CSV/TSV with `mr` and `ref` columns where
consecutive rows with the same MR form one input. Hypotheses: one line per input. Every line is stripped of
surrounding whitespace, as the official reader does; an empty hypothesis line stays (it is scored).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from evalcommon.text_files import EvalInputError, read_lines

# Header patterns of measure_scores.py (matched at the start of the field, case-insensitive).
HEADER_MR = r"(mr|src|source|meaning(?:[_ .-]rep(?:resentation)?)?|da|dial(?:ogue)?[_ .-]act)s?"
HEADER_REF = r"(trg|tgt|target|ref(?:erence)?|human(?:[_ .-](?:ref(?:erence)?))?)s?"
# Mojibake the official reader repairs in CSV files before parsing (the released CSVs need it).
CSV_FIXES = (("Ł", "£"), ("Â£", "£"), ("Ã©", "é"), ("ã©", "é"))


def read_hypotheses(path: str | Path) -> list[str]:
    return [line.strip() for line in read_lines(path)]


def read_references(path: str | Path) -> list[list[str]]:
    """Reference groups, one list per input, from a blank-line-separated text file or an mr/ref CSV or TSV."""
    path = Path(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return _read_csv_references(path)
    return _read_grouped_references(path)


def _read_grouped_references(path: Path) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for line_no, line in enumerate(read_lines(path), start=1):
        line = line.strip()
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:
            # The official reader would create an input without references and crash later in CIDEr.
            raise EvalInputError(f"{path}: line {line_no}: blank line after a blank line or at the start "
                                 f"(an input without references); separate inputs with exactly one blank line")
    if not groups[-1]:
        groups.pop()
    if not groups:
        raise EvalInputError(f"{path}: no references")
    if len(groups) == 1:  # no blank line at all: the official reader treats it as one reference per input
        groups = [[ref] for ref in groups[0]]
    return groups


def _read_csv_references(path: Path) -> list[list[str]]:
    numbered = []
    for line_no, line in enumerate(read_lines(path), start=1):
        line = line.strip()
        for bad, good in CSV_FIXES:
            line = line.replace(bad, good)
        if line:
            numbered.append((line_no, line))
    if not numbered:
        raise EvalInputError(f"{path}: empty CSV")
    line_nos, lines = zip(*numbered)
    rows = list(csv.reader(lines, delimiter="\t" if "\t" in lines[0] else ","))
    header = rows[0]
    mr_cols = [i for i, field in enumerate(header) if re.match(HEADER_MR, field, re.I)]
    ref_cols = [i for i, field in enumerate(header) if re.match(HEADER_REF, field, re.I)]
    if len(mr_cols) != 1 or len(ref_cols) != 1:
        raise EvalInputError(f"{path}: line {line_nos[0]}: the header must name exactly one MR column (e.g. "
                             f"'mr') and one reference column (e.g. 'ref'); got {header}")
    bad_rows = [line_nos[i] for i, row in enumerate(rows) if len(row) != len(header)]
    if bad_rows:
        raise EvalInputError(f"{path}: lines {bad_rows[:10]}{' ...' if len(bad_rows) > 10 else ''}: expected "
                             f"{len(header)} fields like the header, got a different number")
    groups: list[list[str]] = []
    previous_mr = None
    for row in rows[1:]:
        mr, ref = row[mr_cols[0]], row[ref_cols[0]]
        if mr != previous_mr:
            groups.append([])
            previous_mr = mr
        groups[-1].append(ref)
    empty = [line_nos[i] for i, row in enumerate(rows[1:], start=1) if not row[ref_cols[0]].strip()]
    if empty:
        raise EvalInputError(f"{path}: lines {empty[:10]}: empty reference")
    if not groups:
        raise EvalInputError(f"{path}: header only, no references")
    return groups
