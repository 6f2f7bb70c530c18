#!/usr/bin/env bash
# GPT-2 forward (tokens/s) and key/value-cache decoding (ms per token at 10, 20, 40 new tokens),
# captag vs transformers' GPT2LMHeadModel, on the same random-weight folders, same ids, same
# thread count, same machine, back to back.
#   bench/gpt2_bench.sh [SIZES] [THREADS] [REPS]
# SIZES: "tiny gpt2" (default; gpt2 = the real 124M config with random weights). The folders go
# to ${GPT2_BENCH_DIR:-/tmp/captag-gpt2-bench}/SIZE (never committed). The Python side needs
# transformers and safetensors ($PYTHON, default /tmp/venv-gpt2lm/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-tiny gpt2} threads=${2:-1} reps=${3:-5}
py=${PYTHON:-/tmp/venv-gpt2lm/bin/python}
root=${GPT2_BENCH_DIR:-/tmp/captag-gpt2-bench}
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
mkdir -p bench/out
for size in $sizes; do
  dir=$root/$size
  [ -f "$dir/bench_inputs.safetensors" ] || $py bench/gpt2_reference.py make "$dir" --size "$size"
  ref=$($py bench/gpt2_reference.py time "$dir" --threads "$threads" --reps "$reps" | tail -1)
  ours=$(cargo bench --quiet --bench gpt2_forward -- "$dir" --threads "$threads" --reps "$reps" | tail -1)
  echo "$ref" > "bench/out/gpt2_$size.transformers.json"
  echo "$ours" > "bench/out/gpt2_$size.captag.json"
  python3 - "$size" "$ours" "$ref" <<'PY'
import json, sys
size, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{size} ({a['n_layer']} layers, {a['n_embd']} wide), batch {a['batch']}x{a['tokens']}, {a['threads']} thread(s):")
print(f"  forward: captag {a['tokens_per_s']:.0f} / transformers {b['tokens_per_s']:.0f} tokens/s = {a['tokens_per_s'] / b['tokens_per_s']:.2f}x")
for n in a["decode_ms_per_token"]:
    x, y = a["decode_ms_per_token"][n], b["decode_ms_per_token"][n]
    print(f"  decode {n:>2} tokens: captag {x:.3f} / transformers {y:.3f} ms per token = {y / x:.2f}x")
print(f"  parity: last-position logits max |diff| {a['parity_last_logits_max_abs_diff']:.2e}, "
      f"greedy ids identical: captag {a['greedy_ids_identical']}, transformers {b['greedy_ids_identical']}")
PY
done
