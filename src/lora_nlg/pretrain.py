"""`python -m lora_nlg.pretrain`: the command name the README and Makefile use; it pretrains the demo's small base GPT-2 (`lora_nlg.demo.base_model`)."""
import sys

from lora_nlg.demo.base_model import main

if __name__ == "__main__":
    sys.exit(main())
