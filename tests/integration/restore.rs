//! Damaged-photo restoration: `captag damage` is deterministic per seed and its masks are the
//! changed pixels; on a tiny synthetic set the mask U-Net overfits to IoU ≈ 1 and the
//! partial-convolution inpainter beats a blur fill; resume is exact; `restore RUN IMAGE` writes a
//! mask and a restored photo of the input's size and refuses bad images and wrong-size masks.
use std::fs;
use std::path::Path;

use super::common::{bad_input, ok, s, synth};

/// Small networks for 32-px images.
const NET: [&str; 10] = [
    "--size",
    "32",
    "--mask-channels",
    "8",
    "--mask-depth",
    "3",
    "--inpaint-channels",
    "16",
    "--inpaint-depth",
    "3",
];

fn train(data: &Path, out: &Path, epochs: usize, extra: &[&str]) {
    let epochs = epochs.to_string();
    let mut args = vec![
        "restore",
        "train",
        "--data",
        s(data),
        "--out",
        s(out),
        "--epochs",
        &epochs,
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
    ];
    args.extend(NET);
    args.extend(extra);
    ok(&args);
}

fn png(p: &Path) -> image::DynamicImage {
    image::load_from_memory(&fs::read(p).unwrap()).unwrap()
}

#[test]
fn damage_is_seeded_and_masks_are_the_changed_pixels() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 6, 48, "flickr8k");
    let run = |out: &str, seed: &str| {
        let o = t.path().join(out);
        ok(&[
            "--seed",
            seed,
            "damage",
            "--data",
            s(&data),
            "--out",
            s(&o),
            "--size",
            "40",
        ]);
        o
    };
    let (a, b, c) = (run("a", "5"), run("b", "5"), run("c", "6"));
    let files = |d: &Path, sub: &str| {
        let mut v: Vec<_> = fs::read_dir(d.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(&a, "images").len(), 6);
    for sub in ["images", "masks", "clean"] {
        for (x, y) in files(&a, sub).iter().zip(files(&b, sub)) {
            assert_eq!(
                fs::read(x).unwrap(),
                fs::read(&y).unwrap(),
                "{}",
                x.display()
            );
        }
    }
    assert_eq!(
        fs::read(a.join("damage.json")).unwrap(),
        fs::read(b.join("damage.json")).unwrap()
    );
    let masks = |d: &Path| -> Vec<Vec<u8>> {
        files(d, "masks")
            .iter()
            .map(|p| fs::read(p).unwrap())
            .collect()
    };
    assert_ne!(masks(&a), masks(&c));
    for ((img, mask), clean) in files(&a, "images")
        .iter()
        .zip(files(&a, "masks"))
        .zip(files(&a, "clean"))
    {
        let (img, mask, clean) = (
            png(img).to_rgb8(),
            png(&mask).to_luma8(),
            png(&clean).to_rgb8(),
        );
        assert_eq!(img.dimensions(), (40, 40));
        let mut holes = 0;
        for (x, y, p) in img.enumerate_pixels() {
            let changed = p != clean.get_pixel(x, y);
            let m = mask.get_pixel(x, y).0[0];
            assert!(m == 0 || m == 255);
            assert_eq!(changed, m == 255, "pixel ({x},{y})");
            holes += changed as usize;
        }
        assert!(holes > 0);
    }
    // A non-empty --out is refused, and so is writing into the dataset.
    bad_input(&["damage", "--data", s(&data), "--out", s(&a)]);
}

#[test]
fn the_networks_overfit_a_tiny_set() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 10, 32, "flickr8k");
    let run = t.path().join("run");
    train(&data, &run, 150, &["--fixed-damage", "--dev-limit", "0"]);
    let out = ok(&[
        "restore",
        "eval",
        s(&run),
        "--data",
        s(&data),
        "--split",
        "train",
        "--last",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = |name: &str| -> f64 {
        let rows = r["rows"].as_array().unwrap();
        let row = rows.iter().find(|x| x["method"] == name).unwrap();
        row["psnr"].as_f64().unwrap()
    };
    let iou = r["mask_iou"].as_f64().unwrap();
    assert!(iou > 0.9, "mask IoU {iou}\n{out}");
    let (net, blur) = (
        row("partial-conv U-Net, true mask"),
        row("blur fill, true mask"),
    );
    assert!(
        net > blur,
        "inpainter {net} dB vs blur fill {blur} dB\n{out}"
    );
    assert!(row("damaged input") < blur);
}

#[test]
fn resume_is_exact() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 12, 32, "flickr8k");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    train(&data, &a, 2, &[]);
    train(&data, &b, 1, &[]);
    train(&data, &b, 2, &["--resume"]);
    for f in [
        "last.safetensors",
        "model.safetensors",
        "train_state.safetensors",
    ] {
        assert_eq!(
            fs::read(a.join(f)).unwrap(),
            fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let lines = |d: &Path| -> Vec<serde_json::Value> {
        fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("seconds");
                o.remove("images_per_s");
                v
            })
            .collect()
    };
    assert_eq!(lines(&a), lines(&b));
    assert_eq!(lines(&a).len(), 2);
    // Another setting than --epochs is refused, naming it.
    let mut args = vec![
        "restore",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&b),
        "--epochs",
        "3",
        "--lr",
        "1e-2",
        "--resume",
    ];
    args.extend(NET);
    let e = bad_input(&args);
    assert!(e.contains("lr"), "{e}");
    // Nothing to resume.
    let none = t.path().join("none");
    let args = [
        "restore",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&none),
        "--resume",
    ];
    let e = bad_input(&args);
    assert!(e.contains("holds no run") && !none.exists(), "{e}");
    // A new run may not overwrite one.
    let mut args = vec!["restore", "train", "--data", s(&data), "--out", s(&a)];
    args.extend(NET);
    bad_input(&args);
}

#[test]
fn restore_writes_mask_and_photo_and_refuses_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    synth(&data, 8, 48, "flickr8k");
    let run = t.path().join("run");
    train(&data, &run, 1, &[]);
    let img = data.join("Images").join("synth_00001.jpg");
    let out = t.path().join("out");
    ok(&["restore", s(&run), s(&img), "--out", s(&out)]);
    // `caption --restore`: the caption of the restored picture (= captioning the restored PNG
    // that `restore` wrote), and the photo's own caption beside it.
    let (_, captioner) = super::serve::fixture();
    let both = ok(&[
        "caption",
        s(captioner),
        s(&img),
        "--restore",
        s(&run),
        "--json",
    ]);
    let both: serde_json::Value = serde_json::from_str(both.trim()).unwrap();
    let of = |p: &Path| {
        let line = ok(&["caption", s(captioner), s(p)]);
        line.trim_end().split_once('\t').unwrap().1.to_string()
    };
    let restored_png = out.join("synth_00001.restored.png");
    assert!(
        of(&restored_png).starts_with(both["caption"].as_str().unwrap()),
        "{both}"
    );
    assert!(
        of(&img).starts_with(both["unrestored_caption"].as_str().unwrap()),
        "{both}"
    );
    let text = ok(&["caption", s(captioner), s(&img), "--restore", s(&run)]);
    assert!(
        text.lines().any(|l| l.contains("\tbefore restoration: ")),
        "{text}"
    );
    let e = bad_input(&["caption", s(captioner), s(&img), "--restore", s(&data)]);
    assert!(!e.is_empty());
    let restored = png(&out.join("synth_00001.restored.png")).to_rgb8();
    let mask = png(&out.join("synth_00001.mask.png")).to_luma8();
    assert_eq!(restored.dimensions(), (48, 48));
    assert_eq!(mask.dimensions(), (48, 48));
    // A known mask: only its pixels change.
    let orig = png(&img).to_rgb8();
    let mut known = image::GrayImage::new(48, 48);
    for x in 10..20 {
        for y in 5..9 {
            known.put_pixel(x, y, image::Luma([255]));
        }
    }
    let mask_file = t.path().join("known.png");
    known.save(&mask_file).unwrap();
    let out2 = t.path().join("out2");
    ok(&[
        "restore",
        s(&run),
        s(&img),
        "--out",
        s(&out2),
        "--mask",
        s(&mask_file),
    ]);
    let r = png(&out2.join("synth_00001.restored.png")).to_rgb8();
    for (x, y, p) in r.enumerate_pixels() {
        if known.get_pixel(x, y).0[0] == 0 {
            assert_eq!(
                p,
                orig.get_pixel(x, y),
                "({x},{y}) outside the mask changed"
            );
        }
    }
    assert_eq!(
        png(&out2.join("synth_00001.mask.png")).to_luma8().as_raw(),
        known.as_raw()
    );
    // A mask of another size, an undecodable image, a folder of images with --mask, not a run.
    let small = t.path().join("small.png");
    image::GrayImage::new(20, 48).save(&small).unwrap();
    let e = bad_input(&[
        "restore",
        s(&run),
        s(&img),
        "--out",
        s(&out2),
        "--mask",
        s(&small),
    ]);
    assert!(e.contains("20×48") && e.contains("48×48"), "{e}");
    let junk = t.path().join("junk.jpg");
    fs::write(&junk, b"not an image").unwrap();
    bad_input(&["restore", s(&run), s(&junk), "--out", s(&out2)]);
    let imgs = data.join("Images");
    bad_input(&[
        "restore",
        s(&run),
        s(&imgs),
        "--out",
        s(&out2),
        "--mask",
        s(&mask_file),
    ]);
    bad_input(&["restore", s(&data), s(&img), "--out", s(&out2)]);
    bad_input(&["restore", "eval", s(&data), "--data", s(&data)]);
}

/// `restore eval --captioner`: the clean row is `captag eval` (same captions, same BLEU and
/// CIDEr-D), the damaged row captions the images `captag damage` writes with the salted seed,
/// and the predicted-mask row captions what `captag restore` writes for those images.
#[test]
fn captioning_clean_damaged_and_restored_photos() {
    let t = tempfile::tempdir().unwrap();
    let (data, captioner) = super::serve::fixture();
    let run = t.path().join("run");
    train(data, &run, 1, &[]);
    let report = ok(&[
        "restore",
        "eval",
        s(&run),
        "--data",
        s(data),
        "--split",
        "train",
        "--limit",
        "4",
        "--captioner",
        s(captioner),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let c = &report["captioning"];
    assert_eq!(c["images"], 4, "{c}");
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let captions = |row: &serde_json::Value| -> Vec<(String, String)> {
        row["captions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["image_id"].as_str().unwrap().to_string(),
                    x["caption"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // The four images, each captioned as a file: clean, damaged by `captag damage` with
    // `restore eval`'s salted seed (EVAL_SALT in src/restore/damage.rs), and restored from that.
    let damaged = t.path().join("damaged");
    let salted = 0xE7A1_0000u64.to_string();
    ok(&[
        "--seed",
        &salted,
        "damage",
        "--data",
        s(data),
        "--out",
        s(&damaged),
    ]);
    let restored = t.path().join("restored");
    let of = |p: &Path| {
        let line = ok(&["caption", s(captioner), s(p)]);
        line.trim_end().split_once('\t').unwrap().1.to_string()
    };
    for (i, (id, clean_caption)) in captions(&rows[0]).iter().enumerate() {
        assert!(
            of(&data.join("Images").join(id)).starts_with(clean_caption.as_str()),
            "clean {id}"
        );
        let stem = Path::new(id).file_stem().unwrap().to_str().unwrap();
        let d = damaged.join("images").join(format!("{stem}.png"));
        assert!(
            of(&d).starts_with(captions(&rows[1])[i].1.as_str()),
            "damaged {id}"
        );
        ok(&["restore", s(&run), s(&d), "--out", s(&restored)]);
        let r = restored.join(format!("{stem}.restored.png"));
        assert!(
            of(&r).starts_with(captions(&rows[5])[i].1.as_str()),
            "restored {id}"
        );
    }
    // The dev split in full: the clean row scores what `captag eval` scores.
    let dev = ok(&[
        "restore",
        "eval",
        s(&run),
        "--data",
        s(data),
        "--captioner",
        s(captioner),
        "--json",
    ]);
    let dev: serde_json::Value = serde_json::from_str(dev.trim()).unwrap();
    let preds = t.path().join("preds.json");
    let e = ok(&[
        "eval",
        s(captioner),
        "--data",
        s(data),
        "--predictions",
        s(&preds),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    let clean = &dev["captioning"]["rows"][0];
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9
    };
    for n in 0..4 {
        assert!(
            close(&clean["bleu"]["bleu"][n], &e["bleu"]["bleu"][n]),
            "{clean} {e}"
        );
    }
    assert!(close(&clean["cider"], &e["cider"]) && close(&clean["rouge_l"], &e["rouge_l"]));
    let preds: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&preds).unwrap()).unwrap();
    let mut want: Vec<(String, String)> = preds
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["image_id"].as_str().unwrap().to_string(),
                p["caption"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(captions(clean), want);
    // The text table names every version.
    let text = ok(&[
        "restore",
        "eval",
        s(&run),
        "--data",
        s(data),
        "--captioner",
        s(captioner),
        "--beam",
        "2",
    ]);
    for v in [
        "clean photo",
        "damaged photo",
        "U-Net, predicted mask",
        "CIDEr-D",
    ] {
        assert!(text.contains(v), "{text}");
    }
    // A restoration run is not a captioner.
    bad_input(&[
        "restore",
        "eval",
        s(&run),
        "--data",
        s(data),
        "--captioner",
        s(&run),
    ]);
}
