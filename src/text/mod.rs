//! Text side of the pipeline: caption tokenization close to the COCO evaluation's PTB tokenizer
//! ([`tokenize`]), Instagram hashtag/mention extraction ([`extract_tags`]) and the word
//! vocabulary saved as `vocab.json` in a run directory ([`Vocab`], docs/ARCHITECTURE.md "Run directory"),
//! or a pretrained GPT-2's BPE in its place ([`Tokens`]).
pub mod chat;
pub mod emoji;
pub mod hashtag;
pub mod hf_tokenizer;
pub mod mt_tokenizer;
pub mod spm;
pub mod taglist;
pub mod tokenize;
pub mod tokens;
pub mod vocab;

pub use hashtag::{extract_tags, Tagged};
pub use tokenize::tokenize;
pub use tokens::Tokens;
pub use vocab::Vocab;
