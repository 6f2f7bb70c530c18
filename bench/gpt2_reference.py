"""GPT-2 forward and key/value-cache decoding speed of `transformers`' GPT2LMHeadModel, the
reference side of `benches/gpt2_forward.rs` (bench/README.md, "GPT-2 forward and decoding").

    python bench/gpt2_reference.py make DIR --size tiny|gpt2
    python bench/gpt2_reference.py time DIR [--threads 1] [--reps 5] [--lengths 10,20,40]

`make` writes a randomly initialised GPT-2 (seed 0) with `save_pretrained` into DIR (never
committed: the 124M folder is 0.5 GB), and `bench_inputs.safetensors`: the forward batch
`ids` (8 × 64 random ids), the decoding `prompt` (one `<|endoftext|>`), and this side's
last-position logits of the batch and greedy ids of the prompt, so the captag side checks it
computes the same model. Sizes: `tiny` 2 layers, 128 wide, 4 heads; `gpt2` the real 124M
config (12 layers, 768 wide, 12 heads); both with GPT-2's 50,257-token vocabulary and 1,024
positions.

`time` prints one JSON line: the best of `--reps` (after one warm-up) of one full forward pass
(`torch.no_grad`, logits for every position) as tokens/s, and of greedy decoding of N new tokens
after the prompt with `past_key_values` (the same loop captag runs: one call on the prompt,
then one call per new token on the cache) as milliseconds per token.
"""
import argparse
import json
import os
import time

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

SIZES = {
    "tiny": dict(n_layer=2, n_embd=128, n_head=4),
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12),
}
BATCH, TOKENS, LONGEST = 8, 64, 40


def greedy(model, prompt, steps):
    out = model(input_ids=prompt, use_cache=True)
    past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    ids = [nxt]
    for _ in range(steps - 1):
        out = model(input_ids=nxt, past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        ids.append(nxt)
    return torch.cat([prompt] + ids, 1)


def make(args):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, **SIZES[args.size])
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(args.dir)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (BATCH, TOKENS), generator=g)
    prompt = torch.tensor([[cfg.eos_token_id]])
    with torch.no_grad():
        last = model(input_ids=ids).logits[:, -1].contiguous()
        gids = greedy(model, prompt, LONGEST)
    save_file(
        {"ids": ids, "prompt": prompt, "last_logits": last, "greedy_ids": gids},
        os.path.join(args.dir, "bench_inputs.safetensors"),
    )
    print(f"wrote {args.size} GPT-2 ({sum(p.numel() for p in model.parameters()):,} parameters) to {args.dir}")


def best(f, reps):
    f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def timing(args):
    torch.set_num_threads(args.threads)
    model = GPT2LMHeadModel.from_pretrained(args.dir).eval()
    inp = load_file(os.path.join(args.dir, "bench_inputs.safetensors"))
    ids, prompt = inp["ids"], inp["prompt"]
    with torch.no_grad():
        fwd = best(lambda: model(input_ids=ids).logits, args.reps)
        per = {}
        for n in [int(x) for x in args.lengths.split(",")]:
            per[str(n)] = 1e3 * best(lambda: greedy(model, prompt, n), args.reps) / n
        same = bool(torch.equal(greedy(model, prompt, LONGEST), inp["greedy_ids"]))
    b, t = ids.shape
    print(json.dumps({
        "side": "transformers", "dir": args.dir, "threads": args.threads,
        "n_layer": model.config.n_layer, "n_embd": model.config.n_embd, "batch": b, "tokens": t,
        "forward_s": fwd, "tokens_per_s": b * t / fwd, "decode_ms_per_token": per,
        "greedy_ids_identical": same,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    }))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--size", choices=sorted(SIZES), default="tiny")
    t = sub.add_parser("time")
    t.add_argument("dir")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--reps", type=int, default=5)
    t.add_argument("--lengths", default="10,20,40")
    args = ap.parse_args()
    make(args) if args.cmd == "make" else timing(args)


if __name__ == "__main__":
    main()
