"""Reference BLEU scores for captag's parity test (src/eval/bleu.rs, `parity_with_reference`).

Computes corpus BLEU-1..4 on fixed token-list corpora with the two reference evaluators and
writes tests/fixtures/bleu/cases.json (inputs, expected scores as floats *and* as IEEE-754 bit
patterns, library versions). The Rust test needs no Python; rerun this only to regenerate.

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install nltk pycocoevalcap
    /tmp/pyref/bin/python notebooks/bleu_reference.py   # from the repository root

Exact calls (provenance for the expected numbers):
- coco: `Bleu(4).compute_score(gts, res)` from pycocoevalcap.bleu.bleu, first return value,
  with gts = {i: [" ".join(ref) ...]}, res = {i: [" ".join(hyp)]} (pre-tokenized, space-joined:
  the Java PTB tokenizer is bypassed, so both sides score the very same tokens).
- nltk: `nltk.translate.bleu_score.corpus_bleu(refs, hyps, weights=(1/N,)*N)` for N = 1..4,
  no smoothing (N = 4 is the default weights).
"""
import json
import os
import platform
import random
import struct
import sys
import warnings
from importlib.metadata import version

from nltk.translate.bleu_score import corpus_bleu
from pycocoevalcap.bleu.bleu import Bleu

OUT = os.path.join("tests", "fixtures", "bleu", "cases.json")


def coco_scores(hyps, refs):
    for toks in [hyps, *refs]:
        for t in toks:
            # join/split round trip must be the identity for the comparison to mean anything
            assert all(w and not any(c.isspace() for c in w) for w in t), t
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    score, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return [float(s) for s in score]


def nltk_scores(hyps, refs):
    out = []
    with warnings.catch_warnings():
        # nltk warns on zero n-gram overlaps; we record what it returns
        warnings.simplefilter("ignore")
        for n in range(1, 5):
            out.append(float(corpus_bleu(refs, hyps, weights=(1.0 / n,) * n)))
    return out


def bits(xs):
    return [struct.unpack("<Q", struct.pack("<d", x))[0] for x in xs]


def t(s):
    return s.split()


def cases():
    # The NLTK docstring corpus (corpus_bleu example): two hypotheses, 3 and 1 references.
    hyp1 = t("It is a guide to action which ensures that the military always obeys the commands of the party")
    hyp2 = t("he read the book because he was interested in world history")
    ref1a = t("It is a guide to action that ensures that the military will forever heed Party commands")
    ref1b = t("It is the guiding principle which guarantees the military forces always being under the command of the Party")
    ref1c = t("It is the practical guide for the army always to heed the directions of the party")
    ref2a = t("he was interested in world history because he read the book")
    yield "nltk_docstring", [hyp1, hyp2], [[ref1a, ref1b, ref1c], [ref2a]]

    yield "small_captions", [
        t("a dog runs on the grass"),
        t("two men are playing football in a park"),
        t("a child in a red shirt"),
    ], [
        [t("a brown dog is running on the grass"), t("a dog runs across a green lawn"), t("the dog runs outside")],
        [t("two men play soccer in the park"), t("men are playing football"), t("a group of men playing a game of football in a park")],
        [t("a little girl in a red shirt smiles"), t("a child wearing red"), t("the kid in the red shirt is sitting on a bench")],
    ]

    # An empty hypothesis among normal ones, and a corpus of only empty hypotheses.
    yield "empty_hypothesis", [t("a dog runs"), [], t("the cat sits on the mat")], [
        [t("a dog runs fast")], [t("something here")], [t("the cat sat on the mat"), t("a cat is on a mat")]]
    yield "all_empty", [[], []], [[t("a b c")], [t("d e")]]

    # Hypotheses shorter than n: guess_n = 0 (coco) but NLTK's denominator is max(1, 0) = 1.
    yield "short_hypotheses", [t("dog"), t("a dog"), t("a dog runs"), t("a dog runs fast")], [
        [t("a dog runs fast today")], [t("a dog")], [t("a dog runs")], [t("a dog runs fast")]]
    yield "short_hypotheses_only", [t("dog"), t("a dog")], [[t("the dog")], [t("a dog runs")]]

    # Nothing matches at all, and: unigrams match but no 4-gram does.
    yield "zero_matches", [t("x y z w v"), t("p q")], [[t("a b c d e")], [t("r s t")]]
    yield "zero_4gram_matches", [t("a b c x d e f")], [[t("a b c y d e f")]]

    # References of very different lengths (closest is the middle one), and one shorter than n.
    yield "ref_lengths_differ", [t("a man rides a horse on the beach")], [[
        t("man"), t("a man is riding a horse along the beach at sunset with dogs"),
        t("a man rides a brown horse on a beach"), t("horse beach")]]
    yield "short_reference", [t("a b c d e")], [[t("a b"), t("a")]]

    # Ties: hyp length 5, references of lengths 4 and 6 (both at distance 1) -> 4 (no penalty);
    # taking 6 would apply a brevity penalty. Both orders of the references.
    yield "closest_tie_shorter", [t("a b c d e")], [[t("a b c d"), t("a b c d e f")]]
    yield "closest_tie_reversed", [t("a b c d e")], [[t("a b c d e f"), t("a b c d")]]
    yield "closest_tie_corpus", [t("a b c d e"), t("u v w")], [
        [t("a b c d e f"), t("a b c d")], [t("u v"), t("u v w x")]]

    # Clipping: the famous "the the the ..." example, and repeated bigrams.
    yield "clipping_unigram", [t("the the the the the the the")], [
        [t("the cat is on the mat"), t("there is a cat on the mat")]]
    yield "clipping_ngrams", [t("a b a b a b a b c")], [[t("a b a b c"), t("a b c a b")]]

    # Hypotheses longer than references (ratio > 1: no brevity penalty) and non-ASCII tokens.
    yield "long_hypothesis", [t("un chien court vite sur l' herbe verte très très vite")], [
        [t("un chien court"), t("le chien court vite sur l' herbe")]]

    # Tokens longer than 16 bytes that share their first and last 8 bytes (and length).
    long_a, long_b = "aaaaaaaaXaaaaaaaa", "aaaaaaaaYaaaaaaaa"
    yield "long_tokens", [[long_a, "b", long_a, "c"], [long_b, long_b]], [
        [[long_b, "b", long_a, "c"], [long_a, "b"]], [[long_a, long_b, long_b]]]

    # A long random corpus from a small vocabulary (many partial matches, all code paths).
    rng = random.Random(8011)
    vocab = [f"w{i}" for i in range(12)] + ["a", "the", "dog", "ß", "日本"]
    hyps, refs = [], []
    for _ in range(300):
        hyps.append([rng.choice(vocab) for _ in range(rng.randint(0, 15))])
        refs.append([[rng.choice(vocab) for _ in range(rng.randint(0, 15))]
                     for _ in range(rng.randint(1, 5))])
    yield "random_300", hyps, refs


def main():
    out = {
        "generated_by": "notebooks/bleu_reference.py",
        "versions": {
            "python": platform.python_version(),
            "nltk": version("nltk"),
            "pycocoevalcap": version("pycocoevalcap"),
        },
        "cases": [],
    }
    for name, hyps, refs in cases():
        assert len(hyps) == len(refs)
        coco, nltk = coco_scores(hyps, refs), nltk_scores(hyps, refs)
        out["cases"].append({
            "name": name, "hyps": hyps, "refs": refs,
            "coco": coco, "coco_bits": bits(coco),
            "nltk": nltk, "nltk_bits": bits(nltk),
        })
        print(f"{name:24s} coco {' '.join(f'{x:.6f}' for x in coco)}  "
              f"nltk {' '.join(f'{x:.6g}' for x in nltk)}", file=sys.stderr)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
