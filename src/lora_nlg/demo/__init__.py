"""`make demo`: the whole pipeline on a CPU in minutes. `stage` splits the demo's data and prints the summary
table, `synthetic` writes template restaurant data when no real E2E files are at hand, `base_model` pretrains the
small GPT-2 that stands in for GPT-2 M."""
from lora_nlg.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"main": "lora_nlg.demo.stage"})
