#!/usr/bin/env bash
# Wheels the lent GPU machine lacks for scripts/gpu_check.py, downloaded here into .whl/ (ignored by git).
#
#   bash scripts/gpu_wheels.sh                     # default: core + transformers 5.24.0 (+ lm-eval if it fits)
#   TRANSFORMERS=none bash scripts/gpu_wheels.sh   # keep the machine's transformers 5.17: then lm-eval fits
#   LM_EVAL=0 bash scripts/gpu_wheels.sh           # never lm-eval (the evaluation step skips it, with its reason)
#
# The machine (the device tool's KINDS.md) has Python 3.12, torch 2.11, transformers 5.17, peft, accelerate 1.15,
# pandas, pyarrow, numpy, scikit-learn, sacrebleu, absl-py, xxhash, fsspec, huggingface-hub 1.33, tokenizers 0.23;
# nothing can be fetched there. So: Python 3.12 manylinux x86_64 wheels, --no-deps, every missing need named
# below, one version each (two stop the whole install: .whl/ is emptied first), as the device README says.
# Versions are the ones this project's venv runs with. Pure-Python packages published only as sdists are built
# into wheels here (pip wheel). Everything a call carries -- working tree and .whl -- must fit 64 MiB: the total
# is printed, an optional group that would not fit is left out (and said so), and the script fails when the
# core alone does not fit.
#
# Why transformers by default: the project runs on transformers 5.24 here, and two of its calls are spelled
# for it (the generation engine's `cache=` keyword, the trainer's `activation_checkpointing`); under the
# machine's 5.17 the first is silently ignored and the second raises. transformers 5.24 needs huggingface-hub
# >= 1.31 and tokenizers >= 0.23.1, which the machine has.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHL=$ROOT/.whl
PYTHON=${PYTHON:-python3}
LM_EVAL=${LM_EVAL:-auto}  # auto: when it fits | 1: always (fails when it does not fit) | 0: never
TRANSFORMERS=${TRANSFORMERS:-5.24.0}  # none: the machine's own
LIMIT=$((64 * 1024 * 1024))

CORE=(
    trl==1.16.0             # the trainer (SFTTrainer); ~1 MB
    bitsandbytes==0.50.2    # 4-bit nf4 (bnb_4bit, training_qlora); ~43 MB, most of the budget
    datasets==5.2.0         # what TRL's trainer reads rows from
    dill==0.4.1             # datasets' needs missing there
    multiprocess==0.70.19
)
[ "$TRANSFORMERS" != none ] && CORE+=("transformers==$TRANSFORMERS" peft==0.21.2)  # ~14 MB
LM_EVAL_WHEELS=(  # ~13 MB
    lm_eval==0.4.13
    evaluate==0.4.6
    pytablewriter==1.2.1 DataProperty==1.1.1 mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5
    tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1
    sqlitedict==2.1.0 word2number==1.1 more-itertools==11.2.1
    rouge_score==0.1.2 nltk==3.10.4
)

PLATFORMS=(
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
)

fetch() {  # a wheel for Python 3.12 on manylinux x86_64; an sdist-only pure-Python package is built here
    local spec=$1
    if ! "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]}" -d "$WHL" "$spec" 2>/dev/null; then
        "$PYTHON" -m pip wheel -q --no-deps -w "$WHL" "$spec" 2>&1 | { grep -v "is ignored: it is neither" || true; }
        local built
        built=$(ls -t "$WHL"/*.whl | head -1)
        case $built in
            *-py3-none-any.whl | *-py2.py3-none-any.whl) ;;
            *) echo "error: $spec has no wheel for Python 3.12 and built as $built (not pure Python)" >&2; exit 1 ;;
        esac
    fi
}

size_of() { du -cb "$@" 2>/dev/null | tail -1 | cut -f1; }
tree=$(cd "$ROOT" && git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)

mkdir -p "$WHL"
rm -f "$WHL"/*.whl
for spec in "${CORE[@]}"; do
    fetch "$spec"
done
if [ $((tree + $(size_of "$WHL"/*.whl))) -gt $LIMIT ]; then
    echo "error: the core wheels and the working tree alone pass 64 MiB" >&2
    exit 1
fi
if [ "$LM_EVAL" != 0 ]; then
    staging=$(mktemp -d)
    for spec in "${LM_EVAL_WHEELS[@]}"; do
        WHL=$staging fetch "$spec"
    done
    if [ $((tree + $(size_of "$WHL"/*.whl "$staging"/*.whl))) -le $LIMIT ]; then
        mv "$staging"/*.whl "$WHL"/
    elif [ "$LM_EVAL" = 1 ]; then
        echo "error: lm-eval's wheels do not fit beside the others (try TRANSFORMERS=none)" >&2
        exit 1
    else
        echo "lm-eval left out: its $(($(size_of "$staging"/*.whl) / 1048576)) MiB do not fit (TRANSFORMERS=none makes room)"
    fi
    rm -rf "$staging"
fi

echo "wheels in $WHL:"
du -b "$WHL"/*.whl | sort -n | awk '{printf "  %8.2f MB  %s\n", $1 / 1e6, $2}' | sed "s|$WHL/||"
wheels=$(size_of "$WHL"/*.whl)
awk -v w="$wheels" -v t="$tree" 'BEGIN {
    printf "wheels %.1f MiB + working tree %.1f MiB = %.1f MiB of the 64 MiB a device call carries\n",
        w / 2^20, t / 2^20, (w + t) / 2^20 }'
