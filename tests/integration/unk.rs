//! `<unk>` never appears in a caption unless `--allow-unk` (greedy, beam and top-p; caption and
//! eval), and `eval` says how often the unmasked argmax was `<unk>`.
use super::common::{ok, s, synth};

#[test]
fn captions_never_contain_unk_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    synth(&data, 40, 32, "flickr8k");
    // --min-count 60 leaves only a few words: most of every reference is `<unk>`, so an
    // undertrained model's most probable word is nearly always `<unk>`.
    ok(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--epochs",
        "8",
        "--decoder",
        "lstm",
        "--image-size",
        "32",
        "--dropout",
        "0",
        "--schedule",
        "constant",
        "--early-stop",
        "0",
        "--min-count",
        "60",
        "--batch-size",
        "40",
        "--lr",
        "5e-3",
        "--embed",
        "64",
        "--hidden",
        "128",
    ]);
    let preds = run.join("predictions_train.json");
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", s(&run), "--data", s(&data), "--split", "train"];
        a.extend_from_slice(extra);
        let out = ok(&a);
        (out, std::fs::read_to_string(&preds).unwrap())
    };
    let (out, masked) = eval(&[]);
    assert!(!masked.contains("<unk>"), "{masked}");
    let line = out.lines().find(|l| l.starts_with("<unk>:")).expect(&out);
    assert!(
        line.contains("masked") && line.ends_with("0 captions contain it"),
        "{line}"
    );
    let argmax: u64 = line.split_whitespace().nth(6).unwrap().parse().unwrap();
    assert!(argmax > 0, "{line}");
    for extra in [&["--beam", "3"][..], &["--top-p", "0.95", "--samples", "3"]] {
        let (_, p) = eval(extra);
        assert!(!p.contains("<unk>"), "{extra:?}: {p}");
    }
    let (out, allowed) = eval(&["--allow-unk"]);
    assert!(allowed.contains("<unk>"), "{allowed}");
    assert!(out.contains("allowed"), "{out}");
    let img = data.join("Images").join("synth_00001.jpg");
    for extra in [
        &[][..],
        &["--beam", "3"],
        &["--top-p", "0.9", "--samples", "4"],
    ] {
        let mut a = vec!["caption", s(&run), s(&img)];
        a.extend_from_slice(extra);
        let c = ok(&a);
        assert!(!c.contains("<unk>"), "{extra:?}: {c}");
    }
    let c = ok(&["caption", s(&run), s(&img), "--allow-unk"]);
    assert!(c.contains("<unk>"), "{c}");
}
