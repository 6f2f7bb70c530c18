//! Experiments over several runs: `captag compare` (one table of every run evaluated with the
//! same decoding on the same split, paired bootstrap intervals against a baseline run, plots)
//! and `captag plot`. Training the runs a comparison lacks is the command layer's part
//! (`commands/compare.rs`); this module scores, aggregates and draws.
pub mod bootstrap;
pub mod compare;
pub mod plot;
