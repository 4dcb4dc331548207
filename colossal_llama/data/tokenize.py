"""Records -> token ids and labels (data-spec section 1), a batch at a time.

Reference tokenization of one pretraining record:

    prefix = tok(BOS + source)
    ids    = tok(BOS + source + target + EOS)
    labels = ids, with labels[:len(prefix)] = -100 when source != ""

    e.g. source "Q?" target "A."  ->  ids    [BOS, Q, ?, A, ., EOS]
                                      labels [-100, -100, -100, A, ., EOS]

The whole batch goes to the encoder in one call (full texts and prefixes
together), and the results are handled as flat numpy arrays (`encode_flat`:
the SentencePiece encoder builds them without a Python list per record).

Every document must carry exactly one BOS (first) and one EOS (last), checked
on the ids. Special-token markup inside the text (`</s>`, `<|eot_id|>` ...)
would break that and inject control tokens, so such records are bad input
(reason `special_token_text`); so is `<unk>` text, which the tokenizer turns
into the unk id, while the unk id that a tokenizer without byte fallback
emits for unseen characters is fine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from colossal_llama.data.records import parse_pretrain_record
from colossal_llama.errors import BadRecord

IGNORE_INDEX = -100


@dataclass
class TokenizedBatch:
    """Accepted documents of a batch as flat arrays, plus the rejected ones."""

    ids: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    kept: list[int]
    """Indices (in the input batch) of the documents in `lengths`, in order."""
    rejected: dict[int, BadRecord] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)
    """Valid records left out of the output, with the reason (SFT: "too_long")."""
    stats: Counter = field(default_factory=Counter)
    """Other counts for the manifest (SFT: turns kept and truncated)."""


def flatten_ids(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    flat = np.fromiter(chain.from_iterable(seqs), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def encode_flat(encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`tok` of every text as (int32 ids back to back, int64 lengths): by the encoder's own `encode_flat`
    where it has one (`SentencePieceEncoder`: no Python list per text), else from `encode_batch`."""
    if hasattr(encoder, "encode_flat"):
        return encoder.encode_flat(texts)
    return flatten_ids(encoder.encode_batch(texts))


def special_token_text(token: str, where: str = "text") -> BadRecord:
    """The rejection of a record whose `where` holds the text of special token `token`."""
    return BadRecord("special_token_text", f"{where} holds the special token {token!r}; "
                     "remove it: it would inject a control token into the document")


def _first_hits(hits: np.ndarray, starts: np.ndarray) -> dict[int, int]:
    """{document: flat position of its first hit} for the documents with a hit."""
    positions = np.flatnonzero(hits)
    docs = np.searchsorted(starts, positions, side="right") - 1
    docs, first = np.unique(docs, return_index=True)
    return dict(zip(docs.tolist(), positions[first].tolist()))


def check_document_markers(ids: np.ndarray, lengths: np.ndarray, info, texts=None) -> dict[int, BadRecord]:
    """Find documents that do not hold exactly BOS first, EOS last and no other special id.

    `<unk>` is the exception: its id also stands for characters the
    vocabulary lacks, so a document holding it is rejected only when its text
    (`texts[doc]`, given) holds the unk text as well. The text is searched
    only then: ordinary documents cost one vectorized comparison.

    Returns:
        {document index: BadRecord} for documents whose text held special-token markup.
    Raises:
        AssertionError: a document does not start with BOS or end with EOS
            (the tokenizer does not treat its own bos/eos text as one token).
    """
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    assert (ids[starts] == info.bos_id).all(), "a document does not start with BOS"
    assert (ids[starts + lengths - 1] == info.eos_id).all(), "a document does not end with EOS"
    names = dict(info.forbidden_tokens)
    forbidden = np.fromiter(names, dtype=np.int32, count=len(names))
    hits = np.isin(ids, forbidden)
    hits[starts] = False
    hits[starts + lengths - 1] = False
    bad = {doc: special_token_text(names[int(ids[pos])]) for doc, pos in _first_hits(hits, starts).items()}
    if info.unk is not None and texts is not None:
        unk_id, unk_text = info.unk
        for doc in _first_hits(ids == unk_id, starts):
            if doc not in bad and unk_text in texts[doc]:
                bad[doc] = special_token_text(unk_text)
    return bad


def label_spans(ids: np.ndarray, lengths: np.ndarray, spans_per_doc: list[list[tuple[int, int]]]) -> np.ndarray:
    """labels = -100 everywhere except the [a, b) spans of each document, which carry the ids.

        ids    [d0 d0 d0 d0 | d1 d1 d1]   spans [[(2, 4)], [(0, 1)]]
        labels [-100 -100 d0 d0 | d1 -100 -100]
    """
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
    start = 0
    for spans, length in zip(spans_per_doc, lengths.tolist()):
        for a, b in spans:
            labels[start + a : start + b] = ids[start + a : start + b]
        start += length
    return labels


def mask_prefixes(ids: np.ndarray, lengths: np.ndarray, mask_lengths: np.ndarray) -> np.ndarray:
    """labels = ids with the first `mask_lengths[d]` tokens of every document d set to -100."""
    labels = ids.copy()
    masked = np.flatnonzero(mask_lengths)  # the work is per masked token: most documents have no prompt
    if len(masked):
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[masked]
        spans = np.minimum(mask_lengths[masked], lengths[masked])
        span_starts = np.cumsum(spans) - spans
        labels[np.arange(int(spans.sum())) + np.repeat(starts - span_starts, spans)] = IGNORE_INDEX
    return labels


def select_documents(ids, labels, lengths, keep: np.ndarray):
    """Keep only documents where `keep` is True (flat arrays follow)."""
    token_keep = np.repeat(keep, lengths)
    return ids[token_keep], labels[token_keep], lengths[keep]


def tokenize_pretrain_batch(records: list[tuple[str, str]], encoder, info) -> TokenizedBatch:
    """Tokenize (source, target) records as the reference does.

    Args:
        records: validated records.
        encoder: an object with `encode_batch(texts) -> list[list[int]]` (`tok`), and maybe `encode_flat`.
        info: the `TokenizerInfo` of the tokenizer behind `encoder`.
    """
    bos, eos = info.bos_token, info.eos_token
    # each distinct source is tokenized once: QA data often holds several
    # answers to one question, and tok() of the same text is the same ids
    sources = list(dict.fromkeys(source for source, _ in records if source))
    texts = [f"{bos}{source}{target}{eos}" for source, target in records]
    all_ids, all_lengths = encode_flat(encoder, texts + [bos + source for source in sources])
    lengths = all_lengths[: len(records)]
    ids = all_ids[: int(lengths.sum())]
    prefix_length = dict(zip(sources, all_lengths[len(records) :].tolist()))
    mask_lengths = np.fromiter((prefix_length.get(source, 0) for source, _ in records), dtype=np.int64,
                               count=len(records))
    labels = mask_prefixes(ids, lengths, mask_lengths)
    rejected = check_document_markers(ids, lengths, info, texts) if len(records) else {}
    keep = np.ones(len(records), dtype=bool)
    if rejected:
        keep[list(rejected)] = False
        ids, labels, lengths = select_documents(ids, labels, lengths, keep)
    return TokenizedBatch(ids, labels, lengths, np.flatnonzero(keep).tolist(), rejected)


@dataclass(frozen=True)
class PretrainRecords:
    """The pretraining record kind for the map step (`{source, target, category}`)."""

    def parse(self, obj: dict) -> tuple[tuple[str, str], str]:
        source, target, category = parse_pretrain_record(obj)
        return (source, target), category

    def tokenize(self, payloads: list[tuple[str, str]], encoder, info) -> TokenizedBatch:
        return tokenize_pretrain_batch(payloads, encoder, info)
