"""Helpers shared by the benchmark scripts: corpus copies, the LLaMA-2 tokenizer, timed runs."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REALDATA = os.path.join(os.path.dirname(REPO), "shared", "realdata")


def make_corpus(input_dir: str, repeat: int, out: str) -> int:
    """`repeat` copies of every jsonl file of `input_dir`; returns bytes written."""
    os.makedirs(out)
    total = 0
    for name in sorted(os.listdir(input_dir)):
        if name.endswith((".jsonl", ".jsonl.gz")):
            stem, ext = name.split(".", 1)
            for i in range(repeat):
                dst = os.path.join(out, f"{stem}_{i:02d}.{ext}")
                shutil.copyfile(os.path.join(input_dir, name), dst)
                total += os.path.getsize(dst)
    return total


def make_llama2_tokenizer(out: str) -> str:
    """An HF folder like LLaMA-2's own: tokenizer.model, tokenizer.json, no add_prefix_space key."""
    from colossal_llama.tokenizer.train import save_llama_tokenizer

    with open(os.path.join(REALDATA, "tokenizers", "llama2-tokenizer.model"), "rb") as f:
        return save_llama_tokenizer(f.read(), out)


def run_once(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak summed RSS of the process tree (bytes), stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            rss = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"preparation failed ({proc.returncode}):\n{err}")
    return wall, peak, err


def benchmark_parser(doc: str, corpus: str, max_length: int) -> argparse.ArgumentParser:
    """The options both data benchmarks take: corpus, tokenizer, copies, max_length, workers, runs."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--input_dir", default=os.path.join(REALDATA, corpus))
    p.add_argument("--tokenizer_dir", default=None, help="default: the LLaMA-2 tokenizer of ../shared/realdata")
    p.add_argument("--repeat", type=int, default=10, help="copies of the corpus")
    p.add_argument("--max_length", type=int, default=max_length)
    p.add_argument("--num_workers", type=int, default=os.cpu_count())
    p.add_argument("--runs", type=int, default=5, help="timed runs; the median and the best are reported")
    return p
