"""A new dataset is one new module: dropped into the registry's package path, it flows through the data stage, the
reference writer, the decode CLI and eval/ without an edit to any of them."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import run_eval
import score

from lora_nlg.data import datasets, stage
from lora_nlg.decode import reference_files

# A dataset unlike the three: tab-separated `input<TAB>text<TAB>seen|unseen` lines, lower-cased but not tokenised
# for scoring, GenerationEval metrics on the subsets `all` then `seen`.
TOY_MODULE = '''
from lora_nlg.data.datasets import Dataset, Scoring, Source, first_file
from lora_nlg.data.readers import DataError, Example, read_utf8


def read_toy(path):
    examples = []
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        fields = line.split("\\t")
        if len(fields) != 3 or fields[2] not in ("seen", "unseen"):
            raise DataError(f"{path}:{number}: expected 'input<TAB>text<TAB>seen|unseen'")
        examples.append(Example(fields[0], fields[1], fields[2] == "seen"))
    return examples


DATASET = Dataset(
    name="toyset", title="Toy", order=4, raw_dirs=("toy",), auto=("tsv",),
    scoring=Scoring(metrics="geneval", tokenize=False, lower=True, subsets=("all", "seen")),
    sources={"tsv": Source({s: f"{s}.tsv" for s in ("train", "valid", "test")}, first_file(read_toy))})
'''
TOY_TEST = [("Pub : The Eagle", "The Eagle is a Pub.", "seen"),
            ("Pub : The Eagle", "A pub, The Eagle.", "seen"),
            ("Cafe : Zizzi", "Zizzi is a Cafe.", "unseen")]


@pytest.fixture
def toyset(tmp_path, monkeypatch):
    """The registry with toyset.py added to its package path, as if the file had been added to the repository."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "toyset.py").write_text(TOY_MODULE, encoding="utf-8")
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(plugin)])
    datasets.registry.cache_clear()
    yield datasets.get_dataset("toyset")
    monkeypatch.undo()
    datasets.registry.cache_clear()
    sys.modules.pop(f"{datasets.__name__}.toyset", None)


def write_raw(raw: Path) -> None:
    (raw / "toy").mkdir(parents=True)
    for split in ("valid", "test"):
        (raw / "toy" / f"{split}.tsv").write_text("".join("\t".join(row) + "\n" for row in TOY_TEST),
                                                 encoding="utf-8")


def test_the_registry_lists_it_after_the_others(toyset):
    assert datasets.dataset_names() == ("e2e", "webnlg", "dart", "toyset")
    assert stage.parse_datasets("all")[-1] == "toyset"
    assert reference_files.dataset_scoring("toyset").subsets == ("all", "seen")
    from lora_nlg.decode import stage as decode_stage  # imports torch: only here

    assert decode_stage.parse_args(["--merged", "m", "--out", "o", "--dataset", "toyset"]).dataset == "toyset"


def test_data_references_and_eval_take_it_without_edits(toyset, tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "data"
    write_raw(raw)
    assert stage.main(["--dataset", "toyset", "--raw-dir", str(raw), "--out-dir", str(out), "--splits",
                       "valid,test", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "toyset" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["context"], r["completion"], r["seen"]) for r in rows] == \
        [(c, t, s == "seen") for c, t, s in TOY_TEST]

    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"context": "Pub : The Eagle", "hypothesis": "The Eagle, a PUB."}) + "\n" +
                           json.dumps({"context": "Cafe : Zizzi", "hypothesis": "Zizzi: a cafe."}) + "\n",
                           encoding="utf-8")
    decode_dir = tmp_path / "run" / "decode" / "test"
    assert reference_files.main(["--data", str(out / "toyset" / "test.jsonl"), "--predictions", str(predictions),
                                 "--out", str(decode_dir), "--ref-num", "2"]) == 0  # dataset from the directory
    assert "(all: 2 inputs, seen: 1 inputs)" in capsys.readouterr().out
    # lower-cased, not tokenised, as its Scoring says; padded with the first reference (geneval layout)
    assert (decode_dir / "all" / "reference0").read_text() == "the eagle is a pub.\nzizzi is a cafe.\n"
    assert (decode_dir / "all" / "reference1").read_text() == "a pub, the eagle.\nzizzi is a cafe.\n"
    assert (decode_dir / "seen" / "hyp.txt").read_text() == "the eagle, a pub.\n"
    assert sorted(p.name for p in decode_dir.iterdir()) == ["all", "seen"]

    (decode_dir / "decode.json").write_text(json.dumps({"dataset": "toyset"}))
    assert run_eval.subset_dirs("toyset", decode_dir) == {"all": decode_dir / "all", "seen": decode_dir / "seen"}
    scores = {s: {"BLEU": 40.0, "BLEU_NLTK": 0.4, "METEOR": 0.3, "TER": 0.5, "TER_corpus": 0.5} for s in ("all", "seen")}
    md = run_eval.markdown_report({"run": "run", "split": "test", "dataset": "toyset", "model": "gpt2-medium",
                                   "decode_dir": str(decode_dir), "scorer": "s"}, scores, "gpt2-medium")
    assert "| all | BLEU | 40 | 40.00 | - | - |" in md and "| seen | TER | 0.5 | 0.500 | - | - |" in md
    assert md.index("| all |") < md.index("| seen |")
    args = score.parse_args(["toyset", str(decode_dir / "all"), str(decode_dir / "all" / "hyp.txt")])
    assert args.dataset == "toyset"


@pytest.mark.slow
def test_eval_scores_it_with_its_metric_family(toyset, tmp_path):
    pytest.importorskip("pycocoevalcap")
    decode_dir = tmp_path / "run" / "decode" / "test"
    for subset, refs, hyps in (("all", ["a cafe in town .", "a pub by the river ."], ["a cafe in town .", "a pub ."]),
                               ("seen", ["a pub by the river ."], ["a pub ."])):
        (decode_dir / subset).mkdir(parents=True)
        (decode_dir / subset / "reference0").write_text("".join(r + "\n" for r in refs))
        (decode_dir / subset / "hyp.txt").write_text("".join(h + "\n" for h in hyps))
    (decode_dir / "decode.json").write_text(json.dumps({"dataset": "toyset"}))
    report = run_eval.evaluate_run(tmp_path / "run", "test")
    assert report["dataset"] == "toyset" and list(report["scores"]) == ["all", "seen"]
    assert report["scorer"].startswith("WebNLG GenerationEval") and report["mteval"] is None
    assert set(report["scores"]["seen"]) >= {"BLEU", "METEOR", "TER"}
    assert report["paper"]["scores"] == {"all": {}, "seen": {}}
    assert (tmp_path / "run" / "eval" / "test.md").is_file()
