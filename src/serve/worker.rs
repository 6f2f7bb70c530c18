//! The model thread: tch tensors are not `Sync`, so one dedicated thread owns the checkpoint and
//! the text models and answers jobs from a bounded queue. A full queue is refused at once (the
//! handler answers 503) instead of growing memory without bound; a client that gave up is
//! skipped when its job comes up.
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::infer::{CaptionResult, Extras, Loaded};
use crate::model::decoding::Decoding;
use crate::model::text_tagger::TextTagger;

/// What the page can ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Beam search (the n-best list has up to its width of captions) or top-p samples.
    pub decoding: Decoding,
    pub hashtags: usize,
    pub emoji: usize,
    pub social: bool,
}

/// What captions: a captag run, or a BLIP/GIT folder or run fine-tuned from one.
pub enum Captioner {
    Run(Box<Loaded>),
    Vl(Box<crate::model::vl::VlCaptioner>),
}

impl Captioner {
    fn caption_image(
        &self,
        img: &image::RgbImage,
        d: &Decoding,
    ) -> crate::Result<crate::infer::Caption> {
        match self {
            Captioner::Run(l) => l.caption_image(img, d),
            Captioner::Vl(m) => crate::infer::vl::caption_image(m, img, d),
        }
    }
}

/// The models the thread owns.
pub struct Models {
    pub captioner: Captioner,
    pub text_tags: Option<TextTagger>,
    pub emoji: Option<TextTagger>,
    /// `serve --translate HF_DIR --lang L`: the caption and its hashtags translated.
    pub translator: Option<(
        crate::model::seq2seq::Translator,
        crate::model::seq2seq::translator::TranslateOptions,
    )>,
    /// `serve --llm HF_DIR [--adapter A]`: the LLM's social post (`llm_post` in the answer).
    pub llm: Option<crate::model::llama::chat::ChatLm>,
}

impl Models {
    /// The answer for one image: `caption --json`'s result ([`CaptionResult`]) with the
    /// decoding's name, emoji always listed and the post text always made.
    pub fn answer(&self, img: &image::RgbImage, o: &Options) -> crate::Result<CaptionResult> {
        let best = self.captioner.caption_image(img, &o.decoding)?;
        let extras = Extras {
            text_tags: self.text_tags.as_ref(),
            emoji: self.emoji.as_ref(),
            hashtags: o.hashtags,
            emoji_count: o.emoji,
        };
        let mut r = CaptionResult::new(&best, false, &extras);
        r.emoji.get_or_insert_with(Vec::new);
        r.decoding = Some(o.decoding.name());
        if let Some((t, opts)) = &self.translator {
            let tags: Vec<String> = r.hashtags.iter().map(|t| t.tag.clone()).collect();
            let text = vec![r.caption_text().to_string()];
            r.translation = crate::infer::translate::translate_all(t, &text, &[tags], opts)?.pop();
        }
        if let Some(lm) = &self.llm {
            r.llm_post = Some(crate::infer::llm_post::social_post(lm, &r)?);
        }
        Ok(r)
    }
}

pub type Reply = crate::Result<CaptionResult>;

struct Job {
    image: image::RgbImage,
    options: Options,
    reply: oneshot::Sender<Reply>,
}

/// The queue's sending side (cheap to clone into handlers).
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::SyncSender<Job>,
}

/// The queue is full.
pub struct Busy;

impl Queue {
    /// Queue a job; `Err(Busy)` at once when `capacity` jobs are already waiting.
    pub fn submit(
        &self,
        image: image::RgbImage,
        options: Options,
    ) -> Result<oneshot::Receiver<Reply>, Busy> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job {
                image,
                options,
                reply,
            })
            .map_err(|_| Busy)?;
        Ok(rx)
    }
}

/// Start the model thread: `load` runs on it (the models never cross threads), then it answers
/// jobs until every [`Queue`] is dropped. Returns once the models loaded, or their load error.
pub fn spawn(
    capacity: usize,
    load: impl FnOnce() -> crate::Result<Models> + Send + 'static,
) -> crate::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<Job>(capacity.max(1));
    // Test hook (docs/ARCHITECTURE.md, "Serving"): a fixed delay per job, so the tests can fill
    // the queue and shut down with a request in flight deterministically.
    let delay = std::env::var("CAPTAG_SERVE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    let (ready_tx, ready_rx) = mpsc::channel::<crate::Result<()>>();
    let handle = std::thread::Builder::new()
        .name("captag-model".into())
        .spawn(move || {
            let models = match load() {
                Ok(m) => {
                    let _ = ready_tx.send(Ok(()));
                    m
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while let Ok(job) = rx.recv() {
                if job.reply.is_closed() {
                    continue; // the client timed out or went away
                }
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
                let _ = job.reply.send(models.answer(&job.image, &job.options));
            }
        })
        .map_err(|e| crate::Error::invalid(format!("cannot start the model thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((Queue { tx }, handle)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(crate::Error::invalid(
            "the model thread stopped while loading",
        )),
    }
}
