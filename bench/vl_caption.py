"""Captioning images/s of captag against `transformers` on the same random BLIP-base / GIT-base
sized folders (docs/vision-language.md, bench/README.md).

Random weights (no pretrained BLIP or GIT can be downloaded here) in the sizes of
`Salesforce/blip-image-captioning-base` (ViT-B/16 at 384 px, 12-layer BERT decoder with
cross-attention, 30,524 tokens) and `microsoft/git-base` (CLIP ViT-B/16 at 224 px, 6-layer
BERT stack, 30,522 tokens); the vocabulary is filler WordPiece tokens, which costs what the real
one costs. Both sides caption the same dev images of a `captag synth` dataset with the same
thread count, every caption running to `--max-len` tokens (random models never end): greedy and
beam 3. transformers: `generate` on one batch of all images (the image processor excluded from
the time); captag: `captag eval FOLDER --data D --split dev`, whose "ms per image" counts the
captioning only (images read, preprocessed and decoded, model loading excluded).

    /tmp/venv-gpt2lm/bin/python bench/vl_caption.py --captag target/release/captag \
        --work /tmp/vlbench --threads 2 --images 8
"""
import argparse
import json
import re
import subprocess
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                          GitConfig, GitForCausalLM)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

HF = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"


def vocab(n):
    words = (HF / "bert" / "vocab.txt").read_text().splitlines()
    words += [f"[unused{i}]" for i in range(n - len(words) - 2)] + ["[DEC]", "[ENC]"]
    return words[:n]


def folder(arch, out):
    if (out / "model.safetensors").exists():
        return
    torch.manual_seed(0)
    if arch == "blip":
        cfg = BlipConfig()  # BLIP-base: the defaults
        cfg.text_config.sep_token_id = 3
        words = vocab(cfg.text_config.vocab_size)
        cfg.text_config.bos_token_id = words.index("[DEC]")
        model = BlipForConditionalGeneration(cfg).eval()
        proc = BlipImageProcessorPil(size={"height": 384, "width": 384})
    else:
        cfg = GitConfig(vision_config=dict(patch_size=16, image_size=224), bos_token_id=2, eos_token_id=3)
        words = vocab(cfg.vocab_size)
        model = GitForCausalLM(cfg).eval()
        proc = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    model.save_pretrained(out)
    proc.save_pretrained(out)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(out)


def dev_images(captag, data, n):
    if not data.exists():
        subprocess.run([captag, "-q", "synth", "--out", str(data), "--count", str(10 * n), "--size", "256"],
                       check=True)
    out = subprocess.run([captag, "-q", "--device", "cpu", "eval", str(HF / "git"), "--data", str(data),
                          "--split", "dev", "--predictions", str(data.parent / "dev.json"), "--max-len", "1"],
                         check=True, capture_output=True, text=True)
    ids = [p["image_id"] for p in json.loads((data.parent / "dev.json").read_text())]
    return [data / "Images" / i for i in ids]


def hf_rate(arch, out, paths, beam, max_len):
    cls = BlipForConditionalGeneration if arch == "blip" else GitForCausalLM
    model = cls.from_pretrained(out).eval()
    proc = (BlipImageProcessorPil if arch == "blip" else CLIPImageProcessorPil).from_pretrained(out)
    pv = proc(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")["pixel_values"]
    kw = dict(max_new_tokens=max_len, min_new_tokens=max_len, do_sample=False, num_beams=beam)
    with torch.no_grad():
        model.generate(pixel_values=pv[:1], **dict(kw, max_new_tokens=2, min_new_tokens=2))  # warm-up
        t = time.perf_counter()
        model.generate(pixel_values=pv, **kw)
        return len(paths) / (time.perf_counter() - t)


def captag_rate(captag, out, data, threads, beam, max_len):
    r = subprocess.run([captag, "-q", "--device", "cpu", "--threads", str(threads), "eval", str(out),
                        "--data", str(data), "--split", "dev", "--beam", str(beam), "--max-len", str(max_len),
                        "--length-alpha", "1"], check=True, capture_output=True, text=True)
    ms = float(re.search(r"\(([\d.]+) ms per image\)", r.stdout).group(1))
    return 1000.0 / ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captag", default="target/release/captag")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vlbench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--arch", nargs="+", default=["blip", "git"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.work.mkdir(parents=True, exist_ok=True)
    data = a.work / "data"
    paths = dev_images(a.captag, data, a.images)
    print(f"{len(paths)} dev images, {a.threads} threads, {a.max_len} tokens per caption")
    for arch in a.arch:
        out = a.work / arch
        folder(arch, out)
        for beam in (1, 3):
            c = captag_rate(a.captag, out, data, a.threads, beam, a.max_len)
            h = hf_rate(arch, out, paths, beam, a.max_len)
            name = "greedy" if beam == 1 else "beam 3"
            print(f"{arch} {name}: captag {c:.2f} images/s, transformers {h:.2f} images/s, ratio {c / h:.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
