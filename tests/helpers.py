"""Test helpers: reading the bundled corpus, a LLaMA-3 style tokenizer, the reference oracle.

`reference_pretrain` is the slow, obviously-correct reference of data-spec
section 1, written straight from the spec with the HF tokenizer call; the
pipeline must give exactly its ids and labels.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import gzip
import json
import os
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_PRETRAIN = os.path.join(REPO, "applications", "quickstart", "data", "pretrain")
SAMPLE_SFT = os.path.join(REPO, "applications", "quickstart", "data", "sft")
REALDATA = os.path.join(os.path.dirname(REPO), "shared", "realdata")
IGNORE = -100

# LLaMA-3's pre-tokenizer split pattern (as published in its tokenizer.json)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def read_jsonl(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sample_records() -> list[dict]:
    records = []
    for path in sorted(glob.glob(os.path.join(SAMPLE_PRETRAIN, "*.jsonl*"))):
        records.extend(read_jsonl(path))
    return records


def sample_texts() -> list[str]:
    return [(r["source"] + "\n" + r["target"]).strip() for r in sample_records()]


def llama3_pipeline(model):
    """A `tokenizers.Tokenizer` around `model` with LLaMA-3's split regex, byte-level pre-tokenizer and decoder."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers

    tk = Tokenizer(model)
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    return tk


def add_bos_specials(tk, specials: list[str]) -> str:
    """Add `specials` (the first is BOS) and a post-processor that always prepends BOS; returns BOS."""
    from tokenizers import processors

    tk.add_special_tokens(specials)
    bos = specials[0]
    tk.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, tk.token_to_id(bos))]),
    ])
    return bos


def build_llama3_style_tokenizer(texts: list[str], out_dir: str, vocab_size: int = 1500) -> str:
    """A byte-level BPE tokenizer shaped like LLaMA-3's: split regex + ByteLevel,
    special tokens, and a post-processor that always prepends BOS (so
    `add_bos_token=False` has no effect on it)."""
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = llama3_pipeline(models.BPE(ignore_merges=True))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    bos = add_bos_specials(tk, LLAMA3_SPECIALS)
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token="<|end_of_text|>")
    hf.save_pretrained(out_dir)
    return out_dir


# LLaMA-3.2's 256 special tokens, ids 128000-128255: the named ones, then reserved ones numbered on
LLAMA3_NAMED_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                         "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                         "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]


def build_llama3_sized_tokenizer(out_dir: str, regular: int = 128000) -> str:
    """A byte-level BPE tokenizer with LLaMA-3.2's numbering: `regular` tokens, then its 256 special tokens
    (128,256 in all), saved as its folders are (tokenizer_class PreTrainedTokenizerFast, tiktoken tokenizer.model).

    Built from its vocabulary, not trained (about 1 s): the 256 bytes; the first two bytes of every CJK
    character U+4E00-U+9FFF and each whole character (so "人工" is two tokens, as in LLaMA-3); then
    ASCII letter pairs and fours ("Ġa", "he", "hell") up to `regular`. A merge forms every token but a byte.
    """
    import itertools
    import string

    from tokenizers import models
    from transformers import PreTrainedTokenizerFast

    from colossal_llama.tokenizer.expand_bpe import byte_alphabet, to_byte_level

    vocab = {ch: b for b, ch in byte_alphabet().items()}
    merges = []

    def add(left: str, right: str) -> None:
        if left + right not in vocab and len(vocab) < regular:
            vocab[left + right] = len(vocab)
            merges.append((left, right))

    characters = [to_byte_level(chr(c)) for c in range(0x4E00, 0xA000)]
    for ch in characters:
        add(ch[0], ch[1])
    for ch in characters:
        add(ch[:2], ch[2])
    pairs = ["\u0120" + a for a in string.ascii_lowercase] + [a + b for a in string.ascii_lowercase
                                                              for b in string.ascii_lowercase]
    for pair in pairs:
        add(pair[0], pair[1])
    for left, right in itertools.product(pairs, pairs[26:]):
        if len(vocab) == regular:
            break
        add(left, right)
    tk = llama3_pipeline(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    specials = LLAMA3_NAMED_SPECIALS + [f"<|reserved_special_token_{i}|>"
                                        for i in range(3, 3 + 256 - len(LLAMA3_NAMED_SPECIALS))]
    bos = add_bos_specials(tk, specials)
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token="<|eot_id|>").save_pretrained(out_dir)
    set_tokenizer_config(out_dir, tokenizer_class="PreTrainedTokenizerFast")
    write_tiktoken_ranks(out_dir, vocab)
    return out_dir


def set_tokenizer_config(folder: str, **values) -> None:
    """Set keys of `folder/tokenizer_config.json` (a value of None is written as null)."""
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update(values)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)


def write_tiktoken_ranks(folder: str, vocab: dict[str, int] | None = None) -> str:
    """`folder/tokenizer.model` in tiktoken's format (base64 of the token's bytes, space, rank; one a line) from
    `vocab` or the folder's byte-level tokenizer.json, as Meta ships LLaMA-3 (the special tokens are not in it)."""
    import base64

    from colossal_llama.tokenizer.expand_bpe import byte_alphabet

    byte_of = {ch: b for b, ch in byte_alphabet().items()}
    if vocab is None:
        with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
    path = os.path.join(folder, "tokenizer.model")
    with open(path, "w", encoding="ascii") as f:
        f.writelines(f"{base64.b64encode(bytes(byte_of[ch] for ch in token)).decode()} {rank}\n"
                     for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]))
    return path


def build_tokenizer_without_byte_fallback(sp_tokenizer_dir: str, out_dir: str) -> str:
    """The SentencePiece test tokenizer with byte fallback off (a fast-only folder): characters
    outside its vocabulary become the <unk> id, in ordinary text."""
    import shutil

    os.makedirs(out_dir, exist_ok=True)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(sp_tokenizer_dir, name), out_dir)
    with open(os.path.join(sp_tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    spec["model"]["byte_fallback"] = False
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    return out_dir


def reference_pretrain(tokenizer, record: dict) -> tuple[list[int], list[int]]:
    """Data-spec section 1, literally."""
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    prefix = tokenizer(bos + record["source"], add_special_tokens=False)["input_ids"]
    ids = tokenizer(bos + record["source"] + record["target"] + eos, add_special_tokens=False)["input_ids"]
    labels = list(ids)
    if record["source"] != "":
        labels[: len(prefix)] = [IGNORE] * len(prefix)
    return ids, labels


def reference_pieces(ids: list[int], labels: list[int], max_length: int):
    """The pieces a document becomes (data-spec section 4), all-masked chunks of long documents left out."""
    pieces = []
    for start in range(0, len(ids), max_length):
        piece_ids, piece_labels = ids[start : start + max_length], labels[start : start + max_length]
        if len(ids) > max_length and all(x == IGNORE for x in piece_labels):
            continue
        pieces.append((tuple(piece_ids), tuple(piece_labels)))
    return pieces


def output_segments(out_dir: str):
    """Every segment (document or chunk) of every row of a prepared folder, with its own category
    (`segment_categories` of rows packed across categories, else the row's category)."""
    import datasets

    segments = []
    for part in sorted(glob.glob(os.path.join(out_dir, "arrow", "part-*"))):
        for row in datasets.load_from_disk(part):
            start = 0
            categories = row.get("segment_categories") or [row["category"]] * len(row["seq_lengths"])
            assert len(categories) == len(row["seq_lengths"])
            for n, category in zip(row["seq_lengths"], categories):
                segments.append((tuple(row["input_ids"][start : start + n]), tuple(row["labels"][start : start + n]),
                                 category))
                start += n
    return segments


def write_jsonl(path: str, records: list, raw_lines: list[bytes] | None = None) -> str:
    """Write records (dicts, or raw bytes lines when given) as a jsonl file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n")
        for line in raw_lines or []:
            f.write(line + b"\n")
    return path


SFT_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the human's questions.\n\n")
SFT_SEPARATORS = {2: ("<s>", "</s>"), 3: ("<|begin_of_text|>", "<|eot_id|>")}


def reference_sft(tokenizer, messages: list[dict], max_length: int, llama_version: int):
    """Data-spec section 2, literally: binary search over turns re-tokenizing the prompt,
    spans from the token counts of the prompt prefixes before each opening and
    through each closing separator. Returns (ids, labels), or None when dropped."""
    open_, close = SFT_SEPARATORS[llama_version]
    roles = {"human": "Human", "assistant": "Assistant"}
    msgs = [(roles[m["from"].lower()], m["content"]) for m in messages]
    if len(msgs) % 2:
        msgs = msgs[:-1]
    tok = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731

    def prompt(k: int) -> str:
        return SFT_SYSTEM + "".join(role + ": " + open_ + content + close for role, content in msgs[:k])

    lo, hi, turns = 1, len(msgs) // 2, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(tok(prompt(2 * mid))) <= max_length - 1:
            turns, lo = mid, mid + 1
        else:
            hi = mid - 1
    if turns == 0:
        return None
    ids = [tokenizer.bos_token_id] + tok(prompt(2 * turns))
    labels = [IGNORE] * len(ids)
    for k in range(1, 2 * turns, 2):  # assistant messages
        start = 1 + len(tok(prompt(k) + "Assistant: "))  # the opening separator
        end = 1 + len(tok(prompt(k + 1)))  # one past the closing separator
        assert ids[start] == tokenizer.convert_tokens_to_ids(open_)
        assert ids[end - 1] == tokenizer.convert_tokens_to_ids(close)
        labels[start:end] = ids[start:end]
    return ids, labels


def save_tiny_model(tokenizer_dir: str, out_dir: str, layers: int = 2, tie: bool = False) -> str:
    """A tiny LlamaForCausalLM (hidden 64, 256 positions) sized for the tokenizer, saved with it to `out_dir`."""
    from colossal_llama.model.tiny import build_tiny_llama

    return build_tiny_llama(tokenizer_dir, out_dir, layers=layers, hidden=64, positions=256, tie=tie)


def prepare_parts(kind: str, tokenizer_dir: str, out_dir: str, max_length: int, bins: int, extra=()) -> list[str]:
    """Run the data preparation CLI on the bundled sample; returns the part folders in order."""
    from colossal_llama.data.pretrain import main as pretrain_main
    from colossal_llama.data.sft import main as sft_main

    source = SAMPLE_PRETRAIN if kind == "pretrain" else SAMPLE_SFT
    argv = ["--data_input_dirs", source, "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", out_dir,
            "--max_length", str(max_length), "--num_spliced_dataset_bins", str(bins), "--num_workers", "1", *extra]
    code = (pretrain_main if kind == "pretrain" else sft_main)(argv)
    assert code in (0, None), f"preparing {kind} data failed"
    arrow = os.path.join(out_dir, "arrow")
    return [os.path.join(arrow, p) for p in sorted(os.listdir(arrow))]


def read_metrics(tensorboard_dir: str) -> list[dict]:
    path = os.path.join(tensorboard_dir, "metrics.jsonl")
    return read_jsonl(path) if os.path.exists(path) else []


def train_args(model_dir: str, parts: list[str], out: str, *extra: str) -> list[str]:
    """A small fp32 ddp run of train.py writing under `out` (checkpoints in out/ck, logs in out/tb)."""
    return ["--plugin", "ddp", "--pretrained", model_dir, "--dataset", *parts, "--mixed_precision", "fp32",
            "--batch_size", "4", "--lr", "1e-3", "--save_dir", os.path.join(out, "ck"),
            "--tensorboard_dir", os.path.join(out, "tb"), *extra]


def run_train(model_dir: str, parts: list[str], out: str, *extra: str) -> tuple[int, list[dict]]:
    """train.py's main() in this process; returns its exit status and the logged metrics."""
    from colossal_llama.training.cli import main

    code = main(train_args(model_dir, parts, out, *extra))
    return code, read_metrics(os.path.join(out, "tb"))


@contextlib.contextmanager
def small_file_system(path, options: str):
    """A tmpfs mounted at `path` (created) with mount `options` (`size=64k`, `ro`, ...); skips the test
    where mounting is not permitted."""
    import pytest

    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        gc.collect()  # a write that failed on the full disk may leave its file open until its traceback is freed
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
