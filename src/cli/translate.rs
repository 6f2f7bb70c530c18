//! `captag translate` and the `--translate HF_DIR --lang L` flags of `caption` (and `serve`):
//! Hugging Face translation folders (Marian opus-mt, M2M100, NLLB), docs/translation.md.
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// A Hugging Face translation folder: Marian (Helsinki-NLP/opus-mt-en-hi: config.json,
    /// model.safetensors, source.spm, target.spm, vocab.json), M2M100 (facebook/m2m100_418M)
    /// or NLLB (facebook/nllb-200-distilled-600M).
    #[arg(long, value_name = "HF_DIR")]
    pub model: PathBuf,
    /// Target language: an NLLB code (hin_Deva, ben_Beng, tam_Taml, tel_Telu, mar_Deva,
    /// guj_Gujr, kan_Knda, mal_Mlym, pan_Guru, urd_Arab) or M2M100's (hi, bn, ta, …); default:
    /// the folder's own target (Marian) or hin_Deva.
    #[arg(long)]
    pub lang: Option<String>,
    /// Beams (1 = greedy); default: the folder's generation_config.json `num_beams`.
    #[arg(long)]
    pub beam: Option<usize>,
    /// At most this many generated tokens per text (default: the folder's `max_length`).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts to translate in one batch at a time.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// One JSON object per text: text, translation, language, hashtags in both languages.
    #[arg(long)]
    pub json: bool,
    /// Texts to translate; without any, one text per line of standard input.
    pub texts: Vec<String>,
}

/// `caption --translate HF_DIR [--lang L]`.
#[derive(Debug, Clone, Args)]
pub struct TranslateFlags {
    /// Translate each caption and its hashtags with a Hugging Face translation folder (Marian,
    /// M2M100 or NLLB; docs/translation.md).
    #[arg(long, value_name = "HF_DIR")]
    pub translate: Option<PathBuf>,
    /// With --translate: the target language (hin_Deva, ben_Beng, tam_Taml, …).
    #[arg(long, requires = "translate")]
    pub lang: Option<String>,
}
