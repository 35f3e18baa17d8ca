"""Score generated text with the official metrics of E2E, WebNLG 2017 and DART, offline.

    python eval/score.py e2e REFS HYP [--mteval official|python] [--json OUT]
    python eval/score.py webnlg|dart REFS HYP [--json OUT]

E2E: REFS is a text file (references one per line, a blank line between inputs) or the challenge CSV (mr,ref);
HYP one line per input. Prints what tuetschek/e2e-metrics `measure_scores.py` prints (`--mteval python` = its
`-p` flag). WebNLG/DART: REFS is a directory holding reference0, reference1, ..., a path prefix such as
dir/reference, or several reference files (then HYP is the last path); prints GenerationEval's table.
`--json OUT` also writes the scores at full precision. Exit status 2 on bad input or missing Java.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling metric modules, also when imported

from java_tools import JavaToolError  # noqa: E402
from text_files import EvalInputError, check_same_count, write_text_atomic  # noqa: E402

GENERATION_EVAL_JSON_KEYS = ("BLEU", "METEOR", "TER", "TER_corpus")


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


def resolve_reference_files(ref_args: list[str]) -> list[Path]:
    """REFS of the webnlg/dart command: several files, one file, a directory or a prefix."""
    paths = [Path(p) for p in ref_args]
    if len(paths) > 1 or paths[0].is_file():
        for path in paths:
            if not path.is_file():
                raise EvalInputError(f"{path}: no such reference file")
        return paths
    return numbered_reference_files(paths[0])


def score_e2e_command(refs_path: str, hyp_path: str, mteval_mode: str) -> tuple[dict, str]:
    import e2e_inputs
    import e2e_metrics
    import mteval

    refs, hyps = e2e_inputs.read_references(refs_path), e2e_inputs.read_hypotheses(hyp_path)
    check_same_count(len(refs), refs_path, len(hyps), hyp_path)
    scores = e2e_metrics.score_e2e(refs, hyps, mteval_mode)
    if mteval_mode == "python" and (n := mteval.count_port_quirk_outputs(hyps)):
        print(f"warning: {n} hypotheses have at most 3 tokens; the -p port (reproduced here) gives them negative "
              f"n-gram totals, which inflates BLEU/NIST; --mteval official does not", file=sys.stderr)
    return scores, e2e_metrics.format_e2e(scores)


def score_generation_command(refs: list[str], hyp: str) -> tuple[dict, str]:
    import generation_eval

    scores = generation_eval.score_generation_eval(resolve_reference_files(refs), Path(hyp))
    return {k: scores[k] for k in GENERATION_EVAL_JSON_KEYS}, generation_eval.format_generation_eval(scores) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python eval/score.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("dataset", choices=("e2e", "webnlg", "dart"))
    p.add_argument("paths", nargs="+", metavar="REFS ... HYP",
                   help="references (file, CSV, directory, prefix or several files), then the hypothesis file")
    p.add_argument("--mteval", choices=("official", "python"), default="official",
                   help="E2E BLEU/NIST: 'official' = the Perl mteval-v13a-sig.pl figures (default), "
                        "'python' = measure_scores.py -p (as the LoRA README runs it)")
    p.add_argument("--json", metavar="OUT", help="also write the scores (full precision) to this JSON file")
    args = p.parse_args(argv)
    if len(args.paths) < 2:
        p.error("give the references and then the hypothesis file")
    if args.dataset == "e2e" and len(args.paths) != 2:
        p.error("e2e takes exactly two paths: REFS (text or CSV) and HYP")
    if args.dataset != "e2e" and args.mteval != "official":
        p.error("--mteval applies to e2e only (WebNLG/DART BLEU is multi-bleu-detok)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    *refs, hyp = args.paths
    try:
        if args.dataset == "e2e":
            scores, printed = score_e2e_command(refs[0], hyp, args.mteval)
        else:
            scores, printed = score_generation_command(refs, hyp)
    except (EvalInputError, JavaToolError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(printed)
    if args.json:
        write_text_atomic(Path(args.json), json.dumps(scores, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
