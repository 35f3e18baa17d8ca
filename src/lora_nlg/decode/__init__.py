"""The decode stage (`make decode`, `python -m lora_nlg.decode`): beam search -> predictions and metric files.

`search` is the reference's beam search on token ids (no CLI, no files): `from lora_nlg.decode import beam_search`.
`stage` is the command (the model of a run, inputs, sharding over processes, output files) and `reference_files`
formats the reference/hypothesis files the metric scripts read (torch-free). `generation` turns new input lines
into text with a run's model (`python -m lora_nlg.generate`, `lora_nlg.generate(...)`).
"""
from lora_nlg.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "BeamSettings": "lora_nlg.decode.beam_settings",
    **{name: "lora_nlg.decode.search" for name in (
        "Hypothesis", "beam_search", "generate", "plan_batches", "search_batch", "apply_bans",
        "topk_stable")},
    **{name: "lora_nlg.decode.stage" for name in ("DTYPES", "DecodeError", "load_model", "load_decode_model",
                                                  "ready_for_inference", "parse_args", "run", "main")},
    **{name: "lora_nlg.decode.generation" for name in ("generate_text", "Generated", "InputError", "serialise_input")},
})
