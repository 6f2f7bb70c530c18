"""PyTorch reference for captag's self-critical training (SCST) benchmark (bench/scst_bench.sh).

The same loss on the same decoder and features as `captag train --init-from RUN --objective
scst` (src/train/scst.rs, src/model/policy.rs), written the way ruotianluo's
ImageCaptioning.pytorch writes it, for the Show-and-Tell LSTM/GRU decoder (image fed as the
first input) over a captag feature cache of pooled vectors:
- the decoder is loaded from the run's `model.safetensors` (captag's `decoder.*` names are
  PyTorch's: embed, img_proj, img_norm, rnn.weight_ih_l0.., out), so it draws captions of the
  trained model's lengths;
- per step, `--batch-size` training images (each epoch a shuffled pass, the last batch smaller,
  as captag chunks them); eval mode throughout (no dropout, BatchNorm's running statistics);
- draw K captions per image without gradient: one batched LSTM step per word over all B·K rows,
  `<pad>`/`<start>`/`<unk>` masked and the rest renormalised, `torch.multinomial`, up to
  `--max-words` words, stopping when every row has drawn `<end>`;
- reward: CIDEr-D of each caption against its image's references, document frequencies of the
  training references, `<end>` appended to every reference and to every caption that finished
  (the CiderD class below, pure Python, the same sums as src/eval/cider.rs);
- advantage = reward − mean of the image's other samples, exactly 0 when all K are equal;
- loss = −Σ advantage · log p(caption) / Σ scored tokens, log p recomputed with gradient in one
  teacher-forced pass (masked words taken out as in the sampler), Adam, global-norm clip.
Prints one JSON line: images/s over the timed steps and the shares of drawing and rewarding.
`--check-cider PRED REFS`: print the corpus CIDEr-D of a COCO results file against a JSON of
references (as `captag bleu --metrics cider` reads them), to check this CIDEr-D against captag's.
"""
import argparse
import csv
import json
import math
import os
import random
import re
import time
from collections import defaultdict

import torch
import torch.nn as nn

EOS = "<end>"


def tokenize(caption):
    """captag's tokenizer (src/text/tokenize.rs) on plain captions: lowercase, whitespace, the
    punctuation `.,?!:;"()[]{}` dropped. Its clitic/hyphen/symbol rules are not reproduced: exact on
    the synthetic sets, where captions are lowercase words (the --check-cider run confirms it)."""
    return [w for w in re.split(r"[\s.,?!:;\"()\[\]{}]+", caption.lower()) if w]


def ngrams(words, n=4):
    """precook: counts of all 1..4-grams (tuples)."""
    c = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


class CiderD:
    """CIDEr-D (pycocoevalcap 1.2's sums, n = 4, sigma = 6, ×10) with document frequencies fixed
    to a corpus of reference sets, as captag's `eval::cider_reward` (and ruotianluo's CiderD)."""

    def __init__(self, refs):
        self.refs = [[ngrams(r) for r in rs] for rs in refs]
        self.df = defaultdict(int)
        for rs in self.refs:
            for g in set(g for c in rs for g in c):
                self.df[g] += 1
        self.ref_len = math.log(max(len(refs), 1))
        self.ref_vecs = [[self.vec(c) for c in rs] for rs in self.refs]

    def vec(self, counts):
        v, norm, length = [{} for _ in range(4)], [0.0] * 4, 0
        for g, tf in counts.items():
            n = len(g) - 1
            w = tf * (self.ref_len - math.log(max(1.0, self.df.get(g, 0.0))))
            v[n][g] = w
            norm[n] += w * w
            if n == 1:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    def score(self, words, image):
        rs = self.ref_vecs[image]
        if not rs:
            return 0.0
        vh, nh, lh = self.vec(ngrams(words))
        score = [0.0] * 4
        for vr, nr, lr in rs:
            delta = lh - lr
            pen = math.e ** (-(delta * delta) / (2 * 6.0 * 6.0))
            for n in range(4):
                val = 0.0
                for g, h in vh[n].items():
                    r = vr[n].get(g, 0.0)
                    val += min(h, r) * r
                if nh[n] != 0 and nr[n] != 0:
                    val /= nh[n] * nr[n]
                score[n] += val * pen
        return sum(score) / 4 / len(rs) * 10.0


class ShowAndTell(nn.Module):
    """captag's ShowTell (src/model/decoder/show_tell.rs), image fed as the first input."""

    def __init__(self, feat_dim, vocab, embed, hidden, layers, cell):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.img_proj = nn.Linear(feat_dim, embed)
        self.img_norm = nn.BatchNorm1d(embed)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(embed, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def start(self, feats):
        _, state = self.rnn(self.img_norm(self.img_proj(feats)).unsqueeze(1))
        return state

    def logits(self, feats, tokens):  # (B, L) ⇒ (B, L-1, V)
        out, _ = self.rnn(self.embed(tokens[:, :-1]), self.start(feats))
        return self.out(out)


def load_st(path):
    from safetensors.torch import load_file

    return load_file(path)


def load_run(run):
    cfg = json.load(open(os.path.join(run, "config.json")))
    d = cfg["model"]["decoder"]
    if d["kind"] != "show-tell" or d.get("feed", "first-input") != "first-input":
        raise SystemExit(f"error: {run}: the reference has the Show-and-Tell first-input decoder only")
    words = json.load(open(os.path.join(run, "vocab.json")))["words"]
    w = {k[len("decoder."):]: v for k, v in load_st(os.path.join(run, "model.safetensors")).items() if k.startswith("decoder.")}
    return cfg, d, words, w


def load_refs(data):
    """Tokenized references of the training images, in the dataset's (captions.txt) order."""
    train = {l.strip() for l in open(os.path.join(data, "Flickr_8k.trainImages.txt")) if l.strip()}
    refs = defaultdict(list)
    with open(os.path.join(data, "captions.txt"), newline="") as f:
        for row in csv.DictReader(f):
            if row["image"] in train:
                refs[row["image"]].append(tokenize(row["caption"]))
    return refs


def check_cider(pred, refs_json):
    refs = json.load(open(refs_json))
    ids = list(refs)
    hyps = {p["image_id"]: tokenize(p["caption"]) for p in json.load(open(pred))}
    c = CiderD([[tokenize(r) for r in refs[i]] for i in ids])
    per = [c.score(hyps[i], k) for k, i in enumerate(ids)]
    print(json.dumps({"cider": sum(per) / len(per), "images": len(per)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("data", nargs="?")
    ap.add_argument("features", nargs="?")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--max-words", type=int, default=30)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs")
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-cider", nargs=2, metavar=("PRED", "REFS"))
    a = ap.parse_args()
    if a.check_cider:
        return check_cider(*a.check_cider)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    random.seed(0)
    cfg, d, words, w = load_run(a.run)
    from safetensors import safe_open

    with safe_open(a.features, "pt") as f:
        ids = json.loads(f.metadata()["ids"])
        pooled = f.get_tensor("pooled").float()
    row_of = {i: r for r, i in enumerate(ids)}
    refs = load_refs(a.data)
    images = [i for i in refs if i in row_of]
    cider = CiderD([[r + [EOS] for r in refs[i]] for i in images])
    m = ShowAndTell(pooled.shape[1], len(words), d["embed_dim"], d["hidden_dim"], d["layers"], d["cell"])
    missing, unexpected = m.load_state_dict(w, strict=False)
    if unexpected or set(missing) - {"img_norm.num_batches_tracked"}:
        raise SystemExit(f"error: weights do not fit: missing {missing}, unexpected {unexpected}")
    m.eval()  # captag draws and differentiates in eval mode
    opt = torch.optim.Adam(m.parameters(), lr=a.lr)
    pad, start, end = words.index("<pad>"), words.index("<start>"), words.index("<end>")
    masked = [pad, start] + ([words.index("<unk>")] if "<unk>" in words else [])
    k, L = a.samples, a.max_words

    def draw(feats):
        """K captions per row of feats (B, D), no gradient: tokens (B·K, ≤L), finished (B·K,)."""
        with torch.no_grad():
            h = m.start(feats)
            h = tuple(s.repeat_interleave(k, 1) for s in h) if isinstance(h, tuple) else h.repeat_interleave(k, 1)
            n = feats.shape[0] * k
            tok = torch.full((n,), start, dtype=torch.long)
            done = torch.zeros(n, dtype=torch.bool)
            out = []
            for _ in range(L):
                o, h = m.rnn(m.embed(tok).unsqueeze(1), h)
                logits = m.out(o.squeeze(1))
                logits[:, masked] = float("-inf")
                tok = torch.multinomial(logits.softmax(-1), 1).squeeze(1)
                tok = tok.masked_fill(done, pad)
                out.append(tok)
                done = done | (tok == end)
                if bool(done.all()):
                    break
            return torch.stack(out, 1), done

    def step(batch):
        feats = pooled[[row_of[i] for i in batch]]
        t0 = time.perf_counter()
        drawn, finished = draw(feats)
        t1 = time.perf_counter()
        seqs = []
        rewards = []
        for c in range(drawn.shape[0]):
            toks = drawn[c].tolist()
            n = toks.index(end) if finished[c] else len(toks)
            seqs.append([start] + toks[:n] + ([end] if finished[c] else []))
            caption = [words[t] for t in toks[:n]] + ([EOS] if finished[c] else [])
            rewards.append(cider.score(caption, image_index[batch[c // k]]))
        t2 = time.perf_counter()
        adv = []
        for i in range(0, len(rewards), k):
            rs = rewards[i:i + k]
            s = sum(rs)
            adv += [0.0] * k if all(r == rs[0] for r in rs) else [r - (s - r) / (k - 1) for r in rs]
        scored = torch.tensor([len(s) - 1 for s in seqs])
        tokens = torch.full((len(seqs), max(2, max(len(s) for s in seqs))), pad, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, :len(s)] = torch.tensor(s)
        logits = m.logits(feats.repeat_interleave(k, 0), tokens)
        logits[:, :, masked] = float("-inf")
        lp = logits.log_softmax(-1).gather(2, tokens[:, 1:].unsqueeze(2)).squeeze(2)
        live = torch.arange(tokens.shape[1] - 1).unsqueeze(0) < scored.unsqueeze(1)
        logp = lp.masked_fill(~live, 0.0).sum(1)
        loss = -(logp * torch.tensor(adv)).sum() / max(1, int(scored.sum()))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), a.clip)
        opt.step()
        return t1 - t0, t2 - t1, sum(rewards) / len(rewards)

    image_index = {i: n for n, i in enumerate(images)}
    bs = a.batch_size
    draw_s = reward_s = 0.0
    seen, reward_sum, steps = 0, 0.0, 0
    for e in range(a.warmup_epochs + a.epochs):
        order = images[:]
        random.shuffle(order)
        if e == a.warmup_epochs:
            t_start = time.perf_counter()
        for b in range(0, len(order), bs):
            batch = order[b:b + bs]
            ds, rs, r = step(batch)
            if e >= a.warmup_epochs:
                draw_s, reward_s = draw_s + ds, reward_s + rs
                seen, steps, reward_sum = seen + len(batch), steps + 1, reward_sum + r
    secs = time.perf_counter() - t_start
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "decoder": d["cell"], "batch_size": bs, "samples": k, "max_words": L, "epochs": a.epochs,
                      "steps": steps, "images": seen, "seconds": secs, "images_per_s": seen / secs,
                      "draw_share": draw_s / secs, "reward_share": reward_s / secs,
                      "mean_reward": reward_sum / max(steps, 1)}))


if __name__ == "__main__":
    main()
