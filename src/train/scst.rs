//! Self-critical sequence training (Rennie et al. 2017; docs/training.md, "Self-critical
//! training"): `train --init-from RUN --objective scst` continues a cross-entropy run with
//! REINFORCE on the CIDEr-D reward, for every decoder.
//!
//! One step, for a batch of `B` training images (`--batch-size` images; their order per epoch
//! is seeded by `(seed, epoch)` like the cross-entropy batches, so resume is exact):
//! 1. draw `K` captions per image from the model's own distribution (`model::policy`, through
//!    the shared decoding walk; `<unk>`, `<pad>` and `<start>` never drawn), and for
//!    `--scst-baseline greedy` its greedy caption — without gradient, in eval mode;
//! 2. reward each caption with its CIDEr-D against the image's references
//!    (`eval::cider_reward`: document frequencies of the training references, `<end>` counted);
//! 3. advantage = reward − baseline (the greedy caption's reward, or the mean of the image's
//!    other samples), 0 for every sample of an image whose rewards are all equal;
//! 4. loss = −Σ advantage · log p(caption) / Σ tokens (ruotianluo's `RewardCriterion`), the
//!    log-probabilities recomputed with gradient in one teacher-forced pass.
//!
//! Failure modes: a caption cut at `--max-words` has no `<end>` and is rewarded and scored as
//! it is; a batch whose advantages are all 0 contributes no gradient; a non-finite loss stops
//! the run (as in cross-entropy training) before the epoch is committed.
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Kind, Tensor};

use super::{epoch_seed, step, Prepared, TrainJob, Trained, Training};
use crate::cli::{Objective, ScstArgs};
use crate::config::scst::{Baseline, InitFrom, Scst};
use crate::eval::cider_reward::{CiderReward, EOS};
use crate::model::decoding::{Draw, Drawn};
use crate::model::policy::drawn_tokens;
use crate::model::ImageFeatures;
use crate::{Error, Result};

/// `train`'s SCST flags as the run's settings: the objective and what it starts from.
pub fn settings(a: &ScstArgs) -> Result<(Option<Scst>, Option<InitFrom>)> {
    let scst = (a.objective == Objective::Scst).then_some(Scst {
        samples: a.scst_samples,
        baseline: a.scst_baseline,
    });
    let init = a
        .init_from
        .as_deref()
        .map(super::init::record)
        .transpose()?;
    Ok((scst, init))
}

/// The CIDEr-D reward over the training images' references (each ending in `<end>`).
pub struct Reward {
    cider: CiderReward,
    /// Image row ⇒ index of its references in `cider`.
    index: std::collections::HashMap<i64, usize>,
    /// The training images' rows, in the dataset's order.
    rows: Vec<i64>,
}

impl Reward {
    pub fn new(prep: &Prepared) -> Reward {
        Reward::from_refs(&prep.train_refs)
    }

    /// From `(image row, its references as words)` per training image.
    pub fn from_refs(train_refs: &[(i64, Vec<Vec<String>>)]) -> Reward {
        let with_eos = |rs: &Vec<Vec<String>>| -> Vec<Vec<String>> {
            rs.iter()
                .map(|r| r.iter().cloned().chain([EOS.to_string()]).collect())
                .collect()
        };
        let refs: Vec<Vec<Vec<String>>> = train_refs.iter().map(|(_, r)| with_eos(r)).collect();
        let rows: Vec<i64> = train_refs.iter().map(|(r, _)| *r).collect();
        Reward {
            cider: CiderReward::new(&refs),
            index: rows.iter().enumerate().map(|(i, &r)| (r, i)).collect(),
            rows,
        }
    }

    /// The training images' rows, in the dataset's order.
    pub fn rows(&self) -> &[i64] {
        &self.rows
    }

    /// CIDEr-D of a caption (words) of image `row`; `finished`: it ended with `<end>`.
    pub fn score(&mut self, mut words: Vec<String>, finished: bool, row: i64) -> f64 {
        let Some(&i) = self.index.get(&row) else {
            return 0.0;
        };
        if finished {
            words.push(EOS.to_string());
        }
        self.cider.score(&words, i)
    }
}

/// Each sample's advantage (`rewards` holds `k` samples per image, image-major): reward minus
/// the baseline — the image's greedy reward (`greedy[i]`), or the mean of its other samples.
/// Every sample of an image whose rewards (and greedy reward) are all equal gets exactly 0.
pub fn advantages(rewards: &[f64], k: usize, baseline: Baseline, greedy: &[f64]) -> Vec<f64> {
    let k = k.max(1);
    let mut out = Vec::with_capacity(rewards.len());
    for (i, rs) in rewards.chunks(k).enumerate() {
        let g = greedy.get(i).copied();
        let all_equal = rs.iter().all(|&r| r == rs[0])
            && (baseline == Baseline::Mean || g.is_none_or(|g| g == rs[0]));
        if all_equal {
            out.extend(std::iter::repeat_n(0.0, rs.len()));
            continue;
        }
        let sum: f64 = rs.iter().sum();
        for &r in rs {
            let b = match baseline {
                Baseline::Greedy => g.unwrap_or(0.0),
                Baseline::Mean if rs.len() > 1 => (sum - r) / (rs.len() - 1) as f64,
                Baseline::Mean => r,
            };
            out.push(r - b);
        }
    }
    out
}

/// `−Σ advantage · logp / Σ scored tokens` over the drawn captions (`logp (N,)` with gradient).
pub fn loss(logp: &Tensor, advantages: &[f64], scored: &[i64]) -> Tensor {
    let adv = Tensor::from_slice(advantages)
        .to_kind(Kind::Float)
        .to_device(logp.device());
    let tokens: i64 = scored.iter().sum::<i64>().max(1);
    -(logp * adv).sum(Kind::Float) / tokens as f64
}

/// The drawing seed of step `b` of an epoch: every image of the step draws from its own stream
/// (`decoding::sample`), so a resumed epoch draws what the uninterrupted one drew.
pub(super) fn step_seed(epoch_seed: u64, b: usize) -> u64 {
    epoch_seed.wrapping_add((b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// One SCST epoch over the training images (each once, `--batch-size` images a step).
pub(super) fn train_epoch(
    job: &TrainJob,
    prep: &Prepared,
    cfg: &Scst,
    reward: &mut Reward,
    t: &mut Training,
) -> Result<Trained> {
    let tc = &prep.run.train;
    let e = t.state.epoch;
    let t0 = Instant::now();
    let seed = epoch_seed(tc.seed, e);
    let mut order = reward.rows.clone();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let batches: Vec<&[i64]> = order.chunks(tc.batch_size.max(1)).collect();
    let steps = batches.len();
    let bar = super::EpochBar::new(job.quiet, steps, e, tc.epochs, t0);
    let mut done = Trained::new(super::commit::Unit::Images);
    let mut tally = Tally::default();
    for (b, rows) in batches.iter().enumerate() {
        let s = scst_step(prep, cfg, reward, t, rows, step_seed(seed, b))?;
        let progress = (e as f64 + b as f64 / steps as f64) / tc.epochs as f64;
        let l = step::update(t, tc, &s.loss, progress)?;
        bar.step(&mut done, b, l, rows.len());
        tally.add(&s);
    }
    bar.finish(&mut done);
    tally.log(cfg, &mut done);
    Ok(done)
}

/// An epoch's sums over its steps, logged in `metrics.jsonl`.
#[derive(Default)]
pub(super) struct Tally {
    reward_sum: f64,
    greedy_sum: f64,
    samples: usize,
    draw_secs: f64,
    reward_secs: f64,
}

impl Tally {
    pub(super) fn add(&mut self, s: &Step) {
        self.reward_sum += s.rewards.iter().sum::<f64>();
        self.greedy_sum += s.greedy.iter().sum::<f64>();
        self.samples += s.rewards.len();
        self.draw_secs += s.draw_seconds;
        self.reward_secs += s.reward_seconds;
    }

    fn mean_reward(&self) -> f64 {
        self.reward_sum / self.samples.max(1) as f64
    }
    /// The mean sample (and greedy) reward, and where a step's time goes: drawing captions, the
    /// CIDEr-D reward; the rest is the teacher-forced pass, backward and the update.
    pub(super) fn log(&self, cfg: &Scst, done: &mut Trained) {
        done.extra.push(("reward", self.mean_reward()));
        if cfg.baseline == Baseline::Greedy {
            done.extra
                .push(("greedy_reward", self.greedy_sum / done.seen.max(1) as f64));
        }
        let total = done.seconds.max(1e-9);
        done.extra.push(("draw_share", self.draw_secs / total));
        done.extra.push(("reward_share", self.reward_secs / total));
    }
}

/// The rewards of one step's captions: `drawn` (`k` per image of `rows`, image-major) and the
/// `greedy` ones (one per image, or none), each read as words by `words`; a non-finite reward
/// is an error.
pub(super) fn rewards(
    reward: &mut Reward,
    drawn: &[Drawn],
    greedy: &[Drawn],
    rows: &[i64],
    k: usize,
    words: impl Fn(&Drawn) -> Vec<String>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut score = |d: &Drawn, row: i64| reward.score(words(d), d.finished, row);
    let sampled: Vec<f64> = drawn
        .iter()
        .enumerate()
        .map(|(c, d)| score(d, rows[c / k.max(1)]))
        .collect();
    let greedy: Vec<f64> = greedy.iter().zip(rows).map(|(d, &r)| score(d, r)).collect();
    if sampled.iter().chain(&greedy).any(|r| !r.is_finite()) {
        return Err(Error::invalid("SCST: a non-finite CIDEr-D reward"));
    }
    Ok((sampled, greedy))
}

/// What one step computed: its loss (with gradient) and the rewards it saw.
pub(super) struct Step {
    pub(super) loss: Tensor,
    pub(super) rewards: Vec<f64>,
    pub(super) greedy: Vec<f64>,
    /// Drawing the captions (and the greedy ones), and rewarding them.
    pub(super) draw_seconds: f64,
    pub(super) reward_seconds: f64,
}

/// Draw, reward and score the captions of one batch of images (`rows`).
fn scst_step(
    prep: &Prepared,
    cfg: &Scst,
    reward: &mut Reward,
    t: &Training,
    rows: &[i64],
    seed: u64,
) -> Result<Step> {
    let model = &t.model;
    let tc = &prep.run.train;
    let sp = crate::infer::SPECIALS;
    let k = cfg.samples;
    // One row per image in `rows` order (an end-to-end encoder runs here, with gradient).
    let feats = prep.images.features(model, rows, false)?.expanded();
    let how = Draw::model_samples(tc.max_words, k, seed);
    let t0 = Instant::now();
    let drawn = model.draw(&feats, how, sp)?;
    let greedy_drawn = match cfg.baseline {
        Baseline::Greedy => model.draw(
            &feats,
            Draw::Greedy {
                max_len: tc.max_words,
            },
            sp,
        )?,
        Baseline::Mean => vec![],
    };
    let t1 = Instant::now();
    let (rewards, greedy) = self::rewards(reward, &drawn, &greedy_drawn, rows, k, |d| {
        prep.vocab.decode(&d.hyp.tokens)
    })?;
    let reward_seconds = t1.elapsed().as_secs_f64();
    let draw_seconds = (t1 - t0).as_secs_f64();
    let adv = advantages(&rewards, k, cfg.baseline, &greedy);
    let (tokens, scored) = drawn_tokens(&drawn, sp);
    let owner: Vec<i64> = (0..rows.len() as i64)
        .flat_map(|i| std::iter::repeat_n(i, k))
        .collect();
    let per_sample = ImageFeatures {
        owner: Some(Tensor::from_slice(&owner).to_device(model.device())),
        ..feats
    };
    let tokens = tokens.to_device(model.device());
    let loss = tc
        .precision
        .autocast(model.device(), || -> Result<Tensor> {
            let logp = model.sequence_logp(&per_sample, &tokens, &scored, sp);
            Ok(loss(&logp, &adv, &scored))
        })?;
    Ok(Step {
        loss,
        rewards,
        greedy,
        draw_seconds,
        reward_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::OptimizerConfig, Device};

    #[test]
    fn advantages_against_the_mean_of_the_others_and_the_greedy_caption() {
        let r = [1.0, 0.0, 0.5, 2.0, 2.0, 2.0];
        let a = advantages(&r, 3, Baseline::Mean, &[]);
        assert_eq!(&a[..3], &[1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5]);
        assert_eq!(&a[3..], &[0.0; 3], "all equal: exactly zero");
        // Better than the rest ⇒ positive, worse ⇒ negative; they sum to 0 for the mean.
        assert!(a[0] > 0.0 && a[1] < 0.0);
        assert!(a[..3].iter().sum::<f64>().abs() < 1e-12);
        let g = advantages(&r, 3, Baseline::Greedy, &[0.5, 1.0]);
        assert_eq!(g, vec![0.5, -0.5, 0.0, 1.0, 1.0, 1.0]);
        // Samples equal to each other and to the greedy caption: nothing to learn.
        assert_eq!(
            advantages(&[0.3, 0.3], 2, Baseline::Greedy, &[0.3]),
            [0.0, 0.0]
        );
        // One sample, mean baseline (refused by the config; still no NaN).
        assert_eq!(advantages(&[0.7], 1, Baseline::Mean, &[]), [0.0]);
    }

    /// A fake policy: one categorical over 4 "captions" (logits are the model). The loss's
    /// gradient moves probability toward the rewarded caption, away from the punished one, and
    /// is zero when the advantages are.
    #[test]
    fn the_loss_on_a_fake_model_follows_the_advantage() {
        let vs = nn::VarStore::new(Device::Cpu);
        let logits = vs.root().zeros("logits", &[4]);
        let mut opt = nn::Sgd::default().build(&vs, 0.5).unwrap();
        let reward_of = [0.0, 1.0, 0.2, 0.0]; // caption 1 is the good one
        let drawn = [0i64, 1, 2, 3, 1, 2];
        let rewards: Vec<f64> = drawn.iter().map(|&c| reward_of[c as usize]).collect();
        let adv = advantages(&rewards, 3, Baseline::Mean, &[]);
        let before = logits.softmax(0, Kind::Float);
        for _ in 0..20 {
            let lp = logits
                .log_softmax(0, Kind::Float)
                .index_select(0, &Tensor::from_slice(&drawn));
            let l = loss(&lp, &adv, &[1; 6]);
            opt.backward_step(&l);
        }
        let after = logits.softmax(0, Kind::Float);
        let p = |t: &Tensor, i: i64| t.double_value(&[i]);
        assert!(p(&after, 1) > p(&before, 1) + 0.2, "{after:?}");
        assert!(p(&after, 0) < p(&before, 0) && p(&after, 3) < p(&before, 3));
        // Zero advantages: zero gradient, whatever the log-probabilities.
        let lp = logits.log_softmax(0, Kind::Float);
        let l = loss(&lp, &[0.0; 4], &[1; 4]);
        assert_eq!(l.double_value(&[]), 0.0);
        opt.zero_grad();
        l.backward();
        assert_eq!(logits.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
