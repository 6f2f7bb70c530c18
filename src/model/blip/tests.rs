//! Parity with `transformers`' `BlipForConditionalGeneration` on the tiny random folder
//! `notebooks/make_blip_git_fixtures.py` saved under `tests/fixtures/hf/blip/`.
use crate::model::vl::tests::{parity, texts};

#[test]
fn blip_pixels_embeds_logits_greedy_beam_and_prompt_equal_transformers() {
    let m = parity("blip", Some("a picture of"));
    texts("blip", &m);
}
