//! The README's "Guarantees", as an adversarial user tries them (issue 23): no command
//! overwrites an input (files inside input folders and run directories included), paths from
//! data stay inside the dataset, sizes are estimated before allocating, every image decode has
//! the header pixel limit, stderr write errors are errors, bad decoding flags are refused.
//! This file: inputs, paths and sizes; `guarantees_runtime.rs`: what happens while a command
//! runs (decoding limits, stderr, the server, structure a loader does not expect).
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{bad_input, ok, s, synth};

/// `captag` under an address-space limit (16 GiB): a regression that allocates what a size
/// asks for fails here instead of eating the machine.
pub(super) fn bounded(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_captag"));
    c.args(["--device", "cpu", "--threads", "1", "-q"])
        .args(args);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 16 << 30,
                rlim_max: 16 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    c.output().expect("failed to start captag")
}

/// [`bounded`], requiring exit 2 and one `error:` line; returns that line.
fn bounded_bad(args: &[&str]) -> String {
    let out = bounded(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    lines[0].to_string()
}

// ---------------------------------------------------------------- 1. inputs overwritten

#[test]
fn an_output_inside_an_input_folder_or_run_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    synth(&data, 6, 32, "flickr8k");
    let captions = data.join("captions.txt");
    let before = fs::read(&captions).unwrap();
    let image = fs::read_dir(data.join("Images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let link = d.path().join("link.txt");
    std::os::unix::fs::symlink(&captions, &link).unwrap();
    for out in [&captions, &image, &link] {
        let e = bad_input(&["vocab", "build", s(&data), "--out", s(out)]);
        assert!(e.contains("inside") || e.contains("also an input"), "{e}");
    }
    assert_eq!(fs::read(&captions).unwrap(), before);
    // A run directory's files: the guard runs before the run is even read.
    let run = d.path().join("run");
    fs::create_dir(&run).unwrap();
    for f in ["model.safetensors", "vocab.json", "config.json"] {
        fs::write(run.join(f), f).unwrap();
        let e = bad_input(&[
            "eval",
            s(&run),
            "--data",
            s(&data),
            "--predictions",
            s(&run.join(f)),
        ]);
        assert!(e.contains("lies inside"), "{e}");
        assert_eq!(fs::read_to_string(run.join(f)).unwrap(), f);
    }
    let e = bad_input(&[
        "eval",
        s(&run),
        "--data",
        s(&data),
        "--predictions",
        s(&captions),
    ]);
    assert!(e.contains("lies inside"), "{e}");
    // features: the dataset's files and the feature cache of `eval --features`.
    let w = d.path().join("w.safetensors");
    fs::write(&w, "x").unwrap();
    for out in [&captions, &image, &w] {
        let e = bad_input(&[
            "features",
            "--data",
            s(&data),
            "--encoder",
            "squeezenet1_1",
            "--encoder-weights",
            s(&w),
            "--out",
            s(out),
        ]);
        assert!(e.contains("inside") || e.contains("also an input"), "{e}");
    }
    let cache = d.path().join("f.safetensors");
    fs::write(&cache, "x").unwrap();
    let e = bad_input(&[
        "eval",
        s(&run),
        "--data",
        s(&data),
        "--features",
        s(&cache),
        "--predictions",
        s(&cache),
    ]);
    assert!(e.contains("also an input"), "{e}");
    assert_eq!(fs::read(&captions).unwrap(), before);
    // A new file elsewhere is fine.
    ok(&[
        "vocab",
        "build",
        s(&data),
        "--out",
        s(&d.path().join("v.json")),
    ]);
}

// ------------------------------------------------- 2. paths from data stay in the dataset

fn outside_skips(dir: &Path) -> (usize, Vec<std::path::PathBuf>) {
    let ds = captag::data::load(
        dir,
        &captag::data::LoadOptions {
            keep_missing: true,
            ..Default::default()
        },
    )
    .unwrap();
    let n = ds
        .skipped
        .counts()
        .get(&captag::data::SkipReason::OutsideDataset)
        .copied()
        .unwrap_or(0);
    (n, ds.samples.iter().map(|x| x.path.clone()).collect())
}

#[test]
fn image_paths_from_data_resolve_inside_the_dataset() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("secret.jpg");
    fs::write(&secret, "outside").unwrap();
    // Kaggle: an Images/NAME.jpg that is a symlink to a file outside the folder.
    let data = d.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let caps = fs::read_to_string(data.join("captions.txt")).unwrap();
    let first = caps.lines().nth(1).unwrap().split(',').next().unwrap();
    fs::remove_file(data.join("Images").join(first)).unwrap();
    std::os::unix::fs::symlink(&secret, data.join("Images").join(first)).unwrap();
    let (n, paths) = outside_skips(&data);
    // Skipped and counted (once per caption row of that image).
    assert!(n >= 1, "the symlinked image is skipped and counted");
    assert!(paths.iter().all(|p| !p.ends_with(first)));
    // Karpathy: `..` and absolute file names.
    let k = d.path().join("karpathy");
    fs::create_dir_all(k.join("Images")).unwrap();
    let json = format!(
        r#"{{"images": [
        {{"filename": "../../secret.jpg", "split": "train", "sentences": [{{"raw": "a dog"}}]}},
        {{"filename": "{}", "split": "train", "sentences": [{{"raw": "a cat"}}]}},
        {{"filename": "ok.jpg", "split": "train", "sentences": [{{"raw": "a cow"}}]}}
    ]}}"#,
        secret.display()
    );
    fs::write(k.join("dataset_flickr8k.json"), json).unwrap();
    fs::write(k.join("Images/ok.jpg"), "x").unwrap();
    let (n, paths) = outside_skips(&k);
    assert_eq!(n, 2);
    assert_eq!(paths, vec![k.join("Images/ok.jpg")]);
}

#[test]
fn ratings_export_reads_only_kept_images_and_leaves_a_foreign_db_alone() {
    let d = tempfile::tempdir().unwrap();
    // A foreign SQLite file: refused, and not changed.
    let foreign = d.path().join("other.sqlite");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let before = fs::read(&foreign).unwrap();
    let images = d.path().join("kept");
    fs::create_dir(&images).unwrap();
    let e = bad_input(&[
        "ratings",
        "export",
        "--db",
        s(&foreign),
        "--images",
        s(&images),
        "--out",
        s(&d.path().join("o1")),
    ]);
    assert!(e.contains("not a captag ratings database"), "{e}");
    assert_eq!(fs::read(&foreign).unwrap(), before);
    // A row whose hash is a path is skipped; a kept image that is a symlink out is not copied.
    let db = d.path().join("r.sqlite");
    drop(captag::serve::db::Ratings::open(&db).unwrap());
    let secret = d.path().join("secret.jpg");
    fs::write(&secret, "outside").unwrap();
    let sha = "b".repeat(64);
    std::os::unix::fs::symlink(&secret, images.join(format!("{sha}.jpg"))).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    for h in ["../secret", sha.as_str()] {
        c.execute(
            "INSERT INTO ratings (image_sha256, run_id, decoding, style, caption, rating, \
             created_at) VALUES (?1, 'r@1', 'greedy', 'plain', 'a dog', 5, 'now')",
            [h],
        )
        .unwrap();
    }
    drop(c);
    let out = d.path().join("o2");
    let msg = ok(&[
        "ratings",
        "export",
        "--db",
        s(&db),
        "--images",
        s(&images),
        "--out",
        s(&out),
    ]);
    assert!(msg.contains("1 with a malformed image hash"), "{msg}");
    assert_eq!(fs::read_dir(out.join("Images")).unwrap().count(), 0);
}

// ------------------------------------------------------------------------ 3. sizes

#[test]
fn sizes_beyond_the_machine_are_one_error_line_before_anything_is_created() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    synth(&data, 6, 32, "flickr8k");
    let cases: &[&[&str]] = &[
        &["--hidden", "1000000000"],
        &["--embed", "1000000000"],
        &["--layers", "1000000"],
        &["--image-size", "100000"],
        &["--decoder", "transformer", "--ff-dim", "1000000000000"],
        &["--decoder", "clipcap", "--prefix-len", "1000000000"],
    ];
    for (i, flags) in cases.iter().enumerate() {
        let run = d.path().join(format!("run{i}"));
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--epochs",
            "1",
        ];
        args.extend_from_slice(flags);
        let e = bounded_bad(&args);
        let flag = flags[flags.len() - 2];
        assert!(e.contains(flag) && e.contains("memory"), "{flags:?}: {e}");
        assert!(!run.exists(), "{flags:?} left a run folder behind");
    }
    // restore and damage sizes.
    let e = bounded_bad(&[
        "restore",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&d.path().join("r")),
        "--mask-channels",
        "1000000",
    ]);
    assert!(e.contains("--mask-channels 1000000"), "{e}");
    let e = bounded_bad(&[
        "damage",
        "--data",
        s(&data),
        "--out",
        s(&d.path().join("dm")),
        "--size",
        "100000",
    ]);
    assert!(e.contains("--size 100000"), "{e}");
    let e = bounded_bad(&[
        "damage",
        "--data",
        s(&data),
        "--out",
        s(&d.path().join("dm2")),
        "--min-ops",
        "1000000",
        "--max-ops",
        "1000000",
    ]);
    assert!(e.contains("at most"), "{e}");
}

#[test]
fn hugging_face_config_sizes_are_estimated_before_loading() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    synth(&data, 4, 32, "flickr8k");
    let clip = d.path().join("clip");
    fs::create_dir(&clip).unwrap();
    for (field, value) in [
        ("hidden_size", "1000000000"),
        ("intermediate_size", "1000000000000"),
        ("num_hidden_layers", "1000000000"),
    ] {
        fs::write(
            clip.join("config.json"),
            format!(r#"{{"model_type": "clip", "vision_config": {{"{field}": {value}}}}}"#),
        )
        .unwrap();
        fs::write(clip.join("model.safetensors"), "x").unwrap();
        let e = bounded_bad(&[
            "features",
            "--data",
            s(&data),
            "--encoder",
            "clip",
            "--encoder-weights",
            s(&clip),
            "--out",
            s(&d.path().join("f.safetensors")),
        ]);
        assert!(e.contains(&format!("vision_config.{field} {value}")), "{e}");
    }
    let gpt2 = d.path().join("gpt2");
    fs::create_dir(&gpt2).unwrap();
    for (field, value) in [
        ("n_embd", "1000000000"),
        ("vocab_size", "1000000000000"),
        ("n_layer", "1000000000"),
    ] {
        fs::write(
            gpt2.join("config.json"),
            format!(r#"{{"model_type": "gpt2", "{field}": {value}}}"#),
        )
        .unwrap();
        fs::write(gpt2.join("model.safetensors"), "x").unwrap();
        let run = d.path().join("run");
        let e = bounded_bad(&[
            "train",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--decoder",
            "clipcap",
            "--lm-weights",
            s(&gpt2),
            "--epochs",
            "1",
        ]);
        assert!(e.contains(&format!("{field} {value}")), "{e}");
    }
}
