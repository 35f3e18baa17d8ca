"""Time WebNLG/DART scoring at DART test size: 5097 inputs x 6 references (all non-empty, as LoRA writes them).

    python eval/bench_generation_eval.py [--source DIR] [--json OUT]

The inputs are synthetic but realistic: the WebNLG 2017 baseline outputs and references of `--source`
(default ../shared/eval-checks/webnlg-baseline: reference0..2 + hypothesis) replicated to 5097 items; copies
after the first get one deleted word, one moved 3-word phrase and one replaced word in their hypothesis, and
references 3..5 are such edits of references 0..2, so no (hypothesis, reference) pair repeats and no cache
shortcut applies. Prints one JSON line: wall seconds, CPU seconds of this process (METEOR runs in a JVM
beside it), the load average before and after, and the scores.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scorer packages beside this file

from evalcommon.text_files import read_lines  # noqa: E402
from geneval.scorer import score_generation_eval  # noqa: E402

DART_TEST_INPUTS = 5097
N_REFS = 6
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "eval-checks" / "webnlg-baseline"
FILLERS = ("the", "is", "a", "of", ",", "and")


def perturb(text: str, rng: random.Random) -> str:
    """One deleted word, one moved 3-word phrase, one replaced word (texts of 4+ words)."""
    words = text.split()
    if len(words) > 3:
        del words[rng.randrange(len(words))]
        start = rng.randrange(len(words))
        phrase = words[start:start + 3]
        del words[start:start + 3]
        target = rng.randrange(len(words) + 1)
        words[target:target] = phrase
        words[rng.randrange(len(words))] = rng.choice(FILLERS)
    return " ".join(words)


def write_dart_size_inputs(source: Path, out: Path, seed: int = 0) -> tuple[list[Path], Path]:
    rng = random.Random(seed)
    hyps = read_lines(source / "hypothesis")
    refs = [read_lines(source / f"reference{k}") for k in range(3)]
    out_hyps, out_refs = [], [[] for _ in range(N_REFS)]
    for item in range(DART_TEST_INPUTS):
        i, copy = item % len(hyps), item // len(hyps)
        out_hyps.append(hyps[i] if copy == 0 else perturb(hyps[i], rng))
        for k in range(3):
            out_refs[k].append(refs[k][i])
            out_refs[k + 3].append(perturb(refs[k][i], rng))
    hyp_path = out / "hypothesis"
    hyp_path.write_text("\n".join(out_hyps) + "\n", encoding="utf-8")
    ref_paths = [out / f"reference{k}" for k in range(N_REFS)]
    for path, lines in zip(ref_paths, out_refs):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ref_paths, hyp_path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="dir with reference0..2 and hypothesis")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dart-size-") as tmp:
        ref_paths, hyp_path = write_dart_size_inputs(args.source, Path(tmp))
        load_before = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        scores = score_generation_eval(ref_paths, hyp_path)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"inputs": DART_TEST_INPUTS, "references_per_input": N_REFS, "wall_s": round(wall, 1),
              "python_cpu_s": round(cpu, 1), "load_avg_1min_before": load_before,
              "load_avg_1min_after": os.getloadavg()[0], "scores": scores}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
