//! `transformers`' `generate` for encoder–decoder models, as data ([`Generate`], read from a
//! folder's `generation_config.json`) over the same `step` closure as the other strategies, so
//! a translation model's greedy and beam outputs are `generate`'s ids exactly
//! (docs/translation.md). It differs from captag's own [`super::beam`] where `generate` does:
//! the decoder-start token counts in the sequence length; `forced_bos_token_id` (the target
//! language of M2M100/NLLB), `forced_eos_token_id` at the last position, `bad_words_ids`,
//! `min_length` and `no_repeat_ngram_size` reshape each row of log-probabilities (and
//! `renormalize_logits` renormalises it); beam search keeps `num_beams` running beams (the
//! first `num_beams` of the `2·num_beams` best continuations that do not end), finishes a
//! hypothesis only when it is among the best `num_beams`, scores it `logp / len^length_penalty`
//! (`len` = generated tokens, `</s>` included), and stops by `early_stopping` (`true`: once
//! `num_beams` are finished; `false`: once the best running beam, scored at its current length,
//! cannot beat the worst finished one; `"never"`: at the length it could reach). Scores are
//! float32 sums, as in `transformers`.
use serde::Deserialize;

use crate::Result;

/// `early_stopping` of a generation config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    #[default]
    Heuristic,
    True,
    Never,
}

/// What `generate` does for one folder (its `generation_config.json` with the caller's
/// overrides).
#[derive(Clone, Debug, PartialEq)]
pub struct Generate {
    /// 1: greedy.
    pub beams: usize,
    /// The longest decoder sequence, the start token included (`max_length`).
    pub max_length: usize,
    pub min_length: usize,
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    pub no_repeat_ngram: usize,
    pub start: i64,
    pub eos: i64,
    pub pad: i64,
    pub forced_bos: Option<i64>,
    pub forced_eos: Option<i64>,
    /// Single-token `bad_words_ids` (Marian bans `<pad>`).
    pub bad_words: Vec<i64>,
    pub renormalize: bool,
}

/// The fields of `generation_config.json` (or `config.json`) [`Generate`] reads.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationConfig {
    pub num_beams: Option<usize>,
    pub max_length: Option<usize>,
    pub min_length: Option<usize>,
    pub length_penalty: Option<f64>,
    pub early_stopping: Option<serde_json::Value>,
    pub no_repeat_ngram_size: Option<usize>,
    pub decoder_start_token_id: Option<i64>,
    pub eos_token_id: Option<serde_json::Value>,
    pub pad_token_id: Option<i64>,
    pub forced_bos_token_id: Option<i64>,
    pub forced_eos_token_id: Option<serde_json::Value>,
    pub bad_words_ids: Option<Vec<Vec<i64>>>,
    pub renormalize_logits: Option<bool>,
}

/// The first id of a field that may be one id or a list of them.
fn first_id(v: &Option<serde_json::Value>) -> Option<i64> {
    match v.as_ref()? {
        serde_json::Value::Array(a) => a.first()?.as_i64(),
        x => x.as_i64(),
    }
}

impl GenerationConfig {
    /// Overlays `self` (generation_config.json) on `base` (config.json's generation fields).
    pub fn or(self, base: GenerationConfig) -> GenerationConfig {
        GenerationConfig {
            num_beams: self.num_beams.or(base.num_beams),
            max_length: self.max_length.or(base.max_length),
            min_length: self.min_length.or(base.min_length),
            length_penalty: self.length_penalty.or(base.length_penalty),
            early_stopping: self.early_stopping.or(base.early_stopping),
            no_repeat_ngram_size: self.no_repeat_ngram_size.or(base.no_repeat_ngram_size),
            decoder_start_token_id: self.decoder_start_token_id.or(base.decoder_start_token_id),
            eos_token_id: self.eos_token_id.or(base.eos_token_id),
            pad_token_id: self.pad_token_id.or(base.pad_token_id),
            forced_bos_token_id: self.forced_bos_token_id.or(base.forced_bos_token_id),
            forced_eos_token_id: self.forced_eos_token_id.or(base.forced_eos_token_id),
            bad_words_ids: self.bad_words_ids.or(base.bad_words_ids),
            renormalize_logits: self.renormalize_logits.or(base.renormalize_logits),
        }
    }

    /// `generate`'s defaults where a field is absent (`max_length` 20, `length_penalty` 1,
    /// one beam); `start`/`eos`/`pad` from the model config when the file lacks them.
    pub fn resolve(&self, start: i64, eos: i64, pad: i64) -> Generate {
        let early_stopping = match &self.early_stopping {
            Some(serde_json::Value::Bool(true)) => EarlyStopping::True,
            Some(serde_json::Value::String(s)) if s == "never" => EarlyStopping::Never,
            _ => EarlyStopping::Heuristic,
        };
        let eos = first_id(&self.eos_token_id).unwrap_or(eos);
        Generate {
            beams: self.num_beams.unwrap_or(1).max(1),
            max_length: self.max_length.unwrap_or(20).max(2),
            min_length: self.min_length.unwrap_or(0),
            length_penalty: self.length_penalty.unwrap_or(1.0),
            early_stopping,
            no_repeat_ngram: self.no_repeat_ngram_size.unwrap_or(0),
            start: self.decoder_start_token_id.unwrap_or(start),
            eos,
            pad: self.pad_token_id.unwrap_or(pad),
            forced_bos: self.forced_bos_token_id,
            forced_eos: first_id(&self.forced_eos_token_id),
            bad_words: self
                .bad_words_ids
                .iter()
                .flatten()
                .filter(|w| w.len() == 1)
                .map(|w| w[0])
                .collect(),
            renormalize: self.renormalize_logits.unwrap_or(false),
        }
    }
}

impl Generate {
    /// The logits processors of `generate`, in its order, on one row of log-probabilities for
    /// the sequence `seq` (start token included).
    fn process(&self, row: &mut [f32], seq: &[i64]) {
        let v = row.len();
        let ban = |row: &mut [f32], t: i64| {
            if (0..v as i64).contains(&t) {
                row[t as usize] = f32::NEG_INFINITY;
            }
        };
        let n = self.no_repeat_ngram;
        if n > 0 && seq.len() + 1 >= n {
            let prefix = &seq[seq.len() + 1 - n..];
            for w in seq.windows(n) {
                if &w[..n - 1] == prefix {
                    ban(row, w[n - 1]);
                }
            }
        }
        for &b in &self.bad_words {
            ban(row, b);
        }
        if seq.len() < self.min_length {
            ban(row, self.eos);
        }
        let force = |row: &mut [f32], t: i64| {
            if (0..v as i64).contains(&t) {
                row.fill(f32::NEG_INFINITY);
                row[t as usize] = 0.0;
            }
        };
        if let (Some(b), 1) = (self.forced_bos, seq.len()) {
            force(row, b);
        }
        if let Some(e) = self.forced_eos {
            if seq.len() + 1 == self.max_length {
                force(row, e);
            }
        }
        if self.renormalize {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if m.is_finite() {
                let z: f32 = row.iter().map(|&x| (x - m).exp()).sum::<f32>().ln() + m;
                row.iter_mut().for_each(|x| *x -= z);
            }
        }
    }
}

/// Generated ids of `n` inputs (after the start token; `</s>` included when the sequence ended
/// with it). `step(parents, tokens)` is the contract of [`super::decode`]: reorder the state to
/// rows `parents`, feed `tokens`, return the rows' log-probabilities `(R × V)`.
pub fn generate<F>(n: usize, g: &Generate, step: F) -> Result<Vec<Vec<i64>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    Ok(generate_nbest(n, &[g.start], g, step)?
        .into_iter()
        .map(|hs| hs.into_iter().next().map(|h| h.ids).unwrap_or_default())
        .collect())
}

/// One finished sequence of [`generate_nbest`]: the generated ids (`</s>` included when it
/// ended with it), their summed log-probability and the length-penalised score beam search
/// ranks by (greedy: the sum).
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub ids: Vec<i64>,
    pub logp: f32,
    pub score: f32,
}

/// `generate` after a `prompt` (decoder-only captioners: `[DEC]`/`[CLS]` and a text prompt;
/// encoder–decoders: the start token alone) that every input shares: the state `step` starts
/// from has read all of it but its last token, which is fed first. `max_length` counts the
/// prompt, lengths in the length penalty do not, and the n-gram and minimum-length rules see
/// it, as `generate` does with `input_ids`. Per input, beam search's finished hypotheses best
/// first (at most `beams`), greedy's one sequence.
pub fn generate_nbest<F>(
    n: usize,
    prompt: &[i64],
    g: &Generate,
    step: F,
) -> Result<Vec<Vec<Generated>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    if prompt.is_empty() {
        return Err(crate::Error::invalid("generation needs a start token"));
    }
    if g.beams <= 1 {
        greedy(n, prompt, g, step)
    } else {
        beam(n, prompt, g, step)
    }
}

fn argmax(row: &[f32]) -> i64 {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in row.iter().enumerate() {
        if x > best.1 {
            best = (i as i64, x);
        }
    }
    best.0
}

fn greedy<F>(n: usize, prompt: &[i64], g: &Generate, mut step: F) -> Result<Vec<Vec<Generated>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let start = *prompt.last().unwrap_or(&g.start);
    let mut seqs: Vec<Vec<i64>> = vec![prompt.to_vec(); n];
    let mut sums = vec![0f32; n];
    let mut live: Vec<usize> = (0..n).collect();
    let mut parents: Vec<usize> = (0..n).collect();
    let mut tokens = vec![start; n];
    while !live.is_empty() && seqs[live[0]].len() < g.max_length {
        let mut lp = step(&parents, &tokens)?;
        let v = lp.len() / live.len();
        let (mut next_live, mut next_parents, mut next_tokens) = (vec![], vec![], vec![]);
        for (row, &i) in live.iter().enumerate() {
            let r = &mut lp[row * v..(row + 1) * v];
            g.process(r, &seqs[i]);
            let w = argmax(r);
            sums[i] += r[w as usize];
            seqs[i].push(w);
            if w != g.eos && seqs[i].len() < g.max_length {
                next_live.push(i);
                next_parents.push(row);
                next_tokens.push(w);
            }
        }
        (live, parents, tokens) = (next_live, next_parents, next_tokens);
    }
    Ok(seqs
        .into_iter()
        .zip(sums)
        .map(|(s, logp)| {
            vec![Generated {
                ids: s[prompt.len()..].to_vec(),
                logp,
                score: logp,
            }]
        })
        .collect())
}

/// One input's beam state: `beams` running sequences and `beams` finished slots, as
/// `transformers` keeps them (placeholders score −1e9).
struct Item {
    running: Vec<(Vec<i64>, f32)>,
    /// (sequence, score, summed log-probability, a real hypothesis rather than a placeholder)
    finished: Vec<(Vec<i64>, f32, f32, bool)>,
    unsatisfied: bool,
}

const NEG: f32 = -1.0e9;

/// `transformers`' order of beam candidates: higher accumulated score first, then the lower
/// flat index `beam · V + token`.
fn by_score(a: &(f32, usize), b: &(f32, usize)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl Item {
    /// One step of beam search for this input: `rows` its beams' processed log-probabilities
    /// (`beams × V`), `cur_len` the length before the step, `p` the prompt's. Updates the
    /// running and finished hypotheses; returns whether every candidate ended and, while the
    /// input is still open, the running beams' parents (beam indices of the step's input).
    fn advance(
        &mut self,
        rows: &mut [f32],
        g: &Generate,
        cur_len: usize,
        p: usize,
    ) -> (bool, Option<Vec<usize>>) {
        let nb = g.beams;
        let k = 2 * nb;
        let v = rows.len() / nb;
        let lp_pow = |len: usize| (len as f64).powf(g.length_penalty) as f32;
        // Accumulated scores (float32 as in `transformers`) of the best `k` (beam, token)
        // pairs: the best `k` overall are among each beam's best `k`, so only those are
        // kept from a row (not `beams × V` pairs).
        let mut acc: Vec<(f32, usize)> = Vec::with_capacity(nb * k);
        for (b, (seq, score)) in self.running.iter().enumerate() {
            let r = &mut rows[b * v..(b + 1) * v];
            g.process(r, seq);
            acc.extend(row_top_k(r, *score, b * v, k));
        }
        acc.sort_by(by_score);
        acc.truncate(k);
        let at_max = cur_len + 1 >= g.max_length;
        let cands: Vec<(f32, usize, i64, bool)> = acc
            .iter()
            .map(|&(s, idx)| {
                let t = (idx % v) as i64;
                (s, idx / v, t, t == g.eos || at_max)
            })
            .collect();
        let all_hit = cands.iter().all(|c| c.3);
        let extend = |b: usize, t: i64| {
            let mut s = self.running[b].0.clone();
            s.push(t);
            s
        };
        // The next running beams: the best that did not just end.
        let mut run: Vec<(f32, usize)> = cands
            .iter()
            .enumerate()
            .map(|(j, c)| (c.0 + if c.3 { NEG } else { 0.0 }, j))
            .collect();
        run.sort_by(by_score);
        let new_running: Vec<(Vec<i64>, f32)> = run[..nb]
            .iter()
            .map(|&(s, j)| (extend(cands[j].1, cands[j].2), s))
            .collect();
        // Finished hypotheses: the ending ones among the best `nb`, length-penalised.
        let denom = lp_pow(cur_len + 1 - p);
        let full = self.finished.iter().all(|f| f.3) && g.early_stopping == EarlyStopping::True;
        let mut merged: Vec<(f32, Vec<i64>, f32, bool)> = self
            .finished
            .drain(..)
            .map(|(s, sc, raw, fin)| (sc, s, raw, fin))
            .collect();
        for (j, c) in cands.iter().enumerate() {
            let done = j < nb && c.3;
            let mut s = c.0 / denom;
            if full {
                s += NEG;
            }
            if !self.unsatisfied {
                s += NEG;
            }
            if !done {
                s += NEG;
            }
            merged.push((s, extend(c.1, c.2), c.0, done));
        }
        let mut order: Vec<(f32, usize)> =
            merged.iter().enumerate().map(|(j, m)| (m.0, j)).collect();
        order.sort_by(by_score);
        self.finished = order[..nb]
            .iter()
            .map(|&(_, j)| (merged[j].1.clone(), merged[j].0, merged[j].2, merged[j].3))
            .collect();
        self.running = new_running;
        // Can a running beam still beat the worst finished one?
        let best_len = match g.early_stopping {
            EarlyStopping::Never if g.length_penalty > 0.0 => g.max_length - p,
            _ => cur_len + 1 - p,
        };
        let best = self.running[0].1 / lp_pow(best_len);
        let worst = self
            .finished
            .iter()
            .map(|f| f.1)
            .fold(f32::INFINITY, f32::min);
        self.unsatisfied &= self
            .finished
            .iter()
            .any(|f| best > if f.3 { worst } else { NEG });
        let closed = self.finished.iter().all(|f| f.3) && g.early_stopping == EarlyStopping::True;
        let parents =
            (self.unsatisfied && !closed).then(|| (0..nb).map(|b| cands[run[b].1].1).collect());
        (all_hit, parents)
    }
}

/// The best `k` of `(score + row[t], off + t)` in [`by_score`] order, in one pass that keeps a
/// sorted list of `k`: a candidate that does not beat the `k`-th costs one comparison.
fn row_top_k(row: &[f32], score: f32, off: usize, k: usize) -> Vec<(f32, usize)> {
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (t, &x) in row.iter().enumerate() {
        let c = (score + x, off + t);
        // Indices grow along the row, so a tie with the k-th loses: only a higher score enters.
        if top.len() == k && c.0.total_cmp(&top[k - 1].0) != std::cmp::Ordering::Greater {
            continue;
        }
        let at = top.partition_point(|e| by_score(e, &c) == std::cmp::Ordering::Less);
        top.insert(at, c);
        top.truncate(k);
    }
    top
}

fn beam<F>(n: usize, prompt: &[i64], g: &Generate, mut step: F) -> Result<Vec<Vec<Generated>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let nb = g.beams;
    let p = prompt.len();
    let start = *prompt.last().unwrap_or(&g.start);
    let mut items: Vec<Item> = (0..n)
        .map(|_| Item {
            running: (0..nb)
                .map(|b| (prompt.to_vec(), if b == 0 { 0.0 } else { NEG }))
                .collect(),
            finished: (0..nb)
                .map(|_| (prompt.to_vec(), NEG, NEG, false))
                .collect(),
            unsatisfied: true,
        })
        .collect();
    // Every input starts from its own state row, repeated for its beams.
    let mut live: Vec<usize> = (0..n).collect();
    let mut parents: Vec<usize> = (0..n).flat_map(|i| std::iter::repeat_n(i, nb)).collect();
    let mut tokens = vec![start; n * nb];
    let mut cur_len = p;
    while !live.is_empty() {
        let mut lp = step(&parents, &tokens)?;
        let v = lp.len() / (live.len() * nb);
        let (mut next_live, mut next_parents, mut next_tokens) = (vec![], vec![], vec![]);
        let mut all_hit = true;
        for (slot, &i) in live.iter().enumerate() {
            let rows = &mut lp[slot * nb * v..(slot + 1) * nb * v];
            let (hit, next) = items[i].advance(rows, g, cur_len, p);
            all_hit &= hit;
            if let Some(parents) = next {
                next_live.push(i);
                for (b, (seq, _)) in items[i].running.iter().enumerate() {
                    next_parents.push(slot * nb + parents[b]);
                    next_tokens.push(*seq.last().unwrap_or(&start));
                }
            }
        }
        cur_len += 1;
        if all_hit || cur_len >= g.max_length {
            break;
        }
        (live, parents, tokens) = (next_live, next_parents, next_tokens);
    }
    Ok(items
        .into_iter()
        .map(|it| {
            it.finished
                .into_iter()
                .filter(|f| f.3)
                .map(|(seq, score, logp, _)| Generated {
                    ids: seq[p.min(seq.len())..].to_vec(),
                    logp,
                    score,
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
#[path = "hf_tests.rs"]
mod tests;
