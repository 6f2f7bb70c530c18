//! `captag llm generate | train | merge | pairs | eval` (docs/llm.md).
use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};

use super::out::{outln, write};
use super::Ctx;
use crate::cli::{
    LlmCommand, LlmEvalArgs, LlmGenerateArgs, LlmMergeArgs, LlmPairsArgs, LlmTrainArgs,
};
use crate::fsio::errln;
use crate::model::decoding::{DecodeRequest, Decoding};
use crate::model::llama::chat::ChatLm;
use crate::model::llama::lora;
use crate::text::extract_tags;
use crate::train::lora::{self as lora_train, read_pairs, LoraTrain, Pair};

pub fn run(ctx: &Ctx, cmd: &LlmCommand) -> anyhow::Result<()> {
    match cmd {
        LlmCommand::Generate(a) => generate(ctx, a),
        LlmCommand::Train(a) => train(ctx, a),
        LlmCommand::Merge(a) => merge(ctx, a),
        LlmCommand::Pairs(a) => pairs(ctx, a),
        LlmCommand::Eval(a) => eval(ctx, a),
    }
}

fn decoding(
    max_new: usize,
    beam: usize,
    top_p: Option<f64>,
    temperature: f64,
    seed: u64,
) -> anyhow::Result<Decoding> {
    let req = DecodeRequest {
        beam,
        length_alpha: 0.0,
        max_len: max_new,
        top_p,
        temperature,
        samples: 1,
        seed,
    };
    Ok(req.validate(|f| {
        if f == "max-len" {
            "--max-new-tokens".into()
        } else {
            format!("--{f}")
        }
    })?)
}

/// The model (and adapter) of `generate`/`eval` in `--precision` (refused on the CPU before
/// anything is loaded).
fn load_lm(ctx: &Ctx, a: &crate::cli::LlmModelArgs) -> anyhow::Result<ChatLm> {
    a.precision.check(ctx.device)?;
    Ok(ChatLm::load(&a.model, a.adapter.as_deref(), ctx.device)?.in_precision(a.precision)?)
}

fn generate(ctx: &Ctx, a: &LlmGenerateArgs) -> anyhow::Result<()> {
    let dec = decoding(a.max_new_tokens, a.beam, a.top_p, a.temperature, ctx.seed)?;
    let lm = load_lm(ctx, &a.model)?;
    let ids = lm.prompt_ids(a.system.as_deref(), &a.prompt, a.raw)?;
    let started = std::time::Instant::now();
    let mut failed = None;
    let best = lm.generate(&ids, &dec, |text| {
        if failed.is_none() {
            failed = write(text).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    outln!()?;
    if ctx.verbose {
        let s = started.elapsed().as_secs_f64();
        errln!(
            "{} prompt tokens, {} new tokens in {s:.2} s ({:.1} tokens/s)",
            ids.len(),
            best.tokens.len(),
            best.tokens.len() as f64 / s
        );
    }
    Ok(())
}

fn train(ctx: &Ctx, a: &LlmTrainArgs) -> anyhow::Result<()> {
    if a.epochs == 0 || a.batch_size == 0 || a.max_len < 2 {
        bail!("--epochs and --batch-size must be ≥ 1 and --max-len ≥ 2");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be a positive number, not {}", a.lr);
    }
    // A 16-bit precision on the CPU is refused before the run directory is made.
    a.precision.check(ctx.device)?;
    let model = std::path::absolute(&a.model).with_context(|| a.model.display().to_string())?;
    let data = std::path::absolute(&a.data).with_context(|| a.data.display().to_string())?;
    let settings = LoraTrain {
        data_fingerprint: crate::fsio::Fingerprint::of_file(&data)?,
        model,
        data,
        rank: a.lora_rank,
        alpha: a.lora_alpha,
        targets: a.lora_targets.clone(),
        lr: a.lr,
        batch_size: a.batch_size,
        max_len: a.max_len,
        seed: ctx.seed,
        precision: a.precision,
    };
    lora::LoraConfig::new(a.lora_rank, a.lora_alpha, &a.lora_targets)
        .validate()
        .context("--lora-rank/--lora-alpha/--lora-targets")?;
    let quiet = ctx.quiet;
    lora_train::train(settings, a.epochs, &a.out, ctx.device, |r| {
        if !quiet {
            errln!(
                "epoch {}: train loss {:.4} over {} response tokens, {:.0} s",
                r.epoch,
                r.loss,
                r.tokens,
                r.seconds
            );
        }
    })?;
    outln!("{}", a.out.display())?;
    Ok(())
}

fn merge(ctx: &Ctx, a: &LlmMergeArgs) -> anyhow::Result<()> {
    if a.out.exists() {
        bail!("{}: exists; merge writes a new folder", a.out.display());
    }
    let lm = ChatLm::load(&a.model, Some(&a.adapter), ctx.device)?;
    let parent = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    let tmp = tempfile_dir(parent)?;
    for entry in std::fs::read_dir(&a.model).with_context(|| a.model.display().to_string())? {
        let entry = entry?;
        let name = entry.file_name();
        let n = name.to_string_lossy();
        let skip = n.starts_with("model")
            && (n.ends_with(".safetensors") || n.ends_with(".json") && n.contains("index"));
        if entry.file_type()?.is_file() && !skip {
            std::fs::copy(entry.path(), tmp.join(&name))?;
        }
    }
    crate::run::save_vars(&lm.llama.vs, &tmp.join("model.safetensors"))?;
    std::fs::rename(&tmp, &a.out).with_context(|| a.out.display().to_string())?;
    outln!("{}", a.out.display())?;
    Ok(())
}

fn tempfile_dir(parent: &Path) -> anyhow::Result<std::path::PathBuf> {
    let p = parent.join(format!(".merge-{}", std::process::id()));
    if p.exists() {
        std::fs::remove_dir_all(&p)?;
    }
    std::fs::create_dir(&p).with_context(|| p.display().to_string())?;
    Ok(p)
}

fn pairs(ctx: &Ctx, a: &LlmPairsArgs) -> anyhow::Result<()> {
    use crate::data::llm_pairs::{read_posts, text_pairs};
    if !(0.0..1.0).contains(&a.test_share) {
        bail!("--test-share must be in [0, 1)");
    }
    // Flags and models first: a bad one is refused before anything is read or written.
    let photo = a
        .captioner
        .as_deref()
        .map(|run| PhotoRecipe::open(ctx, a, run))
        .transpose()?;
    let (posts, mut stats) = read_posts(&a.data, a.with_hashtags)?;
    let (pairs, unreadable) = match &photo {
        None => {
            let pairs = text_pairs(&posts, a.test_share, &mut stats);
            (subset(pairs, a.limit, ctx.seed), None)
        }
        Some(photo) => {
            let with_file: Vec<_> = posts.iter().filter(|p| p.image_file().is_some()).collect();
            let missing = posts.len() - with_file.len();
            if with_file.is_empty() {
                bail!(
                    "{}: none of the {} posts with a caption has its picture here; without \
                     --captioner, `llm pairs` builds prompts from the captions' own words",
                    a.data.display(),
                    posts.len()
                );
            }
            let chosen = subset(with_file, a.limit, ctx.seed);
            let (pairs, corrupt) = photo.pairs(ctx, &chosen, a.test_share)?;
            (pairs, Some((missing, corrupt)))
        }
    };
    if pairs.is_empty() {
        bail!("{}: no post gives a pair", a.data.display());
    }
    let mut text = String::new();
    for p in &pairs {
        text += &serde_json::to_string(p)?;
        text.push('\n');
    }
    crate::fsio::write_atomic(&a.out, text.as_bytes(), true)?;
    let test = pairs.iter().filter(|p| p.is_test()).count();
    let mut left_out = vec![format!("{} empty", stats.empty)];
    match unreadable {
        None => left_out.push(format!("{} without words or hashtags", stats.no_prompt)),
        Some((missing, corrupt)) => {
            left_out.push(format!("{missing} without their picture"));
            left_out.push(format!("{corrupt} whose picture could not be read"));
        }
    }
    if a.with_hashtags {
        left_out.push(format!("{} without hashtags", stats.without_hashtags));
    }
    outln!(
        "{}: {} pairs ({} train, {} held out; {} recipe) from {} posts ({})",
        a.out.display(),
        pairs.len(),
        pairs.len() - test,
        test,
        if photo.is_some() { "image" } else { "text" },
        stats.posts,
        left_out.join(", ")
    )?;
    Ok(())
}

/// At most `limit` of `items`: a seeded random subset, in the original order.
fn subset<T>(items: Vec<T>, limit: Option<usize>, seed: u64) -> Vec<T> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let Some(n) = limit else { return items };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..items.len()).collect();
    idx.shuffle(&mut rng);
    idx.truncate(n);
    let keep: HashSet<usize> = idx.into_iter().collect();
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, x)| keep.contains(&i).then_some(x))
        .collect()
}

/// `llm pairs --captioner RUN [--clip HF_DIR]`: the captioner (and CLIP) loaded once.
struct PhotoRecipe {
    loaded: crate::infer::Loaded,
    decoding: Decoding,
    moods: Option<crate::infer::moods::MoodRanker>,
    top_moods: usize,
}

impl PhotoRecipe {
    fn open(ctx: &Ctx, a: &LlmPairsArgs, run: &Path) -> anyhow::Result<Self> {
        let decoding = super::shared::decoding(&a.decode, ctx.seed)?;
        if a.top_moods == 0 {
            bail!("--top-moods must be ≥ 1");
        }
        if super::vl::is_vl(run) {
            bail!(
                "--captioner {}: a BLIP/GIT folder; --captioner takes a run of `captag train`",
                run.display()
            );
        }
        let mut loaded = crate::infer::load_checkpoint(run, ctx.device, false)?;
        loaded.allow_unk = a.decode.allow_unk;
        let moods = a
            .clip
            .as_deref()
            .map(|dir| crate::infer::moods::MoodRanker::load(dir, None, ctx.device))
            .transpose()?;
        Ok(PhotoRecipe {
            loaded,
            decoding,
            moods,
            top_moods: a.top_moods,
        })
    }

    /// The image recipe's pairs of `posts` and how many pictures could not be read.
    fn pairs(
        &self,
        ctx: &Ctx,
        posts: &[&crate::data::llm_pairs::Post],
        test_share: f64,
    ) -> anyhow::Result<(Vec<Pair>, usize)> {
        use crate::data::llm_pairs::RECIPE_IMAGE;
        use crate::infer::llm_post::{photo_prompts, Moods};
        // Every chosen post has a picture path (`image_file`), so prompts line up with posts.
        let paths: Vec<std::path::PathBuf> = posts.iter().filter_map(|p| p.image.clone()).collect();
        let moods = self.moods.as_ref().map(|ranker| Moods {
            ranker,
            top: self.top_moods,
        });
        let total = paths.len();
        let prompts = photo_prompts(&self.loaded, &self.decoding, moods.as_ref(), &paths, |n| {
            if ctx.verbose {
                errln!("captioned {n} of {total} pictures");
            }
        })?;
        let (mut pairs, mut corrupt) = (Vec::with_capacity(total), 0);
        for (post, prompt) in posts.iter().zip(prompts) {
            match prompt {
                Ok(prompt) => pairs.push(post.pair(prompt, RECIPE_IMAGE, test_share)),
                Err(why) => {
                    corrupt += 1;
                    if ctx.verbose {
                        errln!("{}: left out: {why}", post.id);
                    }
                }
            }
        }
        Ok((pairs, corrupt))
    }
}

/// Distinct bigrams over all bigrams of the texts (whitespace words).
pub fn distinct_2(texts: &[String]) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let w: Vec<&str> = t.split_whitespace().collect();
        for b in w.windows(2) {
            seen.insert((b[0].to_string(), b[1].to_string()));
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

fn eval(ctx: &Ctx, a: &LlmEvalArgs) -> anyhow::Result<()> {
    let lm = load_lm(ctx, &a.model)?;
    let mut test: Vec<Pair> = read_pairs(&a.data)?
        .into_iter()
        .filter(Pair::is_test)
        .collect();
    if let Some(n) = a.limit {
        test.truncate(n);
    }
    if test.is_empty() {
        bail!(
            "{}: no held-out (\"split\": \"test\") pairs",
            a.data.display()
        );
    }
    let started = std::time::Instant::now();
    let (nll, tokens) = lora_train::mean_nll(&lm, &test, a.max_len, a.batch_size)?;
    let score_s = started.elapsed().as_secs_f64();
    let mut report = serde_json::json!({
        "pairs": test.len(), "response_tokens": tokens, "nll": nll, "perplexity": nll.exp(),
        "seconds": score_s,
    });
    if a.generate > 0 {
        let dec = Decoding::Greedy {
            max_len: a.max_new_tokens,
        };
        let (mut texts, mut hits, mut made, mut new_tokens) = (Vec::new(), 0usize, 0usize, 0usize);
        let started = std::time::Instant::now();
        for p in test.iter().take(a.generate) {
            let ids = lm.prompt_ids(p.system.as_deref(), &p.prompt, false)?;
            let h = lm.generate(&ids, &dec, |_| {})?;
            new_tokens += h.tokens.len();
            let text = lm.decode(&h.tokens);
            let own: HashSet<String> = extract_tags(&p.response).hashtags.into_iter().collect();
            let got = extract_tags(&text).hashtags;
            made += got.len();
            hits += got.iter().filter(|t| own.contains(*t)).count();
            if !ctx.quiet {
                outln!("--- {}\n{}", p.id.as_deref().unwrap_or("?"), text.trim())?;
            }
            texts.push(text);
        }
        let s = started.elapsed().as_secs_f64();
        report["generated"] = texts.len().into();
        report["hashtags_generated"] = made.into();
        report["hashtag_precision"] = if made > 0 {
            (hits as f64 / made as f64).into()
        } else {
            serde_json::Value::Null
        };
        report["distinct_2"] = distinct_2(&texts).into();
        report["new_tokens_per_s"] = (new_tokens as f64 / s).into();
    }
    outln!("{report}")?;
    Ok(())
}
