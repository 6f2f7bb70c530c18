//! Property tests of every loader, in-process: random bytes, random printable text, and random
//! mutations (byte flips, cuts, insertions of syntax characters, duplicated or swapped lines)
//! of a valid file — the synthetic dataset's own files, or ones written here — fed to each
//! reader. Property: the call returns, `Ok` or an error whose message is one non-empty line,
//! and never panics. Cases are few per loader so the module stays well under a minute.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config;

use captag::config::{
    DecoderConfig, DecoderPreset, EncoderKind, ModelConfig, TagModelKind, TagsConfig, TrainConfig,
};
use captag::data::features::FeatureCache;
use captag::data::image::{
    decode_rgb, decode_rgb_bytes, preprocess_rgb, Normalization, Preprocess, ResizeMode,
};
use captag::data::synth::{generate, SynthConfig, SynthLayout};
use captag::data::{self, Format, LoadOptions};
use captag::eval::bleu_io;
use captag::model::text_tagger::{LabelKind, TextTagger};
use captag::model::weights;
use captag::run::{self, RunConfig};
use captag::text::taglist::{TagList, TagRule};
use captag::text::{tokenize, Vocab};
use tch::{nn, Device, Kind, Tensor};

/// Seed files every loader's mutations start from.
pub(super) struct Seeds {
    pub(super) flickr_dir: PathBuf,
    insta_dir: PathBuf,
    kaggle: Vec<u8>,
    uiuc: Vec<u8>,
    split_list: Vec<u8>,
    karpathy: Vec<u8>,
    instagram: Vec<u8>,
    preds_json: Vec<u8>,
    preds_text: Vec<u8>,
    refs_json: Vec<u8>,
    refs: BTreeMap<String, Vec<String>>,
    vocab: Vec<u8>,
    tags: Vec<u8>,
    text_tagger: Vec<u8>,
    config: Vec<u8>,
    weights: Vec<u8>,
    features: Vec<u8>,
    jpeg: Vec<u8>,
    png: Vec<u8>,
}

pub(super) fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Seeds {
    let root = tempfile::tempdir().unwrap().keep();
    let synth = |name: &str, layout| {
        let dir = root.join(name);
        let cfg = SynthConfig {
            count: 6,
            size: 32,
            seed: 7,
            layout,
            noise: true,
        };
        generate(&dir, &cfg).unwrap();
        dir
    };
    let flickr_dir = synth("flickr", SynthLayout::Flickr8k);
    let insta_dir = synth("insta", SynthLayout::Instagram);
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let kaggle = read(flickr_dir.join("captions.txt"));
    let ds = data::load(&flickr_dir, &LoadOptions::default()).unwrap();

    // UIUC token file and Karpathy JSON with the same captions.
    let mut uiuc = String::new();
    let mut images = vec![];
    let mut refs = BTreeMap::new();
    for (n, smp) in ds.samples.iter().enumerate() {
        for (i, c) in smp.captions.iter().enumerate() {
            uiuc += &format!("{}#{i}\t{c}\n", smp.id);
        }
        let split = ["train", "val", "test", "restval"][n % 4];
        images.push(serde_json::json!({
            "filename": smp.id, "split": split, "filepath": "",
            "sentences": smp.captions.iter()
                .map(|c| serde_json::json!({"raw": c, "tokens": tokenize(c)}))
                .collect::<Vec<_>>(),
        }));
        refs.insert(smp.id.clone(), smp.captions.clone());
    }
    let karpathy = serde_json::to_vec_pretty(&serde_json::json!({
        "images": images, "dataset": "flickr8k"
    }))
    .unwrap();
    let preds: Vec<_> = refs
        .iter()
        .map(|(id, c)| serde_json::json!({"image_id": id, "caption": c[0]}))
        .collect();
    let preds_text: String = refs.values().map(|c| format!("{}\n", c[1])).collect();

    let tmp = root.join("seeds");
    std::fs::create_dir(&tmp).unwrap();
    let vocab = ds.build_vocab(1);
    vocab.save(&tmp.join("vocab.json")).unwrap();
    let insta = data::load(&insta_dir, &LoadOptions::default()).unwrap();
    let samples: Vec<&data::Sample> = insta.samples.iter().collect();
    let tags = TagList::build(TagRule::Instagram, &samples, 1);
    tags.save(&tmp.join("hashtags.json")).unwrap();
    let posts: Vec<(String, Vec<String>)> = insta
        .samples
        .iter()
        .map(|s| (s.captions.join(" "), s.hashtags.clone()))
        .collect();
    TextTagger::train(LabelKind::Hashtag, &posts, 1.0, 1.0)
        .save(&tmp.join("text_tags.json"))
        .unwrap();

    let enc = EncoderKind::SmallCnn;
    let config = RunConfig {
        captag_version: env!("CARGO_PKG_VERSION").to_string(),
        model: ModelConfig {
            encoder: enc,
            frozen_encoder: false,
            fine_tune: None,
            decoder: DecoderConfig::preset(DecoderPreset::Attention, enc),
            vocab_size: vocab.len() as i64,
            preprocess: enc.default_preprocess(),
            hashtags: Some(TagsConfig {
                model: TagModelKind::Head,
                num_tags: 3,
                hidden_dim: 8,
                only: false,
            }),
            clip: None,
        },
        train: TrainConfig::default(),
        data_path: "data".into(),
        data_fingerprint: "0123456789abcdef".into(),
        encoder_fingerprint: None,
    };
    run::write_json(&config, &tmp.join("config.json")).unwrap();

    let vs = small_store();
    weights::save_vars(&vs, &tmp.join("model.safetensors")).unwrap();
    FeatureCache {
        key: captag::data::features::CacheKey {
            fingerprint: "0123456789abcdef".into(),
            image_files: String::new(),
        },
        encoder: "small-cnn".into(),
        ids: vec!["a.jpg".into(), "b.jpg".into()],
        pooled: Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]),
        grid: Some(Tensor::ones([2, 4, 3], (Kind::Half, Device::Cpu))),
    }
    .save(&tmp.join("features.safetensors"))
    .unwrap();

    let jpeg = read(ds.samples[0].path.clone());
    let img = decode_rgb_bytes(&jpeg, Path::new("seed.jpg")).unwrap();
    let mut png = std::io::Cursor::new(vec![]);
    image::DynamicImage::ImageRgb8(image::imageops::crop_imm(&img, 0, 0, 12, 9).to_image())
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();

    Seeds {
        kaggle,
        uiuc: uiuc.into_bytes(),
        split_list: read(flickr_dir.join("Flickr_8k.trainImages.txt")),
        karpathy,
        instagram: read(insta_dir.join("captions_csv.csv")),
        preds_json: serde_json::to_vec(&preds).unwrap(),
        preds_text: preds_text.into_bytes(),
        refs_json: serde_json::to_vec(&refs).unwrap(),
        refs,
        vocab: read(tmp.join("vocab.json")),
        tags: read(tmp.join("hashtags.json")),
        text_tagger: read(tmp.join("text_tags.json")),
        config: read(tmp.join("config.json")),
        weights: read(tmp.join("model.safetensors")),
        features: read(tmp.join("features.safetensors")),
        jpeg,
        png: png.into_inner(),
        flickr_dir,
        insta_dir,
    }
}

/// The variables the weights seed holds (and every fuzzed file is loaded into).
fn small_store() -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let _ = root.sub("enc").zeros("w", &[3, 4]);
    let _ = root.sub("enc").zeros("b", &[4]);
    let _ = root.sub("dec").zeros("emb", &[2, 2]);
    vs
}

/// An error a user can read: one non-empty line.
pub(super) fn clear(e: &captag::Error) {
    let m = e.to_string();
    assert!(!m.trim().is_empty(), "empty error message: {e:?}");
    // One line, and nothing that moves a terminal's cursor (a tab is harmless).
    assert!(
        !m.chars().any(|c| c.is_control() && c != '\t'),
        "error message with control characters: {m:?}"
    );
}

pub(super) fn check<T>(r: captag::Result<T>) -> Option<T> {
    r.map_err(|e| clear(&e)).ok()
}

/// One edit of a seed file; positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    DupLine(usize),
    SwapLines(usize, usize),
}

/// Characters and fragments that matter to the formats read here.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b",",
    b"\n",
    b"\r\n",
    b"\t",
    b"#",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"\0",
    b"\xff",
    b"\xef\xbb\xbf",
    b"-1",
    b"1e999",
    b"18446744073709551615",
    b"null",
    b"\"\"",
    b"../",
    b"/etc/passwd",
    b"#\xf0\x9f\x8c\x85",
    b"\\u0000",
    b"\\n",
    b"\\u001b",
    b"image,caption\n",
    b"Sr No,Image File,Caption\n",
    b"{\"images\": [",
    b"\"dtype\":\"F64\"",
    b"\"shape\":[4294967296,0]",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(i, t)| Mutation::Token(i, t)),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in muts {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        let len = b.len();
        match m {
            Mutation::Flip(i, x) if len > 0 => b[at(*i, len)] ^= x,
            Mutation::Set(i, x) if len > 0 => b[at(*i, len)] = *x,
            Mutation::Truncate(i) => b.truncate(at(*i, len + 1)),
            Mutation::Delete(i, n) if len > 0 => {
                let s = at(*i, len);
                b.drain(s..(s + n).min(len));
            }
            Mutation::Insert(i, v) => {
                let s = at(*i, len + 1);
                b.splice(s..s, v.iter().copied());
            }
            Mutation::Token(i, t) => {
                let s = at(*i, len + 1);
                b.splice(s..s, TOKENS[*t].iter().copied());
            }
            Mutation::DupLine(i) | Mutation::SwapLines(i, _) => {
                let mut lines: Vec<Vec<u8>> = b
                    .split_inclusive(|&c| c == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                if lines.is_empty() {
                    continue;
                }
                let n = lines.len();
                match m {
                    Mutation::DupLine(_) => {
                        let l = lines[i % n].clone();
                        lines.insert(i % n, l);
                    }
                    Mutation::SwapLines(_, j) => lines.swap(i % n, j % n),
                    _ => unreachable!(),
                }
                b = lines.concat();
            }
            _ => {}
        }
    }
    b
}

/// Random bytes, random printable text with the formats' syntax characters, or (mostly) a
/// mutated seed.
fn input(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..600),
        1 => "[ -~\t\n\r#\u{e9}\u{1f305}]{0,400}".prop_map(String::into_bytes),
        6 => proptest::collection::vec(mutation(), 1..8).prop_map(move |m| apply(seed, &m)),
    ]
}

/// `cases` per loader, or `PROPTEST_CASES` when set (a longer run: `PROPTEST_CASES=20000`).
pub(super) fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A scratch dataset folder per test: a copy of the synthetic images (so rows resolve) and
/// whatever files the test writes.
pub(super) fn workdir(images_from: &Path, images: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let (src, dst) = (images_from.join(images), d.path().join(images));
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    d
}

/// Every way a dataset is opened: the folder and the file, detected and forced; a loaded
/// dataset is also summarized (stats, vocabulary) as `data stats` and `train` do.
fn load_dataset(dir: &Path, file: &Path, format: Format, keep_missing: bool) {
    check(data::detect(file));
    for (p, f) in [
        (dir, None),
        (dir, Some(format)),
        (file, None),
        (file, Some(format)),
    ] {
        let opts = LoadOptions {
            format: f,
            keep_missing,
            ..LoadOptions::default()
        };
        if let Some(ds) = check(data::load(p, &opts)) {
            let _ = ds.skipped.summary();
            let _ = data::stats::compute(&ds);
            let _ = ds.build_vocab(1);
            assert!(
                ds.samples.len() <= ds.images_listed,
                "{:?}",
                ds.samples.len()
            );
        }
    }
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn kaggle_captions(bytes in input(&seeds().kaggle), keep in any::<bool>()) {
        let d = workdir(&seeds().flickr_dir, "Images");
        let file = d.path().join("captions.txt");
        std::fs::write(&file, &bytes).unwrap();
        load_dataset(d.path(), &file, Format::Flickr8kKaggle, keep);
    }

    #[test]
    fn uiuc_tokens(bytes in input(&seeds().uiuc), keep in any::<bool>()) {
        let d = workdir(&seeds().flickr_dir, "Images");
        let file = d.path().join("Flickr8k.token.txt");
        std::fs::write(&file, &bytes).unwrap();
        load_dataset(d.path(), &file, Format::Flickr8kUiuc, keep);
    }

    #[test]
    fn flickr8k_split_lists(bytes in input(&seeds().split_list)) {
        let d = workdir(&seeds().flickr_dir, "Images");
        let file = d.path().join("captions.txt");
        std::fs::write(&file, &seeds().kaggle).unwrap();
        std::fs::write(d.path().join("Flickr_8k.trainImages.txt"), &bytes).unwrap();
        load_dataset(d.path(), &file, Format::Flickr8kKaggle, false);
    }

    #[test]
    fn karpathy_json(bytes in input(&seeds().karpathy), keep in any::<bool>()) {
        let d = workdir(&seeds().flickr_dir, "Images");
        let file = d.path().join("dataset_flickr8k.json");
        std::fs::write(&file, &bytes).unwrap();
        load_dataset(d.path(), &file, Format::Karpathy, keep);
    }

    #[test]
    fn instagram_csv(bytes in input(&seeds().instagram), keep in any::<bool>()) {
        let d = workdir(&seeds().insta_dir, "img");
        let file = d.path().join("captions_csv.csv");
        std::fs::write(&file, &bytes).unwrap();
        load_dataset(d.path(), &file, Format::Instagram, keep);
    }

    #[test]
    fn bleu_inputs(
        preds in prop_oneof![input(&seeds().preds_json), input(&seeds().preds_text)],
        refs in input(&seeds().refs_json),
    ) {
        let d = tempfile::tempdir().unwrap();
        let (pp, rp) = (d.path().join("preds.json"), d.path().join("refs.json"));
        std::fs::write(&pp, &preds).unwrap();
        std::fs::write(&rp, &refs).unwrap();
        let loaded_refs = check(bleu_io::read_references_json(&rp));
        if let Some(p) = check(bleu_io::read_predictions(&pp)) {
            for refs in [Some(&seeds().refs), loaded_refs.as_ref()].into_iter().flatten() {
                let order: Vec<String> = refs.keys().cloned().collect();
                if let Some(paired) = check(bleu_io::pair_predictions(p.clone(), refs, Some(&order))) {
                    let (h, r) = paired.tokenize(tokenize);
                    check(captag::eval::bleu::corpus_bleu(&h, &r, captag::eval::bleu::BleuMode::Coco));
                    check(captag::eval::bleu::corpus_bleu(&h, &r, captag::eval::bleu::BleuMode::Nltk));
                    let _ = captag::eval::cider::cider_d(&h, &r);
                    let _ = captag::eval::rouge::rouge_l(&h, &r);
                }
            }
        }
    }

    #[test]
    fn vocab_tags_and_config_json(
        vocab in input(&seeds().vocab),
        tags in input(&seeds().tags),
        text in input(&seeds().text_tagger),
        cfg in input(&seeds().config),
    ) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        std::fs::write(&p, &vocab).unwrap();
        if let Some(v) = check(Vocab::load(&p)) {
            let ids: Vec<i64> = (-2..v.len() as i64 + 2).collect();
            let _ = v.decode(&ids);
            let _ = v.encode_sequence(&["a", "red", "circle"]);
        }
        std::fs::write(&p, &tags).unwrap();
        if let Some(t) = check(TagList::load(&p)) {
            let _ = t.tags.len();
        }
        std::fs::write(&p, &text).unwrap();
        if let Some(m) = check(TextTagger::load(&p)) {
            let _ = m.suggest("a red circle #beach", 5);
            let _ = m.most_frequent(5);
        }
        std::fs::write(&p, &cfg).unwrap();
        check(run::read_config(&p));
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn safetensors_weights(bytes in input(&seeds().weights)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("model.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        check(weights::read_tensors(&p));
        let mut vs = small_store();
        check(weights::load_vars(&mut vs, &p));
    }

    #[test]
    fn feature_cache(bytes in input(&seeds().features)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("features.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        if let Some(c) = check(FeatureCache::load(&p)) {
            let _ = c.index();
            let f = captag::model::ImageFeatures::of_cache(&c);
            let _ = (f.len(), f.memory().size());
        }
        // The same bytes opened as `train --features` reads them (row by row).
        if let Some(f) = check(captag::data::feature_file::FeatureFile::open(&p)) {
            if check(f.ids()).is_some() && check(f.check_finite()).is_some() {
                for name in ["pooled", "grid"] {
                    let _ = check(f.rows(name, &[0]));
                }
            }
        }
    }

    #[test]
    fn images(bytes in prop_oneof![input(&seeds().jpeg), input(&seeds().png)]) {
        let pre = Preprocess { size: 16, resize: ResizeMode::CenterCrop, norm: Normalization::ImageNet };
        if let Some(img) = check(decode_rgb_bytes(&bytes, Path::new("fuzz.jpg"))) {
            assert_eq!(preprocess_rgb(&img, &pre).len(), pre.output_len());
            let squash = Preprocess { resize: ResizeMode::Squash, ..pre };
            let _ = preprocess_rgb(&img, &squash);
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jpg");
        std::fs::write(&p, &bytes).unwrap();
        check(decode_rgb(&p));
    }
}

// Regressions found by the properties above, kept as plain tests.

/// Write `bytes` as `name` in a fresh folder; (folder guard, path).
fn file_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

#[test]
fn a_quoted_newline_in_a_kaggle_header_is_escaped_in_the_error() {
    let (d, _) = file_with("captions.txt", b"\"\n");
    let e = data::load(d.path(), &LoadOptions::default()).unwrap_err();
    clear(&e);
    assert!(e.to_string().ends_with("found `\\n`)"), "{e}");
    let (_d2, p2) = file_with("captions.txt", b"\"a\x1b[2J\",b\nx.jpg,a dog\n");
    clear(
        &data::load(
            &p2,
            &LoadOptions {
                format: Some(Format::Flickr8kKaggle),
                ..LoadOptions::default()
            },
        )
        .unwrap_err(),
    );
}

#[test]
fn json_errors_quoting_the_input_are_one_line() {
    let tags =
        String::from_utf8(seeds().tags.clone())
            .unwrap()
            .replacen("instagram", "insta\\ngram", 1);
    let (_d, p) = file_with("hashtags.json", tags.as_bytes());
    let e = TagList::load(&p).unwrap_err();
    clear(&e);
    assert!(e.to_string().contains("insta\\ngram"), "{e}");
    let (_d, p) = file_with("vocab.json", br#"["a\nb", "<start>", "<end>", "<unk>"]"#);
    clear(&Vocab::load(&p).unwrap_err());
    let (_d, p) = file_with(
        "preds.json",
        br#"[{"image_id": {"x\n": 1}, "caption": "a"}]"#,
    );
    clear(&bleu_io::read_predictions(&p).unwrap_err());
    let refs: BTreeMap<String, Vec<String>> = [("a\nb".to_string(), vec!["x".to_string()])].into();
    clear(
        &bleu_io::pair_predictions(vec![(Some("c\r".into()), "x".into())], &refs, None)
            .unwrap_err(),
    );
    let (d, _) = file_with("dataset_x.json", br#"{"images": [{"filename": "a.jpg", "split": "tr\nain", "sentences": [{"raw": "a dog"}]}]}"#);
    let ds = data::load(d.path(), &LoadOptions::default()).unwrap();
    assert!(
        ds.skipped.items.iter().all(|(_, why)| !why.contains('\n')),
        "{:?}",
        ds.skipped.items
    );
}

#[test]
fn config_errors_are_one_line() {
    let cfg = String::from_utf8(seeds().config.clone()).unwrap().replacen(
        "\"plateau\"",
        "\"plat\\neau\"",
        1,
    );
    assert!(cfg.contains("plat\\neau"));
    let (_d, p) = file_with("config.json", cfg.as_bytes());
    clear(&run::read_config(&p).unwrap_err());
}
