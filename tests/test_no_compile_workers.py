"""train.py on CPU starts no torch._inductor compile workers.

Importing colossalai.booster imports bitsandbytes, whose ops call torch.compile at import time;
that imports torch._inductor.async_compile, which warms a pool of compile-worker processes
(`torch/_inductor/compile_worker/__main__.py --workers=N`) whenever triton is installed, GPU or not.
The run is a fresh interpreter: in the test process torch and colossalai may already be imported.
"""

import json
import os
import subprocess
import sys

from helpers import train_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# main() in a fresh interpreter, then what async_compile created and which child processes are alive
# (a warmed pool lives until the interpreter exits)
CHILD = """
import json, sys
import psutil
from colossal_llama.training.cli import main
code = main(sys.argv[1:])
ac = sys.modules.get("torch._inductor.async_compile")
children = []
for c in psutil.Process().children(recursive=True):
    try:
        children.append(" ".join(c.cmdline()))
    except psutil.Error:
        pass
print(json.dumps({"code": code, "pools": len(ac._pool_set) if ac else 0, "children": children}))
"""


def test_cpu_training_starts_no_compile_workers(tiny_model_dir, pretrain_parts, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_COMPILE_THREADS", "TORCH_WARM_POOL")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU run even on a GPU machine
    args = train_args(tiny_model_dir, pretrain_parts, str(tmp_path), "--max_steps", "1", "--save_interval", "0")
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert result["pools"] == 0, "torch._inductor.async_compile created a compile-worker pool"
    assert not [c for c in result["children"] if "compile_worker" in c], result["children"]
