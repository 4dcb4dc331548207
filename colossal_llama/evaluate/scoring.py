"""Log-likelihood of every continuation of many questions, in few forward passes.

    logprobs = score_encoded(model, encoded, batch_size=16, row_tokens=1024)
    # per question: the summed log-probability of each continuation's tokens

Layout: the question's context once, then each continuation as its own segment
that attends to the context and to itself, not to the other continuations
(the prompt-sharing form; a question of 4 choices has 8 continuations, text
and letter, so the context -- with few-shot examples most of the tokens -- is
run once instead of 8 times). Several questions share a row, each one
isolated from the others, as the packed rows of training are; rows are
filled first-fit-decreasing up to `row_tokens`:

    row = [C C C a a b b | D D x y ]        C: context of question 1, a b: two of its continuations
    positions [0 1 2 3 4 3 4 | 0 1 2 2]     each continuation restarts where its context ends
    attention (1 = may attend):
        a: C C C a .            (first a)     b: C C C . . b .   (first b)
           C C C a a            (second a)       C C C . . b b   (second b)

The mask is additive (0 or the dtype's minimum, a padding position sees only
itself), the 4-D form transformers' LLaMA takes as it is, like
`colossal_llama.data.loader.positions_and_mask` for training rows. The model
reads exactly the positions and visible tokens of a plain forward pass of
context + continuation, so the scores are those of one (tests compare them to
1e-5 in fp32). The LM head runs only on the hidden states that predict a
continuation token, never on the whole (rows, length, vocabulary) logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colossal_llama.evaluate.prompts import Encoded


@dataclass
class Segment:
    """Where one context and the continuations following it sit in a row."""

    question: int
    context: list[int]
    continuations: list[tuple[int, list[int]]]
    """(continuation index in its question, ids)."""

    @property
    def size(self) -> int:
        return len(self.context) + sum(len(ids) for _, ids in self.continuations)


def segments_of(encoded: list[Encoded], first_question: int = 0) -> list[Segment]:
    """One segment per context of each question (most questions: one)."""
    segments = []
    for q, enc in enumerate(encoded, start=first_question):
        for c, context in enumerate(enc.contexts):
            conts = [(i, ids) for i, (ids, f) in enumerate(zip(enc.continuation_ids, enc.follows)) if f == c]
            segments.append(Segment(q, context, conts))
    return segments


def pack_rows(segments: list[Segment], row_tokens: int) -> list[list[Segment]]:
    """First-fit-decreasing: segments into rows of at most `row_tokens` (a longer segment: a row alone)."""
    rows: list[list[Segment]] = []
    room: list[int] = []
    for segment in sorted(segments, key=lambda s: -s.size):
        slot = next((r for r, free in enumerate(room) if free >= segment.size), None)
        if slot is None:
            rows.append([])
            room.append(max(row_tokens, segment.size))
            slot = len(rows) - 1
        rows[slot].append(segment)
        room[slot] -= segment.size
    return rows


def build_batch(rows: list[list[Segment]], pad_id: int, dtype: torch.dtype):
    """(input_ids, position_ids, additive 4-D mask, targets) of packed rows.

    targets: (question, continuation, row, hidden positions, token ids) of every continuation.
    """
    length = max(sum(s.size for s in row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros(len(rows), length, dtype=torch.long)
    allowed = torch.zeros(len(rows), length, length, dtype=torch.bool)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    targets = []
    for b, row in enumerate(rows):
        start = 0
        for segment in row:
            c = len(segment.context)
            input_ids[b, start:start + c] = torch.as_tensor(segment.context)
            positions[b, start:start + c] = torch.arange(c)
            allowed[b, start:start + c, start:start + c] = causal[:c, :c]
            t = start + c
            for index, ids in segment.continuations:
                k = len(ids)
                input_ids[b, t:t + k] = torch.as_tensor(ids)
                positions[b, t:t + k] = torch.arange(c, c + k)
                allowed[b, t:t + k, start:start + c] = True
                allowed[b, t:t + k, t:t + k] = causal[:k, :k]
                # token j of the continuation is predicted from the one before it (the context's last for j = 0)
                targets.append((segment.question, index, b, [start + c - 1] + list(range(t, t + k - 1)), ids))
                t += k
            start = t
        pad = torch.arange(start, length)
        allowed[b, pad, pad] = True
    mask = torch.zeros(len(rows), 1, length, length, dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return input_ids, positions, mask, targets


@torch.no_grad()
def forward_rows(model, rows: list[list[Segment]], pad_id: int) -> list[tuple[int, int, float]]:
    """(question, continuation, summed log-probability) of every continuation in `rows` (one forward pass)."""
    device, dtype = model.device, model.dtype
    input_ids, positions, mask, targets = build_batch(rows, pad_id, dtype)
    hidden = model.base_model(input_ids=input_ids.to(device), position_ids=positions.to(device),
                              attention_mask=mask.to(device), use_cache=False).last_hidden_state  # no KV cache
    rows_index = torch.tensor([b for _, _, b, cols, _ in targets for _ in cols], device=device)
    cols_index = torch.tensor([c for *_, cols, _ in targets for c in cols], device=device)
    token_ids = torch.tensor([i for *_, ids in targets for i in ids], device=device)
    logits = model.get_output_embeddings()(hidden[rows_index, cols_index]).float()
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(1, token_ids[:, None])[:, 0]
    sums = torch.split(token_logprobs, [len(ids) for *_, ids in targets])
    return [(q, i, float(s.sum())) for (q, i, *_), s in zip(targets, sums)]


def score_encoded(model, encoded: list[Encoded], pad_id: int, batch_size: int = 16,
                  row_tokens: int = 1024, progress=None) -> list[list[float]]:
    """Summed log-probability of every continuation of every question, `batch_size` questions a forward pass.

    Args:
        pad_id: the id written into padding (never read: padding is masked).
        row_tokens: capacity of a packed row (a question longer than it gets a row alone).
        progress: called with (questions done, questions) after each forward pass.
    """
    scores = [[0.0] * len(enc.continuation_ids) for enc in encoded]
    for start in range(0, len(encoded), batch_size):
        segments = segments_of(encoded[start:start + batch_size], start)
        # rows no longer than the batch's longest question: attention costs grow with the row's length, so
        # packing short questions into long rows would cost more than the padding it saves (the demo's quiz,
        # 70 questions: 0.73 s in rows of 1024 tokens, 0.37 s in rows of 320)
        rows = pack_rows(segments, min(row_tokens, max(s.size for s in segments)))
        for q, i, value in forward_rows(model, rows, pad_id):
            scores[q][i] = value
        if progress is not None:
            progress(min(start + batch_size, len(encoded)), len(encoded))
    return scores
