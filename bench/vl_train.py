"""Fine-tuning images/s of captag against `transformers` on the same random BLIP-base / GIT-base
sized folders (docs/vision-language.md, bench/README.md).

The folders are `vl_caption.py`'s (random weights in the sizes of
`Salesforce/blip-image-captioning-base` and `microsoft/git-base`). The data is a
`captag synth --layout instagram` set: one caption per picture, as the seed project's GIT
fine-tuning on Instagram posts has, so a batch of B captions is B pictures on both sides and
the image tower runs B times a step on both. Both sides take the same training pictures and
captions, tokenized by the same WordPiece tokenizer into `[start] caption [SEP]` (at most 30
tokens), train mode (dropout on), AdamW (lr 5e-5, weight decay 0.01), gradient norm clipped at 5,
the same batch size and threads.

- captag: `captag train --data D --init-from FOLDER --epochs 2 --batch-size B --early-stop 0`;
  images/s = the second epoch's `captions_per_s` from `metrics.jsonl` (warm, like the
  reference's timed steps; the training loop only: the pictures are decoded before it, the dev
  evaluation after it).
- transformers: the notebook loop — `model(pixel_values=..., input_ids=..., attention_mask=...,
  labels=...)` (labels = the ids, padding -100), `loss.backward()`, `clip_grad_norm_`,
  `optimizer.step()`, on preprocessed pixels held in memory (the image processor excluded), one
  warm-up step, then the remaining steps of the same epoch timed.

    .venv/bin/python bench/vl_train.py --captag target/release/captag --work /tmp/vlbench \
        --threads 2 --images 40 --batch-size 8 --arch git
"""
import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import (BertTokenizerFast, BlipForConditionalGeneration, GitForCausalLM)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vl_caption import HF, folder  # noqa: E402


def training_rows(captag, data, n):
    """The training split's (picture, caption) rows as captag splits them: every row whose
    picture is not in captag's dev or test predictions."""
    if not data.exists():
        subprocess.run([captag, "-q", "synth", "--layout", "instagram", "--out", str(data),
                        "--count", str(n), "--size", "256"], check=True)
    held = set()
    for split in ("dev", "test"):
        pred = data.parent / f"{split}.json"
        subprocess.run([captag, "-q", "--device", "cpu", "eval", str(HF / "git"), "--data",
                        str(data), "--split", split, "--predictions", str(pred), "--max-len", "1"],
                       check=True, capture_output=True)
        held |= {p["image_id"] for p in json.loads(pred.read_text())}
    rows = []
    with open(data / "captions_csv.csv", newline="") as f:
        for r in csv.DictReader(f):
            path = next((data / r["Image File"]).parent.glob(Path(r["Image File"]).name + ".*"))
            if str(path.relative_to(data)) not in held:
                rows.append((path, r["Caption"]))
    return rows


def hf_rate(arch, out, rows, batch, threads):
    torch.manual_seed(0)
    cls = BlipForConditionalGeneration if arch == "blip" else GitForCausalLM
    model = cls.from_pretrained(out).train()
    proc = (BlipImageProcessorPil if arch == "blip" else CLIPImageProcessorPil).from_pretrained(out)
    tok = BertTokenizerFast.from_pretrained(out)
    start = model.config.text_config.bos_token_id if arch == "blip" else tok.cls_token_id
    pixels = proc(images=[Image.open(p).convert("RGB") for p, _ in rows], return_tensors="pt")["pixel_values"]
    ids = [[start] + tok(c, add_special_tokens=False)["input_ids"][:30] + [tok.sep_token_id] for _, c in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    steps = [list(range(i, min(i + batch, len(rows)))) for i in range(0, len(rows), batch)]
    t0 = None
    for s, idx in enumerate(steps):
        if s == 1:
            t0 = time.perf_counter()
        t = max(len(ids[i]) for i in idx)
        input_ids = torch.tensor([ids[i] + [0] * (t - len(ids[i])) for i in idx])
        mask = torch.tensor([[1] * len(ids[i]) + [0] * (t - len(ids[i])) for i in idx])
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = model(pixel_values=pixels[idx], input_ids=input_ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    timed = sum(len(idx) for idx in steps[1:])
    return timed / (time.perf_counter() - t0)


def captag_rate(captag, out, data, run, batch, threads):
    subprocess.run(["rm", "-rf", str(run)], check=True)
    subprocess.run([captag, "-q", "--device", "cpu", "--threads", str(threads), "train", "--data", str(data),
                    "--init-from", str(out), "--out", str(run), "--epochs", "2", "--batch-size", str(batch),
                    "--lr", "5e-5", "--early-stop", "0"], check=True, capture_output=True)
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[1])
    return m["captions_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captag", default="target/release/captag")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vlbench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--arch", nargs="+", default=["git", "blip"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.work.mkdir(parents=True, exist_ok=True)
    for arch in ["git"] + a.arch:
        folder(arch, a.work / arch)
    data = a.work / "insta"
    rows = training_rows(a.captag, data, a.images)
    print(f"{len(rows)} training pictures (one caption each), batch {a.batch_size}, {a.threads} threads")
    for arch in a.arch:
        for r in range(a.rounds):
            c = captag_rate(a.captag, a.work / arch, data, a.work / f"run_{arch}", a.batch_size, a.threads)
            h = hf_rate(arch, a.work / arch, rows, a.batch_size, a.threads)
            print(f"{arch} fine-tuning, round {r + 1}: captag {c:.2f} images/s, transformers {h:.2f} images/s, "
                  f"ratio {c / h:.2f}x", flush=True)


if __name__ == "__main__":
    main()
