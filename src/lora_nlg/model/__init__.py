"""The model: the GPT-2 network (`network`), LoRA layers (`lora`), the LM head fused with the loss (`lm_loss`), KV
caches (`kv_cache`), weight files (`weights`: Hugging Face, LoRA safetensors, PEFT, merged export), the public
`GPT2` (`gpt2`: the network plus its file methods) and the GPT-2 weight download from the hub (`hub`)."""
