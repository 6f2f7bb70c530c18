//! Evaluation. Metrics in pure Rust (no tch): BLEU exactly as pycocoevalcap and NLTK compute it, and the
//! reading/pairing of prediction and reference files that `captag bleu` scores; baselines; and the runner that
//! captions a split with a checkpoint (the only part that uses tch).
pub mod baselines;
pub mod bleu;
pub mod bleu_io;
pub mod cider;
pub mod cider_reward;
mod numpy;
pub mod rouge;
pub mod runner;
pub mod tag_metrics;
pub mod vl;
