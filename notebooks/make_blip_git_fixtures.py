"""Tiny random BLIP and GIT captioners and `transformers`' outputs for captag's parity tests
(src/model/blip/tests.rs, src/model/git/tests.rs; docs/vision-language.md).

No pretrained BLIP or GIT weights can be downloaded where captag is developed, so the two
architectures are shown correct on randomly initialised models saved exactly as a user's
download (`save_pretrained`: config.json, model.safetensors, preprocessor_config.json, the
WordPiece tokenizer files):

- tests/fixtures/hf/blip/: `BlipForConditionalGeneration` (ViT 2 layers of width 32 on 32-pixel
  images in 8-pixel patches, the BERT decoder with cross-attention 2 layers of width 32),
  `BlipImageProcessor` (384 → 32 pixels, bicubic, no crop), `[DEC]` as bos_token_id.
- tests/fixtures/hf/git/: `GitForCausalLM` (CLIP ViT 2 layers of width 32, `visual_projection`,
  2 shared self-attention layers of width 32, a separate `output` head), `CLIPImageProcessor`
  (shortest edge 32, centre crop 32).

The vocabulary is tests/fixtures/hf/bert/vocab.txt (600 WordPiece tokens) with `picture`,
`[DEC]` and `[ENC]` appended, as BLIP's tokenizer appends `[DEC]`/`[ENC]` to BERT's. The output
bias of `[SEP]` (the end token of both) is raised (and BLIP's `[DEC]`/`[ENC]` lowered, which a trained BLIP never writes) so that random models end their captions in a
few words, as trained ones do, and beam search finishes hypotheses before the length limit.

expected.safetensors in each folder holds, for two deterministic pictures (picture.png 40×30,
small.png 20×36, made here):
- `pixel_values` (2, 3, 32, 32): the slow (PIL) image processor's output, so the Rust
  preprocessing is compared to it and the model comparisons start from the same pixels;
- `image_embeds`: BLIP's `vision_model(...).last_hidden_state` (2, 17, 32), GIT's projected
  image tokens `git.visual_projection(git.image_encoder(...).last_hidden_state)` (2, 17, 32);
- `input_ids` (2, T) and `logits` (2, T, V) (GIT: (2, 17 + T, V)) for a given caption;
- `greedy` and `beam3` (2, L, padded with -1): `generate`'s new ids, max_new_tokens 12, greedy
  and num_beams 3 (length_penalty 1, the defaults otherwise); BLIP also `prompt_ids` (the
  tokenized "a picture of" prompt without its final [SEP]) and `prompt_greedy`;
and captions.json the decoded greedy and beam captions (`skip_special_tokens=True`).

    /tmp/venv-gpt2lm/bin/python notebooks/make_blip_git_fixtures.py
(transformers 5.25.0 and torch 2.11.0 were used for the committed files.)
"""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                          CLIPImageProcessor, GitConfig, GitForCausalLM)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

try:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as ClipPil
except ImportError:  # older layouts
    ClipPil = CLIPImageProcessor

HF = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"
MAX_NEW = 12


def tokenizer(folder, bos):
    words = (HF / "bert" / "vocab.txt").read_text().splitlines() + ["picture", "[DEC]", "[ENC]"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    extra = {"bos_token": bos} if bos == "[DEC]" else {}
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True, **extra)
    if bos == "[DEC]":
        tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.save_pretrained(folder)
    return tok, len(words)


def pictures(folder):
    yy, xx = np.mgrid[0:30, 0:40]
    a = np.stack([xx * 6, yy * 8, (xx + yy) * 3], -1).astype(np.uint8)
    a[8:20, 10:25] = [230, 40, 40]
    yy, xx = np.mgrid[0:36, 0:20]
    b = np.stack([255 - yy * 7, xx * 12, (xx * yy) % 256], -1).astype(np.uint8)
    b[20:30, 4:16] = [30, 200, 90]
    Image.fromarray(a).save(folder / "picture.png")
    Image.fromarray(b).save(folder / "small.png")
    return [Image.open(folder / "picture.png").convert("RGB"), Image.open(folder / "small.png").convert("RGB")]


def scramble(model, sep, end_bias, never=()):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower():
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
        for name, p in model.named_parameters():
            if name in ("text_decoder.cls.predictions.bias", "output.bias"):
                p[sep] += end_bias
                for i in never:
                    p[i] -= 10.0


def padded(rows):
    n = max(len(r) for r in rows)
    return torch.tensor([r + [-1] * (n - len(r)) for r in rows], dtype=torch.long)


def new_ids(out, start, sep):
    """generate()'s rows from `start` on, cut after the first [SEP] (kept) and without padding."""
    rows = []
    for r in out[:, start:].tolist():
        keep = []
        for i in r:
            if i == 0 and keep and keep[-1] == sep:
                break
            keep.append(i)
            if i == sep:
                break
        rows.append(keep)
    return rows


def blip():
    folder = HF / "blip"
    tok, vocab = tokenizer(folder, "[DEC]")
    dec, sep = tok.convert_tokens_to_ids("[DEC]"), tok.sep_token_id
    cfg = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=vocab, hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                         bos_token_id=dec, sep_token_id=sep, pad_token_id=0, eos_token_id=sep),
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(cfg).eval()
    scramble(model, sep, 4.5, never=(dec, dec + 1))
    model.save_pretrained(folder)
    proc = BlipImageProcessorPil(size={"height": 32, "width": 32})
    proc.save_pretrained(folder)
    pv = proc(images=pictures(folder), return_tensors="pt")["pixel_values"]
    caption = tok(["a red dog", "a dog of red"], padding=True, return_tensors="pt")
    ids = caption["input_ids"].clone()
    ids[:, 0] = dec  # what BLIP's training feeds: [DEC] in place of [CLS]
    prompt = tok(["a picture of"], return_tensors="pt")["input_ids"][:, :-1].repeat(2, 1)
    with torch.no_grad():
        emb = model.vision_model(pixel_values=pv).last_hidden_state
        logits = model(pixel_values=pv, input_ids=ids, attention_mask=caption["attention_mask"]).logits
        gen = dict(max_new_tokens=MAX_NEW)
        greedy = model.generate(pixel_values=pv, do_sample=False, num_beams=1, **gen)
        beam = model.generate(pixel_values=pv, do_sample=False, num_beams=3, **gen)
        prompted = model.generate(pixel_values=pv, input_ids=torch.cat([prompt, prompt[:, :1]], 1),
                                  do_sample=False, num_beams=1, **gen)
    # generate() returns the start token ([DEC]) and any prompt before the new ids.
    g, b = new_ids(greedy, 1, sep), new_ids(beam, 1, sep)
    p = new_ids(prompted, prompt.shape[1], sep)
    save_file({"pixel_values": pv.contiguous(), "image_embeds": emb.contiguous(), "input_ids": ids,
               "attention_mask": caption["attention_mask"], "logits": logits.contiguous(),
               "greedy": padded(g), "beam3": padded(b), "prompt_ids": prompt.contiguous(),
               "prompt_greedy": padded(p)}, folder / "expected.safetensors")
    text = {"greedy": tok.batch_decode(greedy, skip_special_tokens=True),
            "beam3": tok.batch_decode(beam, skip_special_tokens=True),
            "prompt_greedy": tok.batch_decode(prompted, skip_special_tokens=True)}
    (folder / "captions.json").write_text(json.dumps(text, indent=1) + "\n")
    print("blip", g, b, p, text)


def git():
    folder = HF / "git"
    tok, vocab = tokenizer(folder, "[CLS]")
    cls, sep = tok.cls_token_id, tok.sep_token_id
    cfg = GitConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=32),
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, bos_token_id=cls, eos_token_id=sep, pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = GitForCausalLM(cfg).eval()
    scramble(model, sep, 2.0)
    model.save_pretrained(folder)
    proc = ClipPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(folder)
    pv = proc(images=pictures(folder), return_tensors="pt")["pixel_values"]
    caption = tok(["a red dog", "a dog of red"], padding=True, return_tensors="pt")
    ids = caption["input_ids"]
    with torch.no_grad():
        emb = model.git.visual_projection(model.git.image_encoder(pv).last_hidden_state)
        logits = model(pixel_values=pv, input_ids=ids, attention_mask=caption["attention_mask"]).logits
        gen = dict(max_new_tokens=MAX_NEW)
        greedy = model.generate(pixel_values=pv, do_sample=False, num_beams=1, **gen)
        beam = model.generate(pixel_values=pv, do_sample=False, num_beams=3, **gen)
    g, b = new_ids(greedy, 1, sep), new_ids(beam, 1, sep)
    save_file({"pixel_values": pv.contiguous(), "image_embeds": emb.contiguous(), "input_ids": ids,
               "attention_mask": caption["attention_mask"], "logits": logits.contiguous(),
               "greedy": padded(g), "beam3": padded(b)}, folder / "expected.safetensors")
    text = {"greedy": tok.batch_decode(greedy, skip_special_tokens=True),
            "beam3": tok.batch_decode(beam, skip_special_tokens=True)}
    (folder / "captions.json").write_text(json.dumps(text, indent=1) + "\n")
    print("git", g, b, text)


if __name__ == "__main__":
    blip()
    git()
