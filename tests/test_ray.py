"""Data preparation on a Ray cluster (`--engine ray`): same bytes as `--engine local`, a killed worker retried,
a node outside the shared file system named, nothing published after a failure.

One subprocess (this file run as a script) does every Ray check, so the
cluster starts once (20 to 30 s in all, 7 to 11 of them starting nodes). It
runs in its own network namespace holding only loopback (Ray binds the
machine's interface whatever `--node-ip-address` says, and tests talk to
127.0.0.0/8 only) and its own PID namespace with its own /proc, so `ray stop
--force` (which kills Ray processes by name) sees only this cluster's
processes, and the kernel ends whatever is left when the script exits. Two
nodes of one CPU on 127.0.0.1 prepare the bundled corpora; a third node,
started in a mount namespace where the data folder is hidden, must be named
by the path check. The script writes what it saw to a JSON file; the tests
compare it with local runs. The other tests need no Ray cluster: the engine
settings change no byte, a `--ray_address` where nothing answers fails at
once, recipes and the README's cluster command take the settings.

    pytest tests/test_ray.py            # the cluster tests skip where `unshare` is not permitted
"""

from __future__ import annotations

import filecmp
import gzip
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PRETRAIN = os.path.join(REPO, "applications", "quickstart", "data", "pretrain")
SFT = os.path.join(REPO, "applications", "quickstart", "data", "sft")
CHUNK_BYTES = 8 << 10
"""Small chunks: many tasks, so both nodes get some and a worker can be killed mid-map."""
FAULT_COPIES = 12
"""Copies of the bundled pretrain corpus in the fault run (1.5 MB: ~2 s of map on two one-CPU nodes)."""
HOW_IT_RAN = ("engine", "ray_address", "num_workers", "data_output_dirs")
"""The manifest's `config` entries that say how a run ran, not what it made."""
BAD_LINES = [b'{"source": "", "target": "fine", "category": "bad"}', b"{not json", b'{"target": 3}',
             b'{"source": "", "target": "also fine", "category": "bad"}']


# ----------------------------------------------------------------------------------------------------------------
# the script: runs inside `unshare --net --pid --mount-proc`
# ----------------------------------------------------------------------------------------------------------------

def free_port_range(count: int) -> int:
    """The first of `count` consecutive free ports below the ephemeral range (Ray's worker ports)."""
    while True:
        base = random.randrange(11000, 30000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def node_ports(head: bool) -> list[str]:
    """Explicit ports for every Ray service of one node (none left to Ray's fixed defaults)."""
    from colossal_llama.ports import free_port

    workers = free_port_range(40)
    flags = ["--node-manager-port", free_port(), "--object-manager-port", free_port(),
             "--min-worker-port", workers, "--max-worker-port", workers + 39,
             "--metrics-export-port", free_port(), "--dashboard-agent-listen-port", free_port(),
             "--dashboard-agent-grpc-port", free_port(), "--runtime-env-agent-port", free_port()]
    if head:
        # the dashboard is off, but a minimal one still starts (for usage stats) on --dashboard-port
        flags += ["--ray-client-server-port", free_port(), "--include-dashboard", "false", "--dashboard-port",
                  free_port()]
    return [str(f) for f in flags]


class TaskWatcher(threading.Thread):
    """Sees the Ray workers running `map_chunk` (Ray titles a worker `ray::map_chunk` while it runs one); notes
    their raylets (one per node) and, with `kill`, SIGKILLs the first one it sees mid-task."""

    def __init__(self, kill: bool = False):
        super().__init__(daemon=True)
        self.kill, self.killed, self.raylets = kill, [], set()
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.is_set():
            for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
                if " ".join(proc.info["cmdline"] or []).startswith("ray::map_chunk"):
                    self.raylets.add(proc.info["ppid"])
                    if self.kill and not self.killed:
                        try:
                            os.kill(proc.info["pid"], signal.SIGKILL)
                            self.killed.append(proc.info["pid"])
                        except ProcessLookupError:
                            pass
            time.sleep(0.005)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join()


def prepare_in_process(kind: str, inputs: list[str], out: str, tokenizer: str, **settings) -> None:
    """One preparation called as a library (chunk_bytes is no flag)."""
    import colossal_llama.data.prepare as prepare
    from colossal_llama.config import PretrainDataConfig, SftDataConfig
    from colossal_llama.data.pretrain import prepare_pretrain_dataset
    from colossal_llama.data.sft import prepare_sft_dataset

    config = {"pretrain": PretrainDataConfig, "sft": SftDataConfig}[kind]
    prepare_fn = {"pretrain": prepare_pretrain_dataset, "sft": prepare_sft_dataset}[kind]
    floor, prepare.MIN_CHUNK_BYTES = prepare.MIN_CHUNK_BYTES, 1  # the tests' chunks are below a real run's floor
    try:
        prepare_fn(config(data_input_dirs=inputs, tokenizer_dir=tokenizer, data_output_dirs=out, max_length=256,
                          num_spliced_dataset_bins=3, chunk_bytes=CHUNK_BYTES, **settings))
    finally:
        prepare.MIN_CHUNK_BYTES = floor


def mount_namespaces() -> dict[str, list[int]]:
    """The processes of this PID namespace by mount namespace."""
    found: dict[str, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.setdefault(os.readlink(f"/proc/{pid}/ns/mnt"), []).append(int(pid))
        except OSError:
            pass
    return found


def run_checked(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def reap_orphans() -> None:
    """Wait for every child, adopted ones too (what the init process of a PID namespace has to do)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.05)


class Cluster:
    """Ray nodes of one CPU on 127.0.0.1 sharing a temp folder, each with its own ports."""

    def __init__(self, temp_dir: str):
        from colossal_llama.ports import free_port

        self.head = f"127.0.0.1:{free_port()}"
        self.cli = os.path.join(os.path.dirname(sys.executable), "ray")
        self.common = ["--node-ip-address", "127.0.0.1", "--temp-dir", temp_dir, "--num-cpus", "1",
                       "--object-store-memory", str(80 << 20), "--disable-usage-stats"]

    def start_head(self) -> None:
        run_checked([self.cli, "start", "--head", "--port", self.head.split(":")[1], *self.common, *node_ports(True)])

    def add_node(self, *extra: str, hide: str | None = None) -> None:
        """A node joining the head; `hide`: a folder it sees empty (a tmpfs over it in a mount namespace)."""
        start = [self.cli, "start", "--address", self.head, *self.common, *extra, *node_ports(False)]
        if hide:
            start = ["unshare", "--mount", "sh", "-c", f'mount -t tmpfs tmpfs "{hide}" && exec "$@"', "sh", *start]
        run_checked(start)

    def stop(self) -> None:
        """`ray stop --force`: it kills Ray processes by name, here those of this PID namespace only. This script
        is the namespace's init, so it reaps them (else `ray stop` waits out its grace period on the zombies)."""
        threading.Thread(target=reap_orphans, daemon=True).start()
        subprocess.run([self.cli, "stop", "--force"], capture_output=True)


def pretrain_command(data: str, tokenizer: str, head: str, out: str) -> tuple[int, str]:
    """prepare_pretrain_dataset.py's `main` on the pretrain input, in this process: (exit status, stderr)."""
    import contextlib
    import io

    from colossal_llama.data.pretrain import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["--data_input_dirs", os.path.join(data, "pretrain"), "--tokenizer_dir", tokenizer,
                     "--data_output_dirs", os.path.join(data, out), "--max_length", "256",
                     "--num_spliced_dataset_bins", "3", "--on_error", "skip", "--engine", "ray", "--ray_address", head])
    return code, err.getvalue()


def check_hidden_node(cluster: Cluster, data: str, tokenizer: str) -> dict:
    """(c) a node that cannot see the data folder fails the command, naming it; (d) nothing published, and
    once the node is gone the same command publishes, leaving no staging folder."""
    import ray

    before, known = set(os.listdir(data)), {n["NodeID"] for n in ray.nodes()}
    namespaces = set(mount_namespaces())
    cluster.add_node(hide=data)
    (node,) = {n["NodeID"] for n in ray.nodes() if n["Alive"]} - known
    code, err = pretrain_command(data, tokenizer, cluster.head, "cli")
    facts = {"hidden": {"node_id": node, "rc": code, "stderr": err,
                        "new_entries": sorted(set(os.listdir(data)) - before)}}
    # the hidden node's processes; SIGTERM: its raylet leaves the cluster (GCS has aborted on a SIGKILLed one)
    for namespace, pids in mount_namespaces().items():
        if namespace not in namespaces:
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
    while any(n["NodeID"] == node and n["Alive"] for n in ray.nodes()):
        time.sleep(0.2)
    code, err = pretrain_command(data, tokenizer, cluster.head, "cli")
    facts["rerun"] = {"rc": code, "stderr": err[-3000:], "new_entries": sorted(set(os.listdir(data)) - before)}
    return facts


def run_cluster_checks(work: str, tokenizer: str, facts_path: str) -> None:
    """Start the cluster, run every Ray preparation, stop the cluster; what was seen goes to `facts_path`."""
    # token auth (Ray's default where ~/.ray/auth_token exists) with a token of this cluster's own, given to
    # every node and driver alike (set before Ray is imported: it reads them then); a lost node is seen in 1 s
    # (two missed health checks of 0.5 s), not 15
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_health_check_period_ms="500",
                      RAY_health_check_failure_threshold="2", RAY_health_check_initial_delay_ms="0")
    import ray

    from colossal_llama.data.ray_engine import RayEngine

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    data, facts, started = os.path.join(work, "data"), {}, time.perf_counter()
    cluster = Cluster(os.path.join(work, "r"))

    def lap(name: str) -> None:
        nonlocal started
        facts[f"{name}_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()

    try:
        cluster.start_head()
        cluster.add_node("--resources", '{"second": 1}')
        lap("cluster_start")
        # one driver connection for every run (RayEngine's own ray.init, to the address): the workers stay warm
        # between runs; each run's RayEngine finds it and leaves it open
        RayEngine(cluster.head)
        on_ray = dict(engine="ray", ray_address=cluster.head, num_workers=2)
        # (a) the bundled corpora, many chunks over both nodes
        with TaskWatcher() as watch:
            prepare_in_process("pretrain", [os.path.join(data, "pretrain")], os.path.join(data, "ray_pretrain"),
                               tokenizer, on_error="skip", **on_ray)
            prepare_in_process("sft", [SFT], os.path.join(data, "ray_sft"), tokenizer, llama_version=2, **on_ray)
        lap("same_output")
        # (b) a worker killed mid-task: retried, same bytes
        with TaskWatcher(kill=True) as killer:
            prepare_in_process("pretrain", [os.path.join(data, "fault")], os.path.join(data, "ray_fault"),
                               tokenizer, **on_ray)
        facts.update(killed=killer.killed, nodes_with_tasks=len(watch.raylets | killer.raylets))
        lap("fault")
        facts.update(check_hidden_node(cluster, data, tokenizer))  # (c) and (d)
        lap("hidden_node")
    finally:
        ray.shutdown()
        cluster.stop()
        lap("stop")
        with open(facts_path, "w", encoding="utf-8") as f:
            json.dump(facts, f, indent=1)


# ----------------------------------------------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------------------------------------------

def arrow_files(out: str) -> dict[str, bytes]:
    """The bytes of every file under `out`/arrow, by relative path."""
    files = {}
    for folder, _, names in os.walk(os.path.join(out, "arrow")):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                files[os.path.relpath(f.name, os.path.join(out, "arrow"))] = f.read()
    return files


def what_it_made(out: str, how_it_ran: tuple[str, ...]) -> dict:
    """The manifest without the `config` entries that say how the run ran."""
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    for key in how_it_ran:
        manifest["config"].pop(key)
    return manifest


def assert_same_output(ours: str, reference: str, how_it_ran: tuple[str, ...] = HOW_IT_RAN) -> None:
    """Same arrow files, manifest (but for `how_it_ran`), rejected.jsonl and nothing else."""
    assert arrow_files(ours) == arrow_files(reference)
    assert what_it_made(ours, how_it_ran) == what_it_made(reference, how_it_ran)
    assert sorted(os.listdir(ours)) == sorted(os.listdir(reference))
    if os.path.exists(os.path.join(reference, "rejected.jsonl")):
        assert filecmp.cmp(os.path.join(ours, "rejected.jsonl"), os.path.join(reference, "rejected.jsonl"),
                           shallow=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sp_tokenizer_dir) -> dict:
    """The inputs, the local reference outputs, and the facts of one cluster run."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("no `unshare` or `ip` here: Ray needs a loopback-only network namespace in these tests")
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare is not permitted here: {probe.stderr.strip()}")
    work = str(tmp_path_factory.mktemp("ray"))  # short: Ray's socket paths under it must stay below ~107 chars
    data = os.path.join(work, "data")
    pretrain = shutil.copytree(PRETRAIN, os.path.join(data, "pretrain"))
    with open(os.path.join(pretrain, "zz_bad.jsonl"), "wb") as f:
        f.write(b"\n".join(BAD_LINES) + b"\n")
    fault = os.path.join(data, "fault")
    os.makedirs(fault)
    for name in sorted(os.listdir(PRETRAIN)):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(os.path.join(PRETRAIN, name), "rb") as f:
            text = f.read()
        with open(os.path.join(fault, name.replace(".gz", "")), "wb") as f:
            f.write(text * FAULT_COPIES)
    local = dict(engine="local", num_workers=1)
    prepare_in_process("pretrain", [pretrain], os.path.join(work, "local_pretrain"), sp_tokenizer_dir,
                       on_error="skip", **local)
    prepare_in_process("sft", [SFT], os.path.join(work, "local_sft"), sp_tokenizer_dir, llama_version=2, **local)
    prepare_in_process("pretrain", [fault], os.path.join(work, "local_fault"), sp_tokenizer_dir, **local)

    facts_path = os.path.join(work, "facts.json")
    proc = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable,
                           os.path.abspath(__file__), work, sp_tokenizer_dir, facts_path],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    with open(facts_path, encoding="utf-8") as f:
        return {"work": work, "data": data, **json.load(f)}


def test_ray_writes_the_bytes_local_writes(cluster):
    """(a) pretraining (with bad lines skipped) and SFT data: arrow files, rejected.jsonl and manifest as local."""
    work, data = cluster["work"], cluster["data"]
    assert cluster["nodes_with_tasks"] == 2  # both nodes ran map tasks (here or in the fault run)
    assert_same_output(os.path.join(data, "ray_pretrain"), os.path.join(work, "local_pretrain"))
    assert os.path.getsize(os.path.join(work, "local_pretrain", "rejected.jsonl")) > 0
    assert_same_output(os.path.join(data, "ray_sft"), os.path.join(work, "local_sft"))


def test_killed_worker_is_retried(cluster):
    """(b) a Ray worker SIGKILLed mid-task: the task reruns and the output is still the local one."""
    assert len(cluster["killed"]) == 1
    assert_same_output(os.path.join(cluster["data"], "ray_fault"), os.path.join(cluster["work"], "local_fault"))


def test_node_that_cannot_see_the_data_is_named(cluster):
    """(c) a node outside the shared file system: exit 2, the node and the path named."""
    hidden, data = cluster["hidden"], cluster["data"]
    assert hidden["rc"] == 2, hidden["stderr"][-3000:]
    error = hidden["stderr"].strip().splitlines()[-1]
    assert error.startswith(f"error: Ray node 127.0.0.1 (host {socket.gethostname()}, id {hidden['node_id'][:8]}) "
                            f"cannot see {os.path.join(data, 'pretrain')}")
    assert "a shared file system" in error


def test_nothing_published_after_the_failure(cluster):
    """(d) the failed run published nothing and left no staging folder; the rerun without the node publishes."""
    assert cluster["hidden"]["new_entries"] == []
    assert cluster["rerun"]["rc"] == 0, cluster["rerun"]["stderr"]
    assert cluster["rerun"]["new_entries"] == ["cli"]  # no `cli.tmp-*` beside it
    # the command line's chunks are the default size: chunking changes no byte either
    assert_same_output(os.path.join(cluster["data"], "cli"), os.path.join(cluster["work"], "local_pretrain"),
                       HOW_IT_RAN + ("chunk_bytes",))


def test_ray_address_where_nothing_answers(tmp_path, sp_tokenizer_dir, capsys):
    """`--ray_address` of no cluster: one line naming it, at once (ray.init would retry it for ever), nothing
    written."""
    from colossal_llama.data.pretrain import main
    from colossal_llama.ports import free_port

    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    assert main(["--data_input_dirs", PRETRAIN, "--tokenizer_dir", sp_tokenizer_dir, "--data_output_dirs", str(out),
                 "--engine", "ray", "--ray_address", address]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: --ray_address {address}: no Ray cluster "
                                                               "answers there")
    assert os.listdir(tmp_path) == []
    for malformed in ("headnode", "http://127.0.0.1:5"):  # ray.init would raise a multi-line ValueError
        assert main(["--data_input_dirs", PRETRAIN, "--tokenizer_dir", sp_tokenizer_dir, "--data_output_dirs",
                     str(out), "--engine", "ray", "--ray_address", malformed]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"error: --ray_address {malformed}: give `auto`, the head node's HOST:PORT (`ray start --head --port "
            "PORT`) or ray://HOST:PORT")
    assert os.listdir(tmp_path) == []


def test_engine_settings_change_no_byte(tmp_path, monkeypatch, sp_tokenizer_dir):
    """The rows' identity (in every shard) and the manifest's figures ignore --engine and --ray_address: a run
    told `--engine ray --ray_address HOST:PORT` (its tasks run locally here, no Ray) writes the local bytes."""
    import colossal_llama.data.prepare as prepare
    from colossal_llama.data.engine import LocalEngine

    prepare_in_process("pretrain", [PRETRAIN], str(tmp_path / "local"), sp_tokenizer_dir, num_workers=1)
    monkeypatch.setattr(prepare, "open_engine", lambda name, workers, address: LocalEngine(workers))
    prepare_in_process("pretrain", [PRETRAIN], str(tmp_path / "ray"), sp_tokenizer_dir, num_workers=1,
                       engine="ray", ray_address="10.9.8.7:6379")
    assert_same_output(str(tmp_path / "ray"), str(tmp_path / "local"))
    with open(tmp_path / "ray" / "manifest.json", encoding="utf-8") as f:
        assert json.load(f)["config"]["engine"] == "ray"  # the manifest still says how it ran


def test_readme_cluster_command_parses():
    """The README's `--engine ray` command line is one the parser takes, with the settings it says."""
    import re
    import shlex

    from colossal_llama.config import parse_pretrain_data_args

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Preparing a trillion tokens")[1].split("\n## ")[0]
    (command,) = re.findall(r"^    (colossal-llama-prepare-pretrain .*)$", section, re.M)
    config = parse_pretrain_data_args(shlex.split(command)[1:])
    assert (config.engine, config.ray_address, config.num_workers) == ("ray", "HEAD:6379", 512)


def test_recipe_takes_the_engine_settings(tmp_path):
    """A recipe's `prepare:` takes engine and ray_address (DataConfig fields) and checks their values."""
    from test_stages import base_recipe, write_recipe

    from colossal_llama.errors import RecipeError
    from colossal_llama.stages.recipe import load_recipe

    recipe = base_recipe(str(tmp_path))
    recipe["prepare"].update(engine="ray", ray_address="10.9.8.7:6379")
    loaded = load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))
    assert {s.prepare["engine"] for s in loaded.sources.values()} == {"ray"}
    recipe["prepare"]["engine"] = "spark"
    with pytest.raises(RecipeError, match="engine"):
        load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))


if __name__ == "__main__":
    run_cluster_checks(*sys.argv[1:4])
