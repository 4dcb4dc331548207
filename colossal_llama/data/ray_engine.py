"""The Ray side of engine.py: tasks on a Ray cluster, retried when their worker dies, and every node's path check.

    engine = RayEngine("auto", workers=2)       # joins the running cluster, else starts one here
    checked = engine.begin_check(paths)          # every node checks while the driver goes on
    ...
    checked()                                    # DataError naming a node that cannot see a path
    for index, result in engine.start(map_chunk, chunks, settings): ...

See engine.py for the task contract (module-level `fn(item, shared)`, idempotent).
"""

from __future__ import annotations

import os
import socket

from colossal_llama.data.engine import DIED, _init_worker
from colossal_llama.tokenizer.encoder import single_threaded
from colossal_llama.errors import ConfigError, DataError, WorkerDied

RAY_RETRIES = 3
"""Times Ray reruns a task whose worker died (killed, out of memory) before the run fails."""
NODE_CHECK_SECONDS = 300
"""How long every node has to answer the path check (it starts a worker process there: ~1 s on an idle node)."""


def _unwrapped(exc):
    """The task's own exception inside a Ray task error (a bad record), or a WorkerDied for a dead worker."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError) and isinstance(getattr(exc, "cause", None), Exception):
        return exc.cause
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError, rex.TaskCancelledError)):
        return WorkerDied(f"{DIED} ({type(exc).__name__} after {RAY_RETRIES} retries)")
    if isinstance(exc, rex.RayError):  # the cluster lost an object, an owner, its store filled up ...
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return WorkerDied(f"the Ray cluster failed a data preparation task ({type(exc).__name__}: {first})")
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
    if address == "auto" or address.startswith("ray://"):
        return  # `auto` finds the cluster itself; `ray://` goes through Ray's client
    if "://" in address or ":" not in address:
        raise ConfigError(f"--ray_address {address}: give `auto`, the head node's HOST:PORT (`ray start --head "
                          "--port PORT`) or ray://HOST:PORT")
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
            with single_threaded():  # ray.init forks (a local cluster's processes, too)
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
