//! `train --teacher`: a student distilled from a teacher run on a tiny synthetic set — it reaches
//! the teacher's BLEU-4, its sequence-level targets are the teacher's beam captions, bad
//! teachers are clear errors, and resume is exact.
use std::fs;
use std::path::{Path, PathBuf};

use super::common::{bad_input, ok, one_caption_set, s, synth, tiny_train_args};

fn train(data: &Path, out: &Path, decoder: &str, hidden: &str, epochs: usize, extra: &[&str]) {
    let mut args = tiny_train_args(data, out, epochs, decoder, hidden);
    args.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&a);
}

/// Train-split BLEU-4 of the best (or the last epoch's) weights.
fn train_bleu4(run: &Path, data: &Path, last: bool) -> f64 {
    let mut args = vec![
        "eval",
        s(run),
        "--data",
        s(data),
        "--split",
        "train",
        "--json",
    ];
    if last {
        args.push("--last");
    }
    let r: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    r["bleu"]["bleu"][3].as_f64().unwrap()
}

#[test]
fn a_distilled_student_reaches_its_teacher() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    one_caption_set(&data, 10);
    let teacher = t.path().join("teacher");
    train(&data, &teacher, "attention", "128", 40, &[]);
    // A teacher teaches with its model.safetensors, here its last epoch's weights (the best-on-
    // dev pick means nothing on a 10-image set whose dev image is never seen in training).
    fs::copy(
        teacher.join("last.safetensors"),
        teacher.join("model.safetensors"),
    )
    .unwrap();
    let tb = train_bleu4(&teacher, &data, false);
    assert!(tb >= 0.9, "the teacher should memorise: {tb}");
    // A GRU student with a third of the hidden units, from the teacher's soft targets.
    let student = t.path().join("student");
    train(
        &data,
        &student,
        "gru",
        "48",
        60,
        &[
            "--teacher",
            s(&teacher),
            "--kd",
            "word",
            "--alpha",
            "0.5",
            "--temperature",
            "1",
        ],
    );
    let sb = train_bleu4(&student, &data, true);
    assert!(sb >= tb - 0.1, "student {sb} vs teacher {tb}");
    // The teacher's identity is part of the student's config.
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(student.join("config.json")).unwrap()).unwrap();
    let d = &cfg["train"]["distill"];
    assert_eq!(d["teacher"], s(&teacher));
    assert_eq!(d["method"], "word");
    assert_eq!(d["teacher_fingerprint"].as_str().unwrap().len(), 16, "{d}");
}

/// A teacher and the data it was trained on, shared by the tests below.
fn teacher_run(t: &Path) -> (PathBuf, PathBuf) {
    let (data, teacher) = (t.join("data"), t.join("teacher"));
    synth(&data, 12, 32, "flickr8k");
    train(&data, &teacher, "lstm", "64", 3, &[]);
    (data, teacher)
}

#[test]
fn sequence_targets_are_the_teachers_beam_captions() {
    let t = tempfile::tempdir().unwrap();
    let (data, teacher) = teacher_run(t.path());
    let student = t.path().join("student");
    train(
        &data,
        &student,
        "gru",
        "32",
        1,
        &[
            "--teacher",
            s(&teacher),
            "--kd",
            "sequence",
            "--kd-beam",
            "3",
        ],
    );
    let file: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(student.join("teacher_captions.json")).unwrap())
            .unwrap();
    let caps = file["captions"].as_object().unwrap();
    let train_list = fs::read_to_string(data.join("Flickr_8k.trainImages.txt")).unwrap();
    let ids: Vec<&str> = train_list.lines().collect();
    assert_eq!(caps.len(), ids.len(), "one caption per training image");
    for id in ids.iter().take(4) {
        let img = data.join("Images").join(id);
        let out = ok(&[
            "caption",
            s(&teacher),
            s(&img),
            "--beam",
            "3",
            "--max-len",
            "30",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(caps[*id], v["caption"], "{id}");
    }
}

#[test]
fn bad_teachers_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let (data, teacher) = teacher_run(t.path());
    let student = |name: &str| t.path().join(name);
    let args = |out: &PathBuf, teacher: &Path, extra: &[&str]| -> Vec<String> {
        let mut a = tiny_train_args(&data, out, 1, "gru", "32");
        a.extend(["--teacher".to_string(), s(teacher).to_string()]);
        for pair in extra.chunks(2) {
            // A flag of `flags` takes the caller's value; others are appended.
            match a.iter().position(|x| x == pair[0]) {
                Some(i) => a[i + 1] = pair[1].to_string(),
                None => a.extend(pair.iter().map(|x| x.to_string())),
            }
        }
        a
    };
    let run = |a: Vec<String>| bad_input(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // Another vocabulary: the student drops the words seen only once or twice.
    let e = run(args(&student("a"), &teacher, &["--min-count", "3"]));
    assert!(e.contains("vocabulary"), "{e}");
    // Not a run.
    let e = run(args(&student("b"), &data, &[]));
    assert!(e.contains("--teacher") && e.contains("config.json"), "{e}");
    // A damaged teacher.
    let broken = t.path().join("broken");
    fs::create_dir_all(&broken).unwrap();
    for f in fs::read_dir(&teacher).unwrap() {
        let f = f.unwrap();
        fs::copy(f.path(), broken.join(f.file_name())).unwrap();
    }
    fs::write(broken.join("model.safetensors"), b"not a checkpoint").unwrap();
    let e = run(args(&student("c"), &broken, &[]));
    assert!(e.contains("--teacher"), "{e}");
    // Nonsense settings.
    let e = run(args(&student("d"), &teacher, &["--alpha", "1.5"]));
    assert!(e.contains("alpha"), "{e}");
}

#[test]
fn distillation_resumes_exactly() {
    let t = tempfile::tempdir().unwrap();
    let (data, teacher) = teacher_run(t.path());
    let kd = ["--teacher", s(&teacher), "--kd", "both"];
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    train(&data, &a, "gru", "32", 4, &kd);
    train(&data, &b, "gru", "32", 2, &kd);
    let mut resume = kd.to_vec();
    resume.push("--resume");
    train(&data, &b, "gru", "32", 4, &resume);
    let load = |p: &Path| {
        let mut v = tch::Tensor::read_safetensors(p.join("last.safetensors")).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    for ((na, ta), (nb, tb)) in load(&a).iter().zip(&load(&b)) {
        assert_eq!(na, nb);
        let diff = (ta - tb).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{na} differs by {diff} after resume");
    }
    // Resuming without the teacher (or with another one) is refused.
    let mut args = tiny_train_args(&data, &b, 5, "gru", "32");
    args.push("--resume".into());
    let e = bad_input(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("distill"), "{e}");
}
