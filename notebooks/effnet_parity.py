"""Real-weights parity of `captag features --encoder efficientnet_lite0|2` with the independent
plain-PyTorch EfficientNet-Lite (`notebooks/effnet_lite.py`: PIL decode, bicubic resize of the
shorter side to int(size / 0.875), centre crop, (x - 127) / 128; the same converted weights).

    captag --threads 1 features --data DIR --encoder efficientnet_lite0 \\
        --encoder-weights data/weights/efficientnet_lite0.safetensors --grid --out /tmp/l0.safetensors
    PYTHONPATH=<site-packages with pillow> .venv/bin/python notebooks/effnet_parity.py \\
        DIR/Images /tmp/l0.safetensors data/weights/efficientnet_lite0.safetensors efficientnet_lite0 [N]

For the first N (default 10) images of the cache: cosine of captag's pooled vector (and grid,
stored as float16) with the reference's, and the ImageNet top-1 class of each (captag's pooled
vector through the weights' own `_fc` classifier vs the reference network's logits). Exits 1
if any cosine is below 0.999 or a top-1 class differs.
"""
import os
import sys

import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import effnet_lite as E  # noqa: E402


def main():
    images, cache, weights, variant = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    import json
    feats, meta = E.load_safetensors(cache, with_metadata=True)
    ids = json.loads(meta["ids"])[:n]
    net = E.EfficientNetLite(variant).eval()
    sd = E.load_safetensors(weights)
    net.load_state_dict(sd, strict=True)
    x = torch.stack([E.preprocess(Image.open(os.path.join(images, i)), net.size) for i in ids])
    with torch.no_grad():
        pooled, grid, logits = net(x)
        ours = feats["pooled"][:n].float()
        our_logits = ours @ sd["_fc.weight"].T + sd["_fc.bias"]
    cos = F.cosine_similarity(ours, pooled, dim=1)
    grid_cos = None
    if "grid" in feats:
        g = feats["grid"][:n].float().flatten(1)  # (n, h*w*1280), captag's (B, N, C) order
        ref = grid.flatten(2).transpose(1, 2).flatten(1)
        grid_cos = F.cosine_similarity(g, ref, dim=1)
    ok = True
    for k, name in enumerate(ids):
        a, b = int(our_logits[k].argmax()), int(logits[k].argmax())
        ok &= a == b and float(cos[k]) >= 0.999
        line = f"{name}  cos {float(cos[k]):.6f}"
        if grid_cos is not None:
            line += f"  grid cos {float(grid_cos[k]):.6f}"
            ok &= float(grid_cos[k]) >= 0.999
        print(line + f"  top-1 captag {a} reference {b} (p={float(logits[k].softmax(0)[b]):.2f})")
    rel = float((ours - pooled).abs().max() / pooled.abs().max())
    print(f"{variant}: {len(ids)} images, min cosine {float(cos.min()):.6f}"
          + (f", min grid cosine {float(grid_cos.min()):.6f}" if grid_cos is not None else "")
          + f", max |diff| / max |ref| {rel:.2e}, top-1 agree {int((our_logits.argmax(1) == logits.argmax(1)).sum())}/{len(ids)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
