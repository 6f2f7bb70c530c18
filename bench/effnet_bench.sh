#!/usr/bin/env bash
# EfficientNet-Lite feature extraction: `captag features --encoder VARIANT` against PyTorch + a
# DataLoader running the same network, weights and preprocessing (bench/effnet_features_reference.py)
# on the same images, same machine, same run, same thread count; whole processes timed
# (start-up, model load and writing the features included on both sides), RUNS alternating rounds.
#
#   bench/effnet_bench.sh DATA_DIR [THREADS] [VARIANT] [RUNS]
#   e.g. bench/effnet_bench.sh /tmp/f8k200 1 efficientnet_lite0 2
#
# DATA_DIR is a Kaggle-layout Flickr8k folder (Images/ + captions.txt), e.g. 200 images as hard
# links. Needs `make weights` and a release build. Environment: PYREF = a Python with torch 2.11
# and Pillow (default .venv/bin/python; add Pillow with PYTHONPATH if it lacks it); REF_FLAGS =
# extra reference flags (e.g. --channels-last, --workers 2).
set -euo pipefail
data=$(cd "${1:?usage: bench/effnet_bench.sh DATA_DIR [THREADS] [VARIANT] [RUNS]}" && pwd)
threads=${2:-1}
variant=${3:-efficientnet_lite0}
runs=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
py=${PYREF:-$root/.venv/bin/python}
weights=$root/data/weights/$variant.safetensors
captag=$root/target/release/captag
n=$(find "$data/Images/" -maxdepth 1 \( -name '*.jpg' -o -name '*.png' \) | wc -l)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[[ -f $weights ]] || { echo "no $weights: run make weights" >&2; exit 1; }

timed() { # prints "wall cpu" seconds of the command (cpu = user + sys, worker processes included)
    /usr/bin/time -f '%e %U %S' -o "$tmp/time" "$@" >"$tmp/last.out" 2>"$tmp/last.err" ||
        { cat "$tmp/last.err" >&2; exit 1; }
    awk '{printf "%s %.2f\n", $1, $2 + $3}' "$tmp/time"
}
rs=(); pt=(); rs_cpu=(); pt_cpu=()
for r in $(seq "$runs"); do
    read -r w c < <(timed "$captag" --threads "$threads" -q features --data "$data" --encoder "$variant" \
        --encoder-weights "$weights" --out "$tmp/rs.safetensors")
    rs+=("$w"); rs_cpu+=("$c")
    read -r w c < <(timed "$py" "$here/effnet_features_reference.py" "$data/Images" "$weights" \
        --variant "$variant" --threads "$threads" --workers 1 ${REF_FLAGS:-})
    pt+=("$w"); pt_cpu+=("$c")
    echo "round $r: captag ${rs[-1]} s wall ${rs_cpu[-1]} s cpu; pytorch ${pt[-1]} s wall ${pt_cpu[-1]} s cpu; $(cat "$tmp/last.out")" >&2
done
best() { printf '%s\n' "$@" | sort -g | head -1; }
b_rs=$(best "${rs[@]}"); b_pt=$(best "${pt[@]}"); c_rs=$(best "${rs_cpu[@]}"); c_pt=$(best "${pt_cpu[@]}")
printf '%s, %d images, %s thread(s)%s, best of %d whole-process runs (load %s):\n' "$variant" "$n" "$threads" \
    "${REF_FLAGS:+, reference $REF_FLAGS}" "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  captag features       %6.2f s wall %6.1f images/s, %6.2f s cpu\n' "$b_rs" "$(echo "$n / $b_rs" | bc -l)" "$c_rs"
printf '  pytorch + DataLoader  %6.2f s wall %6.1f images/s, %6.2f s cpu\n' "$b_pt" "$(echo "$n / $b_pt" | bc -l)" "$c_pt"
printf '  ratio (captag / pytorch images/s): %.2fx wall, %.2fx cpu time\n' "$(echo "$b_pt / $b_rs" | bc -l)" "$(echo "$c_pt / $c_rs" | bc -l)"
