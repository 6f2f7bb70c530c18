"""LoRA fixtures for captag's `peft` parity test (src/model/llama/lora_tests.rs) and the
`captag llm` integration tests (tests/integration/llm.rs), on the tiny Llama folder
tests/fixtures/hf/llama/ (run notebooks/make_llama_fixtures.py first).

Writes
- tests/fixtures/hf/llama/tokenizer.json: a word-level tokenizer of the folder's 64 ids
  (`<unk>`, `<|im_start|>`, `<|im_end|>` special; whitespace pre-tokenizer) so chat prompts,
  training pairs and generation run on the tiny folder;
- tests/fixtures/hf/llama_lora/: a `peft` LoRA adapter (r 4, alpha 8, q_proj/v_proj/down_proj;
  lora_B random instead of zero so the adapter changes the logits) saved by `save_pretrained`,
  and expected.safetensors: the expected.safetensors `input_ids` of the base folder and the
  `PeftModel`'s `logits` for them;
- tests/fixtures/llm/pairs.jsonl: prompt/response pairs in the tiny vocabulary (3 held out).

With `--captag BIN`, also checks the other direction: an adapter `captag llm train` writes is
loaded by `PeftModel.from_pretrained` (every key matched), and `captag llm merge`'s folder gives
`transformers` the same logits as `peft` with that adapter on the base.

    /tmp/venv-gpt2lm/bin/python notebooks/make_lora_fixtures.py [--captag target/release/captag]
(transformers 5.25.0, peft 0.21.2, tokenizers 0.23.3, torch 2.11.0 were used.)
"""
import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
BASE = ROOT / "hf" / "llama"

WORDS = ("user assistant system write a caption for my photo sunset beach dog coffee morning "
         "love summer happy friends city night the with and of #sunset #beach #love #coffee "
         "#summer #dog #nyc 🌅 ☕ ❤️ . ! , hello you are tiny model it is day good time at "
         "in on new best").split()


def tokenizer():
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    assert len(vocab) <= 64, len(vocab)
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.add_special_tokens(specials)
    tok.save(str(BASE / "tokenizer.json"))
    return tok


def pairs():
    rows = [
        ("sunset beach", "sunset at the beach 🌅 #sunset #beach"),
        ("coffee morning", "good morning with coffee ☕ #coffee"),
        ("dog beach", "my dog at the beach ! #dog #beach"),
        ("summer friends", "summer with friends ❤️ #summer #love"),
        ("city night", "the city at night #nyc"),
        ("love sunset", "love the sunset 🌅 #love #sunset"),
        ("coffee friends", "coffee with friends ☕ #coffee #love"),
        ("happy day", "happy day ! #summer"),
        ("dog morning", "good morning dog ❤️ #dog"),
        ("beach day", "best day at the beach #beach #summer"),
    ]
    out = ROOT / "llm"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pairs.jsonl", "w") as f:
        for i, (p, r) in enumerate(rows):
            f.write(json.dumps({"prompt": f"write a caption for my photo {p}", "response": r,
                                "system": "you are a tiny model", "split": "test" if i >= 7 else "train",
                                "id": f"img/{i}"}, ensure_ascii=False) + "\n")


def adapter():
    base = LlamaForCausalLM.from_pretrained(BASE).eval()
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                     lora_dropout=0.0, task_type="CAUSAL_LM")
    torch.manual_seed(5)
    model = get_peft_model(base, cfg).eval()
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    out = ROOT / "hf" / "llama_lora"
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's model card template
    cfg_path = out / "adapter_config.json"
    saved = json.loads(cfg_path.read_text())
    saved["base_model_name_or_path"] = "tests/fixtures/hf/llama"
    saved["target_modules"] = sorted(saved["target_modules"])  # peft saves a set
    cfg_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    ids = load_file(BASE / "expected.safetensors")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
        base_logits = LlamaForCausalLM.from_pretrained(BASE).eval()(ids).logits
    save_file({"input_ids": ids, "logits": logits.contiguous()}, out / "expected.safetensors")
    print("adapter keys", sorted(load_file(out / "adapter_model.safetensors"))[:2],
          "max |lora - base| logits", float((logits - base_logits).abs().max()))


def check_captag(captag):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run([captag, "--device", "cpu", "-q", "llm", "train", "--model", str(BASE), "--data",
                        str(ROOT / "llm" / "pairs.jsonl"), "--out", str(run), "--epochs", "3",
                        "--lr", "0.01", "--lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"],
                       check=True)
        base = LlamaForCausalLM.from_pretrained(BASE).eval()
        model = PeftModel.from_pretrained(base, run).eval()
        state = load_file(run / "adapter_model.safetensors")
        lora_params = {n for n, _ in model.named_parameters() if "lora_" in n}
        assert len(state) == len(lora_params), (len(state), len(lora_params))
        merged = Path(tmp) / "merged"
        subprocess.run([captag, "--device", "cpu", "llm", "merge", "--model", str(BASE), "--adapter", str(run),
                        "--out", str(merged)], check=True, capture_output=True)
        ids = load_file(BASE / "expected.safetensors")["input_ids"]
        with torch.no_grad():
            want = model(ids).logits
            got = LlamaForCausalLM.from_pretrained(merged).eval()(ids).logits
            base_logits = LlamaForCausalLM.from_pretrained(BASE).eval()(ids).logits
        diff = float((want - got).abs().max())
        print(f"captag's adapter: {len(state)} tensors loaded by peft; |peft(adapter) - captag merge| "
              f"logits max {diff:.2e}; the adapter moved the logits by {float((want - base_logits).abs().max()):.3f}")
        assert diff < 1e-4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captag")
    args = ap.parse_args()
    tokenizer()
    pairs()
    adapter()
    if args.captag:
        check_captag(args.captag)


if __name__ == "__main__":
    main()
