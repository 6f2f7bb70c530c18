"""Tiny Llama and Qwen2 folders and `transformers`' outputs for captag's Llama-family parity test
(src/model/llama/tests.rs).

Writes tests/fixtures/hf/llama/ (LlamaForCausalLM: grouped-query attention 4/2 heads, tied
embeddings, rope_theta 500) and tests/fixtures/hf/qwen2/ (Qwen2ForCausalLM: q/k/v biases, a
separate lm_head, rope_theta 1000, saved as two shards with model.safetensors.index.json), each
with `save_pretrained` as a user's download, and expected.safetensors: `input_ids` (2, 7), their
`logits`, the 8-token greedy continuation of `input_ids[0]` (`greedy_ids`), and a left-padded
batch of two prompts of lengths 5 and 2 (`batch_ids`, `batch_mask`) with `generate`'s 6 new ids
(`batch_new`). Weights are random with std 0.3 (norms 1 ± 0.2) so outputs are far from zero.

    /tmp/venv-gpt2lm/bin/python notebooks/make_llama_fixtures.py
(transformers 5.25.0 and torch 2.11.0 were used for the committed files.)
"""
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"


def scramble(model):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def make(name, cls, cfg, **save):
    torch.manual_seed(0)
    model = cls(cfg).eval()
    scramble(model)
    folder = OUT / name
    model.save_pretrained(folder, **save)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg.vocab_size, (2, 7), generator=g)
    with torch.no_grad():
        logits = model(ids).logits
        # An explicit mask: generate() would otherwise take id 0 in the prompt for padding.
        greedy = model.generate(ids[:1], attention_mask=torch.ones_like(ids[:1]), max_new_tokens=8,
                                do_sample=False, pad_token_id=0)[:, 7:]
        a = torch.randint(1, cfg.vocab_size, (5,), generator=g)
        b = torch.randint(1, cfg.vocab_size, (2,), generator=g)
        batch = torch.zeros(2, 5, dtype=torch.long)
        mask = torch.zeros(2, 5, dtype=torch.long)
        batch[0], mask[0] = a, 1
        batch[1, 3:], mask[1, 3:] = b, 1
        new = model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)[:, 5:]
    save_file(
        {"input_ids": ids, "logits": logits.contiguous(), "greedy_ids": greedy.contiguous(),
         "batch_ids": batch, "batch_mask": mask, "batch_new": new.contiguous()},
        folder / "expected.safetensors",
    )
    print(name, "logits max", float(logits.abs().max()), "greedy", greedy.tolist(), "batch", new.tolist())


def main():
    small = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    make("llama", LlamaForCausalLM, LlamaConfig(**small, rope_theta=500.0, tie_word_embeddings=True))
    make("qwen2", Qwen2ForCausalLM, Qwen2Config(**small, rope_theta=1000.0, tie_word_embeddings=False),
         max_shard_size="40KB")


if __name__ == "__main__":
    main()
