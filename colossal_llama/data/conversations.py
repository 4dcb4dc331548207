"""SFT records -> ids and labels where only assistant replies are trained (data-spec section 2).

Reference, for a conversation of n messages and max_length L:

    drop the last message if n is odd
    T   = largest t with len(tok(prompt(2t))) <= L - 1      (else: dropped, "too_long")
    ids = [BOS] + tok(prompt(2T))
    labels = -100, except each assistant message's <open>content<close> span

The reference re-tokenizes the prompt for every step of its search. Here the
whole conversation is tokenized once, with character offsets: the separators
are special tokens, which the tokenizer splits out before anything else, so
the tokens of prompt(2t) are exactly the first tokens of the whole
conversation up to the closing separator of message 2t. Each separator's
token index comes from its known character offset (`templates.Rendered`),
which gives every length the search needs and every assistant span.
Tokenizers without offsets (slow ones) get the same indices by tokenizing the
prefixes that end at each separator.

Special-token text inside content (`</s>`, `<|eot_id|>` ...) would add
separators of its own; it is found as a special id at a place where the
template put none, and the record is rejected. So is `<unk>` text: the unk id
together with the unk text in the conversation (the id alone may stand for
unseen characters, see `tokenize.check_document_markers`).

With `--template hf` the template writes special tokens of its own, anywhere,
so the ids cannot tell; there the message contents themselves are searched for
the text of any special token (`special_text_pattern`), before rendering.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from colossal_llama.data.records import require_str
from colossal_llama.data.tokenize import TokenizedBatch, flatten_ids, label_spans, special_token_text
from colossal_llama.errors import BadRecord

ROLES = ("human", "assistant")
DEFAULT_CATEGORY = "default"


def parse_sft_record(obj: dict) -> tuple[tuple[str, ...], str, bool]:
    """A conversation record -> (contents in order, category, whether a trailing message was dropped).

    Raises:
        BadRecord: no or empty `messages`, a message that is not an object,
            an unknown role, roles that do not alternate human/assistant
            starting with human, empty or non-string content, a bad category,
            a lone surrogate in a role, content or category, or no complete turn.
    """
    if "messages" not in obj:
        raise BadRecord("missing_field", 'missing field "messages"')
    messages = obj["messages"]
    if not isinstance(messages, list):
        raise BadRecord("wrong_type", f'field "messages" must be a list, got {type(messages).__name__}')
    if not messages:
        raise BadRecord("empty_messages", 'field "messages" is empty')
    contents = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise BadRecord("wrong_type", f"message {i} must be an object, got {type(message).__name__}")
        try:
            role = require_str(message, "from", allow_empty=False).lower()
            content = require_str(message, "content", allow_empty=False)
        except BadRecord as bad:
            raise BadRecord(bad.reason, f"message {i}: {bad.message}") from None
        if role not in ROLES:
            raise BadRecord("unknown_role", f'message {i}: role "{message["from"]}" is not human or assistant')
        if role != ROLES[(i - 1) % 2]:
            what = "the conversation must start with a human message" if i == 1 else f"two {role} messages in a row"
            raise BadRecord("role_order", f"message {i}: {what}")
        contents.append(content)
    category = DEFAULT_CATEGORY
    if "category" in obj:
        category = require_str(obj, "category", allow_empty=False)
    trailing = len(contents) % 2 == 1
    if trailing:
        contents.pop()
    if not contents:
        raise BadRecord("no_turn", "no complete human/assistant turn (a single human message)")
    return tuple(contents), category, trailing


def _separator_indices(ids: np.ndarray, start_of, rendered, special: np.ndarray):
    """Token index of every opening and closing separator, and special tokens found elsewhere.

    `start_of(i)` is the character offset where token i starts; it is asked
    only for the special tokens, which are few.
    """
    at_char = {start_of(i): i for i in np.flatnonzero(np.isin(ids, special)).tolist()}
    try:
        opens = [at_char.pop(c) for c in rendered.opens]
        closes = [at_char.pop(c) for c in rendered.closes]
    except KeyError:
        raise AssertionError("a template separator is not a single special token where it was placed") from None
    return opens, closes, sorted(at_char.values())


@dataclass(frozen=True)
class ConversationRecords:
    """What both SFT record kinds share: the template, max_length, parsing."""

    template: object
    max_length: int
    category: str | None = None
    """Overrides every record's category (`--category`)."""

    def parse(self, obj: dict):
        contents, category, trailing = parse_sft_record(obj)
        return (contents, trailing), self.category or category


@dataclass(frozen=True)
class SftRecords(ConversationRecords):
    """The SFT record kind for the map step, with the default (Human/Assistant) template."""

    def tokenize(self, payloads, encoder, info) -> TokenizedBatch:
        rendered = [self.template.render(list(contents)) for contents, _ in payloads]
        if hasattr(encoder, "encode_with_offsets"):
            encoded = [(e.ids, lambda i, e=e: e.token_to_chars(i)[0])
                       for e in encoder.encode_with_offsets([r.text for r in rendered])]
        else:
            encoded = [_encode_by_prefixes(encoder, r) for r in rendered]
        names = dict(info.forbidden_tokens)
        special = np.fromiter(names, dtype=np.int64, count=len(names))
        seqs, kept, rejected, dropped, stats = [], [], {}, {}, Counter()
        for n, ((ids, start_of), r, (_, trailing)) in enumerate(zip(encoded, rendered, payloads)):
            opens, closes, stray = _separator_indices(np.asarray(ids), start_of, r, special)
            if stray:
                rejected[n] = special_token_text(names[ids[stray[0]]], "content")
                continue
            if info.unk is not None and info.unk[1] in r.text and info.unk[0] in ids:
                rejected[n] = special_token_text(info.unk[1], "content")
                continue
            turn_lengths = np.array(closes[1::2]) + 1  # len(tok(prompt(2t))) for t = 1, 2, ...
            turns = int(np.searchsorted(turn_lengths, self.max_length - 1, side="right"))
            stats["trailing_messages_dropped"] += trailing
            if turns == 0:
                dropped[n] = "too_long"
                continue
            stats["turns_kept"] += turns
            stats["turns_truncated"] += len(turn_lengths) - turns
            seqs.append([info.bos_id] + list(ids[: turn_lengths[turns - 1]]))
            kept.append((n, [(opens[j] + 1, closes[j] + 2) for j in range(1, 2 * turns, 2)]))
        ids, lengths = flatten_ids(seqs)
        labels = label_spans(ids, lengths, [spans for _, spans in kept])
        return TokenizedBatch(ids, labels, lengths, [n for n, _ in kept], rejected, dropped, stats)


def _encode_by_prefixes(encoder, rendered):
    """(ids, start_of) for an encoder without offsets (slow tokenizers).

    The separator that starts at character c is token number len(tok(text[:c]))
    (the text before a special token is tokenized on its own), so separators
    get their true start that way; any other token gets -1, which matches no
    separator (a special token there is reported as stray).
    """
    starts = sorted(set(rendered.opens) | set(rendered.closes))
    encoded = encoder.encode_batch([rendered.text] + [rendered.text[:c] for c in starts])
    start_at = {len(prefix): c for c, prefix in zip(starts, encoded[1:])}
    return encoded[0], lambda i: start_at.get(i, -1)


@lru_cache(maxsize=4)
def _compile_alternatives(texts: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, texts)))


def special_text_pattern(info) -> re.Pattern | None:
    """One regex over the text of every special token of the tokenizer, `<unk>` included; None if none.

    Longest first, so a match names the whole token. `re` skips ahead to a
    character that can start one (usually only `<`), so ordinary content costs
    one fast scan (under 1 us per 1,000 characters with 250 specials).
    """
    texts = {text for _, text in info.forbidden_tokens}
    if info.unk is not None:
        texts.add(info.unk[1])
    texts.discard("")  # an empty token text would match everywhere
    return _compile_alternatives(tuple(sorted(texts, key=lambda t: (-len(t), t)))) if texts else None


def check_special_text(contents, pattern: re.Pattern | None) -> None:
    """Raises BadRecord (`special_token_text`) if a message content holds a special token's text."""
    if pattern is None:
        return
    for i, content in enumerate(contents, start=1):
        found = pattern.search(content)
        if found:
            raise special_token_text(found.group(), f"message {i}: content")


@dataclass(frozen=True)
class HFChatRecords(ConversationRecords):
    """The SFT record kind for `--template hf`: the tokenizer's own chat_template.

    The template is arbitrary Jinja, so nothing is assumed about separators:

        text(k)  = render(messages[:k])
        T        = largest t with len(tok(text(2t))) <= max_length   (binary search)
        span(j)  = from len(render(messages[:j], add_generation_prompt=True))
                   to   len(text(j + 1)) characters, for each assistant message j

    and each character boundary c becomes a token boundary len(tok(text[:c])),
    checked on the ids: the conversation's ids must start with exactly those
    prefix ids, or the record is rejected ("template_boundary"). No extra BOS:
    such templates write their own. A template whose shorter renderings are
    not prefixes of the longer ones is rejected too ("template_not_prefix").
    Content holding a special token's text is rejected before anything is
    rendered ("special_token_text"): only the contents are searched, since the
    template writes special tokens itself.
    """

    def tokenize(self, payloads, encoder, info) -> TokenizedBatch:
        seqs, spans_of, kept, rejected, dropped, stats = [], [], [], {}, {}, Counter()
        pattern = special_text_pattern(info)
        for n, (contents, trailing) in enumerate(payloads):
            try:
                check_special_text(contents, pattern)
                result = self._one(list(contents), encoder)
            except BadRecord as bad:
                rejected[n] = bad
                continue
            stats["trailing_messages_dropped"] += trailing
            if result is None:
                dropped[n] = "too_long"
                continue
            ids, spans, turns = result
            stats["turns_kept"] += turns
            stats["turns_truncated"] += len(contents) // 2 - turns
            seqs.append(ids)
            spans_of.append(spans)
            kept.append(n)
        ids, lengths = flatten_ids(seqs)
        return TokenizedBatch(ids, label_spans(ids, lengths, spans_of), lengths, kept, rejected, dropped, stats)

    def _one(self, contents: list[str], encoder):
        render = self.template.render_messages
        length = lambda t: len(encoder.encode_batch([render(contents[: 2 * t])])[0])  # noqa: E731
        lo, hi, turns = 1, len(contents) // 2, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if length(mid) <= self.max_length:
                turns, lo = mid, mid + 1
            else:
                hi = mid - 1
        if turns == 0:
            return None
        text = render(contents[: 2 * turns])
        bounds = []
        for j in range(1, 2 * turns, 2):
            opened, closed = render(contents[:j], add_generation_prompt=True), render(contents[: j + 1])
            if not (text.startswith(opened) and text.startswith(closed)):
                raise BadRecord("template_not_prefix", "the chat_template renders a conversation's first messages "
                                "differently from the whole conversation; its spans cannot be found")
            bounds += [len(opened), len(closed)]
        encoded = encoder.encode_batch([text] + [text[:c] for c in bounds])
        ids, cuts = encoded[0], []
        for prefix in encoded[1:]:
            if ids[: len(prefix)] != prefix:
                raise BadRecord("template_boundary", "an assistant reply does not start or end on a token boundary")
            cuts.append(len(prefix))
        return ids, list(zip(cuts[0::2], cuts[1::2])), turns
