"""Key/value caches for incremental decoding; the attention of a cached forward is computed by its cache.

- `KVCache`: one row per sequence, each with its own length (prompts of different lengths in one batch).
- `BeamKVCache`: beam search. A prompt's keys/values are stored once per input and shared by its K beams, the
  K beams' generated keys sit side by side per step, and each beam reaches its ancestors' slots through a
  mask, so a beam reorder copies no keys and attention reads each input's keys once for all K beams.

Storage is allocated at the first write, in the dtype and device of the computed keys, so a cache follows the
model's precision (fp32, bf16 autocast, fp64) without being told. Its bookkeeping tensors (lengths, ancestry)
live on `device`, the model's, and the furthest position written is also tracked on the host (`max_length`),
so a decoding step needs no host-device synchronisation to know where it is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _RowGatherer:
    """Reorders the rows of per-layer tensors into buffers kept from the previous call.

    A fresh index_select would allocate the whole cache every step (1.3 GB for gpt2 with 16 inputs x 10 beams),
    which glibc serves with mmap, so every beam step would pay page faults for all of it.
    """

    def __init__(self) -> None:
        self._spare: dict[tuple[str, int], torch.Tensor] = {}

    def gather_(self, name: str, store: list[torch.Tensor], index: torch.Tensor, used: int) -> None:
        """store[layer] becomes store[layer][index] for slots [0, used) of dim 2 (later slots: whatever was there)."""
        n = len(index)
        for layer, current in enumerate(store):
            spare = self._spare.get((name, layer))
            if spare is None or spare.shape[0] < n:
                # zeros, not empty: masked slots are still multiplied by 0 in attention, and 0 * NaN junk
                # from uninitialised memory would be NaN
                spare = current.new_zeros((n, *current.shape[1:]))
            target = spare[:n]
            torch.index_select(current[:, :, :used], 0, index.to(current.device), out=target[:, :, :used])
            # the buffer just read becomes the next call's target (its base, for full capacity)
            self._spare[(name, layer)] = current if current._base is None else current._base
            store[layer] = target


class KVCache:
    """Per-layer keys/values [rows, heads, max_len, head_dim]; every row has its own length."""

    def __init__(self, batch_size: int, max_len: int, device: torch.device | str | None = None) -> None:
        self.batch_size, self.max_len = batch_size, max_len
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.max_length = 0  # max(lengths), known on the host
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.slots_in_use = 0  # attention spans slots [0, slots_in_use): the furthest position written so far + 1
        self._gatherer = _RowGatherer()

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v [B,H,T,hd] at per-row positions [B,T]; return the cache slots in use for this layer."""
        if layer == len(self.k):
            b, h, _, hd = k.shape
            self.k.append(k.new_zeros(b, h, self.max_len, hd))
            self.v.append(v.new_zeros(b, h, self.max_len, hd))
        index = positions[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.k[layer].scatter_(2, index, k.to(self.k[layer].dtype))
        self.v[layer].scatter_(2, index, v.to(self.v[layer].dtype))
        return self.k[layer][:, :, : self.slots_in_use], self.v[layer][:, :, : self.slots_in_use]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               dropout_p: float = 0.0) -> torch.Tensor:
        """Store this forward's k/v, then attention of q [B,H,T,hd] (at `positions` [B,T]) over the row's cache."""
        keys, values = self.write(layer, k, v, positions)
        # A query at position p sees cache slots 0..p: earlier tokens of its own row only. Slots past a
        # row's length hold stale padding, which this mask hides until it is overwritten.
        slots = torch.arange(keys.shape[2], device=q.device)
        mask = slots[None, None, None, :] <= positions[:, None, :, None]
        return F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask,
                                              dropout_p=dropout_p)

    def advance(self, added: torch.Tensor | int) -> None:
        """After a forward: each row grew by `added` tokens (per row, or the same for all)."""
        self.lengths = self.lengths + added
        # per-row growth (a prefill of different lengths) is the one place that reads a length back
        self.max_length = int(self.lengths.max()) if isinstance(added, torch.Tensor) else self.max_length + added

    def reorder_(self, index: torch.Tensor) -> None:
        """Rows become old rows[index]: beam reordering, or expanding B prompts to B*K beams."""
        index = index.to(self.lengths.device)
        self.lengths = self.lengths.index_select(0, index)
        self.max_length = int(self.lengths.max()) if len(index) else 0
        self._gatherer.gather_("k", self.k, index, self.slots_in_use)
        self._gatherer.gather_("v", self.v, index, self.slots_in_use)
        self.batch_size = len(index)


class BeamKVCache:
    """Beam-search cache that never copies keys when beams are reordered.

    Per input, one buffer [H, P + max_new_tokens * beam, hd] holds the prompt's keys once (slots [0, P)) and,
    for step t, the keys of all `beam` rows of that step side by side (slots P + t*beam ... P + (t+1)*beam).
    A row attends to the prompt and, at every earlier step, to the one slot its ancestor wrote: a mask built
    from each row's ancestry, shared by all heads and layers. Reordering beams therefore moves only the
    ancestry table [inputs, beam, steps] of integers; the K beams of an input read its keys in one attention
    call as K queries. Keys are copied only when inputs leave the batch (early stop), once per leaving.

    Lifecycle: one prefill forward of the right-padded prompts [inputs, P] (`input_lengths` given); `reorder_`
    to beam rows (row r of the new layout belongs to input r // beam); then forwards of one token per row,
    each followed by a `reorder_` (beams follow their parents; an input whose rows are all left out leaves).
    """

    def __init__(self, n_inputs: int, beam: int, prompt_len: int, max_new_tokens: int,
                 device: torch.device | str | None = None) -> None:
        self.beam, self.prompt_len, self.max_new_tokens = beam, prompt_len, max_new_tokens
        self.batch_size = n_inputs      # rows of the next forward: inputs for the prefill, inputs x beam after
        self.max_len = prompt_len + max_new_tokens
        self.lengths = torch.zeros(n_inputs, dtype=torch.long, device=device)  # per row: prompt + generated
        self.max_length = 0             # an upper bound of max(lengths) kept on the host: prompt_len + generated
        self.slots_in_use = 0           # the model's bookkeeping; this cache tracks `generated` itself
        self.k: list[torch.Tensor] = []  # per layer [inputs, H, P + max_new_tokens * beam, hd]
        self.v: list[torch.Tensor] = []
        self.prompt_bias: torch.Tensor | None = None  # [inputs, P]: 0 on prompt tokens, -inf on padding
        self.ancestors = torch.zeros(n_inputs, beam, max_new_tokens, dtype=torch.long, device=device)  # -> slot
        self.generated = 0              # tokens generated so far, the same for every row
        self._bias: torch.Tensor | None = None  # this step's attention mask [inputs, 1, beam, slots], per forward
        self._prefilled = False
        self._rows_per_input = 1
        self._gatherer = _RowGatherer()

    @property
    def n_inputs(self) -> int:
        return self.batch_size // self._rows_per_input

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               dropout_p: float = 0.0) -> torch.Tensor:
        if not self._prefilled:
            return self._attend_prompt(layer, q, k, v, dropout_p)
        return self._attend_step(layer, q, k, v)

    def _attend_prompt(self, layer, q, k, v, dropout_p):
        # Right-padded prompts: under the causal mask a real token only sees earlier real tokens; what the
        # padding positions compute is never read (their slots are masked by prompt_bias afterwards).
        if layer != len(self.k):
            raise RuntimeError("BeamKVCache: the prompt forward must run once, through every layer in order")
        n, heads, P, hd = k.shape
        for store, new in ((self.k, k), (self.v, v)):
            buffer = new.new_zeros(n, heads, self.prompt_len + self.max_new_tokens * self.beam, hd)
            buffer[:, :, :P] = new
            store.append(buffer)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)

    def _attend_step(self, layer, q, k, v):
        rows, heads, T, hd = q.shape
        if T != 1 or self._rows_per_input != self.beam:
            raise RuntimeError("BeamKVCache: after the prompt, reorder_ to beam rows, then one token per row")
        n, K, P = rows // self.beam, self.beam, self.prompt_len
        end = P + (self.generated + 1) * K
        for store, new in ((self.k[layer], k), (self.v[layer], v)):
            store[:, :, end - K:end] = new.view(n, K, heads, hd).transpose(1, 2).to(store.dtype)
        if self._bias is None:
            self._bias = self._step_bias(q.dtype)
        q_by_input = q.view(n, K, heads, hd).transpose(1, 2)  # [n, H, K, hd]: the beams of one input together
        keys, values = self.k[layer][:, :, :end].to(q.dtype), self.v[layer][:, :, :end].to(q.dtype)
        y = F.scaled_dot_product_attention(q_by_input, keys, values, attn_mask=self._bias)
        return y.transpose(1, 2).reshape(rows, heads, 1, hd)

    def _step_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """[n, 1, K, P + (t+1)K] additive mask: the prompt's real tokens, and per earlier step the ancestor's slot."""
        n, K, t = self.n_inputs, self.beam, self.generated
        device = self.prompt_bias.device
        self.ancestors[:n, :, t] = torch.arange(K, device=device)  # this step's token of row r goes to slot r
        # a comparison, not F.one_hot, which reads the indices' range back to the host to check it
        own = (self.ancestors[:n, :, : t + 1, None] == torch.arange(K, device=device)).view(n, K, (t + 1) * K)
        steps = torch.zeros(own.shape, dtype=self.prompt_bias.dtype, device=device).masked_fill_(~own, float("-inf"))
        bias = torch.cat([self.prompt_bias[:, None, :].expand(n, K, -1), steps], dim=2)
        return bias[:, None].to(dtype)

    def advance(self, added: torch.Tensor | int) -> None:
        self.lengths = self.lengths + added
        self._bias = None
        if self._prefilled:
            self.generated += 1
            self.max_length += 1
            return
        self._prefilled = True
        self.max_length = self.prompt_len  # right-padded prompts: the longest one fills the width
        like = self.k[0] if self.k else torch.empty(0, device=self.lengths.device)
        padding = torch.arange(self.prompt_len, device=self.lengths.device)[None, :] >= self.lengths[:, None]
        bias = torch.zeros(padding.shape, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
        self.prompt_bias = bias.masked_fill_(padding.to(like.device), float("-inf"))

    def reorder_(self, index: torch.Tensor) -> None:
        """Rows become old rows[index]; the new rows come in groups of `beam` rows of one input each."""
        if not self._prefilled:
            raise RuntimeError("BeamKVCache: reorder_ before the prompt forward")
        index = index.to(self.lengths.device)
        if len(index) % self.beam:
            raise ValueError(f"BeamKVCache.reorder_: {len(index)} rows are not groups of beam={self.beam}")
        groups = index.view(-1, self.beam)
        owners = torch.div(groups, self._rows_per_input, rounding_mode="floor")
        if not bool((owners == owners[:, :1]).all()):
            raise ValueError("BeamKVCache.reorder_: each group of beam rows must come from a single input")
        inputs, parents = owners[:, 0], groups % self._rows_per_input
        same = len(inputs) == self.n_inputs and bool((inputs == torch.arange(self.n_inputs, device=inputs.device)).all())
        self.reorder_beams_(parents, None if same else inputs)

    def reorder_beams_(self, parents: torch.Tensor, inputs: torch.Tensor | None = None) -> None:
        """Beam search's reorder without checks or host synchronisation: new row (i, j) continues old row
        parents[i, j] of input inputs[i] (parents [n, beam], rows of that input before the reorder); `inputs`
        None keeps every input in place, else it lists the inputs that stay (in order), the others leave."""
        if not self._prefilled:
            raise RuntimeError("BeamKVCache: reorder_ before the prompt forward")
        t, n = self.generated, parents.shape[0]
        if inputs is not None:
            # inputs leave the batch (early stop): their keys go, once; the filled slots of the others move up
            self._gatherer.gather_("k", self.k, inputs, self.prompt_len + t * self.beam)
            self._gatherer.gather_("v", self.v, inputs, self.prompt_len + t * self.beam)
            self.prompt_bias = self.prompt_bias.index_select(0, inputs.to(self.prompt_bias.device))
        owners = (torch.arange(n, device=parents.device) if inputs is None else inputs)[:, None]
        rows = (owners * self._rows_per_input + parents).view(-1)
        if t:  # a row's ancestry is its parent's (parent = row of the same input it continues)
            self.ancestors[:n, :, :t] = self.ancestors[owners, parents, :t]
        self.lengths = self.lengths.index_select(0, rows.to(self.lengths.device))
        self.batch_size, self._rows_per_input = len(rows), self.beam
        self._bias = None
