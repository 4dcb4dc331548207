"""Helpers shared by the benchmark scripts: corpus copies, the LLaMA-2 tokenizer, timed runs, a local Ray cluster."""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

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


class Run(NamedTuple):
    wall: float
    """Seconds, interpreter start to exit."""
    rss: int
    """Peak of the summed RSS of the process and its workers (bytes): counts the pages that
    forked workers share with the parent once per process."""
    pss: int
    """Peak of the summed PSS (bytes): shared pages split among the processes sharing them."""
    stderr: str

    def phases(self) -> dict[str, float]:
        """{"tokenize": s, "pack": s, "write": s} from the command's `time:` line."""
        line = next((x for x in self.stderr.splitlines() if x.startswith("time:")), "time:")
        return {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", line)}


def run_once(command: list[str]) -> Run:
    """Run a preparation command; its wall time, peak memory (sampled every 100 ms) and stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, rss, pss = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            rss = max(rss, sum(p.memory_info().rss for p in tree))
            pss = max(pss, sum(p.memory_full_info().pss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"preparation failed ({proc.returncode}):\n{err}")
    return Run(wall, rss, pss, err)


def old_figure(old: dict[int, float], args, corpus: str, **settings) -> float | None:
    """The old script's measured seconds for this run, when it is the measured set-up: the real corpus
    `corpus` at `--repeat`, the real LLaMA-2 tokenizer and `settings` (e.g. max_length=4096)."""
    measured = (args.input_dir == os.path.join(REALDATA, corpus) and args.tokenizer_dir is None
                and all(getattr(args, name) == value for name, value in settings.items()))
    return old.get(args.repeat) if measured else None


def scratch_corpus(args, prefix: str) -> tuple[str, int, str]:
    """A scratch folder with `--repeat` copies of the corpus in `corpus/` and the tokenizer (made there unless
    --tokenizer_dir): (folder, corpus bytes, tokenizer folder). The caller removes the folder."""
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        corpus_bytes = make_corpus(args.input_dir, args.repeat, os.path.join(work, "corpus"))
        tokenizer_dir = args.tokenizer_dir or make_llama2_tokenizer(os.path.join(work, "tokenizer"))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work, corpus_bytes, tokenizer_dir


def prepare_command(script: str, corpus: str, tokenizer_dir: str, out: str, args, *flags: str) -> list[str]:
    """The command line of one preparation run (`script` at the repository root) over `corpus` into `out`; on the
    Ray cluster at `args.ray_address` with `--engine ray` (flags given later win)."""
    engine = ["--engine", "ray", "--ray_address", args.ray_address] if args.engine == "ray" else []
    return [sys.executable, os.path.join(REPO, script), "--data_input_dirs", corpus, "--tokenizer_dir", tokenizer_dir,
            "--data_output_dirs", out, "--max_length", str(args.max_length), "--num_workers", str(args.num_workers),
            "--overwrite", *engine, *flags]


@contextlib.contextmanager
def local_ray_cluster(cpus: int):
    """A Ray cluster of `cpus` CPUs on this machine, owned by this process (stopped with it): yields its
    HOST:PORT and the seconds it took to start (what `--ray_address auto` adds to a run when no cluster runs).

    Its token is this process's own (RAY_AUTH_TOKEN, inherited by the runs; one per process, as Ray reads it
    once), so ~/.ray/auth_token is neither read nor written.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    try:
        yield ray.get_runtime_context().gcs_address, time.perf_counter() - start
    finally:
        ray.shutdown()


def interleaved_runs(ours: list[str], theirs: list[str] | None, runs: int,
                     their_runs: int) -> tuple[list[Run], list[Run]]:
    """Run `ours` `runs` times and `theirs` `their_runs` times, alternating, so that both see the same machine
    load (a background job slows both alike instead of one)."""
    mine, other = [], []
    for i in range(max(runs, their_runs if theirs else 0)):
        if i < runs:
            mine.append(run_once(ours))
        if theirs and i < their_runs:
            other.append(run_once(theirs))
    return mine, other


def same_files(a: str, b: str) -> bool:
    """Do folders `a` and `b` hold the same files, byte for byte?"""
    def listing(root):
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)

    names = listing(a)
    return names == listing(b) and all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False)
                                       for n in names)


def report_runs(runs: list[Run], tokens: int, old_seconds: float | None, label: str) -> list[str]:
    """Wall time, phases, throughput (against the old script's time on the same corpus, when measured)
    and peak memory of `runs`: medians, and the best run."""
    walls = sorted(r.wall for r in runs)
    wall = statistics.median(walls)
    phases = {k: statistics.median(r.phases().get(k, 0.0) for r in runs) for k in ("tokenize", "pack", "write")}
    versus = lambda w: f" = {old_seconds / w:.1f}x the old script" if old_seconds else ""  # noqa: E731
    lines = [
        f"wall time         {wall:.2f} s median of {len(walls)} ({', '.join(f'{w:.2f}' for w in walls)}); {label}",
        "phases (medians)  " + ", ".join(f"{k} {v:.2f} s ({v / wall:.0%})" for k, v in phases.items())
        + f"; pack + write {(phases['pack'] + phases['write']) / wall:.1%} of the run",
        f"throughput        median {tokens / wall:,.0f} tokens/s{versus(wall)}, "
        f"best {tokens / walls[0]:,.0f} tokens/s{versus(walls[0])}",
        f"peak memory       {max(r.rss for r in runs) / 2**20:,.0f} MiB summed RSS, "
        f"{max(r.pss for r in runs) / 2**20:,.0f} MiB summed PSS (process + workers)",
    ]
    return lines


def print_speed(runs: list[Run], hf_runs: list[Run], identical: bool | None, tokens: int,
                old_seconds: float | None, label: str) -> None:
    """The speed lines of a data benchmark: the default encoder's runs, then the `--encoder hf` ones."""
    old = (f"old script {old_seconds:.0f} s = {tokens / old_seconds:,.0f} tokens/s (measured, not run here)"
           if old_seconds else "no measured figure of the old script for this corpus")
    for line in report_runs(runs, tokens, old_seconds, f"{label}; {old}"):
        print(line)
    if hf_runs:
        print("--encoder hf:")
        for line in report_runs(hf_runs, tokens, old_seconds, "the HF tokenizer"):
            print("  " + line)
        print(f"shards            {'byte-identical' if identical else 'DIFFERENT'} with the default encoder and "
              "with --encoder hf")


def benchmark_parser(doc: str, corpus: str, max_length: int) -> argparse.ArgumentParser:
    """The options both data benchmarks take: corpus, tokenizer, copies, max_length, workers, runs."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--input_dir", default=os.path.join(REALDATA, corpus))
    p.add_argument("--tokenizer_dir", default=None, help="default: the LLaMA-2 tokenizer of ../shared/realdata")
    p.add_argument("--repeat", type=int, default=10, help="copies of the corpus")
    p.add_argument("--max_length", type=int, default=max_length)
    p.add_argument("--num_workers", type=int, default=os.cpu_count())
    p.add_argument("--runs", type=int, default=5, help="timed runs; the median and the best are reported")
    p.add_argument("--hf_runs", type=int, default=1,
                   help="timed runs with --encoder hf, interleaved with the others; the shards must be identical "
                   "(0: none)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where the runs' tasks run (the commands' --engine); ray needs a network namespace holding "
                   "only loopback on a machine whose tests keep to 127.0.0.0/8 (see prepare_pretrain.py)")
    p.add_argument("--ray_address", default="auto",
                   help="with --engine ray: the cluster the runs join (HOST:PORT, or `auto`)")
    return p
