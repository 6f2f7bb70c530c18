"""PyTorch reference for captag's training-throughput benchmark.

Trains the same model captag builds, on the very same workload file that
`benches/train_throughput.rs` wrote (cached image features, caption rows, padded token ids), in
the same batch order, with Adam, global-norm clip 5 and cross entropy ignoring <pad>=0, and
prints captions/s. The models, written the way their PyTorch tutorials write them:
- lstm/gru: Show and Tell (image projection + BatchNorm fed as the first RNN input, embedding,
  single-layer nn.LSTM/nn.GRU, dropout, linear output);
- attention: Show, Attend and Tell soft attention (sgrvinod's tutorial: additive attention,
  nn.LSTMCell, init h/c from the mean grid cell, f_beta gate, alpha_c regulariser), with
  captag's LayerNorm on the grid cells;
- transformer: pre-LN decoder layers (masked self-attention, cross-attention over
  [pooled; grid], GELU feed-forward), learned positions.
Grid decoders read the grids from the captag feature cache named in the workload's metadata.
`--packed` (lstm/gru) is the efficient way to write Show and Tell in PyTorch: the RNN runs on a
`pack_padded_sequence` of the inputs (each step only over the captions still going) and the
output layer and cross entropy only on the packed, i.e. non-padding, positions — the same
work captag does.
Run through bench/train_bench.sh, which runs both sides in one go.
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
        kinds = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
                 "F16": torch.float16}
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

    def forward_packed(self, feats, tokens, lens):
        """Logits and targets of the non-padding positions only, `(sum(lens - 1), V)`."""
        img = self.img_norm(self.img_proj(feats))  # (B, E)
        _, state = self.rnn(img.unsqueeze(1))
        x = nn.functional.dropout(self.embed(tokens[:, :-1]), self.dropout, self.training)
        steps = (lens - 1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, steps, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed, state)  # PackedSequence, data (sum(steps), H)
        target = nn.utils.rnn.pack_padded_sequence(tokens[:, 1:], steps, batch_first=True, enforce_sorted=False)
        logits = self.out(nn.functional.dropout(out.data, self.dropout, self.training))
        return logits, target.data

    def forward(self, feats, tokens):
        img = self.img_norm(self.img_proj(feats))  # (B, E)
        _, state = self.rnn(img.unsqueeze(1))
        x = nn.functional.dropout(self.embed(tokens[:, :-1]), self.dropout, self.training)  # (B, L-1, E)
        out, _ = self.rnn(x, state)  # (B, L-1, H)
        return self.out(nn.functional.dropout(out, self.dropout, self.training))  # (B, L-1, V)


class Attention(nn.Module):
    def __init__(self, grid_dim, vocab, c):
        super().__init__()
        E, H, A = c["embed_dim"], c["hidden_dim"], c["attention_dim"]
        self.embed = nn.Embedding(vocab, E)
        self.grid_norm = nn.LayerNorm(grid_dim)
        self.encoder_att = nn.Linear(grid_dim, A)
        self.decoder_att = nn.Linear(H, A)
        self.full_att = nn.Linear(A, 1)
        self.init_h = nn.Linear(grid_dim, H)
        self.init_c = nn.Linear(grid_dim, H)
        self.f_beta = nn.Linear(H, grid_dim)
        self.lstm = nn.LSTMCell(E + grid_dim, H)
        self.fc = nn.Linear(H, vocab)
        self.dropout, self.alpha_c = c["dropout"], c["alpha_c"]

    def forward(self, pooled, grid, tokens):
        grid = self.grid_norm(grid)  # (B, N, C)
        mean = grid.mean(1)
        h, c = self.init_h(mean), self.init_c(mean)
        att1 = self.encoder_att(grid)  # (B, N, A)
        x = self.embed(tokens[:, :-1])  # (B, T, E)
        hs, alphas = [], []
        for t in range(x.shape[1]):
            e = self.full_att(torch.relu(att1 + self.decoder_att(h).unsqueeze(1))).squeeze(2)
            alpha = e.softmax(1)  # (B, N)
            ctx = torch.bmm(alpha.unsqueeze(1), grid).squeeze(1)
            gate = torch.sigmoid(self.f_beta(h))
            h, c = self.lstm(torch.cat([x[:, t], gate * ctx], 1), (h, c))
            hs.append(h)
            alphas.append(alpha)
        logits = self.fc(nn.functional.dropout(torch.stack(hs, 1), self.dropout, self.training))
        alpha = torch.stack(alphas, 1)  # (B, T, N)
        live = (tokens[:, 1:] != 0).float().unsqueeze(2)
        penalty = self.alpha_c * ((1 - (alpha * live).sum(1)) ** 2).mean()
        return logits, penalty


class MultiHead(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.heads, self.dropout = heads, dropout

    def forward(self, x, src, mask=None):
        b, t, d = x.shape
        split = lambda y: y.view(b, y.shape[1], self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(src)), split(self.v_proj(src))
        scores = q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5
        if mask is not None:
            scores = scores + mask
        w = nn.functional.dropout(scores.softmax(-1), self.dropout, self.training)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, t, d))


class Layer(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn, self.cross_attn = MultiHead(d, heads, dropout), MultiHead(d, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem, mask):
        y = self.ln1(x)
        x = x + self.drop(self.self_attn(y, y, mask))
        x = x + self.drop(self.cross_attn(self.ln2(x), mem))
        return x + self.drop(self.ff(self.ln3(x)))


class Transformer(nn.Module):
    def __init__(self, pooled_dim, grid_dim, vocab, c):
        super().__init__()
        d = c["d_model"]
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(c["max_len"], d) * 0.02)
        self.mem_pooled, self.mem_grid, self.mem_norm = nn.Linear(pooled_dim, d), nn.Linear(grid_dim, d), nn.LayerNorm(d)
        self.layers = nn.ModuleList(Layer(d, c["heads"], c["ff_dim"], c["dropout"]) for _ in range(c["layers"]))
        self.ln_f, self.out = nn.LayerNorm(d), nn.Linear(d, vocab)
        self.drop = nn.Dropout(c["dropout"])

    def forward(self, pooled, grid, tokens):
        mem = self.drop(self.mem_norm(torch.cat([self.mem_pooled(pooled).unsqueeze(1), self.mem_grid(grid)], 1)))
        t = tokens.shape[1] - 1
        mask = torch.full((t, t), float("-inf"), device=tokens.device).triu(1)
        x = self.drop(self.embed(tokens[:, :-1]) + self.pos[:t])
        for layer in self.layers:
            x = layer(x, mem, mask)
        return self.out(self.ln_f(x)), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--packed", action="store_true", help="lstm/gru: pack_padded_sequence + loss on real positions only")
    a = ap.parse_args()
    w = load_file(a.workload)
    meta = json.loads(open(a.workload + ".json").read())
    dev = torch.device(a.device)
    feats, rows, tokens, lens = (w[k].to(dev) for k in ("features", "rows", "tokens", "lens"))
    torch.manual_seed(0)
    kind = meta.get("decoder", meta.get("cell", "lstm"))
    grid = None
    if kind in ("attention", "transformer"):
        grid = load_file(meta["grid_cache"])["grid"]  # (N, cells, C) float16, stays on the host
    if kind == "attention":
        m = Attention(grid.shape[2], meta["vocab"], meta["config"]).to(dev)
    elif kind == "transformer":
        m = Transformer(feats.shape[1], grid.shape[2], meta["vocab"], meta["config"]).to(dev)
    else:
        m = ShowAndTell(feats.shape[1], meta["vocab"], meta["embed"], meta["hidden"], meta["cell"], meta["dropout"]).to(dev)
    opt = torch.optim.Adam(m.parameters(), lr=meta["lr"])
    bs = meta["batch_size"]
    n = rows.shape[0]

    def step(i):
        lo = (i * bs) % (n - n % bs - bs)
        r, t = rows[lo:lo + bs], tokens[lo:lo + bs]
        t = t[:, : int(lens[lo:lo + bs].max())]  # pad to the batch's longest caption, like captag
        if a.packed:
            logits, target = m.forward_packed(feats[r], t, lens[lo:lo + bs])
            loss = nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), meta["clip"])
            opt.step()
            return loss
        if grid is None:
            logits, penalty = m(feats[r], t), None
        else:
            g = grid[r.cpu()].to(dev).float()  # the batch's grids, like captag
            logits, penalty = m(feats[r], g, t)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), ignore_index=0)
        if penalty is not None:
            loss = loss + penalty
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
    print(json.dumps({"impl": "pytorch", "decoder": kind, "packed": a.packed, "order": meta.get("order", "shuffle"), "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "steps": a.steps, "captions_per_s": a.steps * bs / secs}))


if __name__ == "__main__":
    main()
