//! Knowledge distillation (`captag train --teacher RUN`): a student learns from a frozen
//! teacher run as well as from the references (docs/ARCHITECTURE.md, "Distillation").
//!
//! - Word level (Hinton et al. 2015; per step as in Kim & Rush 2016): at every teacher-forced
//!   position with a real target, `alpha · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha)
//!   · CE`, averaged over positions. The teacher runs in eval mode under `no_grad` on the same
//!   tokens and the same images (the same feature cache rows, or the same pixels through its own
//!   encoder), so its logits never leave the device.
//! - Sequence level (Kim & Rush 2016): the teacher's beam-search caption of every training image
//!   is generated once, saved as `teacher_captions.json` in the student's run directory, and
//!   joins the training captions (or replaces them). A resumed run reads the file back, so resume
//!   stays exact.
//!
//! The teacher may be any architecture; it must share the student's vocabulary and image
//! features (same frozen encoder and weights, or the same preprocessing for pixels).
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Images, Prepared};
use crate::config::{Distill, KdMethod};
use crate::model::captioner::Captioner;
use crate::model::decoding::Decoding;
use crate::model::ImageFeatures;
use crate::run::{self, RunConfig};
use crate::text::vocab::{END, PAD, START};
use crate::{Error, Result};

/// Where the sequence-level targets are kept in the student's run directory.
pub const TEACHER_CAPTIONS: &str = "teacher_captions.json";

/// Fingerprint of a teacher: its `config.json` and best weights.
pub fn teacher_fingerprint(dir: &Path) -> Result<String> {
    run::read(dir).map_err(|e| Error::invalid(format!("--teacher {}: {e}", dir.display())))?;
    run::fingerprint(dir).map_err(|e| Error::invalid(format!("--teacher {}: {e}", dir.display())))
}

/// Whether the teacher run in `dir` reads feature grids (the student's cache must keep them).
pub fn teacher_needs_grid(d: &Distill) -> Result<bool> {
    let c = run::read_config(&Path::new(&d.teacher).join(run::CONFIG))?;
    Ok(c.model.decoder.needs_grid())
}

/// The word-level distillation loss over `M` positions: student and teacher logits `(M, V)`,
/// targets `(M,)`. `alpha = 0` is plain cross-entropy.
pub fn kd_loss(student: &Tensor, teacher: &Tensor, targets: &Tensor, t: f64, alpha: f64) -> Tensor {
    let ce = student.cross_entropy_loss::<Tensor>(targets, None, tch::Reduction::Mean, PAD, 0.0);
    if alpha == 0.0 {
        return ce;
    }
    let ls = (student / t).log_softmax(-1, Kind::Float); // (M, V)
    let lt = (teacher / t).log_softmax(-1, Kind::Float); // (M, V)
    let kl = (lt.exp() * (&lt - ls))
        .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
        .mean(Kind::Float); // KL(p_t ‖ p_s), mean over positions
    kl * (alpha * t * t) + ce * (1.0 - alpha)
}

/// A loaded, frozen teacher.
pub struct Teacher {
    pub model: Captioner,
    pub cfg: Distill,
}

impl Teacher {
    /// Opens the teacher and checks it can teach this student.
    pub fn open(
        d: &Distill,
        student: &RunConfig,
        prep: &Prepared,
        device: tch::Device,
    ) -> Result<Teacher> {
        let dir = Path::new(&d.teacher);
        let what = |m: String| Error::invalid(format!("--teacher {}: {m}", dir.display()));
        let (o, model) = run::open(dir, device, false).map_err(|e| what(e.to_string()))?;
        let (Some(tv), Some(sv)) = (o.vocab.words(), prep.vocab.words()) else {
            return Err(what(
                "distillation needs word vocabularies; a ClipCap run on a pretrained GPT-2 \
                 (--lm-weights) can be neither teacher nor student"
                    .into(),
            ));
        };
        if tv.words() != sv.words() {
            return Err(what(format!(
                "its vocabulary ({} words, min-count {}) differs from the student's ({} words, \
                 min-count {}); train the student on the teacher's data with the teacher's --min-count",
                tv.len(),
                tv.min_count(),
                sv.len(),
                sv.min_count()
            )));
        }
        let (t, s) = (&o.run.model, &student.model);
        if s.frozen_encoder {
            let same = t.frozen_encoder
                && t.encoder == s.encoder
                && t.preprocess == s.preprocess
                && o.run.encoder_fingerprint == student.encoder_fingerprint;
            if !same {
                return Err(what(format!(
                    "the teacher's image features ({} {}) are not the student's ({}); a student \
                     trains from the teacher's feature cache, so use the teacher's encoder and weights",
                    t.encoder.as_str(),
                    if t.frozen_encoder { "frozen" } else { "trained end to end" },
                    s.encoder.as_str()
                )));
            }
        } else if t.preprocess != s.preprocess {
            return Err(what(
                "the teacher reads images preprocessed differently (another size or \
                 normalisation) from the student's"
                    .into(),
            ));
        }
        if let Some(max_len) = t.decoder.max_len() {
            if student.train.max_words as i64 + 2 > max_len {
                return Err(what(format!(
                    "the teacher's {} decoder has positions for {} words, the student's captions                      have up to {} (--max-words)",
                    t.decoder.name(),
                    max_len - 2,
                    student.train.max_words
                )));
            }
        }
        let mut model = model;
        model.vs.freeze();
        Ok(Teacher {
            model,
            cfg: d.clone(),
        })
    }

    /// The student's caption loss on one batch: word-level KD when asked, else the plain loss.
    pub fn loss(
        &self,
        student: &Captioner,
        prep: &Prepared,
        feats: &ImageFeatures,
        rows: &[i64],
        tokens: &Tensor,
    ) -> Result<Tensor> {
        if !self.cfg.method.word_level() {
            return Ok(student.loss(feats, tokens, true));
        }
        let teacher = tch::no_grad(|| -> Result<Tensor> {
            // Cached features are the student's own rows; pixels go through the teacher's encoder.
            let encoded;
            let tf = match &prep.images {
                Images::Cached(_) | Images::File { .. } => feats,
                Images::Pixels(_) => {
                    encoded = prep.images.features(&self.model, rows, false)?;
                    &encoded
                }
            };
            Ok(self.model.decoder.live_logits(tf, tokens, false).logits)
        })?; // (M, V)
        let s = student.decoder.live_logits(feats, tokens, true);
        let kd = kd_loss(
            &s.logits,
            &teacher,
            &s.targets,
            self.cfg.temperature,
            self.cfg.kd_alpha,
        );
        Ok(match s.penalty {
            Some(p) => kd + p,
            None => kd,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CaptionFile {
    teacher_fingerprint: String,
    beam: usize,
    max_words: usize,
    /// Image id ⇒ caption words.
    captions: BTreeMap<String, String>,
}

/// Sequence level: the teacher's beam caption of every training image, from
/// `teacher_captions.json` when it was made by this teacher with these settings, else generated
/// (and saved) now; then added to (or put in place of) the training captions.
pub fn add_teacher_captions(
    teacher: &Teacher,
    prep: &mut Prepared,
    out: &Path,
    max_words: usize,
    quiet: bool,
) -> Result<usize> {
    let d = &teacher.cfg;
    let path = out.join(TEACHER_CAPTIONS);
    let mut images: Vec<i64> = prep.train.iter().map(|(r, _)| *r).collect();
    images.sort_unstable();
    images.dedup();
    let id_of: BTreeMap<i64, &str> = prep.rows.iter().map(|(id, r)| (*r, id.as_str())).collect();
    // A cache that cannot be read (missing, damaged, not a regular file) is recomputed.
    let cached = crate::input::read_text(&path, crate::input::TEXT, "a teacher-captions cache")
        .ok()
        .and_then(|t| serde_json::from_str::<CaptionFile>(&t).ok())
        .filter(|f| {
            f.teacher_fingerprint == d.teacher_fingerprint
                && f.beam == d.beam
                && f.max_words == max_words
                && images
                    .iter()
                    .all(|r| id_of.get(r).is_some_and(|id| f.captions.contains_key(*id)))
        });
    let file = match cached {
        Some(f) => f,
        None => {
            let decoding = Decoding::Beam {
                width: d.beam,
                max_len: max_words,
                alpha: 0.0,
            };
            let bar = super::progress(quiet, images.len() as u64, "teacher captions");
            let mut captions = BTreeMap::new();
            for chunk in images.chunks(256) {
                let feats = tch::no_grad(|| prep.images.features(&teacher.model, chunk, false))?;
                let hyps =
                    teacher
                        .model
                        .generate(&feats, &decoding, crate::infer::SPECIALS, 256)?;
                for (r, h) in chunk.iter().zip(hyps) {
                    let id = id_of.get(r).copied().unwrap_or_default();
                    captions.insert(id.to_string(), prep.vocab.decode(&h.tokens).join(" "));
                }
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            let f = CaptionFile {
                teacher_fingerprint: d.teacher_fingerprint.clone(),
                beam: d.beam,
                max_words,
                captions,
            };
            run::write_json(&f, &path)?;
            f
        }
    };
    let Some(vocab) = prep.vocab.words().cloned() else {
        return Err(Error::invalid("distillation needs a word vocabulary"));
    };
    if d.teacher_only {
        prep.train.clear();
    }
    let mut added = 0;
    for r in images {
        let Some(words) = id_of.get(&r).and_then(|id| file.captions.get(*id)) else {
            continue;
        };
        let mut ids = vec![START];
        ids.extend(
            words
                .split_whitespace()
                .take(max_words)
                .map(|w| vocab.id(w).unwrap_or(crate::text::vocab::UNK)),
        );
        ids.push(END);
        prep.train.push((r, ids));
        added += 1;
    }
    Ok(added)
}

/// How a teacher teaches, for the log.
pub fn describe(d: &Distill) -> String {
    let how = match d.method {
        KdMethod::Word => format!("word-level KD (T {}, alpha {})", d.temperature, d.kd_alpha),
        KdMethod::Sequence => format!("sequence-level KD (teacher beam {})", d.beam),
        KdMethod::Both => format!(
            "word- and sequence-level KD (T {}, alpha {}, teacher beam {})",
            d.temperature, d.kd_alpha, d.beam
        ),
    };
    format!("distilling from {}: {how}", d.teacher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], rows: i64) -> Tensor {
        Tensor::from_slice(v).view([rows, -1])
    }

    #[test]
    fn alpha_zero_is_cross_entropy() {
        let s = t(&[0.3, -1.0, 2.0, 0.5, 0.1, -0.2], 2);
        let te = t(&[5.0, 0.0, 0.0, 0.0, 0.0, 9.0], 2);
        let y = Tensor::from_slice(&[2i64, 0]);
        let ce = s.cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, PAD, 0.0);
        let kd = kd_loss(&s, &te, &y, 2.0, 0.0);
        assert!((kd.double_value(&[]) - ce.double_value(&[])).abs() < 1e-7);
    }

    #[test]
    fn hand_computed_case() {
        // Two words: teacher logits (0, 0) ⇒ p_t = (1/2, 1/2); student (0, ln 3) ⇒ at T = 1
        // p_s = (1/4, 3/4). KL(p_t ‖ p_s) = ½ ln(½/¼) + ½ ln(½/¾) = ½ ln(4/3); the target is
        // word 1, so CE = −ln ¾. (Word 0 is <pad> in captag, so the target is 1.)
        let s = t(&[0.0, 3f32.ln()], 1);
        let te = t(&[0.0, 0.0], 1);
        let y = Tensor::from_slice(&[1i64]);
        let kl = 0.5 * (4.0f64 / 3.0).ln();
        let ce = -(0.75f64).ln();
        let got = kd_loss(&s, &te, &y, 1.0, 0.5).double_value(&[]);
        assert!((got - (0.5 * kl + 0.5 * ce)).abs() < 1e-6, "{got}");
        // T = 2: p_s = softmax(0, ln3/2) = (1, √3)/(1+√3); KL = ½ ln(¼ (1+√3)² / √3).
        let r3 = 3f64.sqrt();
        let kl2 = 0.5 * (0.25 * (1.0 + r3).powi(2) / r3).ln();
        let got = kd_loss(&s, &te, &y, 2.0, 1.0).double_value(&[]);
        assert!((got - 4.0 * kl2).abs() < 1e-6, "{got} vs {}", 4.0 * kl2);
        // The student equal to the teacher: no soft loss at all.
        let got = kd_loss(&te, &te, &y, 3.0, 1.0).double_value(&[]);
        assert!(got.abs() < 1e-7);
    }

    #[test]
    fn soft_loss_pulls_the_student_to_the_teacher() {
        let s = Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let te = t(&[2.0, 0.0, -2.0], 1);
        let y = Tensor::from_slice(&[1i64]);
        kd_loss(&s, &te, &y, 1.0, 1.0).backward();
        let g = Vec::<f32>::try_from(s.grad().view([-1])).unwrap();
        // Gradient descent raises the teacher's favourite and lowers its least liked word.
        assert!(g[0] < 0.0 && g[2] > 0.0, "{g:?}");
    }
}
