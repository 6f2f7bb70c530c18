"""Translation sentences/s: `captag translate` against `transformers` `generate` on the same
Marian-base-sized random folder (d_model 512, 6 + 6 layers, 8 heads, FFN 2048, vocabulary
61,950 like Helsinki-NLP/opus-mt-en-hi; the tokenizer files of tests/fixtures/hf/marian), the
same 32 English captions as one batch, beam 4, the same `max_length`, the same thread count,
back to back on one machine.

    python3 bench/translate_bench.py [--threads 2] [--max-length 32] [--reps 2]

The folder goes to /tmp/captag-marian-base (never committed). captag is timed as a whole
process (`target/release/captag translate`, model loading included) on one batch and on
`reps + 1` batches; the difference divided by `reps` is its time per batch, compared with
`generate`'s time per batch (model already loaded). Id parity is the tests' business
(src/model/seq2seq/tests.rs); here both sides run the same folder and generation_config.json.
"""
import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "hf" / "marian"
DIR = Path("/tmp/captag-marian-base")
CAPTIONS = [
    "a dog runs on the beach", "two children play football in the park",
    "a man rides a bicycle down the street", "a woman in a red dress walks her dog",
    "a group of people stand outside a building", "the sun sets over the mountains",
    "a cat sleeps on the sofa", "three friends laugh at a cafe table",
]
CAPTIONS = (CAPTIONS * 4)[:32]


def make(max_length):
    if (DIR / "model.safetensors").exists():
        return
    DIR.mkdir(parents=True, exist_ok=True)
    for f in ["source.spm", "target.spm", "vocab.json", "tokenizer_config.json"]:
        shutil.copy(FIX / f, DIR / f)
    pad = json.loads((FIX / "vocab.json").read_text())["<pad>"]
    cfg = MarianConfig(
        vocab_size=61950, d_model=512, encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        max_position_embeddings=512, pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
        activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
    )
    torch.manual_seed(0)
    model = MarianMTModel(cfg).eval()
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]], decoder_start_token_id=pad, eos_token_id=0, pad_token_id=pad,
        forced_eos_token_id=0, max_length=max_length, num_beams=4, renormalize_logits=True,
    )
    model.save_pretrained(DIR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    make(a.max_length)
    torch.set_num_threads(a.threads)
    tok = MarianTokenizer.from_pretrained(DIR)
    model = MarianMTModel.from_pretrained(DIR).eval()
    enc = tok(CAPTIONS, return_tensors="pt", padding=True)
    with torch.no_grad():
        model.generate(**enc)  # warm-up
        t0 = time.perf_counter()
        for _ in range(a.reps):
            out = model.generate(**enc)
        hf = (time.perf_counter() - t0) / a.reps
    exe = ROOT / "target" / "release" / "captag"

    def run(n):
        t0 = time.perf_counter()
        p = subprocess.run(
            [str(exe), "--device", "cpu", "--threads", str(a.threads), "-q", "translate", "--model",
             str(DIR), "--batch-size", "32", "--json", *(CAPTIONS * n)],
            check=True, capture_output=True, text=True,
        )
        return time.perf_counter() - t0, p.stdout

    one, _ = run(1)
    many, text = run(a.reps + 1)
    ours = (many - one) / a.reps
    # The random model writes ids past the small tokenizer's vocabulary, which
    # MarianTokenizer.decode cannot turn into text: compare the number of generated tokens.
    gen_hf = int((out[0] != model.config.pad_token_id).sum())
    assert len(text.splitlines()) == 32 * (a.reps + 1)
    print(json.dumps({
        "threads": a.threads, "batch": 32, "beams": 4, "max_length": a.max_length,
        "transformers_s_per_batch": round(hf, 3), "captag_s_per_batch": round(ours, 3),
        "captag_load_and_one_batch_s": round(one, 3),
        "transformers_sentences_per_s": round(32 / hf, 2), "captag_sentences_per_s": round(32 / ours, 2),
        "ratio": round(hf / ours, 2), "transformers_tokens_of_first": gen_hf,
    }))


if __name__ == "__main__":
    main()
