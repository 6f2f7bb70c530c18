//! Sharded feature extraction (docs/scale.md): `features --shard I/N` in N processes and
//! `features merge` give the single-process cache byte for byte; merge refuses a missing,
//! repeated or foreign shard; `--skip-existing` redoes only what is missing or stale; the
//! Slurm scripts and Kubernetes manifests under scripts/scale/ run as written (their
//! environment set by hand) and the manifests have the fields an Indexed Job needs; `train
//! --features` trains from a cache it reads row by row.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use super::common::{bad_input, ok, s, synth, tiny_flags};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Random SqueezeNet weights standing in for pretrained ones (seeded by `seed`).
fn squeezenet(path: &Path, seed: i64) {
    tch::manual_seed(seed);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _enc =
        captag::model::Encoder::new(vs.root(), captag::config::EncoderKind::Squeezenet1_1, None);
    captag::run::save_vars(&vs, path).unwrap();
}

/// `features` over `data` with SqueezeNet weights `w` and `extra` flags; returns stdout.
fn features(data: &Path, w: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "features",
        "--data",
        s(data),
        "--encoder",
        "squeezenet1_1",
        "--encoder-weights",
        s(w),
    ];
    args.extend(extra);
    ok(&args)
}

fn shard(out: &Path, i: usize, n: usize) -> PathBuf {
    let stem = out.with_extension("");
    PathBuf::from(format!("{}.shard-{i}-of-{n}.safetensors", stem.display()))
}

/// A synthetic set of 30 images, one of them unreadable.
fn dataset(dir: &Path) {
    synth(dir, 30, 32, "flickr8k");
    fs::write(dir.join("Images/synth_00007.jpg"), b"not a jpeg").unwrap();
}

#[test]
fn three_shard_processes_merge_into_the_single_process_cache_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let (data, w) = (t.path().join("data"), t.path().join("sq.safetensors"));
    dataset(&data);
    squeezenet(&w, 1);
    let one = t.path().join("one.safetensors");
    let out = features(&data, &w, &["--grid", "--out", s(&one)]);
    assert!(
        out.contains("29 images") && out.contains("1 unreadable"),
        "{out}"
    );
    let parts = t.path().join("parts.safetensors");
    let mut per_shard = vec![];
    for i in 0..3 {
        let shard_arg = format!("{i}/3");
        let out = features(
            &data,
            &w,
            &["--grid", "--out", s(&parts), "--shard", &shard_arg],
        );
        assert!(out.contains(&format!("shard {i}/3: ")), "{out}");
        per_shard.push(out);
    }
    // The unreadable image is counted by the one shard it belongs to.
    let skipped: Vec<bool> = per_shard
        .iter()
        .map(|o| o.contains(", 1 unreadable"))
        .collect();
    assert_eq!(skipped.iter().filter(|&&b| b).count(), 1, "{per_shard:?}");
    let shards: Vec<PathBuf> = (0..3).map(|i| shard(&parts, i, 3)).collect();
    let merged = t.path().join("merged.safetensors");
    // Any order on the command line.
    let out = ok(&[
        "features",
        "merge",
        s(&shards[2]),
        s(&shards[0]),
        s(&shards[1]),
        "--out",
        s(&merged),
    ]);
    assert!(
        out.contains("3 shards, 29 images") && out.contains("1 unreadable"),
        "{out}"
    );
    assert!(
        fs::read(&one).unwrap() == fs::read(&merged).unwrap(),
        "merged differs from one process"
    );
    // A shard is a cache of its own images.
    let c = captag::data::features::FeatureCache::load(&shards[0]).unwrap();
    assert!(!c.ids.is_empty() && c.ids.len() < 29);

    // Refusals, each before anything is written.
    let gone = t.path().join("never.safetensors");
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shards[2]),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("1 of 3 shards missing (1/3)"), "{e}");
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shards[1]),
        s(&shards[1]),
        s(&shards[2]),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("shard 1/3 given twice"), "{e}");
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&one),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("not a shard"), "{e}");
    // Other weights, another N, no grid, another dataset: each named.
    let w2 = t.path().join("sq2.safetensors");
    squeezenet(&w2, 2);
    let other = t.path().join("other.safetensors");
    features(
        &data,
        &w2,
        &["--grid", "--out", s(&other), "--shard", "1/3"],
    );
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shard(&other, 1, 3)),
        s(&shards[2]),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("encoder weights differs"), "{e}");
    features(&data, &w, &["--grid", "--out", s(&other), "--shard", "1/2"]);
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shard(&other, 1, 2)),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("shard count differs"), "{e}");
    features(&data, &w, &["--out", s(&other), "--shard", "1/3"]);
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shard(&other, 1, 3)),
        s(&shards[2]),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("--grid differs"), "{e}");
    let data2 = t.path().join("data2");
    synth(&data2, 31, 32, "flickr8k");
    features(
        &data2,
        &w,
        &["--grid", "--out", s(&other), "--shard", "1/3"],
    );
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shard(&other, 1, 3)),
        s(&shards[2]),
        "--out",
        s(&gone),
    ]);
    assert!(e.contains("dataset (image list) differs"), "{e}");
    assert!(!gone.exists());
    // The output may not be one of the shards.
    let e = bad_input(&[
        "features",
        "merge",
        s(&shards[0]),
        s(&shards[1]),
        s(&shards[2]),
        "--out",
        s(&shards[1]),
    ]);
    assert!(e.contains("--out"), "{e}");
}

#[test]
fn skip_existing_redoes_only_missing_and_stale_shards() {
    let t = tempfile::tempdir().unwrap();
    let (data, w) = (t.path().join("data"), t.path().join("sq.safetensors"));
    synth(&data, 12, 32, "flickr8k");
    squeezenet(&w, 1);
    let out = t.path().join("f.safetensors");
    let run = |i: usize, extra: &[&str]| {
        let sh = format!("{i}/3");
        let mut a = vec!["--out", s(&out), "--shard", &sh, "--skip-existing"];
        a.extend(extra);
        features(&data, &w, &a)
    };
    for i in 0..3 {
        assert!(!run(i, &[]).contains("up to date"));
    }
    let before = fs::read(shard(&out, 0, 3)).unwrap();
    fs::remove_file(shard(&out, 1, 3)).unwrap(); // a task that never ran
    let mut cut = fs::read(shard(&out, 2, 3)).unwrap(); // a task that left garbage
    cut.truncate(cut.len() / 2);
    fs::write(shard(&out, 2, 3), cut).unwrap();
    let again: Vec<String> = (0..3).map(|i| run(i, &[])).collect();
    assert!(again[0].contains("up to date"), "{again:?}");
    assert!(
        !again[1].contains("up to date") && !again[2].contains("up to date"),
        "{again:?}"
    );
    assert_eq!(fs::read(shard(&out, 0, 3)).unwrap(), before);
    // Another setting (--grid) is not the same extraction: redone.
    assert!(!run(0, &["--grid"]).contains("up to date"));
    // Without --shard, the whole cache is skipped the same way.
    let whole = t.path().join("whole.safetensors");
    let plain = |extra: &[&str]| {
        let mut a = vec!["--out", s(&whole), "--skip-existing"];
        a.extend(extra);
        features(&data, &w, &a)
    };
    assert!(!plain(&[]).contains("up to date"));
    assert!(plain(&[]).contains("up to date"));
}

/// `sh`/`bash` running `script` (a file or `-c` text) with `env` and captag on the PATH.
fn shell(program: &str, script: &[&str], env: &[(&str, String)]) {
    let bin = Path::new(env!("CARGO_BIN_EXE_captag"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(program)
        .args(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PATH", path)
        .env("CAPTAG", env!("CARGO_BIN_EXE_captag"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {script:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml(path: &Path) -> Yaml {
    let text = fs::read_to_string(path).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

/// The fields Kubernetes requires of a `batch/v1` Job, and what it names; returns the first
/// container.
fn check_job(job: &Yaml) -> &Yaml {
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    assert!(job["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    let spec = &job["spec"];
    assert!(spec["completions"].as_i64().is_some_and(|n| n >= 1));
    assert!(spec["parallelism"].as_i64().is_some_and(|n| n >= 1));
    let pod = &spec["template"]["spec"];
    let restart = pod["restartPolicy"].as_str();
    assert!(
        matches!(restart, Some("Never" | "OnFailure")),
        "{restart:?}"
    );
    let containers = pod["containers"].as_vec().expect("containers");
    assert!(!containers.is_empty());
    for c in containers {
        assert!(c["name"].as_str().is_some());
        assert!(c["image"].as_str().is_some_and(|i| !i.is_empty()));
        assert!(c["command"]
            .as_vec()
            .is_some_and(|v| v.iter().all(|x| x.as_str().is_some())));
    }
    &containers[0]
}

/// The container's env, with `over` replacing values (paths on this machine).
fn container_env(c: &Yaml, over: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (k, v) in over {
        match env.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.to_string(), v.clone())),
        }
    }
    env
}

fn run_container(c: &Yaml, env: &[(String, String)]) {
    let cmd: Vec<&str> = c["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    shell(cmd[0], &cmd[1..], &env);
}

#[test]
fn the_slurm_scripts_and_kubernetes_jobs_run_as_written() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 20, 32, "flickr8k");
    let clip = repo().join("tests/fixtures/hf/clip");
    let one = t.path().join("one.safetensors");
    ok(&[
        "features",
        "--data",
        s(&data),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(&clip),
        "--grid",
        "--out",
        s(&one),
    ]);

    // Slurm: the array's size and N agree; every task, then the merge job.
    let dir = repo().join("scripts/scale");
    let sbatch = fs::read_to_string(dir.join("features.sbatch")).unwrap();
    assert!(sbatch.contains("#SBATCH --array=0-7") && sbatch.contains("N=${N:-8}"));
    let out = t.path().join("slurm/clip.safetensors");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let n = 3;
    let env = |task: usize| {
        vec![
            ("SLURM_ARRAY_TASK_ID", task.to_string()),
            ("SLURM_CPUS_PER_TASK", "1".to_string()),
            ("N", n.to_string()),
            ("DATA", s(&data).to_string()),
            ("ENCODER", "clip".to_string()),
            ("WEIGHTS", s(&clip).to_string()),
            ("OUT", s(&out).to_string()),
            ("GRID", "1".to_string()),
        ]
    };
    for task in 0..n {
        shell("bash", &[s(&dir.join("features.sbatch"))], &env(task));
    }
    // A resubmitted task finds its shard and does nothing.
    let stamp = fs::metadata(shard(&out, 1, n)).unwrap().modified().unwrap();
    shell("bash", &[s(&dir.join("features.sbatch"))], &env(1));
    assert_eq!(
        fs::metadata(shard(&out, 1, n)).unwrap().modified().unwrap(),
        stamp
    );
    shell("bash", &[s(&dir.join("merge.sbatch"))], &env(0));
    assert!(
        fs::read(&one).unwrap() == fs::read(&out).unwrap(),
        "Slurm merge differs from one process"
    );

    // Kubernetes: an Indexed Job whose completions are N, its container's command run once
    // per index with the variables Kubernetes sets, then the merge Job's.
    let job = yaml(&dir.join("features-job.yaml"));
    let c = check_job(&job);
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let completions = job["spec"]["completions"].as_i64().unwrap();
    let env0 = container_env(c, &[]);
    let n_env = env0.iter().find(|(k, _)| k == "N").unwrap().1.clone();
    assert_eq!(n_env, completions.to_string(), "env N = spec.completions");
    let command = c["command"].as_vec().unwrap();
    assert!(command.iter().any(|x| x
        .as_str()
        .unwrap()
        .contains("--shard \"$JOB_COMPLETION_INDEX/$N\"")));
    let out = t.path().join("k8s/clip.safetensors");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let over = |i: usize| {
        container_env(
            c,
            &[
                ("JOB_COMPLETION_INDEX", i.to_string()),
                ("N", n.to_string()),
                ("THREADS", "1".to_string()),
                ("DATA", s(&data).to_string()),
                ("ENCODER", "clip".to_string()),
                ("WEIGHTS", s(&clip).to_string()),
                ("OUT", s(&out).to_string()),
            ],
        )
    };
    for i in 0..n {
        run_container(c, &over(i));
    }
    let merge = yaml(&dir.join("features-merge-job.yaml"));
    let m = check_job(&merge);
    run_container(
        m,
        &container_env(m, &[("N", n.to_string()), ("OUT", s(&out).to_string())]),
    );
    // Without --grid (the manifest's command has none).
    let plain = t.path().join("plain.safetensors");
    ok(&[
        "features",
        "--data",
        s(&data),
        "--encoder",
        "clip",
        "--encoder-weights",
        s(&clip),
        "--out",
        s(&plain),
    ]);
    assert!(
        fs::read(&plain).unwrap() == fs::read(&out).unwrap(),
        "Kubernetes merge differs from one process"
    );
}

#[test]
fn train_from_a_cache_file_matches_training_from_features_in_memory() {
    // A fresh run extracts its cache and trains from it in memory; a resumed run reads the
    // same cache from the file, a batch of rows at a time. 2 + 2 epochs must equal 4 (the
    // models tests do the same for a pooled decoder; here grids, for attention).
    let t = tempfile::tempdir().unwrap();
    let w = t.path().join("sq.safetensors");
    squeezenet(&w, 1);
    let flags = ["--encoder", "squeezenet1_1", "--encoder-weights", s(&w)];
    let (_t, _a, b) = super::runs::exact_resume("attention", &flags);
    assert!(b.join("features.safetensors").is_file());
}

#[test]
fn train_refuses_a_cache_with_nan_before_training() {
    let t = tempfile::tempdir().unwrap();
    let (data, w) = (t.path().join("data"), t.path().join("sq.safetensors"));
    synth(&data, 6, 32, "flickr8k");
    squeezenet(&w, 1);
    let cache = t.path().join("c.safetensors");
    features(&data, &w, &["--out", s(&cache)]);
    let mut bytes = fs::read(&cache).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // The last value of the file (pooled is its only tensor) becomes NaN.
    let end = bytes.len();
    bytes[end - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(end > 8 + n);
    fs::write(&cache, bytes).unwrap();
    let run = t.path().join("run");
    let mut args: Vec<String> = [
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--epochs",
        "1",
        "--encoder",
        "squeezenet1_1",
        "--encoder-weights",
        s(&w),
        "--features",
        s(&cache),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let f = tiny_flags("lstm", "0", "32");
    let at = f.iter().position(|x| x == "--image-size").unwrap();
    args.extend([&f[..at], &f[at + 2..]].concat());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = bad_input(&a);
    assert!(e.contains("NaN or infinite"), "{e}");
}
