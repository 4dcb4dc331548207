"""Launching train.py with 2 processes (gloo on CPU): torchrun, `colossalai run`, and 2 nodes over ssh.

Two processes with --batch_size 2 see the same 4 rows per step as one
process with --batch_size 4, so the token-weighted losses agree (up to the
order of float sums), and a checkpoint of the 2-process run resumes in one
process. The 2-node test starts an sshd on a loopback address and lets
`colossalai run --hostfile` reach "node" 127.0.0.2 through it, as it would a
second machine.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from colossal_llama.ports import free_port
from helpers import REPO, read_metrics, run_train, train_args

BIN = os.path.dirname(sys.executable)
STEPS = ["--max_steps", "4", "--save_interval", "2"]


def launch_env(**extra) -> dict:
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], GLOO_SOCKET_IFNAME="lo",
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    return env


def launched(command: list[str], out: str, env=None, timeout=300) -> list[dict]:
    result = subprocess.run(command, cwd=REPO, env=env or launch_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return read_metrics(os.path.join(out, "tb"))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_model_dir, pretrain_parts):
    out = str(tmp_path_factory.mktemp("torchrun"))
    command = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
               "train.py", *train_args(tiny_model_dir, pretrain_parts, out, "--batch_size", "2", *STEPS)]
    return out, launched(command, out)


def close(a: list[dict], b: list[dict]) -> None:
    assert [m["step"] for m in a] == [m["step"] for m in b]
    for x, y in zip(a, b):
        assert x["train/label_tokens_seen"] == y["train/label_tokens_seen"]
        assert x["train/loss"] == pytest.approx(y["train/loss"], rel=1e-5)
        assert x["train/lr"] == pytest.approx(y["train/lr"], rel=1e-12)


def test_torchrun_two_processes_equal_one(two_process_run, tiny_model_dir, pretrain_parts, tmp_path):
    out, metrics = two_process_run
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    code, single = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--batch_size", "4", *STEPS)
    assert code == 0
    close(metrics, single)
    assert os.path.isfile(os.path.join(out, "ck", "final", "model.safetensors.index.json"))


def test_resume_with_another_world_size(two_process_run, tiny_model_dir, pretrain_parts, tmp_path):
    out, metrics = two_process_run
    code, resumed = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--batch_size", "4", *STEPS,
                              "--load_checkpoint", os.path.join(out, "ck", "step-00000002"))
    assert code == 0
    close(metrics[2:], resumed)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dying with the parent is prctl(PR_SET_PDEATHSIG)")
def test_a_worker_dies_with_its_torchrun(tmp_path):
    """torchrun starts each worker in a session of its own; train.py (die_with_launcher first) ends with torchrun."""
    script = tmp_path / "worker.py"
    script.write_text("import os, time\nfrom colossal_llama.lifeline import die_with_launcher\n\ndie_with_launcher()\n"
                      "print(os.getpid(), flush=True)\ntime.sleep(120)\n")
    agent = subprocess.Popen([os.path.join(BIN, "torchrun"), "--nproc_per_node", "1", "--master_port", str(free_port()),
                              str(script)], cwd=REPO, env=launch_env(), stdout=subprocess.PIPE, text=True)
    worker = int(agent.stdout.readline())
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    deadline = time.time() + 10
    while alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its torchrun")


def start_sshd(folder: str, address: str, port: int) -> subprocess.Popen:
    """An sshd on address:port that lets this user in with a key made here (HOME=folder)."""
    ssh = os.path.join(folder, ".ssh")
    os.makedirs(ssh, mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(ssh, "id_ed25519")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(folder, "host_key")], check=True)
    shutil.copy(os.path.join(ssh, "id_ed25519.pub"), os.path.join(ssh, "authorized_keys"))
    config = os.path.join(folder, "sshd_config")
    with open(config, "w") as f:
        f.write(f"ListenAddress {address}\nPort {port}\nHostKey {folder}/host_key\nPidFile {folder}/sshd.pid\n"
                f"AuthorizedKeysFile {ssh}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n"
                "PasswordAuthentication no\nAcceptEnv *\n")
    os.makedirs("/run/sshd", exist_ok=True)
    process = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", config],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex((address, port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"sshd did not start: {process.stderr.read().decode()[-2000:]}")


SSHD = shutil.which("sshd") or (os.path.exists("/usr/sbin/sshd") and "/usr/sbin/sshd")


@pytest.mark.skipif(not SSHD, reason="openssh-server is not installed (.ci/run installs it with apt-get; "
                    "it could not be installed on this machine)")
def test_two_nodes_through_a_hostfile(two_process_run, tiny_model_dir, pretrain_parts, tmp_path):
    home, port = str(tmp_path / "home"), free_port()
    os.makedirs(home)
    sshd = start_sshd(home, "127.0.0.2", port)
    try:
        hostfile = tmp_path / "hostfile"
        hostfile.write_text("127.0.0.1\n127.0.0.2\n")
        out = str(tmp_path / "run")
        command = [os.path.join(BIN, "colossalai"), "run", "--hostfile", str(hostfile), "--nproc_per_node", "1",
                   "--ssh-port", str(port), "--master_port", str(free_port()),
                   "train.py", *train_args(tiny_model_dir, pretrain_parts, out, "--batch_size", "2", *STEPS)]
        close(launched(command, out, env=launch_env(HOME=home)), two_process_run[1])
    finally:
        sshd.kill()
    # node 127.0.0.2 was reached through ssh, not run as a local process
    assert "Accepted publickey" in sshd.stderr.read().decode()
