"""Vocabulary expansion of SentencePiece (LLaMA-2 family) tokenizers with real pieces.

    from colossal_llama.tokenizer.expand import expand_sentencepiece
    result = expand_sentencepiece(model_proto_bytes, ["人工智能", "你好"])

New pieces are appended to the model proto (not registered as HF "added
tokens", which are matched before normalisation and break the spacing of the
text around them), so every old piece keeps its id and every new piece gets
the next free id.

Scores. SentencePiece's BPE encoder starts from characters and repeatedly
merges the adjacent pair whose concatenation is a piece with the highest
score. New pieces get scores below every existing score, so on any text the
old merges are all tried first and a new piece is only formed where the old
vocabulary had nothing left to merge: text without new pieces (English, for
a Chinese expansion) tokenizes exactly as before, as long as no new piece
can occur in it: pure-ASCII pieces are left out unless asked for. Among new pieces, shorter
ones score higher, so the parts of a long piece form before the piece itself.

Characters. A new piece's characters that the model lacks are added as
pieces too (first): the fast tokenizer forms a piece only from two pieces.

Reachability. A BPE piece is only produced if a chain of pieces leads to it
(for "人工智能", e.g. "人工" and "智能", or "人工智" plus "能"). Each new piece is
encoded on its own with the expanded model; pieces that do not come out as
themselves are removed and reported (and the check repeats, since a removed
piece may have been a step towards another).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SPACE = "\u2581"  # SentencePiece's whitespace symbol


@dataclass
class Expansion:
    model_proto: bytes
    added: list[str]
    skipped: Counter = field(default_factory=Counter)
    """Reason ("duplicate", "already_present") -> pieces skipped."""
    unreachable: list[str] = field(default_factory=list)

    def report(self) -> dict:
        return {"added": len(self.added), "skipped": dict(self.skipped), "unreachable": len(self.unreachable),
                "unreachable_pieces": self.unreachable[:100]}


def _proto(model_proto: bytes):
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(model_proto)
    return model


def new_piece_scores(old_scores: np.ndarray, count: int) -> np.ndarray:
    """`count` distinct float32 scores, decreasing, all below every old score.

    Scores are stored as float32: near 1e9 (LLaMA-2 gives its whitespace runs
    -1e9) consecutive integers are not distinct, so the step grows with the
    magnitude.
    """
    base = float(old_scores.min()) if len(old_scores) else 0.0
    base -= max(1.0, abs(base) * 0.1)
    step = max(1.0, abs(base) * 2.0**-20)
    scores = (base - step * np.arange(count)).astype(np.float32)
    assert len(np.unique(scores)) == count and (count == 0 or scores[0] < old_scores.min())
    return scores


def is_ascii_piece(piece: str) -> bool:
    return all(ch < "\x80" or ch == SPACE for ch in piece)


def select_new_pieces(old: set[str], candidates: list[str], allow_ascii: bool = False) -> tuple[list[str], Counter]:
    """Candidates not in `old`, first occurrence kept; counts of the others by reason.

    Pieces made only of ASCII (and the space symbol) are skipped unless
    `allow_ascii`: they are the ones that would re-tokenize English text and
    numbers (Chinese piece lists hold "10", "2.", "=1": LLaMA keeps digits
    apart on purpose, and adding them changes how every number is read).
    """
    chosen, seen, skipped = [], set(), Counter()
    for piece in candidates:
        if piece in old:
            skipped["already_present"] += 1
        elif not allow_ascii and is_ascii_piece(piece):
            skipped["ascii_piece"] += 1
        elif piece in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(piece)
            chosen.append(piece)
    return chosen, skipped


def missing_characters(old: set[str], pieces: list[str]) -> list[str]:
    """Characters of the new pieces that are not pieces yet (in order of first use).

    The slow SentencePiece encoder starts from characters whether or not they
    are pieces, but the fast (tokenizers) one only merges two pieces of the
    vocabulary: over a base that spells Chinese in byte fallback, "群岛" is
    only reachable once "群" and "岛" are pieces themselves.
    """
    chosen = set(pieces)
    return list(dict.fromkeys(ch for p in pieces if len(p) > 1 for ch in p
                              if ch not in old and ch not in chosen and ch != SPACE))


def _with_pieces(model, pieces: list[str]) -> bytes:
    from sentencepiece import sentencepiece_model_pb2

    expanded = sentencepiece_model_pb2.ModelProto()
    expanded.CopyFrom(model)
    old_scores = np.array([p.score for p in model.pieces], dtype=np.float32)
    order = sorted(range(len(pieces)), key=lambda i: (len(pieces[i]), i))  # shorter pieces first
    scores = np.empty(len(pieces), dtype=np.float32)
    scores[order] = new_piece_scores(old_scores, len(pieces))
    for piece, score in zip(pieces, scores.tolist()):
        entry = expanded.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, entry.NORMAL
    return expanded.SerializeToString()


def _unreachable(model_proto: bytes, pieces: list[str]) -> list[str]:
    """Pieces that do not encode to themselves alone (no dummy prefix added for the check)."""
    import sentencepiece as spm

    model = _proto(model_proto)
    model.normalizer_spec.add_dummy_prefix = False
    processor = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
    encoded = processor.encode([p.replace(SPACE, " ") for p in pieces], out_type=str)
    return [p for p, pieces_of_p in zip(pieces, encoded) if pieces_of_p != [p]]


def expand_sentencepiece(model_proto: bytes, candidates: list[str], allow_ascii: bool = False) -> Expansion:
    """Append the candidates the model lacks as real, reachable pieces.

    Args:
        model_proto: a serialized SentencePiece BPE model (tokenizer.model).
        candidates: new pieces in priority order; spaces may be written as
            " " or as "▁".
        allow_ascii: also add pure-ASCII pieces (see `select_new_pieces`).
    Returns:
        the expanded model and what was added, skipped and found unreachable.
    """
    model = _proto(model_proto)
    old = {p.piece for p in model.pieces}
    pieces, skipped = select_new_pieces(old, [c.replace(" ", SPACE) for c in candidates], allow_ascii)
    pieces = missing_characters(old, pieces) + pieces
    unreachable: list[str] = []
    while True:
        expanded = _with_pieces(model, pieces)
        lost = set(_unreachable(expanded, pieces))
        if not lost:
            return Expansion(expanded, pieces, skipped, unreachable)
        unreachable += [p for p in pieces if p in lost]
        pieces = [p for p in pieces if p not in lost]
