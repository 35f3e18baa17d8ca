"""Host-device synchronisations per beam-search step and per training update (issue 17), counted on the CPU.

On a GPU every op that needs a tensor's value on the host (`.item()`, `int(t)`, `bool(t)`, `nonzero`, a boolean
mask index, `masked_select`) stops the CPU from queueing kernels until the device catches up, and a tensor built
from host data is a blocking copy. The same ops run on the CPU, so a TorchDispatchMode counting them while a
tiny model decodes and trains measures what a GPU would pay, without a GPU.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lora_nlg import GPT2, LoRAConfig
from lora_nlg.config import load_config
from lora_nlg.decode.search import BeamSettings, generate
from lora_nlg.distributed import DistEnv
from lora_nlg.train.loop import train_update
from lora_nlg.train.setup import setup

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
SYNCING = {"_local_scalar_dense": "item", "nonzero": "nonzero", "masked_select": "masked_select",
           "lift_fresh": "host data", "lift_fresh_copy": "host data"}


def _is_bool_index(name: str, args) -> bool:
    """x[mask] / x[mask] = v: the result size depends on the mask's values."""
    if name not in ("index", "index_put", "index_put_", "_index_put_impl_"):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)


class SyncCounter(TorchDispatchMode):
    """Counts synchronising ops into the current bucket; `new_bucket()` starts the next one (one per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.buckets: list[Counter] = [Counter()]

    def new_bucket(self) -> None:
        self.buckets.append(Counter())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        kind = SYNCING.get(name)
        if kind is None and _is_bool_index(name, args):
            kind = "bool index"
        if kind:
            self.buckets[-1][kind] += 1
        return func(*args, **(kwargs or {}))


def test_the_counter_sees_every_kind_of_sync():
    x = torch.arange(6.0)
    with SyncCounter() as c:
        x.sum().item(), int(x.max()), bool((x > 2).any()), x.nonzero(), x[x > 2], torch.tensor([1, 2])
        x.masked_select(x > 1)
    assert c.buckets[0] == Counter({"item": 3, "nonzero": 1, "bool index": 1, "host data": 1, "masked_select": 1})


def decode_step_syncs(early_stop: bool, batch: int, monkeypatch) -> list[Counter]:
    # Under inference_mode a CPU tensor's item() bypasses the Python dispatch modes (a fast path the GPU does
    # not have), so the search runs under no_grad here: the same ops, all of them visible.
    monkeypatch.setattr(torch, "inference_mode", torch.no_grad)
    torch.manual_seed(0)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=4, alpha=32)).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 50000, (int(n),), generator=g).tolist() + [50256]
               for n in torch.randint(3, 12, (batch,), generator=g)]
    # end tokens banned: every input stays until the last step, so every step after the first is steady state
    settings = BeamSettings(beam=4, max_new_tokens=10, min_length=10, no_repeat_ngram_size=2)
    counter = SyncCounter()
    hook = model.register_forward_pre_hook(lambda *_: counter.new_bucket())
    try:
        with counter:
            generate(model, prompts, settings, batch_size=batch, early_stop=early_stop)
    finally:
        hook.remove()
    # buckets: [before the prefill, prefill .. step 0, forward of step 1 .. step 1 (steady), ..., last step + end]
    return counter.buckets


@pytest.mark.parametrize("early_stop", [True, False])
def test_beam_search_synchronises_at_most_twice_per_step(early_stop, monkeypatch):
    buckets = decode_step_syncs(early_stop, batch=3, monkeypatch=monkeypatch)
    assert len(buckets) == 1 + 10  # the prefill and 9 one-token forwards
    steady = buckets[2:-1]
    for i, counts in enumerate(steady):
        # one `item` learns which inputs may stop (early stop only), one whether a top-k tie leaves its window
        assert sum(counts.values()) <= 2 and set(counts) <= {"item"}, f"step {i + 1}: {dict(counts)}"
    assert sum(sum(c.values()) for c in steady) == len(steady) * (2 if early_stop else 1)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, write_learnable_checkpoint):
    return write_learnable_checkpoint(tmp_path_factory.mktemp("tiny-sync"), "tiny")


def test_a_training_update_synchronises_once(tiny_checkpoint, data_dir, tmp_path):
    cfg = load_config(str(REPO / "configs" / "e2e.yaml"), [
        f"model.pretrained={tiny_checkpoint}", f"data.dir={data_dir}", f"train.out_dir={tmp_path}", "train.run=r",
        "train.batch_size=4", "train.grad_acc=2", "train.max_steps=3", "train.warmup_steps=1", "train.clip=1.0",
        "train.device=cpu"])
    s = setup(cfg, DistEnv())
    try:
        for _ in range(3):
            windows = s.data.next_window(s.progress)  # batches come from host data by nature: built outside
            s.data.next_window = lambda progress, w=windows: w
            with SyncCounter() as c:
                train_update(s)
            # the loss, read once for the finiteness check and the log
            assert c.buckets[0] == Counter({"item": 1}), dict(c.buckets[0])
    finally:
        s.release()
