"""WordPiece (BERT) and Unigram (SentencePiece) tokenizer fixtures for captag's tokenizer parity
tests, beside the GPT-2 and CLIP ones `make_hf_fixtures.py` writes.

Reads the case strings already in tests/fixtures/hf/tokenizer_cases.json, trains two small
vocabularies with the `tokenizers` package on Flickr8k captions (plus the cases), writes the
folders a user's download has, and adds `transformers`' ids of every case under the keys `bert`
and `unigram`:

- tests/fixtures/hf/bert/: `vocab.txt` + `tokenizer_config.json` (the older BERT form; the Rust
  test checks both it and the `tokenizer.json` that `BertTokenizer` saves beside it);
- tests/fixtures/hf/unigram/: a SentencePiece-style Unigram `tokenizer.json` (NFKC, Metaspace
  `▁`, `$A </s>` like Marian/NLLB/T5) + `tokenizer_config.json`.

    /tmp/venv-gpt2lm/bin/python notebooks/make_tokenizer_fixtures.py --data ../shared/data
(transformers 5.25.0, tokenizers 0.23.3 were used for the committed files.)
"""
import argparse
import csv
import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizer, PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"


def captions(data: Path):
    with open(data / "flickr8k" / "captions.txt", encoding="utf-8") as f:
        rows = [r["caption"] for r in csv.DictReader(f)]
    return random.Random(0).sample(rows, 4000)


def bert(texts, cases):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials, show_progress=False))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    folder = OUT / "bert"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")
    ref = BertTokenizer.from_pretrained(folder)
    ids = [ref(s)["input_ids"] for s in cases]
    ref.save_pretrained(folder)  # adds tokenizer.json (the converted form)
    return ids


def unigram(texts, cases):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    folder = OUT / "unigram"
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    ref = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **cfg)
    return [ref(s)["input_ids"] for s in cases]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with flickr8k/")
    args = ap.parse_args()
    path = OUT / "tokenizer_cases.json"
    out = json.loads(path.read_text(encoding="utf-8"))
    cases = out["strings"]
    texts = captions(args.data) + cases
    out["bert"] = bert(texts, cases)
    out["unigram"] = unigram(texts, cases)
    path.write_text(json.dumps(out, ensure_ascii=False, indent=0), encoding="utf-8")
    print(f"{len(cases)} cases: bert and unigram ids added to {path}")


if __name__ == "__main__":
    main()
