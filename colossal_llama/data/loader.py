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
row equals the token-weighted loss of its documents run one by one. The
attention pattern reaches the model in one of three forms, one per attention
path (model/attention.py): the additive 4-D mask above (0 or the dtype's
minimum: transformers' eager and sdpa paths), the document ids
[0 0 0 1 1 -6] from which FlexAttention's block mask is built on the GPU,
or the restarting positions alone (FlashAttention-2's variable length).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from colossal_llama.data.rng import derived_rng
from colossal_llama.data.segments import segment_categories_of
from colossal_llama.data.tokenize import IGNORE_INDEX
from colossal_llama.model.attention import BLOCK


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


def document_ids(seq_lengths: list[list[int]], length: int) -> torch.Tensor:
    """(B, length) int32: the index of the document holding each token; padding token j gets -(j + 1),
    an id of its own, so it attends to itself only (no empty softmax row).

        seq_lengths [[3, 2]], length 6  ->  [[0, 0, 0, 1, 1, -6]]
    """
    ids = -torch.arange(1, length + 1, dtype=torch.int32).repeat(len(seq_lengths), 1)
    for b, lengths in enumerate(seq_lengths):
        counts = torch.as_tensor(lengths, dtype=torch.int64)
        ids[b, : int(counts.sum())] = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), counts)
    return ids


def restarting_positions(seq_lengths: list[list[int]], length: int) -> torch.Tensor:
    """(B, length) position ids that restart at 0 at every document; 0 on padding."""
    positions = torch.zeros(len(seq_lengths), length, dtype=torch.long)
    for b, lengths in enumerate(seq_lengths):
        counts = torch.as_tensor(lengths, dtype=torch.int64)
        starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        positions[b, : len(starts)] = torch.arange(len(starts)) - starts
    return positions


@functools.lru_cache(maxsize=4)
def _causal_block(length: int, dtype: torch.dtype) -> torch.Tensor:
    """(length, length): 0 on and below the diagonal, the dtype's minimum above; a document's mask is its
    top-left corner."""
    return torch.full((length, length), torch.finfo(dtype).min, dtype=dtype).triu_(1)


def block_causal_mask(ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive (B, 1, L, L) mask of `document_ids`: 0 where query and key share a document and the key
    is not later, the dtype's minimum elsewhere.

    Filled a document block at a time (the blocks hold at most L x L of the B x L x L entries): comparing
    every pair of ids took ten times as long at L = 4,096 (benchmarks/gpu_path_cpu.py).
    """
    batch, length = ids.shape
    mask = torch.full((batch, 1, length, length), torch.finfo(dtype).min, dtype=dtype)
    causal = _causal_block(length, dtype)
    for b in range(batch):
        documents = ids[b] >= 0  # a prefix: the documents, then padding (each token an id of its own)
        _, counts = torch.unique_consecutive(ids[b][documents], return_counts=True)
        start = 0
        for n in counts.tolist():
            mask[b, 0, start : start + n, start : start + n] = causal[:n, :n]
            start += n
        padding = torch.nonzero(~documents).squeeze(1)
        mask[b, 0, padding, padding] = 0
    return mask


def positions_and_mask(seq_lengths: list[list[int]], length: int, dtype: torch.dtype, with_mask: bool = True):
    """Per-document position ids (B, L) and the additive block-causal mask (B, 1, L, L) or None."""
    positions = restarting_positions(seq_lengths, length)
    return positions, block_causal_mask(document_ids(seq_lengths, length), dtype) if with_mask else None


class PackedCollator:
    """Rows {input_ids, labels, seq_lengths} -> a padded batch for a causal LM.

    Args:
        pad_token_id: the id written into padding (never used to find padding).
        isolate: keep documents apart (4-D mask, restarting positions), or let
            them see each other ("cross": a plain 2-D padding mask).
        max_length: with padding="max_length", pad every batch to it.
        mask_dtype: dtype of the additive 4-D mask (the model's compute dtype).
        form: how isolation reaches the attention (model/attention.py):
            "mask": the additive (B, 1, L, L) mask (sdpa, eager);
            "documents": "document_ids" (B, L), from which the training step
                builds FlexAttention's block mask on the device, no L x L tensor
                (rows padded to a multiple of 128 tokens, FlexAttention's tile,
                up to max_length);
            "positions": the restarting position ids alone: FlashAttention-2 in
                transformers then splits the row into its documents.
        categories: the run's categories; with them the batch also holds
            "loss_category" (B, L - 1): the index of the category of each loss
            column, -1 on padding (built here, in the loader's workers, not
            on the training thread).

    The batch also holds "lengths" (non-padding tokens per row) and, when the
    rows have a category, "category" (a list of strings) and "segments": per
    row, (category, length) of every segment, for the loss per category:

        seq_lengths [5, 3], segment_categories ["chat", "code"]  ->  segments [("chat", 5), ("code", 3)]
    """

    def __init__(self, pad_token_id: int, isolate: bool = True, padding: str = "longest",
                 max_length: int | None = None, mask_dtype: torch.dtype = torch.float32, form: str = "mask",
                 categories: list[str] | None = None):
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and not max_length:
            raise ValueError("padding='max_length' needs max_length")
        self.pad_token_id, self.isolate, self.padding = pad_token_id, isolate, padding
        if form not in ("mask", "documents", "positions"):
            raise ValueError(f"form must be 'mask', 'documents' or 'positions', got {form!r}")
        self.max_length, self.mask_dtype, self.form = max_length, mask_dtype, form
        self.category_index = {c: i for i, c in enumerate(categories)} if categories is not None else None

    def __call__(self, rows: list[dict]) -> dict:
        lengths = [len(r["input_ids"]) for r in rows]
        length = self.max_length if self.padding == "max_length" else max(lengths)
        if max(lengths) > length:
            raise ValueError(f"a row of {max(lengths)} tokens does not fit max_length {length}")
        if self.form == "documents" and self.isolate:
            # whole FlexAttention tiles: fewer shapes to compile, no partial tile (padding tiles are skipped)
            length = max(length, min(-(-length // BLOCK) * BLOCK, self.max_length or float("inf")))
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for b, row in enumerate(rows):
            input_ids[b, : lengths[b]] = torch.as_tensor(row["input_ids"])
            labels[b, : lengths[b]] = torch.as_tensor(row["labels"])
        batch = {"input_ids": input_ids, "labels": labels, "lengths": torch.tensor(lengths)}
        seq = [list(r.get("seq_lengths") or [len(r["input_ids"])]) for r in rows]
        if self.isolate:
            batch["position_ids"] = restarting_positions(seq, length)
            if self.form != "positions":
                ids = document_ids(seq, length)
                if self.form == "documents":
                    batch["document_ids"] = ids
                else:
                    batch["attention_mask"] = block_causal_mask(ids, self.mask_dtype)
            # a causal LM predicts label t+1 from token t: the first token of a document would be
            # predicted from the previous document's last token, which a document run alone never does
            labels[batch["position_ids"] == 0] = IGNORE_INDEX
        else:
            batch["attention_mask"] = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
        if "category" in rows[0]:
            batch["category"] = [r["category"] for r in rows]
            batch["segments"] = [list(zip(segment_categories_of(r), lengths)) for r, lengths in zip(rows, seq)]
            if self.category_index is not None:
                batch["loss_category"] = loss_categories(batch["segments"], self.category_index, length)
        return batch


def loss_categories(segments: list[list[tuple[str, int]]], index: dict[str, int], length: int) -> torch.Tensor:
    """Category index of every loss column (B, L - 1); -1 on padding.

    Column j scores token j + 1, so a segment holding tokens start .. start + n - 1 owns columns
    start - 1 .. start + n - 2 (its first token's column is masked anyway with isolation):

        segments [("chat", 3), ("code", 2)], index {chat: 0, code: 1}, length 6  ->  [0, 0, 1, 1, -1]
    """
    columns = torch.full((len(segments), length - 1), -1, dtype=torch.long)
    for b, row in enumerate(segments):
        start = 0
        for category, n in row:
            columns[b, max(start - 1, 0) : start + n - 1] = index[category]
            start += n
    return columns
