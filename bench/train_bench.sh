#!/usr/bin/env bash
# Training throughput, captag vs PyTorch, same workload, same machine, same run.
#   bench/train_bench.sh DATA FEATURES [STEPS] [DECODER]
# FEATURES is a captag feature cache (e.g. from `captag features`; `--grid` for the attention
# and transformer decoders). DECODER: lstm (default), gru, attention, transformer. The PyTorch side runs in the
# project's .venv (torch 2.11.0) plus the safetensors package.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 feats=$2 steps=${3:-200} cell=${4:-lstm}
py=${PYTHON:-.venv/bin/python}
$py -c "import safetensors" 2>/dev/null || $py -m pip install --quiet safetensors
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
ours=$(cargo bench --quiet --bench train_throughput -- "$data" "$feats" --steps "$steps" --decoder "$cell" | tail -1)
ref=$($py bench/train_reference.py bench/out/train_workload.safetensors --steps "$steps" | tail -1)
echo "captag:  $ours"
echo "pytorch: $ref"
python3 - "$ours" "$ref" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"ratio captag/pytorch: {a['captions_per_s'] / b['captions_per_s']:.2f}x")
PY
