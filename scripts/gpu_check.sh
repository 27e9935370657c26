#!/usr/bin/env bash
# The one command to give the device tool (the lent H200 machine): the project's GPU check, start to end.
#
#   1. here, first:  bash scripts/gpu_wheels.sh     # fills .whl/ (ignored by git) and prints what travels (<= 64 MiB)
#   2. the call:     run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)
#   3. then:         give_back (unless rerunning at once, e.g. `bash scripts/gpu_check.sh --only fsdp2`)
#
# There: installs .whl/*.whl into /tmp/site (no index, no deps), puts /tmp/site and the repo on PYTHONPATH (the
# project itself is not installed there: its packages import from the checkout), and runs scripts/gpu_check.py.
# Results come back in $OUT: gpu_check.json (rewritten after every step, so a killed run still returns what was
# done), gpu_check.log (this output) and commands.log (every subprocess's stdout and stderr). The check budgets
# itself 470 s (< 8 minutes) on the GPU; timeout_s=600 leaves room for the wheel install and the start-up. A
# session has 15 minutes of device time, machine start included: one call, then give_back.
# Extra arguments go to gpu_check.py (e.g. --only scoring,evaluation, or --cpu to try the CPU mode there).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}  # the device tool sets OUT; elsewhere results land here
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check}
mkdir -p "$OUT"

check() {
    echo "gpu_check.sh: $(date -u +%FT%TZ) on $(hostname), $(nproc) CPUs"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    if compgen -G ".whl/*.whl" >/dev/null; then
        echo "installing $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || return 1
    fi
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
    python3 scripts/gpu_check.py --out "$OUT/gpu_check.json" --workdir "$WORK" "$@"
}

check "$@" 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
if compgen -G "$WORK/logs/*.log" >/dev/null; then
    cat "$WORK"/logs/*.log | tail -c 8000000 >"$OUT/commands.log"
fi
exit "$status"
