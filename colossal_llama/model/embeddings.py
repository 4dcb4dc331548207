"""Rows for new tokens: the mean of the old rows of the old tokens their text splits into.

    new token "你好"  ->  old tokenizer: ["你", "好"]  ->  row = (E["你"] + E["好"]) / 2

All new rows are computed at once as one sparse-times-dense product
`W @ E_old`, where W[i, j] = (times old token j occurs in new token i's text)
/ (number of those old tokens): linear in the number of new tokens, no
per-token copy of the matrix (the old Colossal-LLaMA loop re-concatenated the
whole 32,000 x 4,096 matrix for every token, about 0.4 s each).

Word-boundary marker. SentencePiece writes a space as "▁" and LLaMA's
tokenizer puts one before the start of any text ("你好" -> "▁", "你", "好").
The old tokenizer reads each new token's text as a text of its own, so
LLaMA's puts a marker in front. A token that is only "▁" (or byte-level
BPE's "Ġ") carries no meaning of the new token: it is left out of the mean,
as are special tokens. Where the old tokenizer glued the marker to a
character ("▁你"), that token stays: its row means "你 at a word start". A
token whose text is nothing but markers (e.g. "▁▁") keeps them, so that no
row is left without a source.
"""

from __future__ import annotations

import numpy as np
import torch

WORD_BOUNDARY_TOKENS = ("\u2581", "\u0120")  # SentencePiece "▁", byte-level BPE "Ġ"


def token_text(tokenizer, token: str) -> str:
    """The text a token stands for (markers turned back into spaces, bytes decoded)."""
    return tokenizer.convert_tokens_to_string([token])


def old_pieces_of(old_tokenizer, text: str) -> list[int]:
    """Old token ids of `text`, without special tokens and bare word-boundary tokens."""
    ids = old_tokenizer(text, add_special_tokens=False)["input_ids"]
    special = set(old_tokenizer.all_special_ids)
    tokens = old_tokenizer.convert_ids_to_tokens(ids)
    kept = [i for i, t in zip(ids, tokens) if i not in special and t not in WORD_BOUNDARY_TOKENS]
    if not kept:  # a token of markers only (or a special one): its own old pieces, markers included
        kept = [i for i in ids if i not in special]
    return kept


def decompose(old_tokenizer, new_tokenizer, new_ids: list[int]) -> list[list[int]]:
    """For each new token id, the old token ids its text splits into (see the module docstring)."""
    tokens = new_tokenizer.convert_ids_to_tokens(new_ids)
    return [old_pieces_of(old_tokenizer, token_text(new_tokenizer, token)) for token in tokens]


def mean_rows(old_rows: torch.Tensor, parts: list[list[int]]) -> torch.Tensor:
    """Row i = mean of old_rows[parts[i]], computed as one sparse product, in float32.

    Raises:
        ValueError: a token without any old part.
    """
    empty = [i for i, p in enumerate(parts) if not p]
    if empty:
        raise ValueError(f"{len(empty)} new token(s) split into no old token (first: index {empty[0]})")
    counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    rows = torch.from_numpy(np.repeat(np.arange(len(parts)), counts))
    cols = torch.from_numpy(np.fromiter((j for p in parts for j in p), dtype=np.int64, count=int(counts.sum())))
    weights = torch.from_numpy(np.repeat(1.0 / counts, counts).astype(np.float32))
    matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), weights, (len(parts), old_rows.shape[0]))
    return torch.sparse.mm(matrix.coalesce(), old_rows.float())
