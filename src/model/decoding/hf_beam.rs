//! Beam search with `transformers`' bookkeeping (`GenerationMixin._beam_search`, 5.x, the
//! defaults `early_stopping=False`, `length_penalty = alpha`), for the Hugging Face captioners
//! (BLIP, GIT) whose captions are checked token for token against `generate(num_beams=K)`:
//! the `2K` best continuations over all of an image's beams; a continuation that ends (`<end>`,
//! or the last of `max_new` tokens) is finished only when it ranks among the first `K`, scored
//! `logp / len^alpha` with `len` counting the token just added; an image keeps its `K` best
//! finished hypotheses and stops once `K` are finished and its best running beam, normalised at
//! the current length, cannot beat the worst of them. captag's own [`super::beam_nbest`] stops
//! as soon as no live beam beats the *best* finished one and finishes at `max_len` words without
//! counting a last token; the two agree whenever captions end early. Same `step` contract.
use super::{normalised, top_k, Hypothesis, Specials};
use crate::Result;

#[derive(Clone, Debug)]
struct Running {
    tokens: Vec<i64>,
    logp: f64,
}

/// Per image, its finished hypotheses best first (at most `width`).
pub fn beam_transformers<F>(
    n: usize,
    width: usize,
    max_new: usize,
    alpha: f64,
    sp: Specials,
    mut step: F,
) -> Result<Vec<Vec<Hypothesis>>>
where
    F: FnMut(&[usize], &[i64]) -> Result<Vec<f32>>,
{
    let width = width.max(1);
    let mut finished: Vec<Vec<Hypothesis>> = vec![vec![]; n];
    let start = Running {
        tokens: vec![],
        logp: 0.0,
    };
    let mut live: Vec<Vec<Running>> = vec![vec![start]; n];
    let mut parents: Vec<usize> = (0..n).collect();
    let mut tokens = vec![sp.start; n];
    for t in 0..max_new {
        let rows: usize = live.iter().map(Vec::len).sum();
        if rows == 0 {
            break;
        }
        let lp = step(&parents, &tokens)?;
        let v = lp.len() / rows;
        let last = t + 1 == max_new;
        let (mut next_parents, mut next_tokens) = (vec![], vec![]);
        let mut row = 0;
        for (img, done) in finished.iter_mut().enumerate() {
            let beams = std::mem::take(&mut live[img]);
            let mut cands: Vec<(f64, usize, i64)> = Vec::new(); // (logp, beam, token)
            for (b, beam) in beams.iter().enumerate() {
                let r = &lp[(row + b) * v..(row + b + 1) * v];
                for (w, l) in top_k(r, 2 * width) {
                    cands.push((beam.logp + l as f64, b, w));
                }
            }
            let first_row = row;
            row += beams.len();
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            cands.truncate(2 * width);
            let mut kept: Vec<Running> = Vec::new();
            for (rank, &(logp, b, w)) in cands.iter().enumerate() {
                let mut toks = beams[b].tokens.clone();
                if w == sp.end || last {
                    if rank < width {
                        if w != sp.end {
                            toks.push(w);
                        }
                        let score = normalised(logp, t + 1, alpha);
                        let h = Hypothesis {
                            tokens: toks,
                            logp,
                            score,
                        };
                        // Keep the `width` best, earlier ones first among equals.
                        let at = done.partition_point(|x| x.score >= score);
                        done.insert(at, h);
                        done.truncate(width);
                    }
                } else if kept.len() < width {
                    toks.push(w);
                    next_parents.push(first_row + b);
                    next_tokens.push(w);
                    kept.push(Running { tokens: toks, logp });
                }
            }
            // The early-stop heuristic at the new length (t + 1 tokens).
            let best_running = kept
                .first()
                .map_or(f64::NEG_INFINITY, |r| normalised(r.logp, t + 1, alpha));
            let worst_done = done.last().map_or(f64::NEG_INFINITY, |h| h.score);
            if done.len() >= width && best_running <= worst_done {
                let drop = kept.len();
                next_parents.truncate(next_parents.len() - drop);
                next_tokens.truncate(next_tokens.len() - drop);
                kept.clear();
            }
            live[img] = kept;
        }
        parents = next_parents;
        tokens = next_tokens;
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bigram, SP};
    use super::*;

    /// A caption that ends early is the same as captag's beam search finds; a beam still
    /// running at `max_new` is finished with its last token (`transformers` counts it).
    #[test]
    fn ends_like_transformers() {
        let table = vec![
            vec![1e-9, 1e-9, 0.6, 0.4],
            vec![0.25, 0.25, 0.25, 0.25],
            vec![1e-9, 0.34, 0.33, 0.33],
            vec![1e-9, 1.0, 1e-9, 1e-9],
        ];
        let hf = beam_transformers(1, 2, 5, 1.0, SP, bigram(table.clone())).unwrap();
        let ours = super::super::beam(1, 2, 5, 1.0, SP, bigram(table)).unwrap();
        assert_eq!(hf[0][0].tokens, ours[0].tokens);
        let never = vec![vec![1e-9, 1e-9, 1.0]; 3];
        let hf = beam_transformers(2, 3, 4, 1.0, SP, bigram(never)).unwrap();
        assert_eq!(hf[1][0].tokens, vec![2; 4]);
    }
}
