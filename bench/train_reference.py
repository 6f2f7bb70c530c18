"""PyTorch reference for captag's training-throughput benchmark.

Trains the same Show-and-Tell model captag builds (image projection + BatchNorm fed as the first
LSTM/GRU input, embedding, single-layer RNN, dropout, linear output; Adam; global-norm clip 5; cross
entropy ignoring <pad>=0) on the very same workload file that `benches/train_throughput.rs`
wrote (cached image features, caption rows, padded token ids), in the same batch order, and
prints captions/s. Run through bench/train_bench.sh, which runs both sides in one go.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
try:
    from safetensors.torch import load_file
except ImportError:  # e.g. the GPU machines' image: read the simple format directly

    def load_file(path):
        import struct

        raw = open(path, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        kinds = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
        out = {}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            lo, hi = e["data_offsets"]
            buf = bytearray(raw[8 + n + lo : 8 + n + hi])
            out[name] = torch.frombuffer(buf, dtype=kinds[e["dtype"]]).reshape(e["shape"]).clone()
        return out


class ShowAndTell(nn.Module):
    def __init__(self, feat_dim, vocab, embed, hidden, cell, dropout):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.img_proj = nn.Linear(feat_dim, embed)
        self.img_norm = nn.BatchNorm1d(embed)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(embed, hidden, num_layers=1, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        self.dropout = dropout

    def forward(self, feats, tokens):
        img = self.img_norm(self.img_proj(feats))  # (B, E)
        _, state = self.rnn(img.unsqueeze(1))
        x = nn.functional.dropout(self.embed(tokens[:, :-1]), self.dropout, self.training)  # (B, L-1, E)
        out, _ = self.rnn(x, state)  # (B, L-1, H)
        return self.out(nn.functional.dropout(out, self.dropout, self.training))  # (B, L-1, V)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    w = load_file(a.workload)
    meta = json.loads(open(a.workload + ".json").read())
    dev = torch.device(a.device)
    feats, rows, tokens, lens = (w[k].to(dev) for k in ("features", "rows", "tokens", "lens"))
    torch.manual_seed(0)
    m = ShowAndTell(feats.shape[1], meta["vocab"], meta["embed"], meta["hidden"], meta["cell"], meta["dropout"]).to(dev)
    opt = torch.optim.Adam(m.parameters(), lr=meta["lr"])
    bs = meta["batch_size"]
    n = rows.shape[0]

    def step(i):
        lo = (i * bs) % (n - bs)
        r, t = rows[lo:lo + bs], tokens[lo:lo + bs]
        t = t[:, : int(lens[lo:lo + bs].max())]  # pad to the batch's longest caption, like captag
        logits = m(feats[r], t)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), meta["clip"])
        opt.step()
        return loss

    m.train()
    for i in range(a.warmup):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(a.warmup, a.warmup + a.steps):
        loss = step(i)
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "steps": a.steps, "captions_per_s": a.steps * bs / secs}))


if __name__ == "__main__":
    main()
