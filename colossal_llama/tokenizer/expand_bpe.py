"""Vocabulary expansion of byte-level BPE tokenizers (LLaMA-3 family, tokenizer.json).

    from colossal_llama.tokenizer.expand_bpe import expand_byte_level_bpe
    result = expand_byte_level_bpe(tokenizer_json_dict, ["人工智能", "你好"])

A byte-level BPE token is a string over a 256-character alphabet that stands
for bytes ("你" is the three UTF-8 bytes E4 BD A0, written "ä½ł"). A token
is only ever produced by a merge of two tokens, so each new piece needs both
a vocabulary entry and the merge that forms it:

    current tokens of "人工" (after all old merges): ["人", "工"]
    new merge ("人", "工") -> new token "人工"

Pieces are taken shortest first, so a long piece can be formed from new
shorter ones ("人工" + "智能" -> "人工智能"). A piece whose current
tokenization is not exactly two tokens would need an extra, intermediate
token to be reachable; it is reported as unreachable instead (every new piece
gets exactly one new id and nothing else is added).

Ranks: new merges go after every old merge (lowest priority), so on any text
the old merges run first and a new merge only joins what the old vocabulary
left apart; text without new pieces (English, for a Chinese expansion, with
pure-ASCII pieces left out) tokenizes exactly as before. New ids come after
every existing id, the special tokens' included.
"""

from __future__ import annotations

import json
from collections import Counter

from colossal_llama.tokenizer.expand import Expansion, select_new_pieces


def byte_alphabet() -> dict[int, str]:
    """Byte -> character of byte-level BPE: printable Latin-1 bytes stand for themselves,
    the other 68 bytes take the characters from U+0100 upwards, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_ALPHABET = byte_alphabet()


def to_byte_level(text: str) -> str:
    return "".join(_ALPHABET[b] for b in text.encode("utf-8"))


def bpe(word: str, ranks: dict[tuple[str, str], int], vocab: dict[str, int]) -> list[str]:
    """Tokens of one pre-tokenized word: the lowest-ranked adjacent pair merged, until none is left."""
    if word in vocab:  # LLaMA-3 sets ignore_merges: a whole word in the vocabulary is taken as it is
        return [word]
    symbols = list(word)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        best = min((p for p in pairs if p[0] is not None), default=None)
        if best is None:
            break
        i = best[1]
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge)


def is_byte_level_bpe(tokenizer_json: dict) -> bool:
    return tokenizer_json.get("model", {}).get("type") == "BPE" and "ByteLevel" in json.dumps(
        tokenizer_json.get("pre_tokenizer"))


def expand_byte_level_bpe(tokenizer_json: dict, candidates: list[str], allow_ascii: bool = False) -> Expansion:
    """Add each candidate the tokenizer lacks as a vocabulary entry plus the merge that forms it.

    Returns:
        an `Expansion` whose `model_proto` holds the new tokenizer.json (bytes, UTF-8).
    """
    data = json.loads(json.dumps(tokenizer_json))  # a deep copy
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    as_strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
    ranks = {_merge_pair(m): r for r, m in enumerate(model["merges"])}
    old = set(vocab)
    by_text = {to_byte_level(c): c for c in reversed(candidates)}  # byte-level form -> first spelling
    chosen, skipped = select_new_pieces(old, [to_byte_level(c) for c in candidates], allow_ascii=True)
    if not allow_ascii:
        ascii_pieces = [t for t in chosen if by_text[t].isascii()]
        skipped["ascii_piece"] += len(ascii_pieces)
        chosen = [t for t in chosen if t not in set(ascii_pieces)]
    # The tokenizers library numbers an added (special) token that is not in the
    # model's vocabulary as "size of that vocabulary" when it loads the file;
    # once new entries grow the vocabulary, that would renumber the special
    # tokens. Listing them in the vocabulary under their own ids keeps them
    # (they are matched before the model runs, so no merge ever reaches them).
    taken = set(vocab.values())
    for token in data.get("added_tokens", []):
        if token["content"] not in vocab and token["id"] not in taken:
            vocab[token["content"]] = token["id"]
    next_id = max(vocab.values()) + 1
    added, unreachable = [], []
    for token in sorted(chosen, key=len):  # stable: input order among pieces of one length
        parts = bpe(token, ranks, vocab)
        if len(parts) != 2:
            unreachable.append(by_text[token])
            continue
        ranks[(parts[0], parts[1])] = len(ranks)
        model["merges"].append(" ".join(parts) if as_strings else list(parts))
        vocab[token] = next_id
        next_id += 1
        added.append(by_text[token])
    return Expansion(json.dumps(data, ensure_ascii=False).encode("utf-8"), added, Counter(skipped), unreachable)


def not_single_tokens(tokenizer_json: bytes, pieces: list[str]) -> list[str]:
    """Pieces that the real tokenizer does not encode, alone, to one token (a check of the simulation above)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    encoded = tokenizer.encode_batch(pieces, add_special_tokens=False)
    return [p for p, e in zip(pieces, encoded) if len(e.ids) != 1]
