"""`tok(s)` of a LLaMA-2 style fast tokenizer, computed by `sentencepiece` itself (1.7x faster).

    encoder = SentencePieceEncoder("spill/spm_encoder.json")   # written by `write_sentencepiece_encoder`
    encoder.encode_batch(["<s>Hello world</s>"])               # [[1, 15043, 3186, 2]], as the HF call

What the HF fast tokenizer does with `add_special_tokens=False`, for a folder
converted from a SentencePiece BPE model (`tokenizer.model`):

1. split the text on its added tokens (`<unk>`, `<s>`, `</s>`, any added
   ones): leftmost match, the longest at that place; a token with `lstrip` /
   `rstrip` also takes the whitespace on its left / right;
2. each piece between them: put a "▁" in front (see `PREPEND`), spaces
   become "▁", then BPE with the merges converted from `tokenizer.model`.

    "<s>Hi  there</s>"  ->  <s> | "Hi  there" | </s>      (step 1)
                            "▁Hi▁▁there" -> ▁Hi ▁ ▁there  (step 2, legacy: a "▁" before every piece)

Step 2 is SentencePiece's own encoding of the piece with its dummy prefix
switched off and the "▁" put in here, so `sentencepiece` gives the same ids
without HF's per-token work: 4.5M tokens/s on one core, against 2.6M for
the Rust backend's `encode_batch_fast` and 1.8M for the HF call, on
`../shared/realdata/pretrain` (the texts as `tokenize.py` builds them;
`sentencepiece` alone encodes the pieces at 5.0M). `encode_flat`, which the
data path uses, runs at 5.2M (CPU time, 2 busy cores): the ids come out of
`sentencepiece` as int32 buffers, with no Python list or int per token.
`sentencepiece_settings.sentencepiece_settings` lists what must hold for
that (and says why not when it does not hold); `encoder_choice` then
compares the ids with the HF call before this encoder is used.
"""

from __future__ import annotations

import json
import os
import re
from itertools import chain

import numpy as np

SPACE = "\u2581"

# Rust's `char::is_whitespace` (Unicode White_Space): what `lstrip`/`rstrip` of an added token take.
# Python's str.isspace differs (it counts \x1c-\x1f).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_LEFT_SPACE = re.compile(f"[{WHITESPACE}]*$")
_RIGHT_SPACE = re.compile(f"[{WHITESPACE}]*")

PREPEND = {
    # normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] (legacy=True): a "▁" before every piece
    "every": ("every", False),
    # pre-tokenizer Metaspace(prepend_scheme=...): a "▁" unless the piece already starts with a space
    "metaspace-always": ("every", True),
    "metaspace-first": ("first", True),  # ... and only for the piece at the start of the text
    # normalizer Replace(" ", "▁") alone, or Metaspace(prepend_scheme="never") (add_prefix_space=False)
    "never": ("never", False),
}


class AddedTokenSplitter:
    """Cuts text at added tokens as `tokenizers`' AddedVocabulary does (tokens with normalized=False).

    `split(text)` -> [(start, end, id)]: id None for the text between tokens.
    """

    def __init__(self, tokens: list[tuple[str, int, bool, bool]]):
        """tokens: (content, id, lstrip, rstrip) of every added token."""
        self._token = {content: (i, lstrip, rstrip) for content, i, lstrip, rstrip in tokens if content}
        # longest first: at the leftmost match, `re` takes the first alternative, as aho-corasick's leftmost-longest
        contents = sorted(self._token, key=lambda c: (-len(c), c))
        self._pattern = re.compile("|".join(map(re.escape, contents))) if contents else None
        self._id = {content: i for content, (i, _, _) in self._token.items()}
        # without lstrip/rstrip a token is its match: `re.split` with a group cuts the text in one C call
        # (the same leftmost matches as `finditer`); 1.5x faster than `split` on the LLaMA-2 texts
        plain = self._pattern is not None and not any(left or right for _, left, right in self._token.values())
        self._split_plain = re.compile(f"({self._pattern.pattern})").split if plain else None

    def split(self, text: str) -> list[tuple[int, int, int | None]]:
        if self._pattern is None:
            return [(0, len(text), None)] if text else []
        parts, done = [], 0
        for match in self._pattern.finditer(text):
            start, end = match.span()
            token_id, lstrip, rstrip = self._token[match.group()]
            if lstrip:
                start = max(_LEFT_SPACE.search(text, 0, start).start(), done)
            if rstrip:
                end = _RIGHT_SPACE.match(text, end).end()
            if done < start:
                parts.append((done, start, None))
            parts.append((start, end, token_id))
            done = end
        if done < len(text):
            parts.append((done, len(text), None))
        return parts

    def parts(self, text: str) -> list:
        """[text, id, text, ..., id, text]: the texts between added tokens (maybe empty) and the tokens' ids.

            "<s>Hi</s>"  ->  ["", 1, "Hi", 2, ""]
        """
        if self._split_plain is not None:
            parts = self._split_plain(text)
            for k in range(1, len(parts), 2):
                parts[k] = self._id[parts[k]]
            return parts
        out = [""]
        for start, end, token_id in self.split(text):
            if token_id is None:
                out[-1] = text[start:end]
            else:
                out += [token_id, ""]
        return out


class SplitEncoding:
    """Ids of one text, and the character span of each added token in it (`tokenizers.Encoding`'s
    `token_to_chars` for those tokens; (-1, -1) for the others, whose offsets nothing here asks for)."""

    __slots__ = ("ids", "_spans")

    def __init__(self, ids: list[int], spans: dict[int, tuple[int, int]]):
        self.ids, self._spans = ids, spans

    def token_to_chars(self, index: int) -> tuple[int, int]:
        return self._spans.get(index, (-1, -1))


class SentencePieceEncoder:
    """`encode_batch(texts)`: the HF call's ids, by `sentencepiece` (see the module docstring)."""

    def __init__(self, settings_path: str):
        import sentencepiece as spm

        with open(settings_path, encoding="utf-8") as f:
            settings = json.load(f)
        model = os.path.join(os.path.dirname(settings_path), settings["model"])
        self._sp = spm.SentencePieceProcessor(model_file=model)
        self._splitter = AddedTokenSplitter([tuple(t) for t in settings["added"]])
        self._where, self._unless_space = PREPEND[settings["prepend"]]
        # sentencepiece >= 0.2.1 can return each piece's ids as an int32 buffer: no Python int per token,
        # 0.12 s less of the 0.97 s that encoding and flattening the 10x pretrain corpus take (1 core)
        self._numpy_out = hasattr(self._sp, "EncodeAsNumpy")

    def _pieces(self, texts: list[str]):
        """The texts between added tokens, each with its "▁" or not; and per text its layout:
        >= 0 an index into the pieces, < 0 the ~id of an added token; and its split."""
        split, where, unless_space = self._splitter.split, self._where, self._unless_space
        pieces, layouts = [], []
        for text in texts:
            parts = split(text)
            layout = []
            for start, end, token_id in parts:
                if token_id is not None:
                    layout.append(~token_id)
                    continue
                piece = text[start:end]
                if (where == "every" or (where == "first" and start == 0)) and not (
                        unless_space and piece.startswith((" ", SPACE))):
                    piece = SPACE + piece
                layout.append(len(pieces))
                pieces.append(piece)
            layouts.append((layout, parts))
        return pieces, layouts

    def _segments(self, texts: list[str]):
        """The pieces to encode (as `_pieces`); the segments of all texts in order, an added token's id or
        -1 for the next piece; and the number of segments of each text."""
        parts_of, unless_space = self._splitter.parts, self._unless_space
        first, rest = self._where != "never", self._where == "every"
        pieces, segments, counts = [], [], []
        for text in texts:
            before = len(segments)
            for k, part in enumerate(parts_of(text)):
                if k & 1:
                    segments.append(part)
                elif part:
                    if (rest or (first and k == 0)) and not (unless_space and part.startswith((" ", SPACE))):
                        part = SPACE + part
                    pieces.append(part)
                    segments.append(-1)
            counts.append(len(segments) - before)
        return pieces, segments, counts

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch(texts)` as one int32 array of all ids back to back, and the int64 lengths.

        The pieces' ids go into numpy in one pass and the added tokens' ids are put between them:
        no Python list per text (the data path wants flat arrays anyway).
        """
        pieces, segments, counts = self._segments(texts)
        piece_ids, piece_lengths = self._encode_pieces(pieces)
        segments = np.array(segments, dtype=np.int64)
        is_token = segments >= 0
        segment_lengths = np.ones(len(segments), dtype=np.int64)
        segment_lengths[~is_token] = piece_lengths
        ends = np.cumsum(segment_lengths)
        flat = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int32)
        token_at = ends[is_token] - 1
        in_piece = np.ones(len(flat), dtype=bool)
        in_piece[token_at] = False
        flat[token_at] = segments[is_token]
        flat[in_piece] = piece_ids
        text_ends = np.concatenate(([0], ends))[np.cumsum(np.asarray(counts, dtype=np.int64))]
        return flat, np.diff(text_ends, prepend=0)

    def _encode_pieces(self, pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The pieces' ids back to back (int32) and their lengths."""
        if not pieces:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
        # one call for the batch; processes, not threads, use the cores (threads measured no faster)
        if self._numpy_out:
            encoded = self._sp.encode(pieces, num_threads=1, out_type="numpy")
            return np.concatenate(encoded), np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        encoded = self._sp.encode(pieces, num_threads=1)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return np.fromiter(chain.from_iterable(encoded), dtype=np.int32, count=int(lengths.sum())), lengths

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        flat, lengths = self.encode_flat(texts)
        ids, ends = flat.tolist(), np.cumsum(lengths).tolist()
        return [ids[start:end] for start, end in zip([0] + ends[:-1], ends)]

    def encode_with_offsets(self, texts: list[str]) -> list[SplitEncoding]:
        """Encodings with `.ids` and `.token_to_chars(i)` for the added tokens (what SFT asks of offsets)."""
        pieces, layouts = self._pieces(texts)
        encoded = self._sp.encode(pieces, num_threads=1) if pieces else []
        out = []
        for layout, parts in layouts:
            ids, spans = [], {}
            for entry, (start, end, _) in zip(layout, parts):
                if entry >= 0:
                    ids += encoded[entry]
                else:
                    spans[len(ids)] = (start, end)
                    ids.append(~entry)
            out.append(SplitEncoding(ids, spans))
        return out
