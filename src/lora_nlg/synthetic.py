"""`python -m lora_nlg.synthetic`: the command name the README and Makefile use; it writes the demo's template restaurant data (`lora_nlg.demo.synthetic`)."""
import sys

from lora_nlg.demo.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
