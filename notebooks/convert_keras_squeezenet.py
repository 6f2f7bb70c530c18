"""Convert the Keras SqueezeNet v1.1 "notop" HDF5 weights to torchvision `squeezenet1_1.features` names.

Source: keras-squeezenet (rcmalli, MIT), `squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5`,
itself converted from DeepScale's Caffe SqueezeNet v1.1. Keras HDF5 layout (Keras 2
`save_weights`): one group per layer whose `weight_names` attribute lists the layer's arrays in
`layer.weights` order, i.e. `[kernel, bias]` for Conv2D; kernels are HWIO `(kh, kw, in, out)`.

torchvision layout: `features.0` = conv1 (3x3/2, 64), max-pools at 2/5/8, fire2..fire9 at
`features.{3,4,6,7,9,10,11,12}`, each with `squeeze`, `expand1x1`, `expand3x3`; kernels OIHW.
Concat order agrees: Keras concatenates `[expand1x1, expand3x3]` on the channel axis, torchvision
`torch.cat([expand1x1, expand3x3], 1)`.

Preprocessing is *not* folded into conv1: the weights still expect Caffe-mode input
(RGB->BGR, 0..255, minus mean [103.939, 116.779, 123.68] per BGR channel, no scaling). The output
file says so in its metadata (`"preprocess": "caffe_bgr"`), and captag's `CaffeBgr`
normalization does exactly this.

Pooling: Keras `MaxPooling2D(3, 2)` with 'valid' padding floors the output size, torchvision's
pools use `ceil_mode=True`. The two agree whenever (size - 3) is even at every pool; at 224 px
input the sizes are 111 -> 55 -> 27 -> 13 either way. `--check` verifies this numerically (same
output with floor and ceil pools at 224) and lists the nearby input sizes where they differ.

    python notebooks/convert_keras_squeezenet.py \
        --h5 /work/shared/weights/squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --out data/weights/squeezenet1_1.safetensors
"""

import argparse
import hashlib
import os
import sys

import h5py
import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# Keras layer name -> torchvision module prefix.
FIRE_INDEX = {2: 3, 3: 4, 4: 6, 5: 7, 6: 9, 7: 10, 8: 11, 9: 12}
LAYER_MAP = {"conv1": "features.0"}
for _fire, _idx in FIRE_INDEX.items():
    LAYER_MAP[f"fire{_fire}/squeeze1x1"] = f"features.{_idx}.squeeze"
    LAYER_MAP[f"fire{_fire}/expand1x1"] = f"features.{_idx}.expand1x1"
    LAYER_MAP[f"fire{_fire}/expand3x3"] = f"features.{_idx}.expand3x3"


class ConversionError(Exception):
    pass


def _decode(s) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


def read_keras_layers(f: h5py.File) -> dict:
    """Keras layer name -> (kernel HWIO, bias), read via each layer's `weight_names`."""
    if "layer_names" not in f.attrs:
        raise ConversionError("not a Keras weights file: no 'layer_names' attribute at the root")
    layers = {}
    used = set()
    for lname in (_decode(n) for n in f.attrs["layer_names"]):
        g = f[lname]
        names = [_decode(n) for n in g.attrs.get("weight_names", [])]
        if not names:
            continue  # activations, pools, concat, dropout
        if len(names) != 2:
            raise ConversionError(f"{lname}: expected [kernel, bias], got {names}")
        kernel, bias = (np.asarray(g[n], dtype=np.float32) for n in names)
        used.update(f"{lname}/{n}" for n in names)
        if kernel.ndim != 4 or bias.ndim != 1 or kernel.shape[3] != bias.shape[0]:
            raise ConversionError(
                f"{lname}: kernel {kernel.shape} / bias {bias.shape} is not an HWIO conv"
            )
        layers[lname] = (kernel, bias)
    # Every array in the file must be accounted for: a stray one means a layout we don't know.
    stored = []
    f.visititems(lambda n, o: stored.append(n) if isinstance(o, h5py.Dataset) else None)
    unread = sorted(set(stored) - used)
    if unread:
        raise ConversionError(f"arrays not listed in any layer's weight_names: {unread}")
    return layers


def convert(layers: dict) -> dict:
    """Keras layers -> torchvision state dict (OIHW), checked against torchvision's own names/shapes."""
    unknown = sorted(set(layers) - set(LAYER_MAP))
    missing = sorted(set(LAYER_MAP) - set(layers))
    if unknown or missing:
        raise ConversionError(f"layer mismatch: unexpected {unknown}, missing {missing}")
    out = {}
    for lname, prefix in LAYER_MAP.items():
        kernel, bias = layers[lname]
        # HWIO (kh, kw, in, out) -> OIHW (out, in, kh, kw); Keras and torch both cross-correlate,
        # so no spatial flip.
        w = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        for name, arr in ((f"{prefix}.weight", w), (f"{prefix}.bias", bias)):
            if name in out:
                raise ConversionError(f"{name} produced twice")
            out[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)

    expected = {
        k: tuple(v.shape)
        for k, v in torchvision.models.squeezenet1_1(weights=None).state_dict().items()
        if k.startswith("features.")
    }
    problems = []
    for k, shape in expected.items():
        if k not in out:
            problems.append(f"missing {k} {shape}")
        elif tuple(out[k].shape) != shape:
            problems.append(f"{k}: got {tuple(out[k].shape)}, torchvision has {shape}")
    problems += [f"unexpected {k}" for k in out if k not in expected]
    if problems:
        raise ConversionError("converted names/shapes do not match torchvision:\n  " + "\n  ".join(problems))
    # torchvision's state-dict order, so listings diff cleanly against the fixture.
    return {k: out[k] for k in expected}


def pool_size(n: int, ceil: bool) -> int:
    return (-(-(n - 3) // 2) if ceil else (n - 3) // 2) + 1


def spatial_sizes(n: int, ceil: bool) -> list:
    """conv1 (3x3/2 valid) then the three 3x3/2 pools; fire modules keep the size."""
    sizes = [(n - 3) // 2 + 1]
    for _ in range(3):
        sizes.append(pool_size(sizes[-1], ceil))
    return sizes


def check_pooling(state: dict) -> None:
    """Floor (Keras) and ceil (torchvision) pools give the same output at 224 px."""
    ceil_net = torchvision.models.squeezenet1_1(weights=None).features
    ceil_net.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
    floor_net = torchvision.models.squeezenet1_1(weights=None).features
    floor_net.load_state_dict(ceil_net.state_dict(), strict=True)
    for m in floor_net.modules():
        if isinstance(m, torch.nn.MaxPool2d):
            m.ceil_mode = False
    ceil_net.eval()
    floor_net.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 224, 224, generator=g) * 255.0 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        a, b = ceil_net(x), floor_net(x)
    if a.shape != b.shape or not torch.equal(a, b):
        raise ConversionError(f"floor/ceil pooling differ at 224: {tuple(a.shape)} vs {tuple(b.shape)}")
    print(f"pooling: 224 px -> sizes {spatial_sizes(224, True)} with ceil and floor; "
          f"outputs identical, shape {tuple(a.shape)}")
    agree = [n for n in range(200, 257) if spatial_sizes(n, True) == spatial_sizes(n, False)]
    print(f"pooling: of input sizes 200..256, floor and ceil agree only at {agree}")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--h5", required=True, help="squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--no-check", action="store_true", help="skip the floor/ceil pooling check")
    args = ap.parse_args(argv)

    try:
        with h5py.File(args.h5, "r") as f:
            layers = read_keras_layers(f)
        state = convert(layers)
        if not args.no_check:
            check_pooling(state)
    except (ConversionError, OSError, KeyError) as e:
        print(f"error: {args.h5}: {e}", file=sys.stderr)
        return 2

    meta = {
        "source": "keras-squeezenet " + os.path.basename(args.h5),
        "source_sha256": sha256(args.h5),
        "architecture": "torchvision.models.squeezenet1_1.features",
        "preprocess": "caffe_bgr",
        "input": "BGR, 0..255, minus mean_bgr, no scaling, NCHW",
        "mean_bgr": ",".join(str(m) for m in CAFFE_MEAN_BGR),
        "converter": "notebooks/convert_keras_squeezenet.py",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    save_file(state, tmp, metadata=meta)
    os.replace(tmp, args.out)  # never leave a half-written weights file under the real name
    n = sum(t.numel() for t in state.values())
    print(f"wrote {args.out}: {len(state)} tensors, {n} parameters, preprocess=caffe_bgr")
    return 0


if __name__ == "__main__":
    sys.exit(main())
