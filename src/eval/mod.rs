//! Metrics in pure Rust.
pub mod bleu;
