#!/usr/bin/env python3
"""PyTorch + torchvision reference for `captag features` (bench/README.md, "Feature extraction").

    features_reference.py IMAGES_DIR WEIGHTS [--workers 2] [--batch 32] [--threads 2]
                          [--device cpu|cuda] [--out POOLED.npy] [--decode-only]

What a notebook does to cache SqueezeNet features: a `Dataset` that opens each JPEG with PIL,
converts to RGB and preprocesses it the way the converted Keras weights expect (Caffe mode:
squash to 224x224 if needed, RGB->BGR, 0..255 minus [103.939, 116.779, 123.68]; captag's
`CaffeBgr`), a `DataLoader` with worker processes, and torchvision's `squeezenet1_1().features`
with the same weights (`notebooks/convert_keras_squeezenet.py`), global-average-pooled to 512
floats, under `torch.inference_mode()`. Every image of IMAGES_DIR (sorted by name) once.

Prints one JSON line: images, seconds (from building the loader to the last batch's features
on the host; process start, imports and model load are not counted — time the whole process
from outside for that), images/s. `--out` saves the pooled features (N, 512) in name order for
the agreement check against captag's cache. `--decode-only` runs the same loader without the
network: the decode-and-preprocess bound of the machine's cores.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(3, 1, 1)
SIZE = 224


class Images(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB")
            if im.size != (SIZE, SIZE):
                im = im.resize((SIZE, SIZE), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy())  # (H, W, 3) RGB
        return x.permute(2, 0, 1).flip(0) - MEAN_BGR  # (3, H, W) BGR minus mean


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("weights")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    ap.add_argument("--decode-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    names = sorted(f for f in os.listdir(a.images) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    paths = [os.path.join(a.images, f) for f in names]
    net = torchvision.models.squeezenet1_1().features
    state = {k.removeprefix("features."): v for k, v in load_file(a.weights).items()}
    net.load_state_dict(state, strict=True)
    net.eval().to(dev)
    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(
        Images(paths), batch_size=a.batch, num_workers=a.workers,
        pin_memory=dev.type == "cuda", persistent_workers=False,
    )
    out = []
    with torch.inference_mode():
        for x in loader:
            if a.decode_only:
                out.append(x.shape[0])
                continue
            f = net(x.to(dev, non_blocking=True)).mean(dim=(2, 3))  # (B, 512)
            out.append(f.cpu())
    secs = time.perf_counter() - t0
    if a.out and not a.decode_only:
        np.save(a.out, torch.cat(out).numpy())
    print(json.dumps({"impl": "pytorch+torchvision", "decode_only": a.decode_only, "images": len(paths),
                      "workers": a.workers, "threads": a.threads, "device": a.device,
                      "seconds": secs, "images_per_s": len(paths) / secs, "torch": torch.__version__,
                      "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    main()
