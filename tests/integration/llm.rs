//! `captag llm`: chat generation, LoRA training with exact resume and a `peft`-format adapter,
//! merging, pairs from Instagram captions, and evaluation — on the tiny Llama folder
//! (tests/fixtures/hf/llama, with the word-level tokenizer and the pairs file that
//! notebooks/make_lora_fixtures.py writes).
use std::path::{Path, PathBuf};

use crate::common::{bad_input, ok, s};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn train(out: &Path, epochs: &str) -> String {
    let (model, pairs) = (
        fixtures().join("hf/llama"),
        fixtures().join("llm/pairs.jsonl"),
    );
    ok(&[
        "llm",
        "train",
        "--model",
        s(&model),
        "--data",
        s(&pairs),
        "--out",
        s(out),
        "--epochs",
        epochs,
        "--lr",
        "0.01",
        "--batch-size",
        "3",
        "--lora-rank",
        "4",
        "--lora-targets",
        "q_proj,v_proj,up_proj",
    ])
}

#[test]
fn llm_train_resumes_exactly_and_writes_a_peft_adapter() {
    let d = tempfile::tempdir().unwrap();
    let (straight, resumed) = (d.path().join("straight"), d.path().join("resumed"));
    train(&straight, "3");
    train(&resumed, "1");
    train(&resumed, "3");
    let bytes = |dir: &Path| std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    assert_eq!(
        bytes(&straight),
        bytes(&resumed),
        "1 + 2 epochs differ from 3 at once"
    );
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(straight.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "up_proj"])
    );
    let names = String::from_utf8_lossy(&bytes(&straight)).into_owned();
    assert!(names.contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
    assert!(names.contains("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"));
    let metrics = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 3);
    assert!(
        losses[2] < losses[0],
        "the response loss should fall: {losses:?}"
    );

    // Held-out perplexity: the adapter lowers it on pairs like its training pairs.
    let (model, pairs) = (
        fixtures().join("hf/llama"),
        fixtures().join("llm/pairs.jsonl"),
    );
    let ppl = |extra: &[&str]| {
        let mut args = vec![
            "llm",
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&pairs),
            "--generate",
            "2",
            "--max-new-tokens",
            "6",
        ];
        args.extend_from_slice(extra);
        let out = ok(&args);
        let last = out.lines().last().unwrap().to_string();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(v["pairs"], 3);
        assert!(v["distinct_2"].as_f64().is_some());
        v["perplexity"].as_f64().unwrap()
    };
    let (base, tuned) = (ppl(&[]), ppl(&["--adapter", s(&straight)]));
    assert!(
        tuned < base,
        "LoRA perplexity {tuned} should be below the base's {base}"
    );

    // Merging gives a folder whose plain generation equals generation with the adapter.
    let merged = d.path().join("merged");
    ok(&[
        "llm",
        "merge",
        "--model",
        s(&model),
        "--adapter",
        s(&straight),
        "--out",
        s(&merged),
    ]);
    let gen = |m: &Path, extra: &[&str]| {
        let mut args = vec![
            "llm",
            "generate",
            "--model",
            s(m),
            "--prompt",
            "write a caption for my photo sunset beach",
            "--max-new-tokens",
            "8",
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let with_adapter = gen(&model, &["--adapter", s(&straight)]);
    assert_eq!(gen(&merged, &[]), with_adapter);
    assert_ne!(gen(&model, &[]), with_adapter);
    // Beam search and sampling run through the same cached steps.
    gen(&model, &["--beam", "3"]);
    gen(&model, &["--top-p", "0.9"]);
}

#[test]
fn llm_bad_inputs_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("hf/llama");
    let e = bad_input(&["llm", "generate", "--model", s(d.path()), "--prompt", "hi"]);
    assert!(e.contains("config.json"), "{e}");
    let e = bad_input(&[
        "llm",
        "generate",
        "--model",
        s(&model),
        "--adapter",
        s(d.path()),
        "--prompt",
        "hi",
    ]);
    assert!(e.contains("adapter_config.json"), "{e}");
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\"}\n").unwrap();
    let e = bad_input(&[
        "llm",
        "train",
        "--model",
        s(&model),
        "--data",
        s(&bad),
        "--out",
        s(&d.path().join("r")),
    ]);
    assert!(e.contains("bad.jsonl:1"), "{e}");
    let e = bad_input(&[
        "llm",
        "train",
        "--model",
        s(&model),
        "--data",
        s(&bad),
        "--out",
        s(&d.path().join("r2")),
        "--lora-targets",
        "lm_head",
    ]);
    assert!(e.contains("lm_head"), "{e}");
    let e = bad_input(&[
        "llm",
        "pairs",
        "--data",
        s(d.path()),
        "--out",
        s(&d.path().join("p.jsonl")),
    ]);
    assert!(e.contains("not an Instagram captions folder"), "{e}");
    // A 16-bit precision is CUDA-only: refused on the CPU before anything is loaded or written.
    let e = bad_input(&[
        "llm",
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "hi",
        "--precision",
        "bf16",
    ]);
    assert!(e.contains("--precision bf16 needs a CUDA device"), "{e}");
    let pairs = fixtures().join("llm/pairs.jsonl");
    let e = bad_input(&[
        "llm",
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&pairs),
        "--precision",
        "fp16",
    ]);
    assert!(e.contains("--precision fp16 needs a CUDA device"), "{e}");
    let run = d.path().join("r16");
    let e = bad_input(&[
        "llm",
        "train",
        "--model",
        s(&model),
        "--data",
        s(&pairs),
        "--out",
        s(&run),
        "--precision",
        "bf16",
    ]);
    assert!(e.contains("--precision bf16 needs a CUDA device"), "{e}");
    assert!(!run.exists(), "nothing written");
}

#[test]
fn llm_pairs_keep_the_caption_and_hold_out_by_post() {
    let d = tempfile::tempdir().unwrap();
    let csv = "Sr No,Image File,Caption\n1,img/insta1,\"Sunday brunch 🥂\n#Brunch #NYC @anna\"\n2,img/insta2,\n3,img/insta3,Beach day ☀️ #beach\n";
    std::fs::write(d.path().join("captions_csv.csv"), csv).unwrap();
    let out = d.path().join("pairs.jsonl");
    let said = ok(&[
        "llm",
        "pairs",
        "--data",
        s(d.path()),
        "--out",
        s(&out),
        "--test-share",
        "0.5",
    ]);
    assert!(said.contains("2 pairs"), "{said}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["response"], "Sunday brunch 🥂\n#Brunch #NYC @anna");
    assert!(lines[0]["prompt"]
        .as_str()
        .unwrap()
        .contains("#brunch #nyc"));
    assert_eq!(lines[0]["id"], "img/insta1");
    let again = d.path().join("again.jsonl");
    ok(&[
        "llm",
        "pairs",
        "--data",
        s(d.path()),
        "--out",
        s(&again),
        "--test-share",
        "0.5",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn caption_with_llm_prints_the_post_the_llm_writes() {
    let d = tempfile::tempdir().unwrap();
    let (data, run) = (d.path().join("data"), d.path().join("run"));
    crate::common::synth(&data, 12, 32, "flickr8k");
    let args = crate::common::tiny_train_args(&data, &run, 1, "lstm", "32");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args);
    let image = std::fs::read_dir(data.join("Images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let model = fixtures().join("hf/llama");
    let lora = fixtures().join("hf/llama_lora");
    let post = |extra: &[&str]| {
        let mut a = vec!["caption", s(&run), s(&image), "--llm", s(&model), "--json"];
        a.extend_from_slice(extra);
        let out = ok(&a);
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        v["social"].as_str().unwrap().to_string()
    };
    let (plain, adapted) = (post(&[]), post(&["--adapter", s(&lora)]));
    assert_ne!(plain, adapted, "the adapter should change the post");
    let e = bad_input(&["caption", s(&run), s(&image), "--llm", s(d.path())]);
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn serve_with_llm_answers_with_the_post_and_stores_its_rating() {
    use crate::serve::{an_image, caption_raw, fixture, http, Server};
    let d = tempfile::tempdir().unwrap();
    let (_, run) = fixture();
    let (model, lora) = (
        fixtures().join("hf/llama"),
        fixtures().join("hf/llama_lora"),
    );
    let img = an_image();
    let bytes = std::fs::read(&img).unwrap();
    let db = d.path().join("db.sqlite");
    let srv = Server::start(&db, &["--llm", s(&model), "--timeout-s", "120"], &[]);
    let (st, v) = caption_raw(&srv.addr, &bytes, "?beam=3");
    assert_eq!(st, 200, "{v}");
    let post = v["llm_post"]
        .as_str()
        .expect("an llm_post field")
        .to_string();
    assert!(!post.is_empty(), "{v}");
    // The plain caption stays beside it, and the post is the one `caption --llm` writes.
    assert_eq!(v["style"], "plain", "{v}");
    assert_eq!(v["text"], v["caption"], "{v}");
    let cli = ok(&[
        "caption",
        s(run),
        s(&img),
        "--beam",
        "3",
        "--llm",
        s(&model),
        "--json",
    ]);
    let cli: serde_json::Value = serde_json::from_str(cli.lines().next().unwrap()).unwrap();
    assert_eq!(cli["caption"], v["caption"], "{cli}");
    assert_eq!(cli["llm_post"].as_str(), Some(post.as_str()), "{cli}");
    assert_eq!(cli["social"].as_str(), Some(post.as_str()), "{cli}");
    // Rated and edited like the captions, under the style "llm".
    let sha = v["image_sha256"].as_str().unwrap();
    let rating = serde_json::json!({"image_sha256": sha, "caption": post, "style": "llm",
        "rating": 4, "edited": "Sunny shapes ☀️ #shapes"});
    let (st, r) = http(
        &srv.addr,
        "POST",
        "/api/ratings",
        "application/json",
        rating.to_string().as_bytes(),
    );
    assert_eq!(st, 200, "{r}");
    let (st, e) = http(&srv.addr, "GET", "/api/ratings/export", "text/plain", b"");
    assert_eq!(st, 200);
    let rows = e["ratings"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{e}");
    assert_eq!(rows[0]["style"], "llm");
    assert_eq!(rows[0]["caption"].as_str(), Some(post.as_str()));
    assert_eq!(rows[0]["edited"], "Sunny shapes ☀️ #shapes");
    assert!(srv.terminate().success());
    // The adapter is applied: another post for the same photo.
    let srv = Server::start(
        &d.path().join("db2.sqlite"),
        &[
            "--llm",
            s(&model),
            "--adapter",
            s(&lora),
            "--timeout-s",
            "120",
        ],
        &[],
    );
    let (st, w) = caption_raw(&srv.addr, &bytes, "?beam=3");
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["caption"], v["caption"]);
    assert_ne!(w["llm_post"].as_str(), Some(post.as_str()), "{w}");
    drop(srv);
    // Without --llm the answer has no post.
    let srv = Server::start(&d.path().join("db3.sqlite"), &[], &[]);
    let (_, p) = caption_raw(&srv.addr, &bytes, "?beam=3");
    assert!(p.get("llm_post").is_none(), "{p}");
}

#[test]
fn serve_refuses_a_bad_llm_folder_before_listening() {
    let d = tempfile::tempdir().unwrap();
    let (_, run) = crate::serve::fixture();
    let model = fixtures().join("hf/llama");
    let db = d.path().join("db.sqlite");
    let base = ["serve", s(run), "--addr", "127.0.0.1:0", "--db", s(&db)];
    let mut args = base.to_vec();
    args.extend(["--llm", s(d.path())]);
    let e = bad_input(&args);
    assert!(e.contains("config.json"), "{e}");
    let mut args = base.to_vec();
    args.extend(["--llm", s(&model), "--adapter", s(d.path())]);
    let e = bad_input(&args);
    assert!(e.contains("adapter_config.json"), "{e}");
}
