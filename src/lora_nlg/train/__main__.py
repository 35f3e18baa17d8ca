import sys

from lora_nlg.train.loop import main

sys.exit(main())
