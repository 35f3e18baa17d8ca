"""`python -m lora_nlg.generate` (`make generate`): generated text for new inputs, one per line
(`lora_nlg.decode.generation`).

From Python the module itself is callable, so `lora_nlg.generate(...)` is the one-call API whether or not this
module has been imported (importing a submodule binds its name on the package, so a function of the same name
could not be relied on):

    import lora_nlg
    lora_nlg.generate("checkpoints/demo", ["name[The Eagle], eatType[coffee shop]"], beam=5)  # -> list[str]

It calls `lora_nlg.generate_text` (= `lora_nlg.decode.generation.generate_text`); see its docstring.
"""
import sys
import types


def generate(model_or_run, inputs, **kwargs) -> list[str]:
    """`lora_nlg.decode.generation.generate_text`: generated text per input, in order."""
    from lora_nlg.decode.generation import generate_text

    return generate_text(model_or_run, inputs, **kwargs)


class _CallableModule(types.ModuleType):
    def __call__(self, model_or_run, inputs, **kwargs) -> list[str]:
        return generate(model_or_run, inputs, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from lora_nlg.decode.generation import main

    sys.exit(main())
