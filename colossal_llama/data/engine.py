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
  instead of failing tasks one by one.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import socket
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from colossal_llama.config import ENGINE_CHOICES
from colossal_llama.errors import ConfigError, DataError, WorkerDied

RAY_RETRIES = 3
"""Times Ray reruns a task whose worker died (killed, out of memory) before the run fails."""
NODE_CHECK_SECONDS = 300
"""How long every node has to answer the path check (it starts a worker process there: ~1 s on an idle node)."""
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false"}
# One single-threaded process per core: the map step's Python work (JSON, numpy, spill) only parallelizes
# across processes. Measured on 2 cores, the map step over the 10x pretrain corpus (M tokens/s, wall):
# byte-level BPE (32k, LLaMA-3 split regex) 2 processes 1.57-1.65, 2 processes with Rayon threads 1.53,
# 1 process with Rayon threads 1.32-1.38, 1 process alone 0.80; LLaMA-2 `fast` 4.51, 4.67 and 3.79.
DIED = ("a data preparation worker died (out of memory?); try fewer --num_workers")


def _init_worker() -> None:
    os.environ.update(WORKER_ENV)


@contextlib.contextmanager
def _tokenizers_quiet_in_children():
    """Set TOKENIZERS_PARALLELISM=false while this process starts others: `tokenizers` then neither warns nor
    starts threads in a child forked after this process used its thread pool (the encoder check did)."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


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
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init_worker)
    with _tokenizers_quiet_in_children():
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


def _unwrapped(exc):
    """The task's own exception inside a Ray task error (a bad record), or a WorkerDied for a dead worker."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError) and isinstance(getattr(exc, "cause", None), Exception):
        return exc.cause
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError, rex.TaskCancelledError)):
        return WorkerDied(f"{DIED} ({type(exc).__name__} after {RAY_RETRIES} retries)")
    return exc


def _ray_task(fn, item, shared):
    """`fn(item, shared)` on a Ray worker, its environment set first as the local workers' is (`WORKER_ENV`):
    here rather than in a Ray runtime_env, which costs 0.25 s per start of the workers (measured on 2 cores)."""
    _init_worker()
    return fn(item, shared)


class _RayTasks:
    """Object refs of Ray tasks, yielded as they finish."""

    def __init__(self, remote, fn, items, shared_ref):
        # named after `fn`: Ray titles the worker process `ray::<name>` while it runs one
        remote = remote.options(name=fn.__name__)
        self.refs = {remote.remote(fn, item, shared_ref): index for index, item in enumerate(items)}

    def __iter__(self):
        import ray

        pending = list(self.refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 (re-raised as the task's own error)
                    raise _unwrapped(exc) from None
                yield self.refs[done[0]], result
        finally:
            self.cancel(pending)

    def cancel(self, pending=None) -> None:
        import ray

        for ref in self.refs if pending is None else pending:
            ray.cancel(ref, force=True)


def _node_check(paths: list[str]) -> tuple[str, list[str]]:
    """(this node's address, the paths it cannot see); a folder must also take a new file."""
    import tempfile

    missing = []
    for path in paths:
        if not os.path.exists(path):
            missing.append(path)
        elif os.path.isdir(path):
            try:
                with tempfile.NamedTemporaryFile(dir=path, prefix=".node-check-"):
                    pass
            except OSError as exc:
                missing.append(f"{path} ({exc.strerror or exc})")
    return socket.gethostname(), missing


def _node_name(node: dict, host: str | None = None) -> str:
    """`ADDRESS (host HOST, id 1234abcd)`: the id tells nodes of one host apart (`ray list nodes` shows it)."""
    where = f"host {host}, " if host else ""
    return f"{node.get('NodeManagerAddress', '?')} ({where}id {node['NodeID'][:8]})"


def _check_answers(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT address must take a connection: ray.init retries one that does not for ever.

    Raises:
        ConfigError: naming the address, when nothing listens there.
    """
    if address == "auto" or "://" in address or ":" not in address:
        return  # `auto` finds the cluster itself; `ray://` goes through Ray's client
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--ray_address {address}: no Ray cluster answers there ({exc}); give the head node's "
                          "HOST:PORT (`ray start --head --port PORT`)") from None


class RayEngine:
    """A Ray cluster's workers."""

    name = "ray"

    def __init__(self, address: str = "auto", workers: int | None = None):
        import ray

        self.owned = False
        if not ray.is_initialized():
            options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            _check_answers(address)
            with _tokenizers_quiet_in_children():  # ray.init forks (a local cluster's processes, too)
                try:
                    ray.init(address=address, **options)
                except ConnectionError as exc:
                    if address != "auto":  # it took a connection (_check_answers): a token other than the cluster's?
                        raise ConfigError(f"--ray_address {address}: the Ray cluster there refused this process "
                                          f"({str(exc).splitlines()[0][:200]}); if it uses token authentication, give "
                                          "this process its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token)") from None
                    # no cluster running: one on this machine, for this run (its workers: --num_workers cores)
                    ray.init(num_cpus=workers, **options)
                except ray.exceptions.AuthenticationError:
                    raise ConfigError(f"--ray_address {address}: the cluster refused this process's token; give it "
                                      "the cluster's (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token)") from None
            self.owned = True
        self._task = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_task)

    in_process = False

    def start(self, fn, items, shared):
        import ray

        return _RayTasks(self._task, fn, items, ray.put(shared))

    def start_workers(self) -> None:
        """The cluster's workers start on demand."""

    def check_paths(self, paths: list[str]) -> None:
        """Every alive node sees `paths` (files or folders; a folder must take a new file).

        Raises:
            DataError: naming the first node and the paths it cannot see.
        """
        self.begin_check(paths)()

    def begin_check(self, paths: list[str]):
        """Start `check_paths` on every node and return the function that waits for it (and raises): the
        nodes start their workers and check while the driver loads the tokenizer (about 1 s of a run)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        check = ray.remote(num_cpus=0)(_node_check)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths)
                for n in nodes]
        return lambda: self._checked(nodes, refs)

    def _checked(self, nodes: list[dict], refs: list) -> None:
        import ray

        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=NODE_CHECK_SECONDS)
        for node, ref in zip(nodes, refs):
            if ref not in ready:  # a node listed alive that runs nothing would hold the run for ever
                raise DataError(f"Ray node {_node_name(node)} did not answer the path check in {NODE_CHECK_SECONDS} s; "
                                "remove it from the cluster (`ray stop` there) or check its raylet log")
        for node, (host, missing) in zip(nodes, ray.get(refs)):
            if missing:
                more = f" and {len(missing) - 1} other path(s)" if len(missing) > 1 else ""
                raise DataError(f"Ray node {_node_name(node, host)} cannot see {missing[0]}{more}: every node must see "
                                "the input files and the output folder's parent (a shared file system)")

    def stop_workers(self) -> None:
        """Ray's workers are the cluster's: nothing to stop (the plan and write tasks of the reduce run on them too)."""

    def close(self) -> None:
        import ray

        if self.owned and ray.is_initialized():
            ray.shutdown()


def open_engine(name: str, workers: int, address: str = "auto"):
    """The engine `name` (`local` or `ray`) with `workers` processes (ray: a local cluster's size, when one is
    started here)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address, workers)
    raise ConfigError(f"--engine must be one of {ENGINE_CHOICES}, got {name!r}")
