"""`python -m lora_nlg.generate` and `lora_nlg.generate(...)` on a tiny E2E run: the same text as the decode stage,
E2E challenge MRs prompted exactly as the data stage encodes them, bad lines reported while the rest generate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lora_nlg
from lora_nlg import GPT2
from lora_nlg.config import load_config, save_config
from lora_nlg.data.bpe_records import encode_examples, jsonl_lines
from lora_nlg.data.datasets.e2e import read_e2e_csv
from lora_nlg.data.readers import Example
from lora_nlg.decode.generation import InputError, prompt_ids, serialise_input
from lora_nlg.decode.stage import main as decode_main

REPO = Path(__file__).resolve().parents[1]
DECODE = ["decode.beam=3", "decode.max_new_tokens=8", "decode.batch_size=2"]
CONTEXTS = ["name : The Eagle | Type : coffee shop | food : French | price : £ 20 - 25",
            "name : Alimentum | area : city centre | family friendly : no",
            "name : Blue Spice | Type : pub | customer rating : 5 out of 5 | near : Crowne Plaza Hotel",
            "name : Zizzi | food : Italian"]
CHALLENGE_CSV = ('mr,ref\n"name[The Eagle], eatType[coffee shop], food[French], priceRange[£20-25]",The Eagle.\n'
                 '"name[Blue Spice], eatType[pub], customer rating[5 out of 5], near[Crowne Plaza Hotel]",A pub.\n')


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory, decoding_tiny_model):
    """runs/tiny-e2e/{config.yaml, final/lora.safetensors} on a tiny random base, and data/e2e/test.jsonl."""
    root = tmp_path_factory.mktemp("generate")
    model = decoding_tiny_model()
    model.save_pretrained(root / "base")
    run = root / "runs" / "tiny-e2e"
    (run / "final").mkdir(parents=True)
    model.save_lora(run / "final" / "lora.safetensors")
    data = root / "data" / "e2e"
    data.mkdir(parents=True)
    records = encode_examples([Example(c, "A reference .") for c in CONTEXTS], progress=False)
    (data / "test.jsonl").write_text("".join(jsonl_lines(records)), encoding="utf-8")
    cfg = load_config(None, ["model.name=tiny", f"model.pretrained={root / 'base'}", "data.dataset=e2e",
                             f"data.dir={data}", "lora.r=4", "lora.alpha=32", *DECODE])
    save_config(cfg, run / "config.yaml")
    assert decode_main(["--run", "tiny-e2e", "--runs-dir", str(root / "runs"), "--split", "test"]) == 0
    preds = [json.loads(line) for line in (run / "decode" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert [p["context"] for p in preds] == CONTEXTS
    return {"root": root, "runs": root / "runs", "run": run, "predictions": preds}


def run_cli(args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "lora_nlg.generate", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_cli_and_python_give_the_decode_stage_text(e2e_run):
    want = [p["hypothesis"] for p in e2e_run["predictions"]]
    assert len(set(want)) > 1 and all(want)
    # stdin, batched 2 per batch as the decode stage does (the run's decode.batch_size)
    cli = run_cli(["--run", "tiny-e2e", "--runs-dir", str(e2e_run["runs"])], "\n".join(CONTEXTS) + "\n",
                  e2e_run["root"])
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines() == want
    assert lora_nlg.generate(e2e_run["run"], CONTEXTS) == want
    assert lora_nlg.generate_text(e2e_run["run"], CONTEXTS[:1]) == want[:1]
    # --jsonl adds the input, the score and the token count, from a file input
    inputs = e2e_run["root"] / "inputs.txt"
    inputs.write_text("\n".join(CONTEXTS) + "\n", encoding="utf-8")
    cli = run_cli(["--run", str(e2e_run["run"]), "--input", str(inputs), "--jsonl"], "", e2e_run["root"])
    assert cli.returncode == 0, cli.stderr
    rows = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [r["text"] for r in rows] == want
    assert [r["input"] for r in rows] == CONTEXTS and [r["line"] for r in rows] == [1, 2, 3, 4]
    assert [r["tokens"] for r in rows] == [len(p["hypothesis_ids"]) for p in e2e_run["predictions"]]
    assert [r["score"] for r in rows] == pytest.approx([p["score"] for p in e2e_run["predictions"]], abs=1e-5)


def test_dtype_auto_is_resolved_for_this_machine(e2e_run, monkeypatch):
    from lora_nlg import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)  # an AVX2-only CPU: auto means fp32
    want = [p["hypothesis"] for p in e2e_run["predictions"]]
    assert lora_nlg.generate(e2e_run["run"], CONTEXTS, dtype="auto") == want


def test_decode_overrides_change_the_search(e2e_run):
    greedy = lora_nlg.generate(e2e_run["run"], CONTEXTS, beam=1, max_new_tokens=3)
    model = GPT2.from_pretrained(e2e_run["root"] / "base")  # the adapter's base alone, no LoRA
    base = lora_nlg.generate(model, CONTEXTS, beam=1, max_new_tokens=3)
    assert greedy != base
    assert all(len(t.split()) <= 3 for t in greedy)


def test_challenge_mrs_are_prompted_as_the_data_stage_encodes_them(e2e_run, tmp_path):
    csv = tmp_path / "testset.csv"
    csv.write_text(CHALLENGE_CSV, encoding="utf-8")
    records = encode_examples(read_e2e_csv(csv), progress=False)
    mrs = [line.rsplit(",", 1)[0].strip('"') for line in CHALLENGE_CSV.splitlines()[1:]]
    contexts = [serialise_input(mr, "e2e") for mr in mrs]
    assert contexts == [r["context"] for r in records] == [CONTEXTS[0], CONTEXTS[2]]
    model = GPT2.from_preset("tiny")
    assert prompt_ids(contexts, model, 8) == [r["context_ids"] for r in records]
    # ... so a challenge MR gives the text of its data-stage form
    want = {p["context"]: p["hypothesis"] for p in e2e_run["predictions"]}
    assert lora_nlg.generate(e2e_run["run"], mrs) == [want[c] for c in contexts]


def test_bad_lines_are_reported_and_the_rest_generated(e2e_run):
    want = [p["hypothesis"] for p in e2e_run["predictions"]]
    lines = [CONTEXTS[0], "", "nam : The Eagle | Type : pub", "name : " + "word " * 1100, "name[X], colour[red]",
             CONTEXTS[1]]
    cli = run_cli(["--run", "tiny-e2e", "--runs-dir", str(e2e_run["runs"])], "\n".join(lines) + "\n",
                  e2e_run["root"])
    assert cli.returncode == 1
    out = cli.stdout.splitlines()
    assert out == [want[0], "", "", "", "", want[1]]  # one output line per input line
    errors = [line for line in cli.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    assert errors[0] == "error: <stdin>:2: empty input"
    assert errors[1].startswith("error: <stdin>:3: unknown E2E attribute 'nam'")
    assert errors[2].startswith("error: <stdin>:4: input is ") and "context window" in errors[2]
    assert errors[3].startswith("error: <stdin>:5: unknown MR attribute 'colour'")
    assert "Traceback" not in cli.stderr
    with pytest.raises(InputError, match=r"input 2: empty input.*input 3: unknown E2E attribute"):
        lora_nlg.generate(e2e_run["run"], lines[:3])


def test_generate_is_the_same_callable_before_and_after_importing_the_command():
    first = lora_nlg.generate
    import lora_nlg.generate as command
    from lora_nlg import generate

    assert first is command is generate is lora_nlg.generate and callable(generate)
    assert "generate" in dir(lora_nlg)


def test_missing_run_is_one_error_line(tmp_path):
    cli = run_cli(["--run", "nope", "--runs-dir", str(tmp_path)], "name : X\n", tmp_path)
    assert cli.returncode == 1 and cli.stderr.startswith("error: ") and "Traceback" not in cli.stderr
