"""Benchmark the initialisation of new embedding rows (32,000 x 4,096, 20,000 new tokens).

    python benchmarks/init_embeddings.py

1. Core: 20,000 new rows, each the mean of the old rows of its old sub-tokens
   (the decompositions of the LLaMA-2 + chinese_sp.model expansion's 16,968
   new pieces, repeated to 20,000), from a random 32,000 x 4,096 float32
   matrix: seconds and peak memory. For comparison, the old Colossal-LLaMA
   loop re-concatenated the whole matrix once per token; one such step is
   timed here and multiplied by 20,000.
2. End to end: `init_model` on a one-layer LLaMA with a 32,000 x 4,096
   bfloat16 embedding and an untied head, to the expanded tokenizer.

Needs ../shared/realdata (the LLaMA-2 tokenizer and chinese_sp.model).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REALDATA, make_llama2_tokenizer  # noqa: E402

NEW_ROWS, VOCAB, HIDDEN = 20_000, 32_000, 4_096


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def expanded_tokenizers(work: str):
    from transformers import AutoTokenizer

    from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig, init_tokenizer

    old_dir = make_llama2_tokenizer(os.path.join(work, "llama2"))
    new_dir = os.path.join(work, "llama2-zh")
    init_tokenizer(ExpansionConfig(source_tokenizer_dir=old_dir, target_tokenizer_dir=new_dir,
                                   expand_from_spm=[os.path.join(REALDATA, "tokenizers", "chinese_sp.model")]))
    return (old_dir, new_dir, AutoTokenizer.from_pretrained(old_dir, trust_remote_code=False),
            AutoTokenizer.from_pretrained(new_dir, trust_remote_code=False))


def core(old, new) -> None:
    from colossal_llama.model.embeddings import decompose, mean_rows

    started = time.perf_counter()
    parts = decompose(old, new, list(range(len(old), len(new))))
    decomposed = time.perf_counter() - started
    parts = (parts * (NEW_ROWS // len(parts) + 1))[:NEW_ROWS]
    matrix = torch.randn(VOCAB, HIDDEN)
    before = peak_rss_mib()
    started = time.perf_counter()
    rows = mean_rows(matrix, parts)
    resized = torch.cat([matrix, rows])
    seconds = time.perf_counter() - started
    assert resized.shape == (VOCAB + NEW_ROWS, HIDDEN)
    started = time.perf_counter()
    for _ in range(3):  # the old loop's step: a new row, then the whole matrix concatenated again
        step = torch.cat([matrix, matrix[parts[0]].mean(0, keepdim=True)])
    old_step = (time.perf_counter() - started) / 3
    del step
    print(f"decompose {len(new) - len(old):,} new tokens with the old tokenizer: {decomposed:.2f} s")
    print(f"core: {NEW_ROWS:,} new rows of {VOCAB:,} x {HIDDEN:,} float32: {seconds:.3f} s "
          f"(peak RSS {peak_rss_mib():,.0f} MiB, {peak_rss_mib() - before:+,.0f} MiB during the step)")
    print(f"old loop: {old_step:.3f} s per token here -> {old_step * NEW_ROWS:,.0f} s for {NEW_ROWS:,} tokens; "
          f"speed-up {old_step * NEW_ROWS / seconds:,.0f}x")


def end_to_end(work: str, old_dir: str, new_dir: str) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from colossal_llama.model.init_model import init_model

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=1024, num_hidden_layers=1,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False)
    source = os.path.join(work, "model")
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(source, safe_serialization=True)
    AutoTokenizer.from_pretrained(old_dir, trust_remote_code=False).save_pretrained(source)
    report = init_model(source, new_dir, os.path.join(work, "model-zh"))
    print(f"end to end (bfloat16, untied head, {report['rows_initialised']:,} new rows): {report['seconds']:.2f} s, "
          f"peak RSS {peak_rss_mib():,.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    if not os.path.isdir(REALDATA):
        sys.exit(f"needs {REALDATA} (the LLaMA-2 tokenizer and chinese_sp.model)")
    work = tempfile.mkdtemp(prefix="bench_init_")
    try:
        old_dir, new_dir, old, new = expanded_tokenizers(work)
        core(old, new)
        end_to_end(work, old_dir, new_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
