"""Where the preparation's tasks run: processes of this machine (`--engine local`) or a Ray cluster (`--engine ray`).

    engine = open_engine("local", workers=2)            # or open_engine("ray", address="auto")
    try:
        tasks = engine.start(map_chunk, chunks, settings)  # submitted at once
        for index, result in tasks:                        # (item index, result) as tasks finish
            ...
    finally:
        engine.close()

A task is a module-level function `fn(item, shared)` of picklable arguments;
`shared` (the settings every task needs) is sent once per worker, not once
per task (Ray: one object in the store). Tasks must be idempotent: the map
step rewrites its own spill files, so a retried task leaves the same bytes.

- local: a process pool, forked on Linux so the workers inherit the
  imported modules and a preloaded encoder (`worker_pool`); with one worker
  the tasks run in this process, one after the other, as they are iterated.
- ray: tasks on the cluster at `address` (`auto`: the running cluster,
  else a local one started for this run and stopped after it). A worker
  killed mid-task is retried (Ray's `max_retries`); a task that fails for a
  reason of its own (a bad record) is not, and its exception is raised here
  as itself. Every node first checks that it sees the paths the tasks use
  (`check_paths`), so a node outside the shared file system is named at once
  instead of failing tasks one by one. The Ray side is in ray_engine.py.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from colossal_llama.config import ENGINE_CHOICES
from colossal_llama.errors import ConfigError, WorkerDied
from colossal_llama.tokenizer.encoder import single_threaded

WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false"}
# One single-threaded process per core: the map step's Python work (JSON, numpy, spill) only parallelizes
# across processes. Measured on 2 cores, the map step over the 10x pretrain corpus (M tokens/s, wall):
# byte-level BPE (32k, LLaMA-3 split regex) 2 processes 1.57-1.65, 2 processes with Rayon threads 1.53,
# 1 process with Rayon threads 1.32-1.38, 1 process alone 0.80; LLaMA-2 `fast` 4.51, 4.67 and 3.79.
DIED = ("a data preparation worker died (out of memory?); try fewer --num_workers")


def _init_worker() -> None:
    os.environ.update(WORKER_ENV)


def _init_pool_worker() -> None:
    """A local worker dies with the process that forked it: killed with it (out of memory, `kill -9`), it
    would otherwise live on under init holding the output's staging lock it inherited, so no later run could
    clean that staging folder up."""
    from colossal_llama.lifeline import die_with_parent

    _init_worker()
    die_with_parent()


def worker_pool(workers: int) -> ProcessPoolExecutor | None:
    """A process pool (or None for in-process work), its workers already started.

    On Linux the workers are forked: they inherit the imported modules and a
    preloaded encoder (spawned workers spend ~0.4 s each re-importing and
    re-reading the tokenizer, 10% of a whole run on the benchmark). Forking is
    safe here: the parent has only encoded single strings, and the
    `tokenizers` library disables its thread pool in a child forked after the
    parent used it; the workers are started at once, before the parent starts
    any thread of its own (progress bars). Elsewhere they are spawned.

    A ProcessPoolExecutor rather than multiprocessing.Pool: when a worker is
    killed, the executor raises instead of waiting for it forever.
    """
    if workers <= 1:
        return None
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init_pool_worker)
    with single_threaded():  # `tokenizers` then neither warns nor starts threads in the forked children
        pool.submit(os.getpid).result()  # with fork, the first task starts every worker
    return pool


class _InProcess:
    """Tasks run one by one in this process, when iterated."""

    def __init__(self, fn, items, shared):
        self.fn, self.items, self.shared = fn, list(items), shared

    def __iter__(self):
        for index, item in enumerate(self.items):
            yield index, self.fn(item, self.shared)

    def cancel(self) -> None:
        """Nothing runs ahead of the iteration."""


class _PoolTasks:
    """Futures of a process pool, yielded as they finish."""

    def __init__(self, pool: ProcessPoolExecutor, fn, items, shared):
        self.futures = {pool.submit(fn, item, shared): index for index, item in enumerate(items)}

    def __iter__(self):
        pending = set(self.futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=self.futures.get):
                    yield self.futures[future], future.result()
        except BrokenProcessPool as exc:
            raise WorkerDied(DIED) from exc
        finally:
            self.cancel()

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


class LocalEngine:
    """This machine's processes."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None

    def start_workers(self) -> None:
        """Fork the worker processes now (after the parent preloaded what they inherit: the encoder)."""
        if self.pool is None:
            self.pool = worker_pool(self.workers)

    @property
    def in_process(self) -> bool:
        """Tasks run in this process as they are iterated (one worker)."""
        return self.pool is None

    def start(self, fn, items, shared):
        return _InProcess(fn, items, shared) if self.pool is None else _PoolTasks(self.pool, fn, items, shared)

    def begin_check(self, paths: list[str]):
        """Every worker is on this machine: nothing to check (returns the no-op wait)."""
        return lambda: None

    def stop_workers(self) -> None:
        """Stop the worker processes (their memory is not held through what follows); later tasks run in this
        process."""
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def open_engine(name: str, workers: int, address: str = "auto"):
    """The engine `name` (`local` or `ray`) with `workers` processes (ray: a local cluster's size, when one is
    started here)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        from colossal_llama.data.ray_engine import RayEngine  # Ray is imported only when asked for

        return RayEngine(address, workers)
    raise ConfigError(f"--engine must be one of {ENGINE_CHOICES}, got {name!r}")
