#!/usr/bin/env bash
# Builds the GPU check kit in .gpukit/ (git-ignored; carried to the lent GPU machine):
#   .gpukit/wheels/   the project's pinned dependencies that the GPU image lacks or has in other versions
#                     (colossalai 0.5.0, transformers 4.51.3, huggingface-hub 0.x, datasets, peft, pydantic, ...),
#                     versions taken from the project's .venv, where the test suite passes with them
#   .gpukit/data/     tokenizer/ (LLaMA-2, HF folder), pretrain-4096/ and pretrain-256/ (prepared real data)
#   .gpukit/kernels/  colossalai's cpu_adam_x86 and fused_optim_cuda (sm_90) prebuilt with the look-alike's
#                     torch and nvcc 13 (build_kernels.py); skipped (JIT on the GPU machine) without them
# Needs ../shared/realdata (the project's real-data folder beside the checkout) and the package index.
# Idempotent: downloads only what is missing, prunes stale wheels, rebuilds the data.
#
#   bash benchmarks/gpu/make_kit.sh          # the kit
#   bash benchmarks/gpu/make_kit.sh --sim    # the kit, and /tmp/h200sim: a Python 3.12 venv mirroring the
#                                            # GPU image (torch 2.11.0, transformers 5.x, hub 1.x, no pydantic)
#   bash benchmarks/gpu/make_kit.sh --no-kernels   # no kernels/ (colossalai builds them on the GPU, ~2 min)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KIT=$REPO/.gpukit
REALDATA=${REALDATA:-$REPO/../shared/realdata}
SIM_DIR=${SIM_DIR:-/tmp/h200sim}
MAX_MIB=${MAX_MIB:-58}   # the device tool carries 64 MiB with the working tree
MIN_ROWS_4096=200
VENV=$REPO/.venv
PY=$VENV/bin/python

SIM=0
KERNELS=1
for arg in "$@"; do
    case $arg in
        --sim) SIM=1 ;;
        --no-kernels) KERNELS=0 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "make_kit.sh: unknown argument $arg (use --sim, --no-kernels or --help)" >&2; exit 2 ;;
    esac
done

# pip, quieter: this machine's extra local indexes make pip warn about every name they lack
pip_() {  # pip_ PYTHON ARGS...
    local py=$1; shift
    "$py" -m pip "$@" 2>&1 | sed '/^WARNING: Location .* is ignored: it is neither a file nor a directory/d'
}
say() { printf '[make_kit] %s\n' "$*"; }
die() { printf '[make_kit] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------- inputs
PRETRAIN_FILES=(docs_en.jsonl docs_zh.jsonl qa_zh.jsonl)
[ -f "$REALDATA/tokenizers/llama2-tokenizer.model" ] \
    || die "real data not found at $REALDATA (need tokenizers/llama2-tokenizer.model and pretrain/*.jsonl); the kit is built from the shared/ folder beside the checkout (set REALDATA=... to point elsewhere)"
for f in "${PRETRAIN_FILES[@]}"; do
    [ -f "$REALDATA/pretrain/$f" ] || die "missing $REALDATA/pretrain/$f"
done

if [ ! -x "$PY" ]; then
    say ".venv missing: make install"
    make -C "$REPO" install
fi

# ---------------------------------------------------------------------------------------------- wheels
# Distributions shipped in the kit; each at the version installed in .venv.
# bitsandbytes is NOT shipped (105 MB): colossalai imports it at import time of its GaLore optimizer,
# and benchmarks/gpu/stubs/bitsandbytes (on PYTHONPATH on the check machine only) stands in for it.
# pandas, python-dateutil (datasets imports pandas), requests, urllib3, charset-normalizer (huggingface-hub
# 0.x imports requests) and accelerate (peft) are not in the GPU image as far as we know: found by importing
# in the look-alike (--sim). fabric/paramiko are not shipped: only `colossalai run` imports them.
DOWNLOAD=(
    transformers tokenizers huggingface-hub
    datasets dill multiprocess pandas python-dateutil requests urllib3 charset-normalizer
    peft accelerate
    pydantic pydantic-core annotated-types typing-inspection
    galore-torch rpyc plumbum
)
BUILD=(contexttimer colossalai)   # sdists only: wheels built here

unset BUILD_EXT
version_of() {  # version_of DIST -> version in .venv (fails if absent)
    "$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" \
        || die "$1 is not installed in $VENV; run make install"
}

mkdir -p "$KIT/wheels" "$KIT/data"
WANT=()
PINS=()
for name in "${DOWNLOAD[@]}"; do
    v=$(version_of "$name"); PINS+=("$name==$v"); WANT+=("$name==$v")
done
for name in "${BUILD[@]}"; do
    v=$(version_of "$name"); WANT+=("$name==$v")
done

say "downloading ${#PINS[@]} wheels (cp312, manylinux x86-64)"
pip_ "$PY" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$KIT/wheels" "${PINS[@]}"

has_wheel() {  # has_wheel DIST VERSION: a wheel of it is in wheels/
    "$PY" - "$KIT/wheels" "$1" "$2" <<'EOF'
import os, re, sys
folder, name, version = sys.argv[1:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
sys.exit(0 if any(f.endswith(".whl") and [norm(p) for p in f.split("-")[:2]] == [norm(name), norm(version)]
                  for f in os.listdir(folder)) else 1)
EOF
}

for name in "${BUILD[@]}"; do
    v=$(version_of "$name")
    if has_wheel "$name" "$v"; then
        say "$name $v: wheel present"
        continue
    fi
    say "building the wheel of $name $v from its sdist"
    # no build isolation: .venv has setuptools, wheel and torch (colossalai's setup.py imports torch);
    # BUILD_EXT unset (above): no kernels are compiled into the wheel; colossalai builds them at run time
    pip_ "$PY" wheel -q --no-deps --no-build-isolation --no-binary "$name" \
        -w "$KIT/wheels" "$name==$v"
    has_wheel "$name" "$v" || die "building $name $v gave no wheel"
done

# prune wheels that are not in the list (an earlier kit's versions)
"$PY" - "$KIT/wheels" "${WANT[@]}" <<'EOF'
import os, re, sys
folder, want = sys.argv[1], sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
keep = {tuple(norm(p) for p in w.split("==")) for w in want}
for f in sorted(os.listdir(folder)):
    if not f.endswith(".whl") or tuple(norm(p) for p in f.split("-")[:2]) not in keep:
        print(f"[make_kit] removing stale {f}")
        os.remove(os.path.join(folder, f))
EOF
[ "$(ls "$KIT/wheels" | wc -l)" -eq "${#WANT[@]}" ] || die "expected ${#WANT[@]} wheels in $KIT/wheels: $(ls "$KIT/wheels")"

# ---------------------------------------------------------------------------------------------- data
# The tokenizer folder the project's own way (benchmarks/_common.py: save_llama_tokenizer writes
# tokenizer.model, the slow and the fast tokenizer files, and drops add_prefix_space).
say "tokenizer: $KIT/data/tokenizer"
rm -rf "$KIT/data/tokenizer"
"$PY" - "$REALDATA/tokenizers/llama2-tokenizer.model" "$KIT/data/tokenizer" <<'EOF'
import sys
from transformers import AutoTokenizer
from colossal_llama.tokenizer.train import save_llama_tokenizer
model, out = sys.argv[1:]
with open(model, "rb") as f:
    save_llama_tokenizer(f.read(), out)
tok = AutoTokenizer.from_pretrained(out)
assert tok.is_fast, type(tok)
assert len(tok) == 32000, len(tok)
ids = tok("The quick brown fox.")["input_ids"]
assert ids[0] == tok.bos_token_id, ids
print(f"[make_kit] tokenizer: {type(tok).__name__}, {len(tok)} tokens, fast: {tok.is_fast}")
EOF

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# input copies: COPIES x each real pretrain file, as distinct files; COPIES 0: the first fifth of each file
copies() {  # copies N DIR
    mkdir -p "$2"
    for f in "${PRETRAIN_FILES[@]}"; do
        if [ "$1" = 0 ]; then
            head -n $(( ($(wc -l <"$REALDATA/pretrain/$f") + 4) / 5 )) "$REALDATA/pretrain/$f" >"$2/${f%.jsonl}_fifth.jsonl"
        fi
        for i in $(seq 1 "$1"); do
            cp "$REALDATA/pretrain/$f" "$2/${f%.jsonl}_$(printf %02d "$i").jsonl"
        done
    done
}

prepare() {  # prepare INPUT_DIR MAX_LENGTH OUT
    say "preparing $(basename "$3") (max_length $2) from $(ls "$1" | wc -l) files"
    "$VENV/bin/colossal-llama-prepare-pretrain" --data_input_dirs "$1" --tokenizer_dir "$KIT/data/tokenizer" \
        --data_output_dirs "$3" --max_length "$2" --seed 42 --overwrite >"$WORK/prepare.log" 2>&1 \
        || { cat "$WORK/prepare.log" >&2; die "preparing $3 failed"; }
}

rows_of() {  # rows_of PREPARED_DIR -> number of rows (manifest.json's totals)
    "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"]["rows"])' "$1/manifest.json"
}

# 2 copies of the 3 files give about 870,000 LLaMA-2 tokens: >= 200 rows of 4096 (1 copy gives about 105)
copies 2 "$WORK/in2"
prepare "$WORK/in2" 4096 "$KIT/data/pretrain-4096"
rows=$(rows_of "$KIT/data/pretrain-4096")
say "pretrain-4096: $rows rows"
[ "$rows" -ge "$MIN_ROWS_4096" ] || die "pretrain-4096 has $rows rows, fewer than $MIN_ROWS_4096"
# the CPU rehearsal's data: a fifth of the corpus (about 87,000 tokens, 350 rows of 256) keeps the kit small
copies 0 "$WORK/in-fifth"
prepare "$WORK/in-fifth" 256 "$KIT/data/pretrain-256"
say "pretrain-256: $(rows_of "$KIT/data/pretrain-256") rows"

# ---------------------------------------------------------------------------------------------- sim
# /tmp/h200sim: the GPU image as far as we know it (Python 3.12, torch 2.11.0 (the PyPI build, +cu130,
# runs on CPU), transformers 5.x, tokenizers 0.23, huggingface_hub 1.x; no colossalai, datasets, pydantic),
# plus pytest. check.sh installs the kit over it with --target, shadowing via PYTHONPATH as on the GPU machine.
if [ "$SIM" = 1 ]; then
    if [ -f "$SIM_DIR/.h200sim-ready" ]; then
        say "sim: $SIM_DIR present (remove it to rebuild)"
    else
        PY312=
        for cand in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
            if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
                PY312=$cand; break
            fi
        done
        [ -n "$PY312" ] || die "no python3.12 found (for the sim)"
        say "sim: building $SIM_DIR with $PY312"
        rm -rf "$SIM_DIR"
        "$PY312" -m venv "$SIM_DIR"
        pip_ "$SIM_DIR/bin/python" install -q --upgrade pip
        pip_ "$SIM_DIR/bin/python" install -q torch==2.11.0 numpy pyarrow safetensors sentencepiece xxhash \
            peft tqdm pyyaml jinja2 psutil tensorboard einops packaging \
            'huggingface_hub>=1,<2' 'transformers>=5,<6' 'tokenizers>=0.23,<0.24' pytest
        # the GPU image has no pydantic (typer, transformers 5's CLI, pulled it in here)
        pip_ "$SIM_DIR/bin/python" uninstall -q -y pydantic pydantic-core annotated-types typing-inspection
        touch "$SIM_DIR/.h200sim-ready"
    fi
    "$SIM_DIR/bin/python" -c 'import sys, torch, transformers, huggingface_hub, tokenizers; print("[make_kit] sim: python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "hub", huggingface_hub.__version__, "tokenizers", tokenizers.__version__)'
fi

# ---------------------------------------------------------------------------------------------- kernels
# colossalai's HybridAdam kernels, prebuilt with the look-alike's python and torch (the GPU image's versions)
# and nvcc 13: check.sh copies them into colossalai/_C/, sparing the GPU machine about 2 minutes of
# just-in-time builds. build_kernels.py skips an unchanged build (manifest.json's key) and tests what it built.
KDIR=$KIT/kernels
no_kernels() { rm -rf "$KDIR"; say "kernels: NOT built: $*; check.sh falls back to colossalai's just-in-time build (about 2 min on the GPU machine)"; }
if [ "$KERNELS" = 0 ]; then
    no_kernels "--no-kernels"
elif [ ! -x "$SIM_DIR/bin/python" ]; then
    no_kernels "no look-alike at $SIM_DIR (make_kit.sh --sim builds it)"
else
    say "kernels: $KDIR, with $SIM_DIR/bin/python"
    "$SIM_DIR/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/ksite" "$KIT"/wheels/*.whl
    set +e
    PYTHONPATH="$WORK/ksite:$HERE/stubs" "$SIM_DIR/bin/python" -B "$HERE/build_kernels.py" build "$KDIR"
    rc=$?
    set -e
    case $rc in
        0) ;;
        3) no_kernels "no nvcc of torch's CUDA major or no C++ compiler (above)" ;;
        *) die "building the kernels failed (exit $rc); make_kit.sh --no-kernels builds the kit without them" ;;
    esac
fi

# ---------------------------------------------------------------------------------------------- size
say "kit contents:"
( cd "$KIT/wheels" && ls -l --block-size=K *.whl | awk '{printf "  %8s  %s\n", $5, $9}' )
for d in tokenizer pretrain-4096 pretrain-256; do
    printf '  %8sK  data/%s/\n' "$(du -sk "$KIT/data/$d" | cut -f1)" "$d"
done
if [ -d "$KDIR" ]; then
    ( cd "$KDIR" && ls -l --block-size=K * | awk '{printf "  %8s  kernels/%s\n", $5, $9}' )
fi
wheels_b=$(du -sb "$KIT/wheels" | cut -f1)
data_b=$(du -sb "$KIT/data" | cut -f1)
kernels_b=$( [ -d "$KDIR" ] && du -sb "$KDIR" | cut -f1 || echo 0)
total_b=$((wheels_b + data_b + kernels_b))
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
say "size: wheels $(mib "$wheels_b") MiB + data $(mib "$data_b") MiB + kernels $(mib "$kernels_b") MiB = $(mib "$total_b") MiB (limit $MAX_MIB MiB)"
[ "$total_b" -le $((MAX_MIB * 1048576)) ] || die "the kit is $(mib "$total_b") MiB, over $MAX_MIB MiB"

say "done: $KIT"
