#!/usr/bin/env bash
# Every GPU check of issue 21 in one call: the GPU tests, then training, decoding and serving benchmarks, each
# printing its own table; a summary of what ran and what failed at the end. Each part has a time limit, and the
# limits sum to 560 s, so the whole script fits one 10-minute device call.
#
#   bash benchmarks/gpu.sh                # from the repository root, on a machine with a CUDA GPU
#
# Needs torch with CUDA, transformers and kiln's dependencies importable (kiln itself is read from src/). On a
# machine without network, bring kiln's missing dependencies as wheels in .whl/ (see the device README): they are
# installed into /tmp/site first. Logs go to $OUT (default /tmp/kiln-gpu), one file per part.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/kiln-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

status=()
part() {  # part NAME SECONDS COMMAND...: run one part with a time limit, log it, remember how it ended
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($*)"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    status+=("$name: $([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

part tests 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu
part train 170 python3 benchmarks/train_gpu.py --steps 40 --batch-size 16
# The same run with the vocabulary padded to 50304 rows and the chunked LM-head loss: compare tokens/s and peak memory.
part train-padded-chunked 100 python3 benchmarks/train_gpu.py --steps 40 --batch-size 16 --no-reference \
    --vocab-multiple-of 128 --loss-chunk-tokens 8192
part decode 110 python3 benchmarks/generate.py --device cuda --batches 1 64 --new-tokens 64 --repeats 2 --skip-no-cache \
    --static-decode
part serve 80 python3 benchmarks/serve.py --device cuda --dtype bfloat16 --max-batch 64 --streams 1 64 --rounds 1 \
    --skip-serial

echo "=== summary"
printf '%s\n' "${status[@]}" | tee "$OUT/summary.txt"
