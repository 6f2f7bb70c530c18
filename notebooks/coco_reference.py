"""Reference CIDEr-D and ROUGE-L scores for captag's parity tests (src/eval/cider.rs, rouge.rs).

Reference: pycocoevalcap 1.2 (PyPI), numpy 2.4.6, Python 3.11.7. The script installs nothing;
it scores fixed token-list corpora with the real evaluators and writes
tests/fixtures/coco/cases.json (inputs, expected scores as floats *and* as IEEE-754 bit
patterns, library versions). The Rust tests need no Python; rerun this only to regenerate.

    python3 -m venv /tmp/cocoenv && /tmp/cocoenv/bin/pip install pycocoevalcap==1.2
    /tmp/cocoenv/bin/python notebooks/coco_reference.py   # from the repository root

Exact calls (provenance for the expected numbers), with
gts = {i: [" ".join(ref) for ref in refs[i]]} and res = {i: [" ".join(hyps[i])]} for
i = 0..n-1 in order (pre-tokenized, space-joined: the Java PTB tokenizer is bypassed, so
Python and Rust score the very same strings):
- cider: `Cider().compute_score(gts, res)` from pycocoevalcap.cider.cider (n=4, sigma=6.0);
  first return value -> "cider", second (per image, in key order) -> "cider_per_image".
- rouge: `Rouge().compute_score(gts, res)` from pycocoevalcap.rouge.rouge (beta=1.2);
  -> "rouge", "rouge_per_image".

Unlike the BLEU fixture, tokens here may be empty or contain whitespace on purpose
(case "odd_tokens"): CIDEr re-splits with str.split() (any whitespace run, empty tokens vanish),
ROUGE-L with str.split(" ") (empty tokens survive), and the Rust side must do the same.
"""
import json
import os
import platform
import random
import struct
import sys
from importlib.metadata import version

from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

OUT = os.path.join("tests", "fixtures", "coco", "cases.json")


def to_inputs(hyps, refs):
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    return gts, res


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def t(s):
    return s.split(" ")


def coco_like(rng, n_images):
    """Caption-like sentences: each image has a subject (and scene) most references share,
    so document frequencies range from 1 to n_images ("a", "is", ...)."""
    dets = ["a", "the", "two", "some"]
    adjs = ["brown", "black", "white", "small", "big", "young", "red", "old", "happy", "wet"]
    nouns = ["dog", "cat", "man", "woman", "child", "horse", "bird", "boy", "girl", "car",
             "bus", "train", "surfer", "skier", "cow"]
    verbs = ["is running", "is sitting", "is standing", "plays", "jumps", "walks", "rides",
             "is eating", "looks", "is waiting"]
    preps = ["on", "in", "near", "by", "under", "next to", "across", "along"]
    places = ["grass", "beach", "street", "snow", "water", "road", "field", "park", "table",
              "couch", "track", "hill"]

    def sentence(subject, place, noisy):
        words = [rng.choice(dets)]
        if rng.random() < 0.6:
            words.append(rng.choice(adjs))
        words.append(subject if not noisy or rng.random() < 0.7 else rng.choice(nouns))
        words += rng.choice(verbs).split()
        if rng.random() < 0.85:
            words += rng.choice(preps).split()
            words += [rng.choice(["the", "a"]),
                      place if not noisy or rng.random() < 0.7 else rng.choice(places)]
        if rng.random() < 0.2:
            words += ["with", rng.choice(dets), rng.choice(nouns)]
        return words

    hyps, refs = [], []
    for _ in range(n_images):
        subject, place = rng.choice(nouns), rng.choice(places)
        refs.append([sentence(subject, place, False) for _ in range(rng.randint(3, 6))])
        hyps.append(sentence(subject, place, True))
    return hyps, refs


def cases():
    # One image: ref_len = log(1) = 0, so every CIDEr weight (and score) is 0; ROUGE is not.
    yield "single_image", [t("a dog runs on the grass")], [
        [t("a brown dog is running on the grass"), t("a dog runs across a lawn")]]

    # Hypothesis == its only reference, disjoint vocabularies: every df is 1 and each order's
    # cosine is 1, so CIDEr = 10 * (orders present) / 4: 7.5 for 3 words (no 4-gram), 10 for 4.
    yield "identical_two_images", [t("a dog runs"), t("the cat sat down")], [
        [t("a dog runs")], [t("the cat sat down")]]

    # An empty hypothesis (CIDEr 0; ROUGE splits "" into [""] and scores 0 here).
    yield "empty_hypothesis", [t("a dog runs"), [], t("the cat sits on the mat")], [
        [t("a dog runs fast")], [t("something here"), t("a dog")],
        [t("the cat sat on the mat"), t("a cat is on a mat")]]

    # Empty hypothesis and an empty reference: ROUGE's "" token matches "" -> LCS 1, F = 1.
    # CIDEr: the empty reference adds no n-grams but still counts in the 1/len(refs) average.
    yield "empty_hyp_and_empty_ref", [[], t("a dog runs")], [
        [[], t("a cat")], [[], t("a dog runs fast")]]

    # An image whose only reference is empty (its CIDEr is 0, it still counts as an image).
    yield "image_with_only_empty_ref", [t("a dog"), t("a cat"), t("a bird")], [
        [t("a dog")], [[]], [t("one bird"), t("a bird flies")]]

    # Repeated n-grams in the hypothesis: CIDEr-D clips min(v_hyp, v_ref) per n-gram.
    yield "repeated_ngrams", [t("a dog a dog a dog a dog"), t("the the the the the the"),
                              t("a man rides a horse")], [
        [t("a dog runs after a dog"), t("a dog plays")],
        [t("the cat is on the mat"), t("there is a cat on the mat")],
        [t("a man rides a horse on the beach"), t("a horse")]]

    # Hypothesis longer than every reference (Gaussian length penalty, ROUGE precision small).
    yield "hyp_longer_than_refs", [
        t("a small brown dog is running very fast across the big green field near the old house"),
        t("two cats")], [
        [t("a dog runs"), t("a brown dog running on a field")], [t("two cats sleep"), t("cats")]]

    # Different numbers of references per image (1, 2, 5) and short (1-word) sentences.
    yield "varying_ref_counts", [t("a dog"), t("a man on a horse"), t("people"), t("x")], [
        [t("a dog")],
        [t("a man rides a horse"), t("a man on a brown horse")],
        [t("many people"), t("a crowd of people"), t("people walking"), t("some people"),
         t("people in a street")],
        [t("y"), t("x")]]

    # An n-gram in every image's references ("a"): df = N, idf weight exactly 0. And
    # hypothesis n-grams that no reference contains (df = 0 -> log(max(1, 0)) = 0).
    yield "df_extremes", [t("a dog barks loudly"), t("a cat meows"), t("zebra quagga okapi")], [
        [t("a dog barks"), t("a big dog")], [t("a cat"), t("a cat meows at a dog")],
        [t("a zebra"), t("a horse")]]

    # Non-ASCII words (compared as code points by Python, as bytes by Rust: same thing).
    yield "unicode_words", [t("un chien très rapide court sur l'herbe"), t("日本 の 犬"),
                            t("straße 🐕 naïve café")], [
        [t("un chien court sur l'herbe"), t("le chien très rapide")],
        [t("日本 の 猫"), t("犬 が 走る")],
        [t("naïve café 🐕"), t("eine straße")]]

    # Tokens that do not survive " ".join + split: empty tokens, a space, a tab and U+001C
    # (whitespace for Python's str.split(), not for Rust's char::is_whitespace) inside tokens.
    yield "odd_tokens", [["a", "", "dog", "runs"], ["a b", "c\td"], ["x\x1cy", "z", ""]], [
        [["a", "dog", "runs"], ["a", "", "dog"]],
        [["a", "b", "c", "d"], ["a b c\td"]],
        [["x", "y", "z"], ["x\x1cy", "", "z"]]]

    rng = random.Random(20150208)
    yield ("coco_like_30", *coco_like(rng, 30))
    # > 128 images: numpy's pairwise summation splits the corpus mean into blocks.
    yield ("coco_like_200", *coco_like(rng, 200))


def main():
    out = {
        "generated_by": "notebooks/coco_reference.py",
        "versions": {
            "python": platform.python_version(),
            "pycocoevalcap": version("pycocoevalcap"),
            "numpy": version("numpy"),
        },
        "cases": [],
    }
    for name, hyps, refs in cases():
        assert len(hyps) == len(refs)
        gts, res = to_inputs(hyps, refs)
        cider, cider_img = Cider().compute_score(gts, res)
        rouge, rouge_img = Rouge().compute_score(gts, res)
        cider_img = [float(x) for x in cider_img]
        rouge_img = [float(x) for x in rouge_img]
        cider, rouge = float(cider), float(rouge)
        out["cases"].append({
            "name": name, "hyps": hyps, "refs": refs,
            "cider": cider, "cider_per_image": cider_img,
            "rouge": rouge, "rouge_per_image": rouge_img,
            "cider_bits": bits(cider), "cider_per_image_bits": [bits(x) for x in cider_img],
            "rouge_bits": bits(rouge), "rouge_per_image_bits": [bits(x) for x in rouge_img],
        })
        print(f"{name:26s} images {len(hyps):4d}  CIDEr-D {cider:.6f}  ROUGE-L {rouge:.6f}",
              file=sys.stderr)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
