"""Writes tests/fixtures/effnet/{efficientnet_lite0,efficientnet_lite2}.safetensors: what the
plain-PyTorch EfficientNet-Lite of `notebooks/effnet_lite.py` computes with pseudo-random
weights, so `cargo test` checks captag's network (src/model/effnet.rs) without the real weights.

Neither weights nor inputs are stored: both sides draw them from splitmix64 (one stream per
tensor, seeded with the FNV-1a 64 hash of its name; u = top 24 bits / 2^24, exact in f32):

    conv kernels (4-D)     uniform ±sqrt(3 / fan_in)        fan_in = in/groups·kh·kw
    BatchNorm weight       0.5 + u          bias, running_mean  ±0.1
    BatchNorm running_var  0.5 + u          _fc.weight  ±sqrt(3 / 1280), _fc.bias ±0.1
    input `input`          2 × 3 × S × S uniform ±1 (S = 64 for Lite0, 66 for Lite2: odd
                           sizes from the second stride on exercise the symmetric SAME pads)

The file holds `pooled` (2, 1280), `grid` (2, 1280, h, w) and `logits` (2, 1000) in float32,
computed in float64 (the reference's own rounding stays out of the comparison).

    .venv/bin/python notebooks/make_effnet_fixture.py    # ~1 minute, pure-Python RNG
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import effnet_lite as E  # noqa: E402

M64 = (1 << 64) - 1
SIZES = {"efficientnet_lite0": 64, "efficientnet_lite2": 66}


def fnv1a(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(name, n):
    """n draws of u in [0, 1) (24 bits) from splitmix64 seeded with fnv1a(name)."""
    state = fnv1a(name)
    out = [0.0] * n
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out[i] = (z >> 40) / 16777216.0
    return torch.tensor(out, dtype=torch.float64)


def fill(name, shape):
    n = 1
    for d in shape:
        n *= d
    u = uniform(name, n).view(shape)
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        b = (3.0 / fan_in) ** 0.5
        return (2 * u - 1) * b
    if name == "_fc.weight":
        return (2 * u - 1) * (3.0 / 1280) ** 0.5
    if name.endswith("running_var") or (name.endswith(".weight") and "_bn" in name):
        return 0.5 + u
    return (2 * u - 1) * 0.1  # biases, running means


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "effnet")
    os.makedirs(out_dir, exist_ok=True)
    for name, size in SIZES.items():
        net = E.EfficientNetLite(name).double().eval()
        sd = {k: fill(k, tuple(v.shape)) for k, v in net.state_dict().items()
              if not k.endswith("num_batches_tracked")}
        net.load_state_dict(sd, strict=False)
        x = (2 * uniform("input", 2 * 3 * size * size) - 1).view(2, 3, size, size)
        with torch.no_grad():
            pooled, grid, logits = net(x)
        path = os.path.join(out_dir, f"{name}.safetensors")
        E.save_safetensors({"pooled": pooled.float(), "grid": grid.float(), "logits": logits.float()},
                           path, {"size": str(size), "script": "notebooks/make_effnet_fixture.py"})
        print(name, tuple(grid.shape), "pooled mean %.4f std %.4f, grid >0: %.2f, =6: %.3f" % (
            pooled.mean(), pooled.std(), (grid > 0).double().mean(), (grid >= 6).double().mean()))


if __name__ == "__main__":
    main()
