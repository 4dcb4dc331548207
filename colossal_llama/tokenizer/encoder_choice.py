"""Which encoder computes `tok(s)` for data preparation, and why (recorded in the manifest).

    spec, reason = choose_encoder(tokenizer, tokenizer_dir, workdir, reference_spec)

The table, fastest first; every entry gives the ids of the HF call
`tok(texts, add_special_tokens=False)`, or is not used (speeds: one core,
`../shared/realdata/pretrain` as `tokenize.py` builds its texts, LLaMA-2):

- `sentencepiece`: SentencePiece BPE folders whose settings
  `sentencepiece_settings` accepts and whose ids equal the HF call's on
  `PROBES` (here) and on a sample of the input (`data/encoder_check.py`);
  4.5M tokens/s.
- `fast`: every other fast tokenizer (byte-level BPE included): its Rust
  backend (`encode_batch_fast`); 2.6M tokens/s (the HF call itself: 1.8M).
- `slow`: tokenizers without a fast version: the HF call in each worker.

A difference anywhere (ids, or where an added token starts) means the HF
path, never changed ids; the reason says what did not hold.
"""

from __future__ import annotations

from colossal_llama.tokenizer.encoder import EncoderSpec, FastEncoder, single_threaded
from colossal_llama.tokenizer.sentencepiece_encoder import SentencePieceEncoder
from colossal_llama.tokenizer.sentencepiece_settings import sentencepiece_settings, write_sentencepiece_encoder

PROBES = (
    "", " ", "   ", "a", " a", "a ", "  two  spaces   three    end ",
    "\t", "tab\tand\t\ttabs\t", "\n", "line\nline\n\n", " \n \t \r\n ", "\r\n\r\n",
    "emoji 🙂👍🏽 and rare 龘 𠀀 characters", "问：卡尔维萨群岛在哪里？答：在塞林海。", "\u3000全角\u3000空格\u3000",
    "\u2581", "\u2581\u2581x \u2581y", " \u2581", "<0x41> <0x0A>", "no\u00a0break", "zero\u200bwidth", "\x00\x01\x7f",
    "ǅ ﬁ Å Å 123456789 1.5e-10", "x" * 3000, "word " * 600, "长" * 2000,
    "<s", "s>", "< s >", "<<s>>", "</s></s>", "<unk>", "<|eot_id|>", "[INST] <<SYS>>", "<pad>", "<mask>",
)
"""Edge cases: spaces, tabs and newlines at both ends and repeated, empty text, byte-fallback
characters (emoji, rare CJK), text that looks like special tokens, very long lines."""

MAX_PROBED_TOKENS = 64
"""Added tokens probed in context (a LLaMA-3 style folder has 256 specials; the first ones, bos and eos do)."""


def probe_texts(tokenizer) -> list[str]:
    """PROBES, alone and around the tokenizer's bos/eos and added tokens, as the data paths build texts."""
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    added = [t.content for _, t in sorted(tokenizer.backend_tokenizer.get_added_tokens_decoder().items())]
    texts = []
    for p in PROBES:
        texts += [p, bos + p, p + eos, bos + p + eos, p + eos + p, bos + " " + p + " " + eos]
    for token in dict.fromkeys([bos, eos] + added[:MAX_PROBED_TOKENS]):
        texts += [token, "x" + token + "y", " " + token + " ", token + token, "\n" + token + "\n", "<" + token + ">",
                  token[:-1], token[1:], token + "  a\t" + token + "b "]
    return texts


def first_difference(candidate, reference, texts: list[str], added_ids=frozenset()) -> str | None:
    """The first text on which the two encoders give different ids, or place an added token
    (`added_ids`) at different characters; None if there is none."""
    for text, a, b in zip(texts, candidate.encode_with_offsets(texts), reference.encode_with_offsets(texts)):
        if list(a.ids) != list(b.ids):
            return f"ids differ on {text[:40]!r}"
        if any(a.token_to_chars(i)[0] != b.token_to_chars(i)[0] for i, t in enumerate(b.ids) if t in added_ids):
            return f"added-token offsets differ on {text[:40]!r}"
    return None


def choose_encoder(tokenizer, tokenizer_dir: str, workdir: str, reference: EncoderSpec,
                   allow_sentencepiece: bool = True) -> tuple[EncoderSpec, str]:
    """The fastest encoder that gives `tokenizer`'s ids, and why it was chosen.

    Args:
        reference: the HF path (`fast` or `slow` spec), returned when no faster one is exact.
        allow_sentencepiece: False for `--encoder hf`.
    Returns:
        (spec, reason); a `sentencepiece` spec still has to pass `data/encoder_check.py` on the input.
    """
    hf = "the HF tokenizer's Rust backend" if reference.kind == "fast" else "the HF tokenizer call in each worker"
    if not allow_sentencepiece:
        return reference, f"--encoder hf: {hf}"
    settings, why_not = sentencepiece_settings(tokenizer, tokenizer_dir)
    if settings is None:
        return reference, f"{why_not}: {hf}"
    spec = EncoderSpec("sentencepiece", write_sentencepiece_encoder(settings, workdir))
    texts = probe_texts(tokenizer)
    added_ids = frozenset(i for _, i, _, _ in settings["added"])
    with single_threaded():
        difference = first_difference(SentencePieceEncoder(spec.payload),
                                      FastEncoder(backend=tokenizer.backend_tokenizer), texts, added_ids)
    if difference:
        return reference, f"sentencepiece differs from the HF tokenizer on the probes ({difference}): {hf}"
    return spec, (f"SentencePiece BPE ({settings['prepend']} prefix space): same ids as the HF tokenizer "
                  f"on {len(texts)} probe texts")
