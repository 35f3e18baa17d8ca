import sys

from lora_nlg.demo.stage import main

sys.exit(main())
