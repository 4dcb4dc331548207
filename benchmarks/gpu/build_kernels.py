"""Prebuilt colossalai kernels for the GPU check kit: cpu_adam_x86 and fused_optim_cuda (HybridAdam's two).

colossalai 0.5.0 (our wheel: no compiled kernels) loads a kernel by importing `colossalai._C.<name>` and
builds it just in time only when that import fails (about 2 minutes of the check for these two). This
script builds them once, here, with the GPU image's look-alike (/tmp/h200sim: Python 3.12, torch
2.11.0+cu130) and nvcc 13, so that check.sh can copy them into colossalai/_C/ on the GPU machine.

Differences from colossalai's own JIT build (its flag methods are overridden, nothing else):
- cpu_adam_x86: -march=x86-64-v3 instead of -march=native (AVX2, FMA, F16C: any x86 server since
  Haswell/Zen; colossalai's source takes its AVX2 path on __AVX2__: it never sees its own __AVX512__
  macro, which no compiler defines) and no -g (the .so is stripped of debug info anyway);
- fused_optim_cuda: -gencode for sm_90 only (the H200), where colossalai asks the GPU it runs on
  (torch.cuda.get_device_capability) for every arch of torch's list up to it (75, 80, 86, 90).

    python build_kernels.py build OUT_DIR [--force]   # with colossalai importable (PYTHONPATH) and nvcc 13
    python build_kernels.py test OUT_DIR              # load the built .so files, one CPU Adam step vs AdamW
    python build_kernels.py install KERNEL_DIR DEST   # check.sh: copy those that fit this python/torch/GPU

`build` writes OUT_DIR/{cpu_adam_x86,fused_optim_cuda}.so and manifest.json (what they were built for,
and a key: sources, flags, torch, nvcc; an unchanged key skips the build), then runs `test`.
Exit status 3 from `build`: the tools are missing (no nvcc of torch's CUDA major, no g++); nothing built.
`install` never fails for a kernel: one that does not fit or does not load is left out (JIT fallback).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

CPU_MARCH = "x86-64-v3"
CUDA_ARCH = "90"  # compute capability 9.0: H100/H200
KERNELS = ("cpu_adam_x86", "fused_optim_cuda")


def say(msg: str) -> None:
    print(f"[build_kernels] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ tools
def find_cuda_home() -> str | None:
    """CUDA_HOME as check.sh finds it: $CUDA_HOME, /usr/local/cuda, or two levels above the real nvcc."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    cands += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in cands:
        if c and os.access(os.path.join(c, "bin", "nvcc"), os.X_OK):
            return c
    return None


def nvcc_release(cuda_home: str) -> str:
    out = subprocess.check_output([os.path.join(cuda_home, "bin", "nvcc"), "--version"], text=True)
    words = out.split()
    return words[words.index("release") + 1].rstrip(",")


def pip_cuda_include() -> str | None:
    """The include folder of the nvidia-*-cu13 pip packages beside torch (cuBLAS headers live there,
    the CUDA toolkit of an image may lack them)."""
    import torch

    major = torch.version.cuda.split(".")[0]
    site = os.path.dirname(os.path.dirname(torch.__file__))
    inc = os.path.join(site, "nvidia", f"cu{major}", "include")
    return inc if os.path.isdir(inc) else None


# ------------------------------------------------------------------------------------------ build
def extensions():
    """colossalai's two extensions with their flag methods overridden (see the module docstring)."""
    from unittest import mock

    from colossalai.kernel.extensions.pybind.cpu_adam.cpu_adam_x86 import CpuAdamX86Extension
    from colossalai.kernel.extensions.pybind.optimizer import fused_optimizer_cuda
    from colossalai.kernel.extensions.pybind.optimizer.fused_optimizer_cuda import FusedOptimizerCudaExtension

    class CpuAdam(CpuAdamX86Extension):
        def cxx_flags(self):
            flags = super().cxx_flags()
            assert "-march=native" in flags, f"colossalai's cpu_adam flags changed: {flags}"
            return [f"-march={CPU_MARCH}" if f == "-march=native" else f for f in flags if f != "-g"]

    class FusedOptim(FusedOptimizerCudaExtension):
        def nvcc_flags(self):
            # colossalai's flags with its arch list (from the GPU it runs on) replaced by ours
            arch = ["-gencode", f"arch=compute_{CUDA_ARCH},code=sm_{CUDA_ARCH}"]
            with mock.patch.object(fused_optimizer_cuda, "get_cuda_cc_flag", lambda: list(arch)):
                flags = super().nvcc_flags()
            assert flags.count("-gencode") == 1, flags
            return flags

    return [CpuAdam(), FusedOptim()]


def build(out: str, force: bool) -> int:
    cuda_home = find_cuda_home()
    if cuda_home is None:
        say("no nvcc found (CUDA_HOME, /usr/local/cuda, PATH): cannot build")
        return 3
    os.environ["CUDA_HOME"] = cuda_home  # before torch reads it
    import torch
    import torch.utils.cpp_extension as cpp

    import colossalai

    release = nvcc_release(cuda_home)
    if release.split(".")[0] != torch.version.cuda.split(".")[0]:
        say(f"nvcc {release} at {cuda_home} is not of torch's CUDA {torch.version.cuda}: cannot build")
        return 3
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        say(f"no C++ compiler ({cxx}): cannot build")
        return 3
    cxx_version = subprocess.check_output([cxx, "--version"], text=True).splitlines()[0]

    exts = extensions()
    extra_inc = []
    if not os.path.exists(os.path.join(cuda_home, "include", "cublas_v2.h")):
        inc = pip_cuda_include()
        if inc:
            extra_inc.append(inc)  # after CUDA_HOME/include: only what the toolkit lacks comes from there
    plan = {}
    for ext in exts:
        plan[ext.name] = dict(
            sources=ext.strip_empty_entries(ext.sources_files()),
            include_dirs=ext.strip_empty_entries(ext.include_dirs()) + extra_inc,
            cxx_flags=ext.strip_empty_entries(ext.cxx_flags()),
            nvcc_flags=ext.strip_empty_entries(ext.nvcc_flags()) if ext.name == "fused_optim_cuda" else [],
        )

    h = hashlib.sha256()
    for name, p in sorted(plan.items()):
        h.update(name.encode())
        h.update(json.dumps([p["cxx_flags"], p["nvcc_flags"]]).encode())
        files = set(p["sources"])
        for d in p["include_dirs"][:1]:  # colossalai's csrc: every header the sources may include
            files |= {f for f in glob.glob(os.path.join(d, "**", "*"), recursive=True) if os.path.isfile(f)}
        for f in sorted(files):
            h.update(os.path.relpath(f, os.path.dirname(colossalai.__file__)).encode())
            with open(f, "rb") as fh:
                h.update(fh.read())
    with open(os.path.abspath(__file__), "rb") as fh:
        h.update(fh.read())
    h.update(f"{torch.__version__} {release} {cxx_version} {sys.version_info[:2]}".encode())
    key = h.hexdigest()

    manifest_path = os.path.join(out, "manifest.json")
    if not force and os.path.exists(manifest_path):
        try:
            old = json.load(open(manifest_path))
        except ValueError:
            old = {}
        if old.get("key") == key and all(os.path.exists(os.path.join(out, f"{k}.so")) for k in KERNELS):
            say(f"kernels up to date in {out} (key {key[:12]})")
            return test(out)

    os.makedirs(out, exist_ok=True)
    for f in glob.glob(os.path.join(out, "*.so")) + [manifest_path]:
        if os.path.exists(f):
            os.remove(f)
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    manifest = dict(
        key=key,
        colossalai=colossalai.__version__,
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cxx11_abi=bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        python=f"{sys.version_info[0]}.{sys.version_info[1]}",
        machine=platform.machine(),
        nvcc=release,
        cxx=cxx_version,
        kernels={},
    )
    with tempfile.TemporaryDirectory(prefix="colossal-kernels-") as work:
        for ext in exts:
            p = plan[ext.name]
            say(f"{ext.name}: building ({len(p['sources'])} sources; cxx {' '.join(p['cxx_flags'])}"
                + (f"; nvcc {' '.join(p['nvcc_flags'])}" if p["nvcc_flags"] else "") + ")")
            start = time.time()
            bdir = os.path.join(work, ext.name)
            os.makedirs(bdir)
            cpp.load(
                name=ext.name,
                sources=p["sources"],
                extra_include_paths=p["include_dirs"],
                extra_cflags=p["cxx_flags"],
                extra_cuda_cflags=p["nvcc_flags"] or None,
                extra_ldflags=[],
                build_directory=bdir,
                verbose=False,
            )
            built = os.path.join(bdir, f"{ext.name}.so")
            dest = os.path.join(out, f"{ext.name}.so")
            # debug info only: the symbols, and the cubins' line info (-lineinfo), stay
            subprocess.check_call(["strip", "--strip-debug", "-o", dest, built])
            took = time.time() - start
            manifest["kernels"][ext.name] = dict(
                cxx_flags=p["cxx_flags"],
                nvcc_flags=p["nvcc_flags"],
                cuda_arch=f"{CUDA_ARCH[:-1]}.{CUDA_ARCH[-1]}" if p["nvcc_flags"] else None,
                bytes=os.path.getsize(dest),
                build_s=round(took, 1),
            )
            say(f"{ext.name}: {os.path.getsize(dest) / 2**20:.2f} MiB (stripped from "
                f"{os.path.getsize(built) / 2**20:.2f}), {took:.0f} s")
    # the self-test first: a manifest says the kernels are good
    status = test(out)
    if status == 0:
        with open(manifest_path, "w") as fh:
            json.dump(manifest, fh, indent=1)
    return status


# ------------------------------------------------------------------------------------------ test
def load_so(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test(out: str) -> int:
    """In a fresh process: both load; CPUAdamOptimizer steps match torch.optim.AdamW (Adam: too)."""
    code = r"""
import sys, torch
sys.path.insert(0, sys.argv[2])
from build_kernels import load_so
out = sys.argv[1]
fused = load_so(out + "/fused_optim_cuda.so", "fused_optim_cuda")
assert hasattr(fused, "multi_tensor_adam"), dir(fused)
cpu = load_so(out + "/cpu_adam_x86.so", "cpu_adam_x86")
torch.manual_seed(0)
worst = 0.0
for adamw in (True, False):
    lr, betas, eps, wd = 1e-3, (0.9, 0.95), 1e-8, 0.1
    # sizes through every path: 8, 4 and 1 SIMD vectors at a time, and the scalar tail
    sizes = [1, 7, 8 * 8 * 8 + 8 * 4 + 8 + 3, 100_003]
    ps = [torch.randn(n) for n in sizes]
    ref = [p.clone().requires_grad_() for p in ps]
    opt = (torch.optim.AdamW if adamw else torch.optim.Adam)(ref, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    op = cpu.CPUAdamOptimizer(lr, betas[0], betas[1], eps, wd, adamw)
    states = [(torch.zeros_like(p), torch.zeros_like(p)) for p in ps]
    for step in range(1, 4):
        grads = [torch.randn_like(p) for p in ps]
        for p, g, (m, v) in zip(ps, grads, states):
            op.step(step, lr, betas[0], betas[1], eps, wd, True, p, g, m, v, -1.0)
        for r, g in zip(ref, grads):
            r.grad = g.clone()
        opt.step()
    for p, r in zip(ps, ref):
        d = (p - r.detach()).abs().max().item()
        worst = max(worst, d)
        assert torch.allclose(p, r.detach(), rtol=1e-5, atol=1e-6), (adamw, p.numel(), d)
print(f"[build_kernels] test: both kernels load; CPU Adam/AdamW, 3 steps, 4 sizes: max |diff| vs torch {worst:.2e}")
"""
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-B", "-c", code, os.path.abspath(out), here])
    if r.returncode != 0:
        say(f"test FAILED (exit {r.returncode})")
    return r.returncode


# ------------------------------------------------------------------------------------------ install
def install(kdir: str, dest: str) -> int:
    """Copies into DEST (colossalai/_C) the kernels built for this python, torch and GPU that load here.
    Prints one line per kernel; returns 0 whatever happens (the others are built just in time)."""
    try:
        manifest = json.load(open(os.path.join(kdir, "manifest.json")))
    except (OSError, ValueError) as e:
        say(f"no usable manifest in {kdir} ({e}): none installed, colossalai builds them just in time")
        return 0
    import torch

    try:
        import importlib.metadata as md

        colossalai_version = md.version("colossalai")
    except Exception:
        colossalai_version = None
    here = dict(
        colossalai=colossalai_version,
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cxx11_abi=bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        python=f"{sys.version_info[0]}.{sys.version_info[1]}",
        machine=platform.machine(),
    )
    diff = {k: (manifest.get(k), v) for k, v in here.items() if manifest.get(k) != v}
    if diff:
        say("built for another environment "
            + ", ".join(f"{k}: {a} here {b}" for k, (a, b) in diff.items())
            + ": none installed, colossalai builds them just in time")
        return 0
    cap = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        cap = f"{major}.{minor}"
    os.makedirs(dest, exist_ok=True)
    for name, info in manifest.get("kernels", {}).items():
        src = os.path.join(kdir, f"{name}.so")
        want = info.get("cuda_arch")
        sm = lambda c: "sm_" + c.replace(".", "")
        if want and cap and cap != want:
            say(f"{name}: built for {sm(want)} and this GPU is {sm(cap)}: not installed (built just in time)")
            continue
        try:
            load_so(src, name)
        except Exception as e:
            say(f"{name}: does not load here ({type(e).__name__}: {e}): not installed (built just in time)")
            continue
        shutil.copy2(src, os.path.join(dest, f"{name}.so"))
        say(f"{name}: prebuilt installed ({os.path.getsize(src) / 2**20:.1f} MiB"
            + (f", {sm(want)}" if want else f", {' '.join(f for f in info.get('cxx_flags', []) if f.startswith('-march'))}")
            + ")")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("--force", action="store_true", help="rebuild even if the manifest's key matches")
    t = sub.add_parser("test")
    t.add_argument("out")
    i = sub.add_parser("install")
    i.add_argument("kdir")
    i.add_argument("dest")
    a = p.parse_args(argv)
    if a.cmd == "build":
        return build(a.out, a.force)
    if a.cmd == "test":
        return test(a.out)
    try:
        return install(a.kdir, a.dest)
    except Exception as e:  # never fail the check because of kernels
        say(f"install failed ({type(e).__name__}: {e}): colossalai builds the kernels just in time")
        return 0


if __name__ == "__main__":
    sys.exit(main())
