"""`python -m lora_nlg.pretrained`: the command name the README and Makefile use; it downloads GPT-2 weights from the hub (`lora_nlg.model.hub`)."""
import sys

from lora_nlg.model.hub import main

if __name__ == "__main__":
    sys.exit(main())
