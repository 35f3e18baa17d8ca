"""The demo's own data: generated set determinism and consistency, and the held-out split."""
from __future__ import annotations

import json
import re

from lora_nlg.demo import synthetic
from lora_nlg.demo.stage import split_for_demo


def read_pairs(path):
    return [line.split("||") for line in path.read_text(encoding="utf-8").splitlines()]


def test_generated_set_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    counts = synthetic.write_dataset(a, seed=3, sizes={"train": 50, "valid": 5, "test": 5})
    synthetic.write_dataset(b, seed=3, sizes={"train": 50, "valid": 5, "test": 5})
    synthetic.write_dataset(c, seed=4, sizes={"train": 50, "valid": 5, "test": 5})
    for split in ("train", "valid", "test"):
        assert (a / "e2e" / f"{split}.txt").read_bytes() == (b / "e2e" / f"{split}.txt").read_bytes()
    assert (a / "e2e" / "train.txt").read_bytes() != (c / "e2e" / "train.txt").read_bytes()
    assert len({mr for mr, _ in read_pairs(a / "e2e" / "train.txt")}) == 50
    assert counts["train"] == len(read_pairs(a / "e2e" / "train.txt")) >= 100  # 2-4 references per input


def test_references_mention_every_attribute(tmp_path):
    synthetic.write_dataset(tmp_path, seed=0, sizes={"train": 200, "valid": 1, "test": 1})
    family_yes = ["family - friendly .", "Children are welcome .", "kid friendly ."]
    family_no = ["not family - friendly .", "not suitable for children .", "adults only ."]
    for mr, ref in read_pairs(tmp_path / "e2e" / "train.txt"):
        attrs = dict(part.split(" : ", 1) for part in mr.split(" | "))
        assert ref.startswith(attrs["name"]) or f"called {attrs['name']}" in ref
        for key in ("near", "area", "price", "customer rating"):
            if key in attrs:
                assert attrs[key] in ref, (key, mr, ref)
        if "food" in attrs:
            assert ("fast food" if attrs["food"] == "Fast food" else attrs["food"]) in ref
        if "Type" in attrs:
            assert attrs["Type"] in ref
        if "family friendly" in attrs:
            phrases = family_yes if attrs["family friendly"] == "yes" else family_no
            assert any(p in ref for p in phrases), (mr, ref)
            if attrs["family friendly"] == "yes":
                assert not any(p in ref for p in family_no)
        assert re.fullmatch(r"[\w£ ,.\-']+", ref), ref  # tokenised like the E2E files: no glued punctuation


def test_demo_split_holds_out_whole_inputs(tmp_path):
    def write(path, contexts):
        rows = [{"id": i, "context": c, "completion": f"text {i}", "context_ids": [1, 50256],
                 "completion_ids": [2, 50256]} for i, c in enumerate(contexts)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = tmp_path / "valid.jsonl"
    write(src, [f"mr{i // 3}" for i in range(30)])  # 10 inputs x 3 references
    test = tmp_path / "test.jsonl"
    write(test, [f"t{i // 2}" for i in range(20)])
    counts = split_for_demo(src, test, tmp_path / "out", valid_inputs=2, test_inputs=4)
    assert counts == {"train": 24, "valid": 6, "test": 8, "test_inputs": 4}
    load = lambda name: [json.loads(l) for l in (tmp_path / "out" / name).read_text().splitlines()]
    train_ctx = {r["context"] for r in load("train.jsonl")}
    valid_ctx = {r["context"] for r in load("valid.jsonl")}
    assert valid_ctx == {"mr2", "mr7"} and not train_ctx & valid_ctx  # spread over the file, never shared
    assert [r["id"] for r in load("valid.jsonl")] == list(range(6))


def test_summary_shows_three_examples_side_by_side_and_the_generate_command(tmp_path):
    from lora_nlg.demo.stage import format_table, pick_examples

    def write(path, texts):
        path.write_text("".join(json.dumps({"context": f"name : R{i} | Type : pub", "hypothesis": t,
                                            "references": [f"R{i} is a pub .", "other"]}) + "\n"
                                for i, t in enumerate(texts)), encoding="utf-8")

    lora, base = tmp_path / "lora.jsonl", tmp_path / "base.jsonl"
    write(lora, [f"lora {i}" for i in range(12)])
    write(base, [f"base {i}" for i in range(12)])
    examples = pick_examples(lora, base)
    assert [e["input"] for e in examples] == ["name : R2 | Type : pub", "name : R6 | Type : pub",
                                              "name : R10 | Type : pub"]
    assert [(e["base"], e["lora"], e["reference"]) for e in examples][0] == ("base 2", "lora 2", "R2 is a pub .")
    scores = {"BLEU": 0.5, "NIST": 5.0}
    summary = {"data": {"kind": "real", "dataset": "E2E", "train": "t", "valid": "v", "test": "x"},
               "base_model": {"preset": "small", "steps": 1}, "base_scores": scores, "lora_scores": scores,
               "first_val_loss": 2.0, "last_val_loss": 1.0, "val_loss_curve": [(0, 2.0), (9, 1.0)],
               "run_dir": "checkpoints/demo", "train_curves": "c.png", "predictions": str(lora),
               "base_predictions": str(base), "examples": examples,
               "try": 'echo "name[The Eagle]" | make generate RUN=demo'}
    text = format_table(summary)
    assert text.index("BLEU") < text.index("[1] name : R2 | Type : pub") < text.index("[3] name : R10")
    assert "    base model: base 6\n    + LoRA:     lora 6\n    reference:  R6 is a pub ." in text
    assert text.rstrip().endswith('echo "name[The Eagle]" | make generate RUN=demo')


def test_pretraining_documents_can_group_the_references_of_an_input(tmp_path):
    from lora_nlg.demo.base_model import read_documents

    rows = [{"context_ids": [1, 50256], "completion_ids": [5, 50256]},
            {"context_ids": [1, 50256], "completion_ids": [6, 50256]},
            {"context_ids": [2, 50256], "completion_ids": [7, 50256]}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_documents(path) == [[1, 50256], [5, 50256], [6, 50256], [2, 50256], [7, 50256]]
    assert read_documents(path, group_references=True) == [[1, 50256], [2, 50256], [5, 50256, 6, 50256], [7, 50256]]
