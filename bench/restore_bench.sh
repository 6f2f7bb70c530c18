#!/usr/bin/env bash
# Restoration training throughput, captag vs PyTorch eager, same networks, same machine, same run.
#   bench/restore_bench.sh [IMAGES] [SIZE] [THREADS]
# Both sides train the mask U-Net and the partial-convolution U-Net of `captag restore train`
# with its default sizes (channels 16, depths 4 and 5), batch 8, Adam lr 1e-3, on IMAGES
# (default 80) synthetic pictures at SIZE px (default 128), THREADS intra-op threads (default 2):
#   captag  `restore train` for 2 epochs, no dev scoring; images/s of the second epoch (its
#           metrics line: optimizer steps plus drawing each batch's damage);
#   pytorch bench/restore_reference.py on the `captag damage` copy of the same images, as many
#           steps as one captag epoch after 2 warm-up steps.
# The PyTorch side runs in the project's .venv (torch 2.11.0) plus numpy and Pillow (or $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-80} size=${2:-128} threads=${3:-2}
py=${PYTHON:-.venv/bin/python}
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
cargo build --release --quiet
captag=target/release/captag
out=bench/out/restore
rm -rf "$out" && mkdir -p "$out"
# --ratios 1,0,0: every image is a training image.
$captag -q synth --out "$out/data" --count "$n" --size "$size" >/dev/null
$captag -q damage --data "$out/data" --out "$out/damaged" --size "$size" >/dev/null
$captag -q --threads "$threads" restore train --data "$out/data" --ratios 1,0,0 --out "$out/run" \
  --size "$size" --epochs 2 --batch-size 8 --dev-limit 0 >/dev/null
ours=$(tail -1 "$out/run/metrics.jsonl")
steps=$(( (n + 7) / 8 ))
ref=$($py bench/restore_reference.py "$out/damaged" --steps "$steps" --threads "$threads" | tail -1)
echo "captag:  $ours"
echo "pytorch: $ref"
python3 - "$ours" "$ref" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"captag {a['images_per_s']:.2f} / pytorch {b['images_per_s']:.2f} images/s = {a['images_per_s'] / b['images_per_s']:.2f}x")
PY
