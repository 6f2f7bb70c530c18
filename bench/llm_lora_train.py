"""LoRA training speed of `captag llm train` against `transformers` + `peft` on the same SmolLM2
folder (`make weights`), the same pairs, the same threads, in one run: rank 8, alpha 16 on
q_proj/v_proj, Adam at lr 1e-3, one epoch, batches of --batch-size, pairs cut to --max-len
tokens, loss on the response tokens only, float32 on the CPU. Reports tokens/s (every token of
every pair, prompt and response, over the epoch's wall time; model loading excluded) and peak
resident memory (captag: the process's, from /usr/bin/time; Python: `ru_maxrss` after its
epoch).

Both sides encode a pair alike: the chat template with the assistant turn opened, then the
response and `<|im_end|>`. The Python side uses `labels` (-100 on the prompt), as a peft user
would; captag computes the vocabulary projection at response positions only. The batches'
order differs (captag shuffles), the tokens are the same.

    python bench/llm_lora_train.py data/models/smollm2-135m-instruct target/release/captag \
        PAIRS.jsonl --pairs 32 --threads 2
"""
import argparse
import json
import os
import re
import resource
import subprocess
import tempfile
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def read_pairs(path, n):
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    return [r for r in rows if r.get("split") != "test"][:n]


def encode(tok, p, max_len):
    msgs = ([{"role": "system", "content": p["system"]}] if p.get("system") else []) + [
        {"role": "user", "content": p["prompt"]}]
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, add_special_tokens=False).input_ids
    n_prompt = len(ids)
    if n_prompt + 1 >= max_len:
        return None
    ids = (ids + tok(p["response"], add_special_tokens=False).input_ids + [tok.eos_token_id])[:max_len]
    return ids, n_prompt


def captag_epoch(captag, model, data, threads, a):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "run")
        t = subprocess.run(
            ["/usr/bin/time", "-f", "maxrss_kb=%M", captag, "--device", "cpu", "--threads", str(threads),
             "llm", "train", "--model", model, "--data", data, "--out", out, "--epochs", "1",
             "--lr", "1e-3", "--batch-size", str(a.batch_size), "--max-len", str(a.max_len),
             "--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "q_proj,v_proj"],
            check=True, capture_output=True, text=True,
        )
        m = json.loads(open(os.path.join(out, "metrics.jsonl")).readline())
        rss = int(re.search(r"maxrss_kb=(\d+)", t.stderr).group(1))
        return m["seconds"], m["train_loss"], rss


def python_epoch(model_dir, examples, threads, a):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    start = time.perf_counter()
    total, tokens = 0.0, 0
    for i in range(0, len(examples), a.batch_size):
        batch = examples[i:i + a.batch_size]
        longest = max(len(ids) for ids, _ in batch)
        inp = torch.zeros(len(batch), longest, dtype=torch.long)
        mask = torch.zeros(len(batch), longest, dtype=torch.long)
        labels = torch.full((len(batch), longest), -100, dtype=torch.long)
        for r, (ids, n_prompt) in enumerate(batch):
            inp[r, :len(ids)] = torch.tensor(ids)
            mask[r, :len(ids)] = 1
            labels[r, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
        opt.zero_grad()
        out = model(input_ids=inp, attention_mask=mask, labels=labels)
        out.loss.backward()
        opt.step()
        n = int((labels[:, 1:] != -100).sum())
        total += out.loss.item() * n
        tokens += n
    secs = time.perf_counter() - start
    return secs, total / tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("captag")
    ap.add_argument("pairs")
    ap.add_argument("--pairs", dest="n", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pairs = read_pairs(a.pairs, a.n)
    tok = AutoTokenizer.from_pretrained(a.model)
    examples = [e for e in (encode(tok, p, a.max_len) for p in pairs) if e is not None]
    n_tokens = sum(len(ids) for ids, _ in examples)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
        data = f.name
    try:
        c_secs, c_loss, c_rss = captag_epoch(a.captag, a.model, data, a.threads, a)
    finally:
        os.unlink(data)
    p_secs, p_loss = python_epoch(a.model, examples, a.threads, a)
    py_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{len(examples)} pairs, {n_tokens} tokens, batch {a.batch_size}, max-len {a.max_len}, "
          f"{a.threads} threads, one epoch")
    print(f"captag            {n_tokens / c_secs:7.1f} tokens/s ({c_secs:.1f} s, loss {c_loss:.3f})   "
          f"peak RSS {c_rss / 1024:.0f} MiB")
    print(f"transformers+peft {n_tokens / p_secs:7.1f} tokens/s ({p_secs:.1f} s, loss {p_loss:.3f})   "
          f"peak RSS {py_rss / 1024:.0f} MiB")
    print(f"ratio {p_secs / c_secs:.2f}x")


if __name__ == "__main__":
    main()
