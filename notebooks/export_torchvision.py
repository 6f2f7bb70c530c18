"""Export torchvision encoder weights to safetensors under torchvision's own state-dict names.

captag's Rust encoders (`src/model/cnn.rs`) mirror torchvision's module trees, so a torchvision
state dict loads into them without renaming. This script is the recipe for users who have
internet access to torchvision's pretrained weights:

    python notebooks/export_torchvision.py --model vgg19 --out data/weights/vgg19.safetensors
    python notebooks/export_torchvision.py --model squeezenet1_1 --out data/weights/squeezenet1_1.safetensors

(`weights="DEFAULT"` downloads the ImageNet weights into torch's hub cache on first use.)

`--random` uses `weights=None` (torchvision's default init) instead; it needs no network and is
how the code path is exercised offline. `--list` prints `name<TAB>shape` per state-dict entry in
state-dict order: that output is committed as `tests/fixtures/torchvision/*.txt`.

torchvision's pretrained weights expect ImageNet normalization of RGB in [0, 1]
(mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]); that is recorded in the file's metadata
as `"preprocess": "imagenet"`. (The Keras SqueezeNet conversion, `convert_keras_squeezenet.py`,
records `"caffe_bgr"` instead.)
"""

import argparse
import sys

import torch
import torchvision
from safetensors.torch import save_file

MODELS = ("vgg19", "squeezenet1_1")


def build(name: str, random: bool) -> torch.nn.Module:
    ctor = getattr(torchvision.models, name)
    return ctor(weights=None if random else "DEFAULT")


def state_items(model: torch.nn.Module, features_only: bool):
    """(name, tensor) in state-dict order; `features_only` keeps the `features.*` entries."""
    for name, t in model.state_dict().items():
        if features_only and not name.startswith("features."):
            continue
        yield name, t


def listing(name: str, features_only: bool) -> str:
    model = build(name, random=True)
    scope = "features.* entries only" if features_only else "all entries"
    lines = [
        f"# torchvision.models.{name}(weights=None).state_dict(), {scope}, state-dict order;"
        f" torch {torch.__version__}, torchvision {torchvision.__version__}",
        "# name<TAB>shape",
    ]
    for k, t in state_items(model, features_only):
        lines.append(f"{k}\t{','.join(str(d) for d in t.shape)}")
    return "\n".join(lines) + "\n"


def export(name: str, out: str, random: bool, features_only: bool) -> None:
    model = build(name, random).eval()
    # safetensors refuses shared/non-contiguous storage; captag reads float32 only.
    tensors = {
        k: t.detach().to(torch.float32).contiguous().clone()
        for k, t in state_items(model, features_only)
    }
    meta = {
        "source": f"torchvision.models.{name}",
        "weights": "random(weights=None)" if random else "DEFAULT",
        "preprocess": "imagenet",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    save_file(tensors, out, metadata=meta)
    n = sum(t.numel() for t in tensors.values())
    print(f"wrote {out}: {len(tensors)} tensors, {n} parameters ({meta['weights']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=MODELS, required=True)
    ap.add_argument("--out", help="output .safetensors (with --list: output .txt, default stdout)")
    ap.add_argument("--list", action="store_true", help="print name<TAB>shape instead of exporting")
    ap.add_argument("--random", action="store_true", help="weights=None (offline code-path check)")
    ap.add_argument(
        "--features-only",
        action="store_true",
        help="keep only features.* (default for squeezenet1_1, whose usable weights are notop)",
    )
    args = ap.parse_args(argv)
    features_only = args.features_only or args.model == "squeezenet1_1"
    if args.list:
        text = listing(args.model, features_only)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    if not args.out:
        ap.error("--out is required unless --list")
    export(args.model, args.out, args.random, features_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
