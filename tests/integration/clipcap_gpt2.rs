//! `--decoder clipcap --lm-weights DIR`: ClipCap on a pretrained GPT-2 folder, captions as its
//! BPE tokens (docs/ARCHITECTURE.md, "Tokens behind the decoder interface"), with the tiny random
//! fixture `tests/fixtures/hf/gpt2` standing in for a `gpt2` download: training, `caption`
//! (greedy, beam, top-p) and `eval` from the run alone, exact resume, a frozen LM that stays the
//! folder's weights bit for bit, and one-line errors for bad folders and flags.
use std::fs;
use std::path::{Path, PathBuf};

use super::common::{bad_input, ok, s, synth};

fn gpt2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gpt2")
}

/// `train` of a clipcap on the fixture GPT-2 (32-px synthetic images, no `--embed`: the LM's
/// sizes are the folder's).
fn train_args(data: &Path, out: &Path, epochs: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--data",
        s(data),
        "--out",
        s(out),
        "--decoder",
        "clipcap",
        "--lm-weights",
        s(&gpt2()),
        "--image-size",
        "32",
        "--schedule",
        "constant",
        "--early-stop",
        "0",
        "--batch-size",
        "40",
        "--lr",
        "5e-3",
        "--prefix-len",
        "4",
        "--epochs",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.push(epochs.to_string());
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

fn run_ok(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn weights(file: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(file).unwrap();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

#[test]
fn clipcap_on_a_gpt2_folder_trains_captions_and_evaluates_from_the_run_alone() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 12, 32, "flickr8k");
    run_ok(&train_args(&data, &run, 2, &["--dropout", "0"]));
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let dec = &cfg["model"]["decoder"];
    assert_eq!(dec["pretrained"]["eot_id"], 699, "{dec}");
    assert_eq!(dec["pretrained"]["config"]["n_embd"], 32);
    // Run ids: the four specials, then the folder's 700 BPE ids.
    assert_eq!(cfg["model"]["vocab_size"], 704);
    for f in ["config.json", "tokenizer.json", "vocab.json", "merges.txt"] {
        assert!(run.join("lm").join(f).is_file(), "lm/{f}");
    }
    assert!(!run.join("lm/model.safetensors").exists());

    // The run decodes without the folder: text from the run's lm/ tokenizer.
    let image = data.join("Images/synth_00001.jpg");
    for extra in [
        vec![],
        vec!["--beam", "3"],
        vec!["--top-p", "0.9", "--samples", "2"],
    ] {
        let mut a = vec!["caption", s(&run), s(&image), "--json"];
        a.extend(&extra);
        let v: serde_json::Value = serde_json::from_str(ok(&a).trim()).unwrap();
        let c = v["caption"].as_str().unwrap();
        assert!(!c.trim().is_empty() && !c.contains('<'), "{extra:?}: {c:?}");
    }
    let line = ok(&["caption", s(&run), s(&image)]);
    assert!(
        line.starts_with(s(&image)) && line.trim().contains('\t'),
        "{line}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["eval", s(&run), "--data", s(&data), "--json"])).unwrap();
    let b = v["bleu"]["bleu"].as_array().unwrap();
    assert_eq!(b.len(), 4);
    assert!(b.iter().all(|x| x.as_f64().unwrap().is_finite()), "{v}");
    assert!(v["cider"].as_f64().unwrap().is_finite() && v["rouge_l"].is_number());
    assert!(v["bleu"]["hyp_len"].as_f64().unwrap() > 0.0);
}

/// Two epochs, then `--resume` to four, equal four uninterrupted epochs (dropout on: the
/// random streams are restored too).
#[test]
fn exact_resume_clipcap_on_a_gpt2_folder() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let drop = ["--dropout", "0.3"];
    run_ok(&train_args(&data, &a, 4, &drop));
    run_ok(&train_args(&data, &b, 2, &drop));
    run_ok(&train_args(&data, &b, 4, &["--dropout", "0.3", "--resume"]));
    let (wa, wb) = (
        weights(&a.join("last.safetensors")),
        weights(&b.join("last.safetensors")),
    );
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let diff = (ta - tb).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{na} differs by {diff} after resume");
    }
    let lines = |p: &Path| fs::read_to_string(p.join("metrics.jsonl")).unwrap();
    assert_eq!(lines(&a).lines().count(), 4);
    assert_eq!(lines(&b).lines().count(), 4);
    // Resuming as a word-level clipcap (no --lm-weights) is refused: another architecture.
    let mut args = train_args(&data, &b, 5, &["--dropout", "0.3", "--resume"]);
    let at = args.iter().position(|x| x == "--lm-weights").unwrap();
    args.drain(at..at + 2);
    let e = bad_input(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("differs"), "{e}");
}

/// `--lm frozen`: after training, every `decoder.lm.*` tensor is the folder's tensor, bit for
/// bit; the mapper trained.
#[test]
fn a_frozen_gpt2_keeps_the_folders_weights_bit_for_bit() {
    let t = tempfile::tempdir().unwrap();
    let (data, run) = (t.path().join("data"), t.path().join("run"));
    synth(&data, 12, 32, "flickr8k");
    let mut args = train_args(&data, &run, 1, &["--lm", "frozen"]);
    run_ok(&args);
    let first = weights(&run.join("last.safetensors"));
    let at = args.iter().position(|x| x == "--epochs").unwrap();
    args[at + 1] = "2".into();
    args.push("--resume".into());
    run_ok(&args);
    let folder: std::collections::HashMap<String, tch::Tensor> =
        weights(&gpt2().join("model.safetensors"))
            .into_iter()
            .map(|(n, t)| (n.strip_prefix("transformer.").unwrap_or(&n).to_string(), t))
            .collect();
    let (mut lm, mut mapper_moved) = (0, 0);
    for ((name, got), (_, before)) in weights(&run.join("last.safetensors")).iter().zip(&first) {
        if name.starts_with("decoder.mapper.") && !got.equal(before) {
            mapper_moved += 1;
        }
        let Some(key) = name.strip_prefix("decoder.lm.") else {
            continue;
        };
        let want = &folder[key];
        assert_eq!(got.size(), want.size(), "{name}");
        assert!(got.equal(want), "{name} is not the folder's {key}");
        lm += 1;
    }
    // wte, wpe, ln_f (2) and 12 per layer.
    assert_eq!(lm, 4 + 2 * 12, "LM tensors checked");
    assert!(mapper_moved > 0, "the mapper did not train");
}

#[test]
fn bad_gpt2_folders_and_flags_are_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let out = t.path().join("run");
    let train = |folder: &Path, extra: &[&str]| {
        let mut a = train_args(&data, &out, 1, extra);
        let at = a.iter().position(|x| x == "--lm-weights").unwrap();
        a[at + 1] = s(folder).to_string();
        bad_input(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let e = train(&t.path().join("missing"), &[]);
    assert!(e.contains("not a folder"), "{e}");
    let e = train(&data, &[]);
    assert!(e.contains("no config.json"), "{e}");
    // Weights and config but no tokenizer.
    let partial = t.path().join("partial");
    fs::create_dir(&partial).unwrap();
    for f in ["config.json", "model.safetensors"] {
        fs::copy(gpt2().join(f), partial.join(f)).unwrap();
    }
    let e = train(&partial, &[]);
    assert!(e.contains("tokenizer"), "{e}");
    // A tokenizer but no weights.
    fs::remove_file(partial.join("model.safetensors")).unwrap();
    for f in ["vocab.json", "merges.txt"] {
        fs::copy(gpt2().join(f), partial.join(f)).unwrap();
    }
    let e = train(&partial, &[]);
    assert!(e.contains("model.safetensors"), "{e}");
    // Weights of another shape than config.json says.
    let mut cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(gpt2().join("config.json")).unwrap()).unwrap();
    cfg["n_embd"] = 64.into();
    fs::write(partial.join("config.json"), cfg.to_string()).unwrap();
    fs::copy(
        gpt2().join("model.safetensors"),
        partial.join("model.safetensors"),
    )
    .unwrap();
    let e = train(&partial, &[]);
    assert!(e.contains("shape"), "{e}");
    // Flags that contradict the folder.
    let e = train(&gpt2(), &["--embed", "64"]);
    assert!(e.contains("sizes are the folder's"), "{e}");
    let mut a = train_args(&data, &out, 1, &[]);
    let at = a.iter().position(|x| x == "clipcap").unwrap();
    a[at] = "lstm".into();
    let e = bad_input(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("--decoder clipcap"), "{e}");
    assert!(!out.exists(), "a refused run leaves no directory");
}
