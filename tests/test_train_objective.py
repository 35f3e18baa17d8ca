"""Batching, the loss against the reference formula, the optimiser and the learning-rate schedule (issue 4)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lora_nlg import GPT2, LoRAConfig
from lora_nlg.train.batching import (
    DataError,
    collate,
    epoch_plan,
    load_examples,
    rank_share,
    split_by_tokens,
    validation_batches,
)
from lora_nlg.train.objective import REFERENCE_DENOM_EPS, token_loss_sum
from lora_nlg.train.optim import ReferenceAdamW, lr_lambda

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- loss
def reference_loss(model, rows, seq_len: int, eps: float) -> torch.Tensor:
    """The reference as docs/reference-pipeline.md describes it ("Training examples and the loss mask", "Training
    objective"), verbatim: pad to seq_len, full logits, masked, smoothed, / (sum + 1e-4)."""
    inputs, targets, masks = [], [], []
    for row in rows:
        cond, full = row["context_ids"], row["context_ids"] + row["completion_ids"]
        c, length = len(cond), min(len(full), seq_len)
        pad = lambda xs: (xs + [0] * seq_len)[:seq_len]  # noqa: E731
        inputs.append(pad(full[:seq_len]))
        targets.append(pad(full[1:][:seq_len]))
        masks.append(pad([0] * (c - 1) + [1] * (length - c)))
    inputs, targets, mask = torch.tensor(inputs), torch.tensor(targets), torch.tensor(masks, dtype=torch.float32)
    lp = torch.log_softmax(model(inputs).float(), dim=-1)
    nll = -lp.gather(-1, targets[..., None]).squeeze(-1)
    per_token = (1 - eps) * nll + eps * (-lp.mean(-1)) if eps > 1e-4 else nll
    return (per_token * mask).sum() / (mask.sum() + 1e-4)


@pytest.mark.parametrize("eps", [0.1, 0.0])
def test_loss_equals_reference_formula(tiny_checkpoint, data_dir, eps):
    torch.manual_seed(1)
    model = GPT2.from_pretrained(tiny_checkpoint, lora=LoRAConfig(r=4, alpha=32))
    with torch.no_grad():
        for p in model.lora_parameters():
            p.normal_(0, 0.05)  # non-zero B: the adapters change the output
    model.eval()
    seq_len = 36  # shorter than some examples: right truncation; longer than most: padding
    rows = [json.loads(line) for line in open(data_dir / "train.jsonl")][:8]
    assert any(len(r["context_ids"]) + len(r["completion_ids"]) > seq_len for r in rows)
    assert any(len(r["context_ids"]) + len(r["completion_ids"]) < seq_len for r in rows)

    ref = reference_loss(model, rows, seq_len, eps)
    ref_grads = torch.autograd.grad(ref, list(model.lora_parameters()))
    batch = collate(load_examples(data_dir / "train.jsonl", seq_len)[:8])
    assert batch.input_ids.shape[1] < seq_len  # padded to the batch's own longest row, not to seq_len
    ours = token_loss_sum(model(batch.input_ids, logits_mask=batch.loss_mask), batch.targets, eps)
    ours = ours / (batch.n_loss + REFERENCE_DENOM_EPS)
    grads = torch.autograd.grad(ours, list(model.lora_parameters()))

    assert abs(ours.item() - ref.item()) < 1e-6, (ours.item(), ref.item())
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-7)


def test_loss_positions_are_the_completion_tokens(data_dir):
    ex = load_examples(data_dir / "train.jsonl", 512)[0]
    batch = collate([ex])
    row = json.loads(open(data_dir / "train.jsonl").readline())
    assert batch.targets.tolist() == row["completion_ids"]            # every completion token incl. the final 50256
    assert batch.loss_mask[0].nonzero().flatten().tolist() == list(range(len(row["context_ids"]) - 1,
                                                                          ex.n_input))
    assert batch.input_ids.shape[1] == len(row["context_ids"]) + len(row["completion_ids"]) - 1


# ---------------------------------------------------------------------------------------------- batching
def test_epoch_plan_covers_everything_deterministically():
    lengths = [(i * 37) % 91 + 5 for i in range(103)]
    plan = epoch_plan(lengths, unit_size=8, seed=110, epoch=1, bucket_window=4)
    assert plan == epoch_plan(lengths, 8, 110, 1, 4)                  # identical on every rank
    assert plan != epoch_plan(lengths, 8, 110, 2, 4)                  # reshuffled each epoch
    assert len(plan) == math.ceil(103 / 8) and all(len(u) == 8 for u in plan)
    flat = [i for u in plan for i in u]
    assert set(flat) == set(range(103)) and len(flat) - len(set(flat)) == 8 * 13 - 103  # only the top-up repeats
    # bucketing: far less padding than a plain shuffle
    def padding(p):
        return sum(len(u) * max(lengths[i] for i in u) - sum(lengths[i] for i in u) for u in p)
    assert padding(plan) < 0.5 * padding(epoch_plan(lengths, 8, 110, 1, bucket_window=1))


def test_rank_shares_are_disjoint_and_complete():
    unit = list(range(10, 18))
    shares = [rank_share(unit, r, 4) for r in range(4)]
    assert sorted(i for s in shares for i in s) == unit and all(len(s) == 2 for s in shares)


def test_split_by_tokens_bounds_padded_size(data_dir):
    examples = load_examples(data_dir / "train.jsonl", 512)[:16]
    chunks = split_by_tokens(examples, 100)
    assert sorted(id(e) for c in chunks for e in c) == sorted(id(e) for e in examples)
    assert all(len(c) * max(e.n_input for e in c) <= 100 for c in chunks) and len(chunks) > 1


def test_validation_shards_are_disjoint(data_dir):
    examples = load_examples(data_dir / "valid.jsonl", 512)
    per_rank = [sum(b.n_loss for b in validation_batches(examples, r, 3, 4)) for r in range(3)]
    assert sum(per_rank) == sum(e.n_loss for e in examples)


@pytest.mark.parametrize("line,fragment", [
    ("{not json", "invalid JSON"), ("", "empty line"), ("[1, 50256]", "expected a JSON object, got list"),
    ('{"context_ids": [1, 50256]}', "missing field 'completion_ids'"),
    ('{"context_ids": [1, 50256], "completion_ids": 7}', "field 'completion_ids' should be list, got int"),
    ('{"context_ids": [1, 50256], "completion_ids": [5, 7]}', "field 'completion_ids' must end with 50256"),
    ('{"context_ids": [1, 99999, 50256], "completion_ids": [5, 50256]}', "field 'context_ids' holds 99999"),
    ('{"context_ids": [], "completion_ids": [5, 50256]}', "field 'context_ids' must be a non-empty list")])
def test_bad_data_lines_name_file_line_and_field(tmp_path, line, fragment):
    path = tmp_path / "train.jsonl"
    path.write_text('{"context_ids": [1, 50256], "completion_ids": [5, 50256]}\n' + line + "\n")
    with pytest.raises(DataError) as e:
        load_examples(path, 512)
    assert f"{path}:2: {fragment}" in str(e.value)


def test_missing_split_says_what_exists(data_dir):
    with pytest.raises(DataError, match=r"train, valid.*make data"):
        load_examples(data_dir / "test.jsonl", 512)


# ---------------------------------------------------------------------------------------------- optimiser
def test_reference_adamw_matches_the_reference_update():
    """optimizer.py: eps on the un-corrected sqrt(v), bias correction in the step size, decay after the update."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3))
    p0 = p.detach().clone()
    opt = ReferenceAdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    m = torch.zeros_like(p0)
    v = torch.zeros_like(p0)
    expected = p0.clone()
    for t in range(1, 4):
        g = torch.randn(5, 3) * 1e-4   # small gradients: where the eps placement matters
        p.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected = expected - 0.1 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (v.sqrt() + 1e-6)
        expected = expected - 0.1 * 0.01 * expected
    torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    torch_p = torch.nn.Parameter(p0.clone())
    torch_opt = torch.optim.AdamW([torch_p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    torch.manual_seed(0)
    torch.randn(5, 3)
    for _ in range(3):
        torch_p.grad = torch.randn(5, 3) * 1e-4
        torch_opt.step()
    assert (torch_p.detach() - expected).abs().max() > 1e-4  # torch's AdamW is measurably different here


# ---------------------------------------------------------------------------------------------- schedule
def test_linear_schedule_values():
    f = lr_lambda("linear", warmup_steps=500, total_steps=26290)
    assert f(0) == 0.0 and f(250) == 0.5 and f(499) == 499 / 500 and f(500) == 1.0
    assert f(500 + 25790 // 2) == pytest.approx(0.5) and f(26290) == 0.0 and f(30000) == 0.0
    assert lr_lambda("constant", 10, 100)(50) == 1.0 and lr_lambda("constant", 10, 100)(5) == 0.5
    cos = lr_lambda("cosine", 10, 110)
    assert cos(10) == 1.0 and cos(60) == pytest.approx(0.5) and cos(110) == pytest.approx(0.0)
