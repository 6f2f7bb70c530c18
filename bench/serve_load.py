#!/usr/bin/env python3
"""Bounded load test of `captag serve` against `captag caption` in one process (bench/README.md).

    bench/serve_load.py CAPTAG RUN IMAGE_DIR [--clients 16] [--requests 320] [--beam 1]

Starts `CAPTAG serve RUN` on 127.0.0.1 (ephemeral port, a fresh database), sends --requests
POST /api/caption (raw image bytes, the images of IMAGE_DIR in turn) from --clients threads,
and reports requests/s, p50/p95/p99 latency, errors and the server's peak RSS (VmHWM). Then
runs `CAPTAG caption RUN` over the same images (as many files as requests, in one process) and
over one image, so that per-image time = (many - one) / (n - 1) leaves out process start and
model load. The ratio says what the server adds per image. Standard library only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client


def percentile(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("captag")
    ap.add_argument("run")
    ap.add_argument("images")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    files = sorted(
        os.path.join(a.images, f)
        for f in os.listdir(a.images)
        if f.lower().endswith((".jpg", ".jpeg", ".png"))
    )
    if not files:
        sys.exit(f"no images in {a.images}")
    blobs = [open(f, "rb").read() for f in files]
    tmp = tempfile.mkdtemp()
    db = os.path.join(tmp, "ratings.sqlite")
    srv = subprocess.Popen(
        [a.captag, "--threads", a.threads, "-q", "serve", a.run, "--addr", "127.0.0.1:0",
         "--db", db, "--queue", str(a.clients * 2), "--beam", str(a.beam)],
        stdout=subprocess.PIPE,
    )
    line = srv.stdout.readline().decode().strip()
    host, port = line.removeprefix("listening on http://").rsplit(":", 1)
    lat, errors, lock = [], [], threading.Lock()
    counter = iter(range(a.requests))

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            conn.request("POST", f"/api/caption?beam={a.beam}", body=blobs[i % len(blobs)],
                         headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            r.read()
            dt = time.perf_counter() - t0
            with lock:
                (lat if r.status == 200 else errors).append(dt if r.status == 200 else r.status)
        conn.close()

    # Warm-up request (first-call allocations), not counted.
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    c.request("POST", "/api/caption", body=blobs[0])
    c.getresponse().read()
    t0 = time.perf_counter()
    ts = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    with open(f"/proc/{srv.pid}/status") as f:
        rss = next(l for l in f if l.startswith("VmHWM")).split()[1]
    srv.terminate()
    srv.wait()

    # The CLI on the same images, as many files as requests (hard links).
    many = os.path.join(tmp, "many")
    os.mkdir(many)
    for i in range(a.requests):
        src = files[i % len(files)]
        os.link(src, os.path.join(many, f"{i:05d}{os.path.splitext(src)[1]}"))
    def cli(target):
        t = time.perf_counter()
        subprocess.run([a.captag, "--threads", a.threads, "-q", "caption", a.run, target,
                        "--beam", str(a.beam)], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t
    one = min(cli(files[0]) for _ in range(3))
    n_wall = cli(many)
    cli_per_image = (n_wall - one) / (a.requests - 1)
    shutil.rmtree(tmp)

    srv_per_image = wall / max(1, len(lat))
    print(f"server: {len(lat)} ok, {len(errors)} errors, {a.clients} clients, "
          f"{len(lat) / wall:.1f} requests/s, latency p50 {percentile(lat, 50) * 1e3:.1f} ms, "
          f"p95 {percentile(lat, 95) * 1e3:.1f} ms, p99 {percentile(lat, 99) * 1e3:.1f} ms, "
          f"peak RSS {int(rss) / 1024:.0f} MiB")
    print(f"captag caption, one process: {cli_per_image * 1e3:.2f} ms per image "
          f"({a.requests} images {n_wall:.2f} s, one image {one:.2f} s)")
    print(f"server time per image / CLI time per image: {srv_per_image / cli_per_image:.3f} "
          f"({srv_per_image * 1e3:.2f} ms vs {cli_per_image * 1e3:.2f} ms)")
    if errors:
        sys.exit(f"{len(errors)} requests failed: {sorted(set(errors))}")


if __name__ == "__main__":
    main()
