"""A small randomly initialised GIT folder and a bounded Flickr8k subset, for showing
`captag train --init-from HF_DIR` on real photos (docs/vision-language.md, "A GIT run on
Flickr8k"). No pretrained GIT weights can be downloaded where captag is developed: the numbers
this folder leads to are those of a small GIT-architecture model trained from scratch on a few
thousand captions, not of `microsoft/git-base`.

    python notebooks/make_git_random.py FLICKR8K SUBSET_DIR GIT_DIR [--train 500] [--dev 100]

- SUBSET_DIR: the UIUC layout (`Flickr8k.token.txt`, `Flickr_8k.{train,dev,test}Images.txt`)
  for the first --train images of the standard train list and the first --dev of the dev list,
  with `Images` a symbolic link to FLICKR8K/Images (nothing is copied).
- GIT_DIR: `GitForCausalLM` saved by `save_pretrained` (config.json, model.safetensors), a
  `CLIPImageProcessor` config (shortest edge 96, centre crop 96) and a WordPiece tokenizer
  (`BertTokenizerFast`, lower case) whose vocabulary is learned from the subset's training
  captions (`tokenizers`' WordPiece trainer, at most 3,000 tokens, words seen twice or more).
  Sizes: CLIP ViT 3 layers of width 192 (3 heads, MLP 768) on 96-pixel images in 16-pixel
  patches (37 image tokens), the shared text/image stack 2 layers of width 256 (4 heads, MLP
  1024), 40 caption positions; seed 0.

(transformers 5.25.0, torch 2.11.0, tokenizers 0.23.3 were used.)
"""
import argparse
import json
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizerFast, GitConfig, GitForCausalLM


def subset(f8k: Path, out: Path, n_train: int, n_dev: int):
    lists = {s: (f8k / f"Flickr_8k.{s}Images.txt").read_text().split() for s in ("train", "dev")}
    keep = {"train": lists["train"][:n_train], "dev": lists["dev"][:n_dev], "test": []}
    out.mkdir(parents=True, exist_ok=True)
    for split, names in keep.items():
        (out / f"Flickr_8k.{split}Images.txt").write_text("".join(n + "\n" for n in names))
    wanted = set(keep["train"]) | set(keep["dev"])
    lines, train_caps = [], []
    for line in (f8k / "Flickr8k.token.txt").read_text().splitlines():
        key, _, cap = line.partition("\t")
        name = key.split("#")[0]
        if name in wanted:
            lines.append(line)
            if name in keep["train"]:
                train_caps.append(cap)
    (out / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    link = out / "Images"
    if not link.exists():
        os.symlink((f8k / "Images").resolve(), link)
    return train_caps


def tokenizer(captions, folder: Path):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=3000, min_frequency=2, special_tokens=specials)
    tok.train_from_iterator(captions, trainer)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(w + "\n" for w, _ in vocab))
    fast = BertTokenizerFast(vocab={w: i for w, i in vocab}, do_lower_case=True)
    fast.save_pretrained(folder)
    return fast


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("flickr8k", type=Path)
    ap.add_argument("subset", type=Path)
    ap.add_argument("git", type=Path)
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--dev", type=int, default=100)
    a = ap.parse_args()
    caps = subset(a.flickr8k, a.subset, a.train, a.dev)
    tok = tokenizer(caps, a.git)
    cfg = GitConfig(
        vision_config=dict(hidden_size=192, intermediate_size=768, num_hidden_layers=3,
                           num_attention_heads=3, image_size=96, patch_size=16),
        vocab_size=len(tok), hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=40, bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = GitForCausalLM(cfg)
    model.save_pretrained(a.git)
    # CLIPImageProcessor's saved settings, written as its `save_pretrained` writes them (this
    # venv's processor classes need torchvision).
    proc = {"crop_size": {"height": 96, "width": 96}, "do_center_crop": True,
            "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
            "rescale_factor": 1 / 255, "size": {"shortest_edge": 96}}
    (a.git / "preprocessor_config.json").write_text(json.dumps(proc, indent=2) + "\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"{a.git}: GIT, {n / 1e6:.1f} M parameters, vocabulary {len(tok)}; "
          f"{a.subset}: {a.train} train and {a.dev} dev images, {len(caps)} training captions")


if __name__ == "__main__":
    main()
