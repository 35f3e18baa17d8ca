"""The official E2E script's printed figures on real system outputs (../shared/eval-checks/e2e), to the digit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_official import coco_caption, inputs, mteval, scorer

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.shared, pytest.mark.slow]  # `checks` scores real systems (METEOR jar): tens of seconds
MODES = {"official": "official_default (Perl mteval BLEU/NIST)",
         "python": "official_with_-p (Python mteval port, as the LoRA README runs it)"}
REFERENCES = {"test-orig": "data/e2e/testset_w_refs.csv", "test-orig-lora": "eval-checks/e2e/test-lora-refs.txt"}


@pytest.fixture(scope="module")
def checks(shared_dir: Path) -> list[tuple[dict, dict[str, dict]]]:
    """Every check of expected.json scored once: one METEOR jar for all, COCO metrics once per system, both
    mteval modes (which only change BLEU/NIST)."""
    expected = json.loads((shared_dir / "eval-checks" / "e2e" / "expected.json").read_text())
    results = []
    with coco_caption.MeteorScorer() as meteor:
        for check in expected["checks"]:
            refs = inputs.read_references(shared_dir / REFERENCES[check["references"]])
            hyps = inputs.read_hypotheses(shared_dir / "eval-checks" / check["system_output"])
            assert len(hyps) == len(refs) == check["n_inputs"]
            official = scorer.score_e2e(refs, hyps, "official", meteor=meteor)
            python = {**official, **mteval.mteval_python(refs, hyps)}
            results.append((check, {"official": official, "python": python}))
    return results


@pytest.mark.parametrize("mode", MODES)
def test_printed_figures_match_the_official_script(checks, mode):
    for check, scores in checks:
        printed = scorer.format_e2e(scores[mode])
        expected_lines = [f"{name}: {value}" for name, value in check[MODES[mode]]["printed"].items()]
        assert printed.splitlines()[2:7] == expected_lines, (check["system_output"], check["references"])


@pytest.mark.parametrize("mode", MODES)
def test_full_precision_matches_the_official_script(checks, mode):
    for check, scores in checks:
        expected = check[MODES[mode]]["full_precision"]
        for name in scorer.METRICS:
            assert scores[mode][name] == pytest.approx(expected[name], rel=1e-12, abs=0), \
                (check["system_output"], check["references"], name)


def test_nist_differs_between_modes_only_where_the_official_script_differs(checks):
    # Reference groups of different sizes: the Perl script divides total reference words by the mean number of
    # references, the port averages each group's mean reference length; only the LoRA-style refs show it.
    nists = [(check["references"], round(s["official"]["NIST"], 4), round(s["python"]["NIST"], 4))
             for check, s in checks]
    assert nists[-1] == ("test-orig-lora", 8.3447, 8.3228)
    assert all(off == py for ref, off, py in nists[:-1])
