#!/usr/bin/env bash
# The GPU check in one command, on the lent GPU machine (or, with --rehearse, on a CPU rehearsal env):
#
#   bash benchmarks/gpu/check.sh OUT_DIR [--rehearse] [more arguments for check.py]
#
# Installs the kit's wheels (.gpukit/wheels, made by benchmarks/gpu/make_kit.sh) into a fresh temporary
# folder with `pip install --target`, puts it first on PYTHONPATH (so its transformers 4.51.3,
# huggingface-hub 0.x, ... shadow the image's own), then the repository and benchmarks/gpu/stubs
# (the bitsandbytes import stub), and runs benchmarks/gpu/check.py --kit .gpukit --out OUT_DIR.
# Kernels: copies the kit's prebuilt colossalai kernels (.gpukit/kernels: cpu_adam_x86, fused_optim_cuda)
# into the installed colossalai/_C/ where they fit this python, torch and GPU and load (build_kernels.py
# install); exports CUDA_HOME (and, where the toolkit lacks cuBLAS's headers, CPATH/CUDA_INC_PATH to the
# pip nvidia/cuXX/include) so that colossalai's checks pass and a kernel left out is built just in time.
# Never fails because of kernels. Exits with check.py's status.
#
#   PYTHON    the interpreter (default python3; /tmp/h200sim/bin/python for the rehearsal)
#   CHECK_PY  the script to run instead of benchmarks/gpu/check.py (same arguments)
#   KIT       the kit folder (default .gpukit in the repository)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KIT=${KIT:-$REPO/.gpukit}
PYTHON=${PYTHON:-python3}
CHECK_PY=${CHECK_PY:-$REPO/benchmarks/gpu/check.py}

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
OUT=$1
shift

say() { printf '[check.sh] %s\n' "$*"; }

if ! ls "$KIT"/wheels/*.whl >/dev/null 2>&1; then
    say "no wheels in $KIT/wheels: build the kit first with  bash benchmarks/gpu/make_kit.sh  (then carry .gpukit)" >&2
    exit 2
fi
[ -f "$CHECK_PY" ] || { say "no $CHECK_PY" >&2; exit 2; }

SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpukit-site.XXXXXX")
JIT_HOME=
trap 'rm -rf "$SITE" ${JIT_HOME:+"$JIT_HOME"}' EXIT

say "python: $(command -v "$PYTHON") ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
say "installing $(ls "$KIT"/wheels/*.whl | wc -l) wheels from $KIT/wheels into $SITE"
start=$(date +%s.%N)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$KIT"/wheels/*.whl
say "install took $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

export PYTHONPATH="$SITE:$REPO:$HERE/stubs${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# ------------------------------------------------------------------------- colossalai's kernels
# colossalai checks CUDA_HOME/bin/nvcc (its CUDA major must be torch's) before loading a CUDA kernel, even
# a prebuilt one, and builds a kernel just in time (in ~/.cache/colossalai) when colossalai/_C lacks it.
has_toolkit() { [ -x "$1/bin/nvcc" ] && [ -f "$1/include/cuda_runtime_api.h" ]; }
nvcc_major() { "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p'; }
torch_major=$("$PYTHON" -c 'import torch; print((torch.version.cuda or "").split(".")[0])' 2>/dev/null || true)
cuda_home=
nvcc_path=$(command -v nvcc || true)
# the first toolkit whose nvcc has torch's CUDA major (colossalai refuses another), else the first one
for cand in "${CUDA_HOME:-}" /usr/local/cuda \
        ${nvcc_path:+"$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")"} /usr/local/cuda-*; do
    if [ -n "$cand" ] && has_toolkit "$cand"; then
        [ -z "$cuda_home" ] && cuda_home=$cand
        if [ -n "$torch_major" ] && [ "$(nvcc_major "$cand")" = "$torch_major" ]; then cuda_home=$cand; break; fi
    fi
done
if [ -n "$cuda_home" ]; then
    export CUDA_HOME=$cuda_home
    nvcc_release=$("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p' || true)
    say "kernels: CUDA_HOME=$CUDA_HOME (nvcc ${nvcc_release:-?})"
    if [ ! -f "$CUDA_HOME/include/cublas_v2.h" ]; then
        # cuBLAS's headers (cpu_adam.h includes cublas_v2.h) from the pip nvidia package beside torch
        pip_inc=$("$PYTHON" -c 'import importlib.util as u, os, sys
s = u.find_spec("torch")
d = os.path.join(os.path.dirname(os.path.dirname(s.origin)), "nvidia", "cu" + sys.argv[1], "include") if s else ""
print(d if os.path.isfile(os.path.join(d, "cublas_v2.h")) else "")' "${nvcc_release%%.*}" 2>/dev/null || true)
        if [ -n "$pip_inc" ]; then
            export CPATH="$pip_inc${CPATH:+:$CPATH}" CUDA_INC_PATH="$pip_inc"
            say "kernels: CPATH, CUDA_INC_PATH=$pip_inc (cuBLAS headers; $CUDA_HOME/include lacks them)"
        else
            say "kernels: no cuBLAS headers found (a just-in-time build of cpu_adam_x86 may fail)"
        fi
    fi
else
    say "kernels: no CUDA toolkit found (no nvcc with include/ in \$CUDA_HOME, /usr/local/cuda, PATH): colossalai's CUDA kernels will not load"
fi
if [ -z "${HOME:-}" ] || [ ! -w "$HOME" ]; then
    JIT_HOME=$(mktemp -d "${TMPDIR:-/tmp}/gpukit-home.XXXXXX")
    say "kernels: HOME (${HOME:-unset}) not writable: HOME=$JIT_HOME for colossalai's build cache"
    export HOME=$JIT_HOME
fi
if [ -f "$KIT/kernels/manifest.json" ]; then
    start=$(date +%s.%N)
    "$PYTHON" -B "$HERE/build_kernels.py" install "$KIT/kernels" "$SITE/colossalai/_C" 2>&1 \
        | sed 's/^\[build_kernels\] /[check.sh] kernels: /' \
        || say "kernels: the install step failed: colossalai builds them just in time"
    say "kernels: install step took $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
else
    say "kernels: none prebuilt in $KIT/kernels: colossalai builds cpu_adam_x86 and fused_optim_cuda just in time (about 2 min)"
fi
mkdir -p "$OUT"
say "running $CHECK_PY --kit $KIT --out $OUT $*"
set +e
"$PYTHON" "$CHECK_PY" --kit "$KIT" --out "$OUT" "$@"
status=$?
set -e
say "check.py exited with $status"
exit "$status"
