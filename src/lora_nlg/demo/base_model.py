"""A short language-model pretraining of a small GPT-2, for the offline demo's base model.

No pretrained GPT-2 exists offline, so the demo makes its own: every context and every reference of the
training split becomes a separate document; the documents are shuffled and packed into fixed-length blocks.
Because inputs and references are shuffled apart, the base model learns the language of the data (attribute
names, restaurant sentences) but not which sentence belongs to which input — that mapping is what the LoRA
stage then has to learn, just as GPT-2 M knows English but not E2E before fine-tuning.

To fit a CPU budget the softmax at every position runs over a candidate set: every token of the corpus plus a
fresh random sample of the rest of the vocabulary. That alone leaves the model's absolute logit level free, so
a sample of positions per step also gets the exact full-vocabulary cross-entropy, which keeps the mass on real
tokens (without it ~40% of the probability leaks to tokens the corpus never uses). All weights train (this is
pretraining, not LoRA).

    python -m lora_nlg.pretrain DATA_JSONL OUT_DIR [--preset small] [--steps 400] [--group-references] [--random-names] ...
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import random
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lora_nlg.atomic import WriteError, atomic_dir
from lora_nlg.model.architecture import GPT2Config
from lora_nlg.model.gpt2 import GPT2
from lora_nlg.tokenizer import EOT_ID, VOCAB_SIZE, get_tokenizer


def read_documents(path: Path, group_references: bool = False) -> list[list[int]]:
    """Unique contexts and all completions of a data-stage jsonl file, as separate token documents; with
    `group_references` the completions of one context form one document (their end tokens kept between them)."""
    docs, seen_contexts, groups = [], set(), {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                context, completion = row["context_ids"], row["completion_ids"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{line_no}: not a data-stage record ({e})") from None
            if tuple(context) not in seen_contexts:
                seen_contexts.add(tuple(context))
                docs.append(list(context))
            if group_references:
                groups.setdefault(tuple(context), []).extend(completion)
            else:
                docs.append(list(completion))
    docs.extend(groups.values())
    if not docs:
        raise ValueError(f"{path}: no records")
    return docs


ENTITY_FIELDS = ("name", "near")


def read_entities(path: Path, fields: tuple[str, ...] = ENTITY_FIELDS) -> list[list[int]]:
    """Token ids (with their leading space, as they appear mid-text) of every distinct value of the inputs'
    entity fields (`name : X | ... | near : Y`), longest first."""
    values = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            for pair in json.loads(line).get("context", "").split(" | "):
                key, sep, value = pair.strip().partition(" : ")
                if sep and key in fields and value:
                    values.add(value)
    tok = get_tokenizer()
    return sorted((tok.encode(" " + v) for v in values), key=len, reverse=True)


@functools.lru_cache(maxsize=1)
def name_pieces() -> tuple[list[int], list[int]]:
    """Vocabulary tokens a made-up name is built from: capitalised words (' Xxx') and lower-case word pieces."""
    tok = get_tokenizer()
    words, pieces = [], []
    for i in range(VOCAB_SIZE - 1):
        text = tok.decode([i])
        if re.fullmatch(r" [A-Z][a-z]{2,}", text):
            words.append(i)
        elif re.fullmatch(r"[a-z]{2,}", text):
            pieces.append(i)
    return words, pieces


def random_name(rng: random.Random) -> list[int]:
    """One to three tokens: a capitalised word, then words or word pieces ('Strada', 'Loch Fyne')."""
    words, pieces = name_pieces()
    name = [rng.choice(words)]
    for _ in range(rng.choice((0, 0, 1, 2))):
        name.append(rng.choice(words if rng.random() < 0.5 else pieces))
    return name


def rename_entities(doc: list[int], entities: list[list[int]], rng: random.Random) -> list[int]:
    """`doc` with every entity replaced by a made-up name, the same one for each occurrence within the document."""
    by_first: dict[int, list[list[int]]] = {}
    for e in entities:
        by_first.setdefault(e[0], []).append(e)
    names: dict[tuple[int, ...], list[int]] = {}
    out, i = [], 0
    while i < len(doc):
        match = next((e for e in by_first.get(doc[i], ()) if doc[i: i + len(e)] == e), None)
        if match is None:
            out.append(doc[i])
            i += 1
        else:
            out.extend(names.setdefault(tuple(match), random_name(rng)))
            i += len(match)
    return out


def pack_blocks(docs: list[list[int]], block: int, rng: random.Random,
                entities: list[list[int]] | None = None) -> torch.Tensor:
    """Shuffle documents (each starting after an end token) and cut the stream into [N, block+1] windows; with
    `entities`, each document's entities get fresh made-up names (new ones at every call, i.e. every epoch)."""
    order = [rename_entities(d, entities, rng) for d in docs] if entities else docs[:]
    rng.shuffle(order)
    stream = [EOT_ID]
    for doc in order:
        stream.extend(doc)
    n = (len(stream) - 1) // block
    return torch.tensor(stream[: n * block + 1]).unfold(0, block + 1, block)


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, wte: torch.Tensor, corpus_vocab: torch.Tensor,
                         n_negatives: int, gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy over the corpus vocabulary plus random negatives (targets are always candidates)."""
    negatives = torch.randint(0, VOCAB_SIZE, (n_negatives,), generator=gen)
    candidates = torch.unique(torch.cat([corpus_vocab, negatives, targets.reshape(-1)]))
    position = torch.full((VOCAB_SIZE,), -1, dtype=torch.long)
    position[candidates] = torch.arange(len(candidates))
    logits = hidden @ wte[candidates].T
    return F.cross_entropy(logits.view(-1, len(candidates)), position[targets].view(-1))


def full_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, wte: torch.Tensor, n_positions: int,
                      gen: torch.Generator) -> torch.Tensor:
    """Exact cross-entropy over all 50257 tokens at `n_positions` random positions of the batch."""
    flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    pick = torch.randperm(len(flat_t), generator=gen)[:n_positions]
    return F.cross_entropy(flat_h[pick] @ wte.T, flat_t[pick])


def pretrain(data: Path, out_dir: Path, preset: str = "small", steps: int = 400, batch_size: int = 16,
             block: int = 128, lr: float = 3e-3, warmup: int = 40, negatives: int = 512, full_positions: int = 128,
             seed: int = 0, log: bool = True, group_references: bool = False, random_names: bool = False) -> dict:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    docs = read_documents(data, group_references)
    corpus_vocab = torch.tensor(sorted({t for d in docs for t in d} | {EOT_ID}))
    entities = read_entities(data) if random_names else None
    model = GPT2(GPT2Config.preset(preset)).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    blocks, cursor, history = pack_blocks(docs, block, rng, entities), 0, []
    start = time.time()
    bar = tqdm(range(1, steps + 1), desc=f"pretrain {preset}", disable=None if log else True, leave=False)
    for step in bar:
        if cursor + batch_size > len(blocks):
            blocks, cursor = pack_blocks(docs, block, rng, entities), 0  # new epoch, new shuffle (and names)
        batch = blocks[cursor: cursor + batch_size]
        cursor += batch_size
        for group in opt.param_groups:  # linear warmup, cosine decay to 10%
            progress = max(0.0, (step - warmup) / max(1, steps - warmup))
            group["lr"] = lr * min(step / warmup, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        hidden = model.hidden(batch[:, :-1])
        loss = sampled_softmax_loss(hidden, batch[:, 1:], model.lm_head_weight, corpus_vocab, negatives, gen)
        if full_positions:
            loss = loss + full_softmax_loss(hidden, batch[:, 1:], model.lm_head_weight, full_positions, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    summary = {"preset": preset, "steps": steps, "group_references": group_references, "random_names": random_names,
               "documents": len(docs), "corpus_vocab": len(corpus_vocab),
               "first_loss": history[0], "last_loss": sum(history[-10:]) / len(history[-10:]),
               "seconds": round(time.time() - start, 1),
               "tokens_per_s": round(steps * batch_size * block / (time.time() - start), 1)}
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        (tmp / "pretrain_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a data-stage jsonl file (e.g. data/e2e/train.jsonl)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--negatives", type=int, default=512, help="random non-corpus tokens per step")
    parser.add_argument("--full-positions", type=int, default=128,
                        help="positions per step that also get the exact full-vocabulary loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-references", action="store_true",
                        help="one document per input holding all its references (entities recur across them, "
                             "so the model learns to copy from earlier text; the inputs stay separate documents)")
    parser.add_argument("--random-names", action="store_true",
                        help="replace the inputs' names (name and near fields) in every document by made-up names "
                             "from the whole vocabulary, new ones each epoch: the model learns to copy any name "
                             "rather than recall the corpus's few")
    args = parser.parse_args(argv)
    try:
        summary = pretrain(args.data, args.out_dir, args.preset, args.steps, args.batch_size, args.block, args.lr,
                           negatives=args.negatives, full_positions=args.full_positions, seed=args.seed,
                           group_references=args.group_references, random_names=args.random_names)
    except (ValueError, FileNotFoundError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"base model: {args.out_dir} (loss {summary['first_loss']:.2f} -> {summary['last_loss']:.2f}, "
          f"{summary['steps']} steps, {summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
