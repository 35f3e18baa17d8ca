"""`python -m lora_nlg.references`: the command name the README and Makefile use; it writes reference/hypothesis files from predictions.jsonl (`lora_nlg.decode.reference_files`)."""
import sys

from lora_nlg.decode.reference_files import main

if __name__ == "__main__":
    sys.exit(main())
