//! Everything the loop needs before the first step: the dataset, the vocabulary, the run
//! directory (new or resumed, with its mismatch checks), encoded captions and the image side —
//! cached features of a frozen encoder, or decoded pixels for an end-to-end encoder.
use std::collections::HashMap;
use std::path::PathBuf;

use tch::Tensor;

use super::tagdata::TagData;
use super::TrainJob;
use crate::data::feature_file::FeatureFile;
use crate::data::features;
use crate::data::image::Preprocess;
use crate::data::loader::BatchLoader;
use crate::data::{Dataset, Sample, Split};
use crate::eval::tag_metrics::{self, TagScores};
use crate::fsio::Fingerprint;
use crate::model::captioner::Captioner;
use crate::model::decoding::{Decoding, Specials};
use crate::model::encoder::{self, Encoder, ExtractSpec};
use crate::model::ImageFeatures;
use crate::run::{self, RunConfig};
use crate::text::taglist::{TagList, TagRule};
use crate::text::tokenize;
use crate::text::tokens::{BpeTokens, Tokens};
use crate::text::vocab::Vocab;
use crate::{Error, Result};

/// Where image features come from.
#[derive(Debug)]
pub enum Images {
    /// A frozen encoder's cached features: pooled `(N, D)`, grid `(N, cells, C)` when the
    /// decoder reads one.
    Cached(ImageFeatures),
    /// Preprocessed pixels `(N, 3, S, S)` for an encoder trained end to end.
    Pixels(Tensor),
    /// A cache file given with `--features`, read a batch of rows at a time (never whole: it
    /// may be larger than memory, docs/scale.md); `grid` when the decoder reads grids.
    File {
        file: FeatureFile,
        rows: usize,
        grid: bool,
    },
}

impl Images {
    /// Features of the given rows, on the model's device. An end-to-end encoder runs once per
    /// distinct image of the batch (its captions share the result).
    pub fn features(&self, model: &Captioner, rows: &[i64], train: bool) -> Result<ImageFeatures> {
        match self {
            Images::Cached(f) => {
                let (uniq, owner) = distinct(rows);
                let mut feats = f.select(&uniq).to_device(model.device()); // (U, ..)
                feats.owner = Some(owner.to_device(model.device())); // (B,)
                Ok(feats)
            }
            Images::Pixels(px) => {
                let (uniq, owner) = distinct(rows);
                let mut feats = model.encode(&px.index_select(0, &uniq), train)?; // (U, ..)
                feats.owner = Some(owner.to_device(model.device())); // (B,)
                Ok(feats)
            }
            Images::File { file, grid, .. } => {
                let (uniq, owner) = distinct(rows);
                let uniq =
                    Vec::<i64>::try_from(&uniq).map_err(|e| Error::invalid(e.to_string()))?;
                let pooled = file.rows("pooled", &uniq)?; // (U, D) float32
                let grid = match grid {
                    true => Some(file.rows("grid", &uniq)?), // (U, N, C) float16
                    false => None,
                };
                // The same kinds and values as the in-memory cache's rows.
                let mut feats = ImageFeatures::new(pooled, grid).to_device(model.device());
                feats.owner = Some(owner.to_device(model.device())); // (B,)
                Ok(feats)
            }
        }
    }

    /// Number of image rows.
    pub fn len(&self) -> usize {
        match self {
            Images::Cached(f) => f.len() as usize,
            Images::Pixels(t) => t.size()[0] as usize,
            Images::File { rows, .. } => *rows,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The distinct rows `(U,)` of a batch, sorted, and each row's index among them `(B,)`.
pub(super) fn distinct(rows: &[i64]) -> (Tensor, Tensor) {
    let mut uniq: Vec<i64> = rows.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let owner: Vec<i64> = rows
        .iter()
        .map(|r| uniq.binary_search(r).unwrap_or(0) as i64)
        .collect();
    (Tensor::from_slice(&uniq), Tensor::from_slice(&owner))
}

#[derive(Debug)]
pub struct Prepared {
    pub run: RunConfig,
    pub vocab: Tokens,
    /// `(image row, [<start> w.. <end>])` per training caption.
    pub train: Vec<(i64, Vec<i64>)>,
    pub dev: Vec<(i64, Vec<i64>)>,
    /// One row per dev image, with its tokenized references.
    pub dev_images: Vec<i64>,
    pub dev_refs: Vec<Vec<Vec<String>>>,
    /// One entry per training image: its row and tokenized references.
    pub train_refs: Vec<(i64, Vec<Vec<String>>)>,
    pub images: Images,
    /// Hashtag targets, when the run trains a hashtag model.
    pub tags: Option<TagData>,
    /// Image id ⇒ row of `images`.
    pub rows: HashMap<String, i64>,
    /// Whether an epoch's batches keep an image's captions together (see [`Images`]): the
    /// student's decoder decides, not a teacher that needs the grid too.
    pub group_by_image: bool,
}

/// Fingerprint of what a model learns from: ids, splits and captions.
pub fn data_fingerprint(ds: &Dataset) -> String {
    let mut samples: Vec<&Sample> = ds.samples.iter().collect();
    samples.sort_by(|a, b| a.id.cmp(&b.id));
    let mut f = Fingerprint::default();
    for s in samples {
        f.update(s.id.as_bytes())
            .update(s.split.as_str().as_bytes());
        for c in &s.captions {
            f.update(c.as_bytes());
        }
    }
    f.hex()
}

pub fn prepare(job: &TrainJob) -> Result<Prepared> {
    let ds = crate::data::load(&job.data, &job.load)?;
    ds.report(&job.data, job.quiet, job.verbose);
    let train: Vec<&Sample> = ds
        .samples
        .iter()
        .filter(|s| s.split == Split::Train)
        .collect();
    let dev: Vec<&Sample> = ds
        .samples
        .iter()
        .filter(|s| s.split == Split::Dev)
        .collect();
    if train.is_empty() || dev.is_empty() {
        return Err(Error::invalid(format!(
            "{}: need images in both the train and dev splits (found {} train, {} dev)",
            job.data.display(),
            train.len(),
            dev.len()
        )));
    }
    let data_fp = data_fingerprint(&ds);
    let run::Contents {
        run,
        vocab,
        tags: tag_list,
    } = if job.resume {
        run::reopen(&job.out, &job.model, &job.train, &data_fp)?
    } else if let Some(src) = &job.init_from {
        super::init::new_run(job, src, &data_fp)?
    } else {
        new_run(job, &data_fp, &train)?
    };

    let needed: Vec<&Sample> = train.iter().chain(dev.iter()).copied().collect();
    let (images, rows) = if run.model.frozen_encoder {
        cached_images(job, &run, &ds)?
    } else {
        pixel_images(job, &run.model.preprocess, &needed)?
    };
    let mut missing = 0;
    let mut encode = |samples: &[&Sample]| -> Vec<(i64, Vec<i64>)> {
        let mut out = vec![];
        for s in samples {
            match rows.get(s.id.as_str()) {
                Some(&r) => out.extend(
                    s.captions
                        .iter()
                        .map(|c| (r, vocab.encode_caption(c, run.train.max_words))),
                ),
                None => missing += 1,
            }
        }
        out
    };
    let train_caps = encode(&train);
    let dev_caps = encode(&dev);
    if missing > 0 && !job.quiet {
        crate::fsio::errln!("skipped {missing} images without features (undecodable)");
    }
    // Tokenized references per training image (SCST's reward; cheap beside the features).
    let train_refs: Vec<(i64, Vec<Vec<String>>)> = train
        .iter()
        .filter_map(|s| {
            let refs = s.captions.iter().map(|c| tokenize(c)).collect();
            rows.get(s.id.as_str()).map(|&r| (r, refs))
        })
        .collect();
    let (mut dev_images, mut dev_refs) = (vec![], vec![]);
    for s in &dev {
        if let Some(&r) = rows.get(s.id.as_str()) {
            dev_images.push(r);
            dev_refs.push(s.captions.iter().map(|c| tokenize(c)).collect());
        }
    }
    if train_caps.is_empty() || dev_images.is_empty() {
        return Err(Error::invalid(
            "no usable training or dev images (all undecodable?)",
        ));
    }
    let tags = tag_list.map(|list| {
        let mut truth_by_row = vec![vec![]; images.len()];
        let mut dev_truth = vec![];
        for s in &needed {
            if let Some(&r) = rows.get(s.id.as_str()) {
                let truth = list.rule.truth(s);
                if s.split == Split::Dev {
                    dev_truth.push(truth.clone());
                }
                truth_by_row[r as usize] = truth;
            }
        }
        TagData::new(list, &truth_by_row, dev_truth)
    });
    // Batches keep an image's captions together when that saves work: an end-to-end CNN then
    // runs once per image instead of once per caption, and grid decoders project each grid (and
    // a transformer its memory keys/values) once.
    let group_by_image = !run.model.frozen_encoder || run.model.decoder.needs_grid();
    Ok(Prepared {
        run,
        vocab,
        train: train_caps,
        dev: dev_caps,
        dev_images,
        dev_refs,
        train_refs,
        images,
        tags,
        rows,
        group_by_image,
    })
}

fn new_run(job: &TrainJob, data_fp: &str, train: &[&Sample]) -> Result<run::Contents> {
    // Refuse before the (possibly long) vocabulary and tag-list work.
    run::ensure_new(&job.out)?;
    let mut model = job.model.clone();
    let vocab = match (&job.lm_weights, &model.decoder) {
        (Some(dir), crate::config::DecoderConfig::ClipCap(c)) => {
            let p = c.pretrained.as_ref().ok_or_else(|| {
                Error::invalid("--lm-weights: the clipcap config has no pretrained LM")
            })?;
            let max_tokens = (c.max_len - 2).max(0) as usize;
            Tokens::Bpe(Box::new(BpeTokens::load(
                dir,
                p.config.vocab_size,
                max_tokens,
            )?))
        }
        _ => {
            let tokens: Vec<Vec<String>> = train
                .iter()
                .flat_map(|s| s.captions.iter().map(|c| tokenize(c)))
                .collect();
            Tokens::Words(Vocab::build(&tokens, job.train.min_count))
        }
    };
    model.vocab_size = vocab.len() as i64;
    let tags = match model.hashtags.as_mut() {
        Some(t) => {
            let rule = TagRule::for_samples(train, job.train.tag_min_agree);
            let list = TagList::build(rule, train, job.train.tag_min_count);
            t.num_tags = list.len() as i64;
            Some(list)
        }
        None => None,
    };
    let run = run::create(run::NewRun {
        dir: &job.out,
        model,
        train: job.train.clone(),
        data_path: &job.data,
        data_fingerprint: data_fp,
        vocab: &vocab,
        tags: tags.as_ref(),
        lm: job.lm_weights.as_deref(),
        encoder_weights: job.encoder_weights.as_deref(),
    })?;
    Ok(run::Contents { run, vocab, tags })
}

fn cached_images(
    job: &TrainJob,
    run: &RunConfig,
    ds: &Dataset,
) -> Result<(Images, HashMap<String, i64>)> {
    let weights = job.out.join(run::ENCODER);
    let weights_fp = run.encoder_fingerprint.clone().unwrap_or_default();
    let list = ds.image_list();
    let want = features::CacheKey::of(
        run.model.encoder.as_str(),
        &weights_fp,
        &run.model.preprocess,
        &list,
    );
    let path = job
        .features
        .clone()
        .unwrap_or_else(|| job.out.join("features.safetensors"));
    let teacher_grid = match &run.train.distill {
        Some(d) => super::distill::teacher_needs_grid(d)?,
        None => false,
    };
    let needs_grid = run.model.decoder.needs_grid() || teacher_grid;
    if path.is_file() {
        return cache_file(job, &path, &want, &list, needs_grid, teacher_grid, run);
    }
    let cache = {
        let (enc, _vs) = Encoder::frozen(
            run.model.encoder,
            run.model.clip.as_ref(),
            &weights,
            job.device,
        )?;
        let bar = super::progress(job.quiet, list.len() as u64, "features");
        let spec = ExtractSpec {
            kind: run.model.encoder,
            weights_fp: &weights_fp,
            preprocess: run.model.preprocess,
            batch_size: 32,
            device: job.device,
            keep_grid: needs_grid,
        };
        let mut ex = encoder::extract(&enc, &spec, &list, &bar)?;
        bar.finish_and_clear();
        ex.cache.key = want;
        if !ex.failed.is_empty() && !job.quiet {
            crate::fsio::errln!("features: skipped {} unreadable images", ex.failed.len());
        }
        ex.cache.save(&path)?;
        if !job.quiet {
            crate::fsio::errln!("wrote feature cache {}", path.display());
        }
        ex.cache
    };
    let rows = cache
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as i64))
        .collect();
    let feats = ImageFeatures::of_cache(&cache);
    let feats = if needs_grid {
        feats
    } else {
        feats.without_grid()
    };
    Ok((Images::Cached(feats), rows))
}

/// A cache that exists (`--features`, or the run's own from an earlier start), opened as a
/// file: its header and ids are read, its values checked finite in bounded reads, and its rows
/// read per batch.
fn cache_file(
    job: &TrainJob,
    path: &std::path::Path,
    want: &features::CacheKey,
    list: &[(String, std::path::PathBuf)],
    needs_grid: bool,
    teacher_grid: bool,
    run: &RunConfig,
) -> Result<(Images, HashMap<String, i64>)> {
    let file = FeatureFile::open(path)?;
    features::check_fits(&file, want, list)?;
    if needs_grid && !file.tensors.contains_key("grid") {
        return Err(Error::invalid(format!(
            "{}: the {} decoder reads feature grids but this cache holds pooled vectors only; \
             rerun `captag features --grid` (or delete the cache to have train make one)",
            path.display(),
            if teacher_grid {
                "teacher's"
            } else {
                run.model.decoder.name()
            }
        )));
    }
    let ids = file.ids()?;
    file.check_finite()?;
    if !job.quiet {
        crate::fsio::errln!("reusing feature cache {}", path.display());
    }
    let images = Images::File {
        file,
        rows: ids.len(),
        grid: needs_grid,
    };
    let rows = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i as i64))
        .collect::<HashMap<_, _>>();
    Ok((images, rows))
}

fn pixel_images(
    job: &TrainJob,
    pre: &Preprocess,
    samples: &[&Sample],
) -> Result<(Images, HashMap<String, i64>)> {
    let paths: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    let bar = super::progress(job.quiet, paths.len() as u64, "images");
    let (mut rows, mut chunks, mut n) = (HashMap::new(), vec![], 0i64);
    for batch in BatchLoader::new(paths, *pre, 64, 0) {
        bar.inc((batch.indices.len() + batch.failed.len()) as u64);
        if job.verbose {
            // `why` names the file already.
            for (_, why) in &batch.failed {
                crate::fsio::errln!("  skipped {why}");
            }
        }
        if batch.indices.is_empty() {
            continue;
        }
        for &i in &batch.indices {
            rows.insert(samples[i].id.clone(), n);
            n += 1;
        }
        chunks.push(batch.to_tensor());
    }
    bar.finish_and_clear();
    if chunks.is_empty() {
        return Err(Error::invalid("no image could be decoded"));
    }
    Ok((Images::Pixels(Tensor::cat(&chunks, 0)), rows))
}

impl Prepared {
    /// Teacher-forced dev loss (eval mode), averaged over captions.
    pub fn dev_loss(&self, model: &Captioner, batch: usize) -> Result<f64> {
        let (mut sum, mut n) = (0.0, 0usize);
        for chunk in self.dev.chunks(batch) {
            let rows: Vec<i64> = chunk.iter().map(|c| c.0).collect();
            let seqs: Vec<&[i64]> = chunk.iter().map(|c| c.1.as_slice()).collect();
            let l = tch::no_grad(|| -> Result<f64> {
                let feats = self.images.features(model, &rows, false)?;
                let tokens = super::pad_batch(&seqs).to_device(model.device());
                Ok(model.loss(&feats, &tokens, false).double_value(&[]))
            })?;
            sum += l * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(sum / n.max(1) as f64)
    }

    /// Generated captions (words) for the dev images.
    pub fn dev_captions(
        &self,
        model: &Captioner,
        decoding: &Decoding,
        sp: Specials,
    ) -> Result<Vec<Vec<String>>> {
        let mut out = vec![];
        for rows in self.dev_images.chunks(256) {
            let feats = tch::no_grad(|| self.images.features(model, rows, false))?;
            for h in model.generate(&feats, decoding, sp, 256)? {
                out.push(self.vocab.decode(&h.tokens));
            }
        }
        Ok(out)
    }

    /// Hashtag P@5 / R@5 / F1@5 / mAP on the dev images (None without a hashtag model).
    pub fn dev_tag_scores(&self, model: &Captioner) -> Result<Option<TagScores>> {
        let Some(td) = &self.tags else {
            return Ok(None);
        };
        let mut rankings = vec![];
        for rows in self.dev_images.chunks(256) {
            let feats = tch::no_grad(|| self.images.features(model, rows, false))?;
            for r in crate::infer::tags::rank(model, &td.list, &feats, 0.5)? {
                rankings.push(r.names());
            }
        }
        Ok(Some(tag_metrics::score(&rankings, &td.dev_truth, 5)))
    }

    /// The hashtag model's loss on the dev images (eval mode).
    pub fn dev_tag_loss(&self, model: &Captioner, batch: usize) -> Result<f64> {
        let (Some(td), Some(tagger)) = (&self.tags, &model.tagger) else {
            return Ok(0.0);
        };
        let (mut sum, mut n) = (0.0, 0usize);
        for rows in self.dev_images.chunks(batch) {
            let l = tch::no_grad(|| -> Result<f64> {
                let feats = self.images.features(model, rows, false)?;
                let targets = td
                    .batch(rows, tagger.generator().is_some())
                    .to_device(model.device());
                Ok(tagger
                    .loss(&feats.rows_pooled(), &targets, false)
                    .double_value(&[]))
            })?;
            sum += l * rows.len() as f64;
            n += rows.len();
        }
        Ok(sum / n.max(1) as f64)
    }

    pub fn dev_scores(
        &self,
        model: &Captioner,
        decoding: &Decoding,
        sp: Specials,
    ) -> Result<super::DevScores> {
        let hyps = self.dev_captions(model, decoding, sp)?;
        super::dev_scores(&hyps, &self.dev_refs)
    }
}
