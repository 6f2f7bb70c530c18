//! LoRA training in bf16/fp16 (`llm train --precision`, CUDA-only on the command line) run on
//! the CPU, whose autocast has the same switches: the base weights are 16-bit, the adapter and
//! Adam's moments float32, fp16 keeps its loss scale for resume, and a run does not resume in
//! another precision.
use super::*;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn settings(precision: Precision) -> LoraTrain {
    let data = fixture("llm/pairs.jsonl");
    LoraTrain {
        model: fixture("hf/llama"),
        data_fingerprint: crate::fsio::Fingerprint::of_file(&data).unwrap(),
        data,
        rank: 4,
        alpha: 8.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
        lr: 0.01,
        batch_size: 4,
        max_len: 64,
        seed: 1,
        precision,
    }
}

fn kinds(path: &Path) -> Vec<(String, Kind)> {
    crate::model::weights::read_tensors(path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.kind()))
        .collect()
}

#[test]
fn sixteen_bit_training_keeps_the_adapter_and_moments_float32() {
    let d = tempfile::tempdir().unwrap();
    let mut fp32 = vec![];
    train(
        settings(Precision::Fp32),
        1,
        &d.path().join("fp32"),
        Device::Cpu,
        |r| fp32.push(r.loss),
    )
    .unwrap();
    for p in [Precision::Bf16, Precision::Fp16] {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let mut losses = vec![];
        train(settings(p), 2, &out, Device::Cpu, |r| losses.push(r.loss)).unwrap();
        assert!(losses.iter().all(|l| l.is_finite()), "{p:?}: {losses:?}");
        assert!(losses[1] < losses[0], "{p:?}: {losses:?}");
        // The forward pass really ran in 16 bits: near float32's loss, not equal to it.
        let gap = (losses[0] - fp32[0]).abs();
        assert!(
            gap > 0.0 && gap < 0.05 * fp32[0],
            "{p:?}: {} vs fp32 {}",
            losses[0],
            fp32[0]
        );
        let adapter = kinds(&out.join(lora::WEIGHTS_FILE));
        assert!(!adapter.is_empty());
        assert!(
            adapter.iter().all(|(_, k)| *k == Kind::Float),
            "{adapter:?}"
        );
        let moments = kinds(&out.join(run::OPTIMIZER));
        assert!(
            moments.iter().all(|(_, k)| *k == Kind::Float),
            "{moments:?}"
        );
        let state: TrainState = run::read_json(&out.join(run::STATE)).unwrap();
        assert_eq!(state.loss_scale.is_some(), p == Precision::Fp16, "{p:?}");
        let saved: LoraTrain = run::read_json(&out.join(SETTINGS)).unwrap();
        assert_eq!(saved.precision, p);
        // Resuming in another precision is refused, naming it.
        let e = train(settings(Precision::Fp32), 3, &out, Device::Cpu, |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("precision"), "{e}");
    }
}

#[test]
fn runs_written_before_the_flag_read_as_fp32() {
    let mut v = serde_json::to_value(settings(Precision::Fp32)).unwrap();
    v.as_object_mut().unwrap().remove("precision");
    let old: LoraTrain = serde_json::from_value(v).unwrap();
    assert_eq!(old, settings(Precision::Fp32));
}
