import sys

from lora_nlg.decode.stage import main

sys.exit(main())
