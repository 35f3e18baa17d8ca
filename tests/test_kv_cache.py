"""BeamKVCache: every row's logits equal a full forward of its own sequence, through reorders and leaving inputs."""
import pytest
import torch

from lora_nlg import GPT2
from lora_nlg.model.kv_cache import BeamKVCache
from lora_nlg.model.lora import LoRAConfig


def _model(dtype=torch.float64):
    torch.manual_seed(0)
    model = GPT2.from_preset("tiny", lora=LoRAConfig(r=2, alpha=4)).to(dtype).eval()
    with torch.no_grad():
        for p in model.lora_parameters():
            p.normal_(0, 0.2)  # B = 0 would hide a LoRA path the cache bypassed
    return model


def _prefill(model, prompts, beam, steps):
    lengths = torch.tensor([len(p) for p in prompts])
    ids = torch.zeros(len(prompts), int(lengths.max()), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(p)
    last = torch.zeros_like(ids, dtype=torch.bool)
    last[torch.arange(len(prompts)), lengths - 1] = True
    cache = BeamKVCache(n_inputs=len(prompts), beam=beam, prompt_len=ids.shape[1], max_new_tokens=steps)
    return cache, model(ids, kv_cache=cache, input_lengths=lengths, logits_mask=last)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_rows_match_full_forward_through_reorders_and_leaving_inputs(dtype, atol):
    model, beam, steps = _model(dtype), 3, 6
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 50257, (n,), generator=g).tolist() for n in (5, 2, 8, 4)]
    with torch.no_grad():
        cache, first = _prefill(model, prompts, beam, steps)
        for i, p in enumerate(prompts):  # the prefill's last-token logits
            torch.testing.assert_close(first[i], model(torch.tensor([p]))[0, -1], atol=atol, rtol=0)
        inputs = list(range(len(prompts)))
        sequences = {(i, r): list(prompts[i]) for i in inputs for r in range(beam)}
        rows_per_input = 1
        for step in range(steps):
            if step == 3:
                inputs = [0, 2, 3]  # input 1 leaves
            if step == 4:
                inputs = [2]        # inputs 0 and 3 leave
            index, new_sequences = [], {}
            for new_pos, i in enumerate(inputs):
                old_pos = [j for j in range(len(prompts)) if (j, 0) in sequences].index(i)
                parents = torch.randint(0, rows_per_input, (beam,), generator=g).tolist()
                for r, parent in enumerate(parents):
                    index.append(old_pos * rows_per_input + parent)
                    new_sequences[(i, r)] = list(sequences[(i, parent)])
            cache.reorder_(torch.tensor(index))
            rows_per_input, sequences = beam, new_sequences
            tokens = torch.randint(0, 50257, (len(index), 1), generator=g)
            for pos, key in enumerate(sorted(sequences)):
                sequences[key].append(int(tokens[pos]))
            logits = model(tokens, kv_cache=cache)[:, -1]
            for pos, key in enumerate(sorted(sequences)):
                expected = model(torch.tensor([sequences[key]]))[0, -1]
                torch.testing.assert_close(logits[pos], expected, atol=atol, rtol=0)
    assert cache.generated == steps and cache.k[0].dtype == dtype


def test_reorder_rejects_rows_that_mix_inputs():
    model = _model(torch.float32)
    with torch.no_grad():
        cache, _ = _prefill(model, [[1, 2, 3], [4, 5]], beam=2, steps=3)
        with pytest.raises(ValueError, match="single input"):
            cache.reorder_(torch.tensor([0, 1, 1, 1]))
        with pytest.raises(ValueError, match="groups of beam=2"):
            cache.reorder_(torch.tensor([0, 0, 1]))


def test_step_before_expanding_to_beams_is_an_error():
    model = _model(torch.float32)
    with torch.no_grad():
        cache, _ = _prefill(model, [[1, 2, 3], [4, 5]], beam=2, steps=3)
        with pytest.raises(RuntimeError, match="reorder_ to beam rows"):
            model(torch.tensor([[7], [8]]), kv_cache=cache)
