"""The training stage (`make train`, `python -m lora_nlg.train CONFIG [key=value ...]`): one loop for 1..N processes.

Its lifecycle in modules: `setup` (run directory and resume decision, data, model, optimizer), `loop` (updates,
validation, checkpoints; the CLI), `state` (what a run holds; step/best/final saves and loads), `report`
(metrics.jsonl, the curves plot, summaries); `objective` (the reference's loss, precision), `optim` (AdamW and
the schedule), `batching` (examples, the length-bucketed epoch plan, padded batches).
"""
from lora_nlg.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"main": "lora_nlg.train.loop"})
