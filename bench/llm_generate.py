"""Generation speed of `captag llm generate` against `transformers`' `generate` on the same
SmolLM2 folder (`make weights`), same threads, same run: a ~100-token plain-text prompt, greedy,
64 new tokens, the key/value cache on both sides, float32. Runs the two alternately REPEAT
times and reports the best tokens/s of each (prefill + decode, model loading excluded) and
their peak resident memory (captag: the process's; Python: `ru_maxrss` after its runs), and
checks that both produced the same text.

    /tmp/venv-gpt2lm/bin/python bench/llm_generate.py data/models/smollm2-135m-instruct \
        target/release/captag --threads 2 --repeat 3
"""
import argparse
import re
import resource
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of "
    "salt and wind. Every evening the keeper climbed the spiral stairs, one hundred and twelve "
    "steps, to light the lamp that guided the fishing boats home. The villagers said he had never "
    "missed a single night in forty years, not during the great storm, not when his daughter was "
    "born, not even when the harbour froze. One autumn evening, however, the lamp stayed dark, and"
)


def captag_run(captag, model, threads, new):
    t = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss_kb=%M", captag, "--device", "cpu", "--threads", str(threads), "-v",
         "llm", "generate", "--model", model, "--raw", "--prompt", PROMPT, "--max-new-tokens", str(new)],
        check=True, capture_output=True, text=True,
    )
    m = re.search(r"(\d+) prompt tokens, (\d+) new tokens in ([\d.]+) s", t.stderr)
    rss = int(re.search(r"maxrss_kb=(\d+)", t.stderr).group(1))
    return int(m.group(1)), int(m.group(2)), float(m.group(3)), rss, t.stdout.rstrip("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("captag")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--new", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    ids = tok(PROMPT, return_tensors="pt").input_ids
    best_c, best_t = 0.0, 0.0
    for _ in range(a.repeat):
        n_prompt, n_new, secs, rss, text_c = captag_run(a.captag, a.model, a.threads, a.new)
        best_c = max(best_c, n_new / secs)
        with torch.no_grad():
            start = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new,
                                 do_sample=False)
            secs_t = time.perf_counter() - start
        new_t = out.shape[1] - ids.shape[1]
        best_t = max(best_t, new_t / secs_t)
        text_t = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    py_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"prompt {ids.shape[1]} tokens (captag {n_prompt}), {a.new} new, greedy, {a.threads} threads, "
          f"best of {a.repeat}")
    print(f"captag       {best_c:7.1f} tokens/s   peak RSS {rss / 1024:.0f} MiB")
    print(f"transformers {best_t:7.1f} tokens/s   peak RSS {py_rss / 1024:.0f} MiB")
    print(f"ratio {best_c / best_t:.2f}x; same text: {text_c == text_t}")


if __name__ == "__main__":
    main()
