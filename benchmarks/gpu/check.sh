#!/usr/bin/env bash
# The GPU check in one command, on the lent GPU machine (or, with --rehearse, on a CPU rehearsal env):
#
#   bash benchmarks/gpu/check.sh OUT_DIR [--rehearse] [more arguments for check.py]
#
# Installs the kit's wheels (.gpukit/wheels, made by benchmarks/gpu/make_kit.sh) into a fresh temporary
# folder with `pip install --target`, puts it first on PYTHONPATH (so its transformers 4.51.3,
# huggingface-hub 0.x, ... shadow the image's own), then the repository and benchmarks/gpu/stubs
# (the bitsandbytes import stub), and runs benchmarks/gpu/check.py --kit .gpukit --out OUT_DIR.
# Exits with check.py's status.
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
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
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
trap 'rm -rf "$SITE"' EXIT

say "python: $(command -v "$PYTHON") ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
say "installing $(ls "$KIT"/wheels/*.whl | wc -l) wheels from $KIT/wheels into $SITE"
start=$(date +%s.%N)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$KIT"/wheels/*.whl
say "install took $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

export PYTHONPATH="$SITE:$REPO:$HERE/stubs${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
say "running $CHECK_PY --kit $KIT --out $OUT $*"
set +e
"$PYTHON" "$CHECK_PY" --kit "$KIT" --out "$OUT" "$@"
status=$?
set -e
say "check.py exited with $status"
exit "$status"
