#!/usr/bin/env python3
"""PyTorch + DataLoader reference for `captag features --encoder efficientnet_lite0|2`
(bench/README.md, "EfficientNet-Lite feature extraction"; bench/effnet_bench.sh runs both).

    effnet_features_reference.py IMAGES_DIR WEIGHTS [--variant efficientnet_lite0] [--workers 1]
                                 [--batch 32] [--threads 1] [--out POOLED.pt] [--channels-last]

What a notebook does to cache EfficientNet-Lite features: a `Dataset` that opens each JPEG with
PIL and preprocesses it as the TF-Lite weights expect (RGB, bicubic resize of the shorter side to
int(size / 0.875), centre crop, (x - 127) / 128), a `DataLoader` with worker processes, and the
same network (notebooks/effnet_lite.py, plain PyTorch, efficientnet_pytorch key layout, strict
load of the converted weights `make weights` writes) in eval mode under `torch.inference_mode()`,
global-average-pooled to 1280 floats. Every image of IMAGES_DIR (sorted by name) once.

Prints one JSON line: images, seconds (building the loader to the last batch's features; imports
and model load not counted — bench/effnet_bench.sh times whole processes), images/s.
"""
import argparse
import json
import os
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notebooks"))
import effnet_lite as E  # noqa: E402


class Images(torch.utils.data.Dataset):
    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return E.preprocess(im, self.size)  # (3, S, S)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("weights")
    ap.add_argument("--variant", default="efficientnet_lite0", choices=sorted(E.VARIANTS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--channels-last", action="store_true",
                    help="run the network in channels-last memory (captag's inference layout)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = sorted(f for f in os.listdir(a.images) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    paths = [os.path.join(a.images, f) for f in names]
    net = E.EfficientNetLite(a.variant)
    net.load_state_dict(E.load_safetensors(a.weights), strict=True)
    net.eval()
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net.to(memory_format=fmt)
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(Images(paths, net.size), batch_size=a.batch,
                                         num_workers=a.workers, persistent_workers=False)
    out = []
    with torch.inference_mode():
        for x in loader:
            out.append(net.grid(x.contiguous(memory_format=fmt)).mean(dim=(2, 3)))  # (B, 1280)
    secs = time.perf_counter() - t0
    if a.out:
        torch.save(torch.cat(out), a.out)
    print(json.dumps({"impl": "pytorch+DataLoader", "variant": a.variant, "images": len(paths),
                      "workers": a.workers, "threads": a.threads, "channels_last": a.channels_last, "seconds": secs,
                      "images_per_s": len(paths) / secs, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
