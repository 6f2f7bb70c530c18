"""Evidence that the converted Keras SqueezeNet weights are right, and parity features for captag.

Three checks on `data/weights/squeezenet1_1.safetensors` (from `convert_keras_squeezenet.py`):

1. Independent reference. The first N Flickr8k images (sorted names) go through
   (a) torchvision `squeezenet1_1().features` with the converted weights (strict load, NCHW,
       OIHW, ceil-mode pools) and
   (b) a float64 NumPy re-implementation of the *Keras* graph read straight from the HDF5
       (NHWC, HWIO kernels used as stored, 'valid'/'same' padding, floor pools, concat
       [expand1x1, expand3x3]); it shares no code with the conversion.
   Global-average-pooled 512-d features must agree to float32 rounding.
2. Linear probe. Pooled features of ~2,000 train + 500 dev images, pretrained vs random-init
   (torchvision default init, seed 0) weights; a multi-label logistic-regression probe predicts
   the most common caption nouns (a noun is present if >= 2 of the image's 5 captions use it).
   Pretrained features must clearly beat random ones on dev (mean AUC, mAP).
3. Writes the pooled features of the first N images to JSON `{"image.jpg": [512 floats]}` so
   captag's Rust encoder can be checked against them.

Preprocessing (Caffe mode, what the Keras weights expect and captag's `CaffeBgr` does):
decode JPEG to RGB uint8 (PIL), squash-resize to 224x224 if needed (Flickr8k here is already
224x224, so no resize happens), RGB->BGR, float, subtract [103.939, 116.779, 123.68], no scaling.

    python notebooks/squeezenet_parity.py \
        --weights data/weights/squeezenet1_1.safetensors \
        --h5 /work/shared/weights/squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --flickr /work/shared/data/flickr8k \
        --features-out data/weights/squeezenet_parity_features.json
"""

import argparse
import collections
import csv
import json
import os
import re
import sys
import time

import h5py
import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
SIZE = 224
FIRE_NAMES = [f"fire{i}" for i in range(2, 10)]

# Frequent caption words that are not nouns naming something visible (function words, numbers,
# colours and other adjectives, verbs, "front" from "in front of"). Nouns are what is left, in
# frequency order; the chosen list is printed.
NOT_NOUNS = set(
    """a an the in on of and is are with to at his her its their while through down up over into
    for by off from near out next other another behind around across under after as it this that
    there some each together one two three four five six several many
    white black brown red blue yellow green pink orange purple gray grey dark colorful
    young little small large big old tall long wet snowy
    wearing running playing standing jumping sitting holding walking riding climbing swimming
    looking smiling carrying doing dressed catch play stand sit runs jumps stands sits walks rides
    plays holds front top""".split()
)


# ---------------------------------------------------------------- images and preprocessing


def load_caffe_bgr(path: str) -> np.ndarray:
    """JPEG -> (3, 224, 224) float32, BGR, 0..255 minus the Caffe mean."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (SIZE, SIZE):
            im = im.resize((SIZE, SIZE), Image.BILINEAR)  # squash: aspect ratio not kept
        rgb = np.asarray(im, dtype=np.float32)  # (H, W, 3)
    bgr = rgb[:, :, ::-1] - CAFFE_MEAN_BGR  # (H, W, 3)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))  # (3, H, W)


# ---------------------------------------------------------------- models


def torch_features(state: dict) -> torch.nn.Module:
    net = torchvision.models.squeezenet1_1(weights=None).features
    net.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
    return net.eval()


def random_features(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.squeezenet1_1(weights=None).features.eval()


@torch.no_grad()
def pooled(net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(batch)  # (B, 3, 224, 224)
    return net(x).mean(dim=(2, 3)).numpy()  # (B, 512)


class KerasReference:
    """The Keras SqueezeNet graph in float64 NumPy, NHWC, weights used exactly as stored."""

    def __init__(self, h5_path: str):
        self.w = {}
        with h5py.File(h5_path, "r") as f:
            for layer in ["conv1"] + [f"{n}/{b}" for n in FIRE_NAMES
                                      for b in ("squeeze1x1", "expand1x1", "expand3x3")]:
                names = [n.decode() for n in f[layer].attrs["weight_names"]]
                kernel, bias = (np.asarray(f[layer][n], dtype=np.float64) for n in names)
                self.w[layer] = (kernel, bias)

    @staticmethod
    def conv(x, kernel, bias, stride, pad):
        """TF conv2d: out[y, x, o] = sum_{i,j,c} in[s*y+i, s*x+j, c] * K[i, j, c, o] + b[o]."""
        if pad:
            x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
        kh, kw = kernel.shape[:2]
        win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(0, 1))  # (H', W', C, kh, kw)
        win = win[::stride, ::stride]
        return np.einsum("yxcij,ijco->yxo", win, kernel, optimize=True) + bias

    @staticmethod
    def maxpool_valid(x):
        """Keras MaxPooling2D((3,3), (2,2), 'valid'): output size floor((n-3)/2)+1."""
        win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(0, 1))[::2, ::2]
        return win.max(axis=(3, 4))

    def pooled(self, chw: np.ndarray) -> np.ndarray:
        relu = lambda t: np.maximum(t, 0.0)
        x = chw.astype(np.float64).transpose(1, 2, 0)  # (224, 224, 3) NHWC
        x = self.maxpool_valid(relu(self.conv(x, *self.w["conv1"], 2, 0)))  # (55, 55, 64)
        for name in FIRE_NAMES:
            s = relu(self.conv(x, *self.w[f"{name}/squeeze1x1"], 1, 0))
            e1 = relu(self.conv(s, *self.w[f"{name}/expand1x1"], 1, 0))
            e3 = relu(self.conv(s, *self.w[f"{name}/expand3x3"], 1, 1))  # 'same'
            x = np.concatenate([e1, e3], axis=2)
            if name in ("fire3", "fire5"):  # pool3, pool5
                x = self.maxpool_valid(x)
        return x.mean(axis=(0, 1))  # (512,), GlobalAveragePooling2D


# ---------------------------------------------------------------- labels


def read_captions(path: str) -> dict:
    caps = collections.defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            caps[row["image"]].append(row["caption"])
    return caps


def image_words(captions: list) -> collections.Counter:
    """word -> number of this image's captions that use it (plural 's' folded by the caller)."""
    c = collections.Counter()
    for s in captions:
        c.update(set(re.findall(r"[a-z]+", s.lower())))
    return c


def fold_plurals(vocab: collections.Counter) -> dict:
    """'dogs' -> 'dog' when the singular is at least as frequent; irregular plurals stay apart."""
    return {
        w: w[:-1]
        for w in vocab
        if w.endswith("s") and not w.endswith("ss") and vocab.get(w[:-1], 0) >= vocab[w]
    }


def label_sets(caps: dict, min_captions: int = 2) -> dict:
    raw = collections.Counter()
    per_image = {}
    for im, cs in caps.items():
        per_image[im] = image_words(cs)
        raw.update(per_image[im].keys())
    fold = fold_plurals(raw)
    out = {}
    for im, c in per_image.items():
        merged = collections.Counter()
        for w, n in c.items():
            merged[fold.get(w, w)] += n  # "dog" in 2 captions + "dogs" in 1 = 3
        out[im] = {w for w, n in merged.items() if n >= min_captions}
    return out


def top_nouns(labels: dict, images: list, k: int) -> list:
    df = collections.Counter()
    for im in images:
        df.update(labels[im])
    return [w for w, _ in df.most_common() if w not in NOT_NOUNS][:k]


# ---------------------------------------------------------------- probe and metrics


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney rank statistic (ties get average ranks)."""
    pos, neg = y.sum(), len(y) - y.sum()
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Non-interpolated AP (sklearn's definition): mean precision at each positive's rank."""
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    hits = y[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / hits.sum())


def train_probe(xtr, ytr, epochs: int, weight_decay: float, seed: int = 0):
    """Full-batch multi-label logistic regression on standardized features (Adam)."""
    torch.manual_seed(seed)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    x = torch.from_numpy((xtr - mu) / sd).float()
    y = torch.from_numpy(ytr).float()
    lin = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(x), y)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def predict(xs):
        return lin(torch.from_numpy((xs - mu) / sd).float()).numpy()

    return predict


def evaluate(scores, y):
    aucs = [auc(y[:, j], scores[:, j]) for j in range(y.shape[1])]
    aps = [average_precision(y[:, j], scores[:, j]) for j in range(y.shape[1])]
    return np.nanmean(aucs), np.nanmean(aps), aucs, aps


# ---------------------------------------------------------------- main


def extract(nets: dict, paths: list, batch: int) -> dict:
    feats = {k: [] for k in nets}
    for i in range(0, len(paths), batch):
        x = np.stack([load_caffe_bgr(p) for p in paths[i:i + batch]])  # (B, 3, 224, 224)
        for k, net in nets.items():
            feats[k].append(pooled(net, x))
    return {k: np.concatenate(v) for k, v in feats.items()}


def read_split(path: str, present: set, n: int) -> list:
    with open(path) as f:
        names = [ln.strip() for ln in f if ln.strip()]
    return [x for x in names if x in present][:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="data/weights/squeezenet1_1.safetensors")
    ap.add_argument("--h5", default="/work/shared/weights/squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5")
    ap.add_argument("--flickr", default="/work/shared/data/flickr8k")
    ap.add_argument("--features-out", default="data/weights/squeezenet_parity_features.json")
    ap.add_argument("--n-parity", type=int, default=20)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-dev", type=int, default=500)
    ap.add_argument("--n-nouns", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="small batches run fastest on 1 thread")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    state = load_file(args.weights)
    pre = torch_features(state)
    img_dir = os.path.join(args.flickr, "Images")
    present = set(os.listdir(img_dir))

    # 1. independent Keras-graph reference on the first N images
    first = sorted(present)[: args.n_parity]
    x = np.stack([load_caffe_bgr(os.path.join(img_dir, p)) for p in first])
    ours = pooled(pre, x)  # (N, 512)
    ref = KerasReference(args.h5)
    t0 = time.time()
    keras = np.stack([ref.pooled(c) for c in x])  # (N, 512) float64
    diff = np.abs(ours - keras)
    rel = diff.max() / np.abs(keras).max()
    print(f"[parity] {len(first)} images: torchvision(converted) vs NumPy Keras graph (float64): "
          f"max |diff| {diff.max():.3e}, max |ref| {np.abs(keras).max():.3f}, rel {rel:.2e} "
          f"({time.time() - t0:.1f}s)")
    if rel > 1e-4:
        print("[parity] FAIL: converted weights do not reproduce the Keras graph", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.features_out)), exist_ok=True)
    with open(args.features_out, "w") as f:
        json.dump({n: [float(v) for v in row] for n, row in zip(first, ours)}, f)
    print(f"[parity] wrote {args.features_out} ({len(first)} x {ours.shape[1]}, from PIL "
          f"{Image.__version__} decoding)")

    # 2. linear probe, pretrained vs random init
    caps = read_captions(os.path.join(args.flickr, "captions.txt"))
    labels = label_sets(caps)
    train = read_split(os.path.join(args.flickr, "Flickr_8k.trainImages.txt"), present, args.n_train)
    dev = read_split(os.path.join(args.flickr, "Flickr_8k.devImages.txt"), present, args.n_dev)
    nouns = top_nouns(labels, train, args.n_nouns)
    ytr = np.array([[w in labels[im] for w in nouns] for im in train], dtype=np.float32)
    ydev = np.array([[w in labels[im] for w in nouns] for im in dev], dtype=np.float32)
    print(f"[probe] {len(train)} train / {len(dev)} dev images; nouns (dev positives): "
          + ", ".join(f"{w}({int(n)})" for w, n in zip(nouns, ydev.sum(0))))

    nets = {"pretrained": pre, "random": random_features(0)}
    t0 = time.time()
    ftr = extract(nets, [os.path.join(img_dir, p) for p in train], args.batch)
    fdev = extract(nets, [os.path.join(img_dir, p) for p in dev], args.batch)
    print(f"[probe] extracted {len(train) + len(dev)} images x {len(nets)} nets in "
          f"{time.time() - t0:.1f}s ({args.threads} thread)")

    results = {}
    for k in nets:
        predict = train_probe(ftr[k], ytr, args.epochs, args.weight_decay)
        results[k] = evaluate(predict(fdev[k]), ydev)
        tr_auc, tr_map, _, _ = evaluate(predict(ftr[k]), ytr)
        print(f"[probe] {k:10s} dev mean AUC {results[k][0]:.3f}  dev mAP {results[k][1]:.3f}"
              f"   (train AUC {tr_auc:.3f}, mAP {tr_map:.3f})")
    base = ydev.mean(0).mean()
    print(f"[probe] chance: AUC 0.500, mAP = mean positive rate {base:.3f}")
    print("[probe] per noun dev AUC pretrained / random:")
    for j, w in enumerate(nouns):
        print(f"    {w:10s} {results['pretrained'][2][j]:.3f} / {results['random'][2][j]:.3f}")

    for wd in (0.0, 1e-2):  # the ranking is not an artefact of the one regularization setting
        line = []
        for k in nets:
            p = train_probe(ftr[k], ytr, args.epochs, wd)
            a, m, _, _ = evaluate(p(fdev[k]), ydev)
            line.append(f"{k} AUC {a:.3f} mAP {m:.3f}")
        print(f"[probe] weight_decay={wd:g}: " + "; ".join(line))

    won = results["pretrained"][0] > results["random"][0] + 0.05
    print(f"[probe] pretrained {'clearly beats' if won else 'does NOT clearly beat'} random init")
    return 0 if won else 1


if __name__ == "__main__":
    sys.exit(main())
