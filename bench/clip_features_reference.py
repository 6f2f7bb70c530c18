#!/usr/bin/env python3
"""`transformers` reference for `captag features --encoder clip` (bench/README.md, "CLIP features").

    clip_features_reference.py --make-model DIR
    clip_features_reference.py IMAGES_DIR MODEL_DIR [--workers 1] [--batch 32] [--threads 2]
                               [--grid] [--out POOLED.npy] [--compare CACHE.safetensors]

`--make-model DIR` writes a ViT-B/32-sized `CLIPModel` with random weights (`CLIPConfig()`'s
defaults are openai/clip-vit-base-patch32's sizes; seed 0, transformers' own initialisation) and
the default `CLIPImageProcessor` (PIL backend) into DIR with `save_pretrained`: the layout of a Hugging Face
download of openai/clip-vit-base-patch32, about 600 MB. No pretrained weights are involved.

Otherwise: what a notebook does to cache CLIP image embeddings. A `Dataset` that opens each
image with PIL and runs the folder's `CLIPImageProcessor` on it (its PIL backend,
`CLIPImageProcessorPil`, which is OpenAI's preprocessing and captag's), a `DataLoader`, and
`CLIPVisionModelWithProjection.from_pretrained(MODEL_DIR)` (the vision half and
`visual_projection` of the folder) under `torch.inference_mode()`; `image_embeds` is the pooled
vector (`--grid`: `last_hidden_state[:, 1:]` is also computed and moved to the host as float16,
like captag's `--grid`). Every image of IMAGES_DIR (sorted by name) once.

Prints one JSON line: images, seconds (from building the loader to the last batch's features
on the host; process start, imports and model load are not counted — time the whole process
from outside for that), images/s. `--out` saves the pooled vectors (N, 512) in name order;
`--compare` reads a captag feature cache of the same images and prints the agreement (cosine
similarity and relative difference per image; the JPEG decoders differ, see bench/README.md
"Image pipeline").
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image


def make_model(out):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig())
    model.save_pretrained(out)
    CLIPImageProcessorPil().save_pretrained(out)
    v = model.config.vision_config
    print(json.dumps({
        "folder": out,
        "vision": {"hidden_size": v.hidden_size, "layers": v.num_hidden_layers,
                   "patch_size": v.patch_size, "image_size": v.image_size},
        "projection_dim": model.config.projection_dim,
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


class Images(torch.utils.data.Dataset):
    def __init__(self, paths, processor):
        self.paths = paths
        self.processor = processor

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB")
            x = self.processor(images=im, return_tensors="pt")["pixel_values"]
        return x[0]  # (3, 224, 224)


def compare(cache_path, names, pooled):
    from safetensors import safe_open

    with safe_open(cache_path, "pt") as f:
        ids = json.loads(f.metadata()["ids"])
        theirs = f.get_tensor("pooled").double()
    row = {i: n for n, i in enumerate(ids)}
    ours = torch.from_numpy(pooled).double()
    theirs = theirs[[row[n] for n in names]]
    cos = torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
    rel = (ours - theirs).norm(dim=1) / ours.norm(dim=1)
    print(json.dumps({
        "compared": len(names),
        "cosine_min": cos.min().item(), "cosine_mean": cos.mean().item(),
        "relative_difference_mean": rel.mean().item(), "relative_difference_max": rel.max().item(),
        "max_abs_difference": (ours - theirs).abs().max().item(),
    }))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="?")
    ap.add_argument("model", nargs="?")
    ap.add_argument("--make-model")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--compare")
    a = ap.parse_args()
    if a.make_model:
        return make_model(a.make_model)
    from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

    torch.set_num_threads(a.threads)
    names = sorted(f for f in os.listdir(a.images) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    paths = [os.path.join(a.images, f) for f in names]
    # The PIL backend (OpenAI's preprocessing, and captag's), not the torchvision one.
    processor = CLIPImageProcessorPil.from_pretrained(a.model)
    net = CLIPVisionModelWithProjection.from_pretrained(a.model).eval()
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(
        Images(paths, processor), batch_size=a.batch, num_workers=a.workers,
    )
    out = []
    with torch.inference_mode():
        for x in loader:
            r = net(pixel_values=x)
            out.append(r.image_embeds.numpy().copy())
            if a.grid:
                r.last_hidden_state[:, 1:].half().numpy().copy()
    secs = time.perf_counter() - t0
    pooled = np.concatenate(out)
    print(json.dumps({"images": len(paths), "seconds": round(secs, 3),
                      "images_per_s": round(len(paths) / secs, 2)}))
    if a.out:
        np.save(a.out, pooled)
    if a.compare:
        compare(a.compare, names, pooled)


if __name__ == "__main__":
    main()
