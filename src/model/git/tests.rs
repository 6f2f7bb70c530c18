//! Parity with `transformers`' `GitForCausalLM` on the tiny random folder
//! `notebooks/make_blip_git_fixtures.py` saved under `tests/fixtures/hf/git/`.
use crate::model::vl::tests::{parity, texts};

#[test]
fn git_pixels_embeds_logits_greedy_and_beam_equal_transformers() {
    let m = parity("git", None);
    texts("git", &m);
}
