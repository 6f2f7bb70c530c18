//! Self-critical training of a BLIP or GIT model (`train --init-from HF_DIR|VL_RUN --objective
//! scst`; docs/vision-language.md, "Fine-tuning"): the same objective as captag's own decoders
//! (`train::scst`: `K` captions drawn per image from the model's distribution, CIDEr-D rewards
//! against the image's references with the training references' document frequencies and the
//! end counted, advantage against the mean of the other samples or the greedy caption, loss
//! −Σ advantage · log p / Σ scored tokens) on the folder's own tokenizer: captions are drawn as
//! WordPiece ids after the start token, rewarded on their words (the common evaluation's
//! tokenisation, as the dev scores are), and scored by one teacher-forced pass with gradient.
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::Tensor;

use super::scst::{advantages, loss, step_seed, Reward, Step, Tally};
use super::step::{update_parts, Parts};
use super::vl::{Fine, VlData, VlTrainJob};
use super::{commit, Trained};
use crate::config::scst::{Baseline, Scst};
use crate::config::TrainConfig;
use crate::model::decoding::{Draw, Drawn, Nucleus};
use crate::model::vl::VlCaptioner;
use crate::text::tokenize;
use crate::Result;

/// One SCST epoch over the training images (each once, `--batch-size` images a step, in an
/// order seeded by `(seed, epoch)`, so a resumed run draws what the uninterrupted one drew).
pub(super) fn train_epoch(
    job: &VlTrainJob,
    tc: &TrainConfig,
    cfg: &Scst,
    data: &VlData,
    reward: &mut Reward,
    t: &mut Fine,
) -> Result<Trained> {
    let e = t.state.epoch;
    let seed = super::epoch_seed(tc.seed, e);
    let t0 = Instant::now();
    tch::manual_seed(seed as i64);
    let mut order = reward.rows().to_vec();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let batches: Vec<&[i64]> = order.chunks(tc.batch_size.max(1)).collect();
    let steps = batches.len();
    let bar = super::EpochBar::new(job.quiet, steps, e, tc.epochs, t0);
    let mut done = Trained::new(commit::Unit::Images);
    let mut tally = Tally::default();
    for (b, rows) in batches.iter().enumerate() {
        let s = scst_step(&t.m, data, tc, cfg, reward, rows, step_seed(seed, b))?;
        let progress = (e as f64 + b as f64 / steps as f64) / tc.epochs as f64;
        let mut parts = Parts {
            adam: &mut t.adam,
            scaler: t.scaler.as_mut(),
            vs: &t.m.vs,
            state: &mut t.state,
        };
        let l = update_parts(&mut parts, tc, &s.loss, progress)?;
        bar.step(&mut done, b, l, rows.len());
        tally.add(&s);
    }
    bar.finish(&mut done);
    tally.log(cfg, &mut done);
    Ok(done)
}

/// Draw, reward and score the captions of the images `rows` (rows of `data.pixels`).
fn scst_step(
    m: &VlCaptioner,
    data: &VlData,
    tc: &TrainConfig,
    cfg: &Scst,
    reward: &mut Reward,
    rows: &[i64],
    seed: u64,
) -> Result<Step> {
    let dev = m.device();
    let k = cfg.samples;
    let px = data
        .pixels
        .index_select(0, &Tensor::from_slice(rows))
        .to_device(dev); // (B, 3, S, S)
    let prefix = m.prefix(None);
    let t0 = Instant::now();
    let how = Draw::Sample(Nucleus {
        max_len: tc.max_words,
        top_p: 1.0,
        temperature: 1.0,
        samples: k,
        seed,
    });
    let drawn = m.draw(&px, &prefix, how)?; // B·K, image-major
    let greedy_drawn = match cfg.baseline {
        Baseline::Greedy => m.draw(
            &px,
            &prefix,
            Draw::Greedy {
                max_len: tc.max_words,
            },
        )?,
        Baseline::Mean => vec![],
    };
    let t1 = Instant::now();
    let (rewards, greedy) = super::scst::rewards(reward, &drawn, &greedy_drawn, rows, k, |d| {
        tokenize(&m.text(&prefix, &d.hyp.tokens))
    })?;
    let reward_seconds = t1.elapsed().as_secs_f64();
    let draw_seconds = (t1 - t0).as_secs_f64();
    let adv = advantages(&rewards, k, cfg.baseline, &greedy);
    let scored: Vec<i64> = drawn
        .iter()
        .map(|d| d.hyp.tokens.len() as i64 + i64::from(d.finished))
        .collect();
    let owner: Vec<i64> = (0..rows.len() as i64)
        .flat_map(|i| std::iter::repeat_n(i, k))
        .collect();
    let owner = Tensor::from_slice(&owner).to_device(dev);
    let loss = tc.precision.autocast(dev, || {
        // The image tower runs once per image, with gradient unless it is frozen.
        let memory = m.model.image_memory(&px, false).index_select(0, &owner); // (B·K, I, D)
        let refs: Vec<&Drawn> = drawn.iter().collect();
        let logp = m.caption_logp(&memory, &prefix, &refs); // (B·K,)
        loss(&logp, &adv, &scored)
    });
    Ok(Step {
        loss,
        rewards,
        greedy,
        draw_seconds,
        reward_seconds,
    })
}
