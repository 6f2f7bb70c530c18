#!/usr/bin/env python3
"""Reference for benches/image_pipeline.rs: the PIL + torchvision preprocessing the captioning
notebooks use, timed on the same files.

    Image.open(f).convert("RGB") -> Resize(224) -> CenterCrop(224) -> ToTensor()
    -> Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

Usage: image_reference.py IMAGES_DIR [N] [--dump-first OUT.f32] [--only-dump]
       image_reference.py --make-large SRC_DIR DST_DIR N
       image_reference.py --make-parity DST_DIR N
       image_reference.py --report LABEL CAPTAG_OUT.txt PIL_OUT.txt CAPTAG.f32 PIL.f32

Times the first N files (sorted by name) on 1 thread (torch.set_num_threads(1)) and in a
multiprocessing.Pool(2) (each worker also pinned to 1 torch thread), best of REPEATS passes
after one warm-up pass that also fills the page cache. Prints `key=value` lines that
bench/image_bench.sh reads. --dump-first writes the first image's (3, 224, 224) float32 tensor,
little-endian, for the numeric comparison with captag. --make-large writes N test JPEGs at
500x375 (quality 90) resized from SRC_DIR with PIL's bicubic filter, to time a pipeline that
really resizes (the Flickr8k copy here is already 224x224, so Resize is a no-op on it).
--make-parity writes N random RGB PNGs of random shapes (1..700 px) with the bytes torchvision
makes of each (`NAME.rgb`: Resize(s)+CenterCrop(s) or Resize((s, s)) as named), for captag's
`cargo test --release --lib -- --ignored pillow_parity` (env CAPTAG_PIL_CASES=DST_DIR).
--report prints the table image_bench.sh shows: rates, ratios, and the largest difference between
the two first-image tensors.
"""
import os
import sys
import time
from multiprocessing import Pool

import torch
from PIL import Image
from torchvision import transforms as T

SIZE = 224
REPEATS = 5
TRANSFORM = T.Compose(
    [
        T.Resize(SIZE),
        T.CenterCrop(SIZE),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
)


def load(path):
    with Image.open(path) as im:
        return TRANSFORM(im.convert("RGB"))


def load_all(paths):
    for p in paths:
        load(p)
    return len(paths)


def init_worker():
    torch.set_num_threads(1)


def list_images(d, n):
    names = sorted(f for f in os.listdir(d) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    return [os.path.join(d, f) for f in names[:n]]


def best_rate(fn, n):
    """Images/s of the fastest of REPEATS runs: wall clock, and the main thread's CPU time
    (which stays honest when other processes share the cores)."""
    wall = cpu = float("inf")
    for _ in range(REPEATS):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.thread_time() - c0)
    return n / wall, n / cpu


def make_large(src, dst, n):
    os.makedirs(dst, exist_ok=True)
    for p in list_images(src, n):
        with Image.open(p) as im:
            out = os.path.join(dst, os.path.basename(p))
            im.convert("RGB").resize((500, 375), Image.BICUBIC).save(out, quality=90)


def make_parity(dst, n):
    import numpy as np

    os.makedirs(dst, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        w, h = rng.integers(1, 700, 2) if i % 2 else rng.integers(1, 90, 2)
        s = int(rng.integers(1, 260)) if i % 3 else SIZE
        if i % 4 < 2:  # noise, or a smooth ramp
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            a = ((np.indices((h, w)).sum(0)[..., None] * [3, 5, 7]) % 256).astype(np.uint8)
        im = Image.fromarray(a, "RGB")
        mode = "crop" if i % 2 == 0 else "squash"
        t = T.Compose([T.Resize(s), T.CenterCrop(s)]) if mode == "crop" else T.Resize((s, s))
        name = os.path.join(dst, f"{i}_{mode}_{s}")
        im.save(name + ".png")
        np.asarray(t(im)).tofile(name + ".rgb")


def report(label, rs_txt, py_txt, rs_f32, py_f32):
    import numpy as np

    kv = {}
    for path in (rs_txt, py_txt):
        with open(path) as f:
            kv.update(line.strip().split("=", 1) for line in f if "=" in line)
    a, b = np.fromfile(rs_f32, "<f4"), np.fromfile(py_f32, "<f4")
    d = np.abs(a - b)
    print(f"== {label}: {kv['images']} images")
    print(f"{'':22}{'captag img/s':>14}{'PIL+tv img/s':>14}{'ratio':>8}")
    for name, (r, p) in {
        "1 thread": ("captag_1thread_ips", "pil_1thread_ips"),
        "1 thread, CPU time": ("captag_1thread_cpu_ips", "pil_1thread_cpu_ips"),
        "2 threads/processes": ("captag_2thread_ips", "pil_2proc_ips"),
    }.items():
        r, p = float(kv[r]), float(kv[p])
        print(f"{name:22}{r:14.1f}{p:14.1f}{r / p:7.2f}x")
    level = 1 / 255 / 0.225  # one 8-bit step after Normalize, smallest std
    print(
        f"first image: max |captag - torchvision| = {d.max():.4g} "
        f"(= {d.max() / level:.1f} 8-bit levels), mean {d.mean():.3g}, "
        f"{(d > 1e-6).mean() * 100:.1f}% of values differ"
    )


def main(argv):
    if argv and argv[0] == "--report":
        report(*argv[1:6])
        return
    if argv and argv[0] == "--make-parity":
        make_parity(argv[1], int(argv[2]))
        return
    if argv and argv[0] == "--make-large":
        make_large(argv[1], argv[2], int(argv[3]))
        return
    dump = None
    if "--dump-first" in argv:
        i = argv.index("--dump-first")
        dump = argv[i + 1]
        del argv[i : i + 2]
    only_dump = "--only-dump" in argv
    argv = [a for a in argv if a != "--only-dump"]
    paths = list_images(argv[0], int(argv[1]) if len(argv) > 1 else 1000)
    if not paths:
        sys.exit(f"no images in {argv[0]}")
    torch.set_num_threads(1)
    if dump:
        load(paths[0]).numpy().astype("<f4").tofile(dump)
    if only_dump:
        return
    load_all(paths)  # warm-up: page cache, lazy imports
    print(f"images={len(paths)}")
    wall, cpu = best_rate(lambda: load_all(paths), len(paths))
    print(f"pil_1thread_ips={wall:.1f}")
    print(f"pil_1thread_cpu_ips={cpu:.1f}")
    chunk = max(1, len(paths) // 32)
    with Pool(2, initializer=init_worker) as pool:
        pool.map(load, paths[:4])  # start the workers before timing

        def two():
            sum(pool.map(load_all, [paths[i : i + chunk] for i in range(0, len(paths), chunk)]))

        print(f"pil_2proc_ips={best_rate(two, len(paths))[0]:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
