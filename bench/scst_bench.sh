#!/usr/bin/env bash
# Self-critical training (SCST) throughput, captag vs PyTorch: the same loss on the same decoder
# (Show-and-Tell LSTM/GRU, image as first input) and the same features, same machine, same run.
#   bench/scst_bench.sh CE_RUN DATA FEATURES [EPOCHS] [THREADS]
# CE_RUN: a finished cross-entropy run (`captag train --decoder lstm --encoder-weights ..`) on
# DATA (Flickr8k layout) with the pooled feature cache FEATURES. EPOCHS (default 5) timed
# epochs on each side, after one warm-up epoch; THREADS (default 1) for both.
# Environment: BATCH (16 images a step), SAMPLES (K = 5), MAX_WORDS (30), LR (5e-5), CAPTAG
# (default target/release/captag), PYTHON (default .venv/bin/python; needs torch, safetensors).
#
# 1. checks that bench/scst_reference.py's CIDEr-D is captag's (`captag bleu --metrics cider`
#    on the training images' references and varied hypotheses; the corpus mean must agree to 1e-9);
# 2. captag: `train --init-from CE_RUN --objective scst` for 1 + EPOCHS epochs; images/s from its
#    metrics.jsonl (images / seconds of the training loop, epochs 2.., i.e. without start-up and
#    the per-epoch dev evaluation; the whole process's wall time is printed beside it), and the
#    reward's and the drawing's share of that time (reward_share, draw_share, time-weighted);
# 3. PyTorch: bench/scst_reference.py, 1 warm-up + EPOCHS timed epochs, same settings;
# 4. the ratio captag / PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1 data=$2 feats=$3 epochs=${4:-5} threads=${5:-1}
bs=${BATCH:-16} k=${SAMPLES:-5} maxw=${MAX_WORDS:-30} lr=${LR:-5e-5}
captag=${CAPTAG:-target/release/captag}
py=${PYTHON:-.venv/bin/python}
out=bench/out/scst
rm -rf "$out" && mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

# 1. CIDEr-D parity on the training references.
python3 - "$data" "$out" <<'PY'
import csv, json, os, random, sys
data, out = sys.argv[1:]
train = [l.strip() for l in open(os.path.join(data, "Flickr_8k.trainImages.txt")) if l.strip()]
refs = {i: [] for i in train}
for row in csv.DictReader(open(os.path.join(data, "captions.txt"), newline="")):
    if row["image"] in refs:
        refs[row["image"]].append(row["caption"])
rng, preds = random.Random(0), []
for n, i in enumerate(train):
    w, other = refs[i][0].split(), refs[train[(n + 7) % len(train)]][1].split()
    cap = [w, other, w[: max(1, len(w) // 2)], w[:3] * 3, rng.sample(w, len(w)), w + other[:4]][n % 6]
    preds.append({"image_id": i, "caption": " ".join(cap)})
json.dump(refs, open(os.path.join(out, "refs.json"), "w"))
json.dump(preds, open(os.path.join(out, "preds.json"), "w"))
PY
ours_c=$("$captag" -q bleu --predictions "$out/preds.json" --references "$out/refs.json" --metrics cider --json)
ref_c=$($py bench/scst_reference.py --check-cider "$out/preds.json" "$out/refs.json")
python3 - "$ours_c" "$ref_c" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1])["cider"], json.loads(sys.argv[2])["cider"]
print(f"CIDEr-D check ({json.loads(sys.argv[2])['images']} images): captag {a!r} python {b!r} diff {abs(a - b):.1e}")
sys.exit(0 if abs(a - b) <= 1e-9 else "error: the reference's CIDEr-D is not captag's")
PY

# 2. captag.
t0=$(date +%s.%N)
"$captag" --threads "$threads" -q train --data "$data" --features "$feats" --init-from "$run" \
  --objective scst --batch-size "$bs" --scst-samples "$k" --scst-baseline mean --max-words "$maxw" \
  --epochs $((epochs + 1)) --lr "$lr" --schedule constant --early-stop 0 --out "$out/run" >/dev/null
wall=$(echo "$(date +%s.%N) - $t0" | bc)
ours=$(python3 - "$out/run/metrics.jsonl" "$wall" <<'PY'
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1])][1:]  # epoch 1 is the warm-up
secs = sum(m["seconds"] for m in ms)
imgs = sum(m["images_per_s"] * m["seconds"] for m in ms)
print(json.dumps({"impl": "captag", "epochs": len(ms), "images": round(imgs), "seconds": secs,
                  "images_per_s": imgs / secs, "process_wall_s": float(sys.argv[2]),
                  "draw_share": sum(m["draw_share"] * m["seconds"] for m in ms) / secs,
                  "reward_share": sum(m["reward_share"] * m["seconds"] for m in ms) / secs,
                  "mean_reward": sum(m["reward"] for m in ms) / len(ms)}))
PY
)

# 3. PyTorch.
ref=$($py bench/scst_reference.py "$run" "$data" "$feats" --batch-size "$bs" --samples "$k" \
  --max-words "$maxw" --lr "$lr" --epochs "$epochs" --warmup-epochs 1 --threads "$threads" | tail -1)

# 4. Both, and the ratio.
echo "captag:  $ours"
echo "pytorch: $ref"
python3 - "$ours" "$ref" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"SCST images/s: captag {a['images_per_s']:.1f} / pytorch {b['images_per_s']:.1f} = {a['images_per_s'] / b['images_per_s']:.2f}x; "
      f"reward share: captag {100 * a['reward_share']:.2f}% / pytorch {100 * b['reward_share']:.2f}%; "
      f"draw share: captag {100 * a['draw_share']:.1f}% / pytorch {100 * b['draw_share']:.1f}%")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
