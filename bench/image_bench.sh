#!/usr/bin/env bash
# Image pipeline benchmark: captag (benches/image_pipeline.rs) against PIL + torchvision
# (bench/image_reference.py) on the same files, same machine, same run; prints the ratios and
# the largest difference between the two pipelines' tensors for the first image.
#
#   bench/image_bench.sh IMAGES_DIR [N]        e.g. bench/image_bench.sh ../shared/data/flickr8k/Images 1000
#
# Environment: PYREF = a Python with torch 2.11 + torchvision + pillow (default /tmp/pyref/bin/python);
# LARGE=1 also times 500x375 JPEGs made from the same images (a pipeline that really resizes).
# Build environment for cargo as in the README (LIBTORCH_USE_PYTORCH=1, venv python on PATH).
set -euo pipefail
dir=$(cd "${1:?usage: bench/image_bench.sh IMAGES_DIR [N]}" && pwd)
n=${2:-1000}
py=${PYREF:-/tmp/pyref/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$here/.."
cargo bench --bench image_pipeline --no-run >/dev/null 2>&1 || cargo bench --bench image_pipeline --no-run

run_pair() { # $1 = image dir, $2 = label
    local rs=$tmp/rs.txt pyt=$tmp/py.txt
    cargo bench -q --bench image_pipeline -- "$1" "$n" --dump-first "$tmp/rs.f32" >"$rs"
    "$py" "$here/image_reference.py" "$1" "$n" --dump-first "$tmp/py.f32" >"$pyt"
    "$py" "$here/image_reference.py" --report "$2" "$rs" "$pyt" "$tmp/rs.f32" "$tmp/py.f32"
}

run_pair "$dir" "$(basename "$dir")"
if [[ "${LARGE:-0}" == 1 ]]; then
    "$py" "$here/image_reference.py" --make-large "$dir" "$tmp/large" "$n"
    run_pair "$tmp/large" "500x375 JPEGs (Resize + CenterCrop really run)"
fi
