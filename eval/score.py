"""Score generated text with the official metrics of E2E, WebNLG 2017 and DART, offline.

    python eval/score.py e2e REFS HYP [--mteval official|python] [--json OUT]
    python eval/score.py webnlg|dart REFS HYP [--json OUT]

E2E: REFS is a text file (references one per line, a blank line between inputs) or the challenge CSV (mr,ref);
HYP one line per input. Prints what tuetschek/e2e-metrics `measure_scores.py` prints (`--mteval python` = its
`-p` flag). WebNLG/DART: REFS is a directory holding reference0, reference1, ..., a path prefix such as
dir/reference, or several reference files (then HYP is the last path); prints GenerationEval's table.
`--json OUT` also writes the scores at full precision (checked writable before scoring; NaN is written as null).
Exit status 2 on bad input, missing Java or an OUT that cannot be written; then nothing is printed or written.
The datasets and the metric family of each come from the dataset registry (`lora_nlg.data.datasets`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# eval/ is not a package: its scorer packages resolve from here whether this runs as a script or is imported.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalcommon.java_tools import JavaToolError  # noqa: E402
from evalcommon.text_files import EvalInputError, check_same_count  # noqa: E402
from geneval.inputs import numbered_reference_files  # noqa: E402

from lora_nlg.atomic import WriteError, check_writable, json_text, write_files_together  # noqa: E402
from lora_nlg.data.datasets import dataset_names, get_dataset  # noqa: E402

GENERATION_EVAL_JSON_KEYS = ("BLEU", "METEOR", "TER", "TER_corpus")


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
    from e2e_official import inputs, mteval, scorer

    refs, hyps = inputs.read_references(refs_path), inputs.read_hypotheses(hyp_path)
    check_same_count(len(refs), refs_path, len(hyps), hyp_path)
    scores = scorer.score_e2e(refs, hyps, mteval_mode)
    if mteval_mode == "python" and (n := mteval.count_port_quirk_outputs(hyps)):
        print(f"warning: {n} hypotheses have at most 3 tokens; the -p port (reproduced here) gives them negative "
              f"n-gram totals, which inflates BLEU/NIST; --mteval official does not", file=sys.stderr)
    return scores, scorer.format_e2e(scores)


def score_generation_command(refs: list[str], hyp: str) -> tuple[dict, str]:
    from geneval import scorer

    scores = scorer.score_generation_eval(resolve_reference_files(refs), Path(hyp))
    return {k: scores[k] for k in GENERATION_EVAL_JSON_KEYS}, scorer.format_generation_eval(scores) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python eval/score.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("dataset", choices=dataset_names())
    p.add_argument("paths", nargs="+", metavar="REFS ... HYP",
                   help="references (file, CSV, directory, prefix or several files), then the hypothesis file")
    p.add_argument("--mteval", choices=("official", "python"), default="official",
                   help="E2E BLEU/NIST: 'official' = the Perl mteval-v13a-sig.pl figures (default), "
                        "'python' = measure_scores.py -p (as the LoRA README runs it)")
    p.add_argument("--json", metavar="OUT", help="also write the scores (full precision) to this JSON file")
    args = p.parse_args(argv)
    if len(args.paths) < 2:
        p.error("give the references and then the hypothesis file")
    dataset = get_dataset(args.dataset)
    if dataset.scoring.metrics == "e2e_official" and len(args.paths) != 2:
        p.error(f"{dataset.name} takes exactly two paths: REFS (text or CSV) and HYP")
    if dataset.scoring.metrics != "e2e_official" and args.mteval != "official":
        e2e_scored = [n for n in dataset_names() if get_dataset(n).scoring.metrics == "e2e_official"]
        p.error(f"--mteval applies to {'/'.join(e2e_scored)} only ({dataset.title} BLEU is multi-bleu-detok)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    *refs, hyp = args.paths
    try:
        if args.json:
            check_writable(args.json)
        if get_dataset(args.dataset).scoring.metrics == "e2e_official":
            scores, printed = score_e2e_command(refs[0], hyp, args.mteval)
        else:
            scores, printed = score_generation_command(refs, hyp)
        if args.json:
            write_files_together({args.json: json_text(scores, indent=1) + "\n"})
    except (EvalInputError, JavaToolError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(printed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
