"""Feeding prepared buckets to training: the bucket sampler and the packed-row collator.

Sampler. Bucket 0 is consumed completely, then bucket 1, ... (data-spec
section 3); rows are shuffled only inside a bucket, by (seed, epoch, bucket).
The position is a global sample count, so a run resumes exactly, also with
another number of processes as long as the global batch stays the same.

Collator. Rows are padded to the longest row (or to max_length); the
attention mask comes from the row lengths, never from token values (the pad
id may equal EOS). With document isolation a row's documents cannot see each
other and their positions restart:

    seq_lengths [3, 2], padded to 6      positions  [0 1 2 0 1 0]
    attention (1 = may attend):          q0: 1 . . . . .
                                         q1: 1 1 . . . .
                                         q2: 1 1 1 . . .
                                         q3: . . . 1 . .
                                         q4: . . . 1 1 .
                                         q5: . . . . . 1   (padding sees only itself: no empty softmax row)

and the label of every document's first token is masked (it would be
predicted from the previous document's last token), so the loss of a packed
row equals the token-weighted loss of its documents run one by one. The 4-D mask is additive (0 or the dtype's minimum), the form
transformers' LLaMA takes as it is for the eager and sdpa attention paths.
"""

from __future__ import annotations

import numpy as np
import torch

from colossal_llama.data.rng import derived_rng
from colossal_llama.data.segments import segment_categories_of
from colossal_llama.data.tokenize import IGNORE_INDEX


class BucketSampler(torch.utils.data.Sampler):
    """Indices into the concatenation of the buckets, bucket by bucket, for one rank.

    Global order of an epoch: a seeded permutation of bucket 0, then of bucket
    1, ...; global position p goes to rank p % world_size. A tail that does
    not fill a round of world_size samples is left out (counted in `dropped`).
    """

    def __init__(self, bucket_sizes: list[int], seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.bucket_sizes, self.seed, self.shuffle = list(bucket_sizes), seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.total = sum(self.bucket_sizes) // world_size * world_size
        self.dropped = sum(self.bucket_sizes) - self.total
        self.epoch, self.position = 0, 0

    def global_order(self, epoch: int) -> np.ndarray:
        parts, offset = [], 0
        for k, size in enumerate(self.bucket_sizes):
            part = np.arange(offset, offset + size)
            parts.append(part[derived_rng(self.seed, "bucket", epoch, k).permutation(size)] if self.shuffle else part)
            offset += size
        return np.concatenate(parts)[: self.total] if parts else np.zeros(0, dtype=np.int64)

    def __iter__(self):
        order = self.global_order(self.epoch)
        return iter(order[self.position + self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return (self.total - self.position) // self.world_size

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        """Start `epoch` at global sample `position` (a multiple of world_size)."""
        if position % self.world_size:
            raise ValueError(f"position {position} is not a multiple of the world size {self.world_size}")
        self.epoch, self.position = epoch, position


def positions_and_mask(seq_lengths: list[list[int]], length: int, dtype: torch.dtype, with_mask: bool = True):
    """Per-document position ids (B, L) and the additive block-causal mask (B, 1, L, L) or None."""
    batch = len(seq_lengths)
    positions = torch.zeros(batch, length, dtype=torch.long)
    if not with_mask:
        for b, lengths in enumerate(seq_lengths):
            positions[b, : sum(lengths)] = torch.cat([torch.arange(n) for n in lengths])
        return positions, None
    allowed = torch.zeros(batch, length, length, dtype=torch.bool)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    for b, lengths in enumerate(seq_lengths):
        start = 0
        for n in lengths:
            positions[b, start : start + n] = torch.arange(n)
            allowed[b, start : start + n, start : start + n] = causal[:n, :n]
            start += n
        pad = torch.arange(start, length)
        allowed[b, pad, pad] = True
    mask = torch.zeros(batch, 1, length, length, dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return positions, mask


class PackedCollator:
    """Rows {input_ids, labels, seq_lengths} -> a padded batch for a causal LM.

    Args:
        pad_token_id: the id written into padding (never used to find padding).
        isolate: keep documents apart (4-D mask, restarting positions), or let
            them see each other ("cross": a plain 2-D padding mask).
        max_length: with padding="max_length", pad every batch to it.
        mask_dtype: dtype of the additive 4-D mask (the model's compute dtype).
        varlen: with isolation, give only the restarting position ids and no
            mask: FlashAttention-2 in transformers then splits the row into its
            documents (variable-length attention) instead of taking an L x L mask.

    The batch also holds "lengths" (non-padding tokens per row) and, when the
    rows have a category, "category" (a list of strings) and "segments": per
    row, (category, length) of every segment, for the loss per category:

        seq_lengths [5, 3], segment_categories ["chat", "code"]  ->  segments [("chat", 5), ("code", 3)]
    """

    def __init__(self, pad_token_id: int, isolate: bool = True, padding: str = "longest",
                 max_length: int | None = None, mask_dtype: torch.dtype = torch.float32, varlen: bool = False):
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and not max_length:
            raise ValueError("padding='max_length' needs max_length")
        self.pad_token_id, self.isolate, self.padding = pad_token_id, isolate, padding
        self.max_length, self.mask_dtype, self.varlen = max_length, mask_dtype, varlen

    def __call__(self, rows: list[dict]) -> dict:
        lengths = [len(r["input_ids"]) for r in rows]
        length = self.max_length if self.padding == "max_length" else max(lengths)
        if max(lengths) > length:
            raise ValueError(f"a row of {max(lengths)} tokens does not fit max_length {length}")
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for b, row in enumerate(rows):
            input_ids[b, : lengths[b]] = torch.as_tensor(row["input_ids"])
            labels[b, : lengths[b]] = torch.as_tensor(row["labels"])
        batch = {"input_ids": input_ids, "labels": labels, "lengths": torch.tensor(lengths)}
        if self.isolate:
            seq = [list(r.get("seq_lengths") or [len(r["input_ids"])]) for r in rows]
            batch["position_ids"], mask = positions_and_mask(seq, length, self.mask_dtype, with_mask=not self.varlen)
            if mask is not None:
                batch["attention_mask"] = mask
            # a causal LM predicts label t+1 from token t: the first token of a document would be
            # predicted from the previous document's last token, which a document run alone never does
            labels[batch["position_ids"] == 0] = IGNORE_INDEX
        else:
            batch["attention_mask"] = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
        if "category" in rows[0]:
            batch["category"] = [r["category"] for r in rows]
            batch["segments"] = [list(zip(segment_categories_of(r), r.get("seq_lengths") or [len(r["input_ids"])]))
                                 for r in rows]
        return batch
