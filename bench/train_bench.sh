#!/usr/bin/env bash
# Training throughput, captag vs PyTorch, same workload, same machine, same run.
#   bench/train_bench.sh DATA FEATURES [STEPS] [DECODER]
# FEATURES is a captag feature cache (e.g. from `captag features`; `--grid` for the attention
# and transformer decoders). DECODER: lstm (default), gru, attention, transformer. The PyTorch
# side runs in the project's .venv (torch 2.11.0) plus the safetensors package (or $PYTHON).
#
# LSTM/GRU: three pairs, each on one workload file:
#   captag on length buckets (what `captag train` does)  vs  PyTorch padded on shuffled batches
#     (the seed notebooks' loop);
#   captag on length buckets  vs  PyTorch with pack_padded_sequence + loss on real positions,
#     on the same buckets;
#   captag on shuffled batches  vs  PyTorch padded on the same shuffled batches.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 feats=$2 steps=${3:-200} cell=${4:-lstm}
py=${PYTHON:-.venv/bin/python}
$py -c "import safetensors" 2>/dev/null || $py -m pip install --quiet safetensors
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
wl=bench/out/train_workload.safetensors
ours() { cargo bench --quiet --bench train_throughput -- "$data" "$feats" --steps "$steps" --decoder "$cell" --order "$1" | tail -1; }
ref() { $py bench/train_reference.py "$2" --steps "$steps" $1 | tail -1; }
ratio() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a, b = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{sys.argv[1]}: captag {a['captions_per_s']:.1f} / pytorch {b['captions_per_s']:.1f} captions/s = {a['captions_per_s'] / b['captions_per_s']:.2f}x")
PY
}
if [ "$cell" = lstm ] || [ "$cell" = gru ]; then
  shuf_ours=$(ours shuffle); cp "$wl" "$wl.shuffle"; cp "$wl.json" "$wl.shuffle.json"
  shuf_ref=$(ref "" "$wl.shuffle")
  buck_ours=$(ours buckets)
  buck_packed=$(ref --packed "$wl")
  echo "captag buckets:         $buck_ours"
  echo "captag shuffle:         $shuf_ours"
  echo "pytorch padded shuffle: $shuf_ref"
  echo "pytorch packed buckets: $buck_packed"
  ratio "captag buckets vs pytorch padded (seed style)" "$buck_ours" "$shuf_ref"
  ratio "captag buckets vs pytorch packed, same buckets" "$buck_ours" "$buck_packed"
  ratio "captag shuffle vs pytorch padded, same batches" "$shuf_ours" "$shuf_ref"
else
  o=$(ours shuffle); r=$(ref "" "$wl")
  echo "captag:  $o"; echo "pytorch: $r"
  ratio "captag vs pytorch, same batches" "$o" "$r"
fi
