"""Training examples, the per-epoch batch plan (length-bucketed, sharded over ranks) and padded batches.

An example is `full = context_ids + completion_ids`, right-truncated to `max_seq_len` (L tokens), exactly as the
reference's FT_Dataset. Loss positions are i in [c-1, L-2] (c = len(context_ids)): the positions whose next token
is a completion token, up to and including the final 50256. Since attention is causal, position L-1 never
influences them, so the model is fed `full[:L-1]` and batches are padded only to their own longest row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from lora_nlg.data.readers import DataError, read_jsonl_objects, require_field
from lora_nlg.tokenizer import EOT_ID, VOCAB_SIZE

PAD_ID = 0  # the reference pads with 0 ("!"); pads are never attended by real tokens nor given loss


@dataclass(frozen=True)
class TrainingSequence:
    """One training example as the model sees it: its tokens and where its completion starts."""
    tokens: tuple[int, ...]  # full[:L]
    n_context: int           # c = len(context_ids), its last token is the 50256 separator

    @property
    def n_input(self) -> int:   # tokens fed to the model
        return max(len(self.tokens) - 1, 1)

    @property
    def n_loss(self) -> int:    # positions c-1 .. L-2
        return max(len(self.tokens) - self.n_context, 0)


def _token_list(row: dict, name: str, where: str) -> list[int]:
    value = require_field(row, name, list, where)
    if not value:
        raise DataError(f"{where}: field '{name}' must be a non-empty list of token ids")
    for tok in value:
        if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < VOCAB_SIZE:
            raise DataError(f"{where}: field '{name}' holds {tok!r}, not a token id in [0, {VOCAB_SIZE})")
    if value[-1] != EOT_ID:
        raise DataError(f"{where}: field '{name}' must end with {EOT_ID} (<|endoftext|>), as `make data` writes it")
    return value


@dataclass
class Split:
    """The examples of one data file and what `max_seq_len` cut away from them."""
    path: Path
    examples: list[TrainingSequence]
    n_truncated: int = 0       # examples that lost completion tokens (at least their final 50256)
    n_without_loss: int = 0    # ... of them: lost every completion token, so they give no loss at all
    tokens_dropped: int = 0    # completion tokens cut away
    longest: int = 0           # longest input fed to the model (tokens)
    longest_at: str = ""       # path:line of that example

    @property
    def n_loss(self) -> int:
        return sum(e.n_loss for e in self.examples)

    def truncation_note(self, max_seq_len: int) -> str:
        """What truncation took from this split ('' when nothing)."""
        if not self.n_truncated:
            return ""
        return (f"note: data.max_seq_len={max_seq_len} cuts completion tokens from {self.n_truncated:,} of "
                f"{len(self.examples):,} examples of {self.path} ({self.n_without_loss:,} of them lose every "
                f"completion token and give no loss; {self.tokens_dropped:,} completion tokens dropped)")


def read_split(path: str | Path, max_seq_len: int, limit: int = 0) -> Split:
    """Examples of a data-stage jsonl file (`context_ids`, `completion_ids` per line), checked line by line, with
    what the right truncation to `max_seq_len` removed."""
    path = Path(path)
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("*.jsonl")) if path.parent.is_dir() else []
        raise DataError(f"data file not found: {path} (splits present: {', '.join(have) or 'none'}); run "
                        f"`make data DATASET={path.parent.name}` or choose another split with "
                        f"data.train_split=/data.valid_split=")
    split = Split(path, [])
    for where, row in read_jsonl_objects(path):
        context, completion = _token_list(row, "context_ids", where), _token_list(row, "completion_ids", where)
        example = TrainingSequence(tuple((context + completion)[:max_seq_len]), len(context))
        dropped = len(completion) - example.n_loss
        if dropped:
            split.n_truncated += 1
            split.n_without_loss += example.n_loss == 0
            split.tokens_dropped += dropped
        if example.n_input > split.longest:
            split.longest, split.longest_at = example.n_input, where
        split.examples.append(example)
        if limit and len(split.examples) >= limit:
            break
    if not split.examples:
        raise DataError(f"{path}: no examples")
    return split


def load_examples(path: str | Path, max_seq_len: int, limit: int = 0) -> list[TrainingSequence]:
    return read_split(path, max_seq_len, limit).examples


def epoch_plan(lengths: list[int], unit_size: int, seed: int, epoch: int, bucket_window: int) -> list[list[int]]:
    """The epoch's global batches ("units" of `unit_size` = batch_size x world_size example indices).

    Deterministic in (seed, epoch), identical on every rank. As the reference, the last partial batch is topped
    up with random duplicates, so an epoch has ceil(N / unit_size) units and every example is seen. Units are
    cut from windows of `bucket_window` units sorted by length (little padding) and then shuffled.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    n = len(lengths)
    order = torch.randperm(n, generator=gen).tolist()
    n_units = math.ceil(n / unit_size)
    order += torch.randint(0, n, (n_units * unit_size - n,), generator=gen).tolist()
    window = unit_size * bucket_window
    units = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        units += [chunk[j:j + unit_size] for j in range(0, len(chunk), unit_size)]
    return [units[i] for i in torch.randperm(len(units), generator=gen).tolist()]


def rank_share(unit: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's examples of a global batch (strided, so length-sorted units split evenly)."""
    return unit[rank::world_size]


def split_by_tokens(examples: list[TrainingSequence], max_tokens: int) -> list[list[TrainingSequence]]:
    """Chunks whose padded size (rows x longest row) stays <= max_tokens (at least one example each)."""
    if max_tokens <= 0:
        return [examples]
    chunks: list[list[TrainingSequence]] = []
    current: list[TrainingSequence] = []
    longest = 0
    for ex in sorted(examples, key=lambda e: e.n_input):
        longest_if_added = max(longest, ex.n_input)
        if current and (len(current) + 1) * longest_if_added > max_tokens:
            chunks.append(current)
            current, longest_if_added = [], ex.n_input
        current.append(ex)
        longest = longest_if_added
    return chunks + [current]


@dataclass
class Batch:
    input_ids: torch.Tensor   # [B, T] right-padded with PAD_ID
    loss_mask: torch.Tensor   # [B, T] bool: positions that carry loss
    targets: torch.Tensor     # [N] next tokens at the loss positions, row-major (as model(..., logits_mask=))
    n_tokens: int             # real (non-pad) tokens of the examples, sum of L (the reference's count)
    n_loss: int               # N
    loss_index: torch.Tensor  # [N] the loss positions as flat indices b * T + t (no mask -> index sync on a GPU)

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.input_ids.to(device, non_blocking=True), self.loss_mask.to(device, non_blocking=True),
                     self.targets.to(device, non_blocking=True), self.n_tokens, self.n_loss,
                     self.loss_index.to(device, non_blocking=True))


def collate(examples: list[TrainingSequence], pad_to: int = 0) -> Batch:
    """Right-padded batch; `pad_to` > 0 pads to that fixed length instead (the reference regime, benchmarks)."""
    width = max(pad_to, max(e.n_input for e in examples))
    input_ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    loss_mask = torch.zeros((len(examples), width), dtype=torch.bool)
    targets: list[int] = []
    positions: list[int] = []
    for row, ex in enumerate(examples):
        fed = ex.tokens[:ex.n_input]
        input_ids[row, :len(fed)] = torch.tensor(fed, dtype=torch.long)
        loss_mask[row, ex.n_context - 1:len(ex.tokens) - 1] = True
        positions += range(row * width + ex.n_context - 1, row * width + len(ex.tokens) - 1)
        targets += ex.tokens[ex.n_context:]
    return Batch(input_ids, loss_mask, torch.tensor(targets, dtype=torch.long),
                 sum(len(e.tokens) for e in examples), len(targets), torch.tensor(positions, dtype=torch.long))


def validation_batches(examples: list[TrainingSequence], rank: int, world_size: int, batch_size: int) -> list[Batch]:
    """This rank's disjoint share of the validation set, longest first (no shuffling needed)."""
    mine = sorted(examples[rank::world_size], key=lambda e: -e.n_input)
    return [collate(mine[i:i + batch_size]) for i in range(0, len(mine), batch_size)]
