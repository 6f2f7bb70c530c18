"""PyTorch eager reference for captag's restoration-training benchmark (bench/restore_bench.sh).

Trains what `captag restore train` trains, written the plain PyTorch way, and prints images/s:
- the mask U-Net: `depth + 1` levels of two (3x3 conv, BatchNorm, ReLU), 2x2 max-pool down,
  nearest 2x upsampling + skip concatenation up, a 1x1 head; `channels * 2^min(i, 3)` per level;
  loss mean BCE-with-logits + Dice (per image, smoothing 1);
- the partial-convolution U-Net (Liu et al. 2018): `depth` stride-2 partial convolutions down
  (kernels 7, 5, then 3; ReLU), nearest upsampling + skip concatenation + 3x3 partial
  convolutions up (LeakyReLU 0.01, none after the last), each decoder input channel with its own
  mask; input in [-1, 1]; a partial convolution is `W^T(X*M) * sum(1)/sum(M) + b` where
  sum(M) > 0 (the mask sum a no-grad convolution of the mask with a ones kernel), else 0;
  loss valid L1 + 6 * hole L1 + 0.1 * total variation of the composite over the hole's 1-px
  dilation;
- one Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8) over both networks' parameters.

Images: the damaged copy `captag damage --size S` wrote (images/, masks/, clean/): the same
pictures and the same kind of damage captag trains on, decoded once before timing (captag too
decodes its training images before the first epoch; it draws new damage per batch, which this
script does not). Batches cycle through the images in a fixed shuffled order.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


class Block(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(o)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class MaskUNet(nn.Module):
    def __init__(self, c, depth):
        super().__init__()
        ch = lambda i: c * (1 << min(i, 3))
        self.down = nn.ModuleList(Block(3 if i == 0 else ch(i - 1), ch(i)) for i in range(depth + 1))
        self.up = nn.ModuleList(Block(ch(i + 1) + ch(i), ch(i)) for i in range(depth))
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, img):
        x = img * 2 - 1
        skips = []
        for i, b in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = b(x)
            skips.append(x)
        skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.up[i](torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skips[i]], 1))
        return self.head(x)


class PartialConv2d(nn.Module):
    def __init__(self, cin, cout, k, stride, mask_channels):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=True)
        nn.init.zeros_(self.conv.bias)
        self.register_buffer("ones", torch.ones(1, mask_channels, k, k))
        self.stride, self.pad = stride, k // 2
        self.area = float(mask_channels * k * k)

    def forward(self, x, mask):
        raw = F.conv2d(x * mask, self.conv.weight, None, self.stride, self.pad)
        with torch.no_grad():
            valid = F.conv2d(mask, self.ones, None, self.stride, self.pad)
            new_mask = (valid > 0).float()
            ratio = self.area / valid.clamp_min(1e-8) * new_mask
        return (raw * ratio + self.conv.bias.view(1, -1, 1, 1)) * new_mask, new_mask


class PConvUNet(nn.Module):
    def __init__(self, c, depth):
        super().__init__()
        ch = [3] + [c * (1 << min(i, 3)) for i in range(depth)]
        k = lambda i: 7 if i == 0 else 5 if i == 1 else 3
        self.down = nn.ModuleList(PartialConv2d(ch[i], ch[i + 1], k(i), 2, 1) for i in range(depth))
        ups = []
        for i in range(depth):
            cin = (ch[depth] if i + 1 == depth else ch[i + 1]) + ch[i]
            ups.append(PartialConv2d(cin, ch[i], 3, 1, cin))
        self.up = nn.ModuleList(ups)
        self.ch = ch

    def forward(self, img, valid):
        x = (img * 2 - 1) * valid
        m = valid
        feats = [(x, m)]
        for layer in self.down:
            y, m = layer(x, m)
            x = F.relu(y)
            feats.append((x, m))
        feats.pop()
        for i in reversed(range(len(self.up))):
            skip, skip_m = feats[i]
            ux = F.interpolate(x, scale_factor=2, mode="nearest")
            um = F.interpolate(m, scale_factor=2, mode="nearest")
            xin = torch.cat([ux, skip], 1)
            min_ = torch.cat([um.expand(-1, ux.shape[1], -1, -1), skip_m.expand(-1, self.ch[i], -1, -1)], 1)
            y, m = self.up[i](xin, min_)
            x = y if i == 0 else F.leaky_relu(y)
        return (x + 1) * 0.5


def mask_loss(logits, hole):
    bce = F.binary_cross_entropy_with_logits(logits, hole)
    p = torch.sigmoid(logits)
    inter = (p * hole).sum((1, 2, 3))
    total = p.sum((1, 2, 3)) + hole.sum((1, 2, 3))
    dice = (2 * inter + 1) / (total + 1)
    return bce + (1 - dice).mean()


def inpaint_loss(out, gt, valid):
    hole = 1 - valid
    diff = (out - gt).abs()
    l_valid = (diff * valid).mean()
    l_hole = (diff * hole).mean() * 6.0
    comp = gt * valid + out * hole
    region = F.max_pool2d(hole, 3, 1, 1)
    dx = (comp[..., :, 1:] - comp[..., :, :-1]).abs() * torch.maximum(region[..., :, 1:], region[..., :, :-1])
    dy = (comp[..., 1:, :] - comp[..., :-1, :]).abs() * torch.maximum(region[..., 1:, :], region[..., :-1, :])
    l_tv = (dx.sum() + dy.sum()) * (0.1 / comp.numel())
    return l_valid + l_hole + l_tv


def load(folder, limit):
    names = sorted(os.listdir(os.path.join(folder, "clean")))[:limit]
    clean, damaged, hole = [], [], []
    for n in names:
        rd = lambda d, mode: np.asarray(Image.open(os.path.join(folder, d, n)).convert(mode), dtype=np.float32) / 255.0
        clean.append(rd("clean", "RGB").transpose(2, 0, 1))
        damaged.append(rd("images", "RGB").transpose(2, 0, 1))
        hole.append((rd("masks", "L") > 0).astype(np.float32)[None])
    t = lambda xs: torch.from_numpy(np.stack(xs))
    return t(clean), t(damaged), t(hole)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("damaged", help="folder written by `captag damage --size S`")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--mask-channels", type=int, default=16)
    ap.add_argument("--mask-depth", type=int, default=4)
    ap.add_argument("--inpaint-channels", type=int, default=16)
    ap.add_argument("--inpaint-depth", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    clean, damaged, hole = load(a.damaged, a.limit)
    n = clean.shape[0]
    mask_net = MaskUNet(a.mask_channels, a.mask_depth).train()
    inpaint = PConvUNet(a.inpaint_channels, a.inpaint_depth).train()
    params = list(mask_net.parameters()) + list(inpaint.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(a.seed)).tolist()
    pos = 0
    losses = []
    t0 = None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t0 = time.perf_counter()
        idx = [order[(pos + j) % n] for j in range(a.batch_size)]
        pos += a.batch_size
        gt, x, h = clean[idx], damaged[idx], hole[idx]
        valid = 1 - h
        loss = mask_loss(mask_net(x), h) + inpaint_loss(inpaint(x, valid), gt, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    secs = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "size": clean.shape[-1], "batch_size": a.batch_size, "steps": a.steps, "seconds": round(secs, 3),
        "images_per_s": a.steps * a.batch_size / secs, "first_loss": losses[0], "last_loss": losses[-1],
    }))


if __name__ == "__main__":
    main()
