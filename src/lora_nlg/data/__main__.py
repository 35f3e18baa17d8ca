import sys

from lora_nlg.data.stage import main

sys.exit(main())
