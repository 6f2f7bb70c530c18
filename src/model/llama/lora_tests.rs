//! A `peft` adapter (`tests/fixtures/hf/llama_lora/`, written by
//! `notebooks/make_lora_fixtures.py` with lora_B random so the adapter matters) on the tiny Llama
//! folder gives `PeftModel`'s logits, wrapped (training's form) and merged (generation's).
use tch::{Device, Tensor};

use super::*;
use crate::model::clip::tests::{close, expected, fixture};
use crate::model::llama::Llama;

fn logits(l: &Llama, ids: &Tensor) -> Tensor {
    tch::no_grad(|| l.model.forward_t(ids, None, false))
        .unwrap()
        .0
}

#[test]
fn peft_adapter_gives_peft_logits_wrapped_and_merged() {
    let (base, dir) = (fixture("llama"), fixture("llama_lora"));
    let want = expected(&dir);
    let ids = &want["input_ids"];
    let cfg = LoraConfig::read(&dir).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.scale()), (4, 8.0, 2.0));

    let mut l = Llama::load(&base, Device::Cpu).unwrap();
    let plain = logits(&l, ids);
    let mut vs = nn::VarStore::new(Device::Cpu);
    l.model.add_lora(&vs.root(), &cfg).unwrap();
    // A fresh adapter (B = 0) changes nothing.
    assert_eq!(
        f64::try_from((logits(&l, ids) - &plain).abs().max()).unwrap(),
        0.0
    );
    load_adapter(&dir, &mut vs).unwrap();
    close("lora wrapped logits", &logits(&l, ids), &want["logits"]);
    assert!(f64::try_from((&want["logits"] - &plain).abs().max()).unwrap() > 1.0);

    let mut m = Llama::load(&base, Device::Cpu).unwrap();
    merge_into(&mut m.vs, 2, &dir).unwrap();
    close("lora merged logits", &logits(&m, ids), &want["logits"]);
}

#[test]
fn adapters_captag_cannot_run_are_one_clear_error() {
    let src = fixture("llama_lora");
    let d = tempfile::tempdir().unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join(CONFIG_FILE)).unwrap()).unwrap();
    let msg = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = cfg.clone();
        edit(&mut c);
        std::fs::write(d.path().join(CONFIG_FILE), c.to_string()).unwrap();
        let e = LoraConfig::read(d.path()).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    assert!(msg(&|c| c["use_dora"] = true.into()).contains("use_dora"));
    assert!(
        msg(&|c| c["target_modules"] = serde_json::json!(["embed_tokens"]))
            .contains("embed_tokens")
    );
    assert!(msg(&|c| c["peft_type"] = "IA3".into()).contains("IA3"));
    // An adapter of another shape is refused, not broadcast.
    let mut c = cfg.clone();
    c["r"] = 2.into();
    std::fs::write(d.path().join(CONFIG_FILE), c.to_string()).unwrap();
    std::fs::copy(src.join(WEIGHTS_FILE), d.path().join(WEIGHTS_FILE)).unwrap();
    let mut m = Llama::load(&fixture("llama"), Device::Cpu).unwrap();
    let e = merge_into(&mut m.vs, 2, d.path()).unwrap_err().to_string();
    assert!(e.contains("an adapter for another model"), "{e}");
}
