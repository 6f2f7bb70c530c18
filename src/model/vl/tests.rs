//! The parity checks BLIP's and GIT's tests share: a tiny random folder saved by
//! `notebooks/make_blip_git_fixtures.py` loaded as a user's download, against the
//! `transformers` outputs stored beside it (preprocessing, image tokens, logits, greedy and
//! beam-3 captions).
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::clip::tests::{close, expected, fixture};

/// A row of ids padded with -1, without the padding and the final `[SEP]`.
pub(crate) fn words(t: &Tensor, row: i64, end: i64) -> Vec<i64> {
    let v = Vec::<i64>::try_from(t.get(row).to_kind(Kind::Int64)).unwrap();
    v.into_iter()
        .filter(|&i| i >= 0)
        .take_while(|&i| i != end)
        .collect()
}

pub(crate) fn parity(name: &str, prompt: Option<&str>) -> VlCaptioner {
    let dir = fixture(name);
    let want = expected(&dir);
    let m = VlCaptioner::load(&dir, Device::Cpu).unwrap();

    // The PIL image processor's pixels from captag's decoder and resampling. picture.png
    // (40×30) is exact; small.png (20×36, wider and shorter at once) is resampled by Pillow 13
    // vertical pass first, by captag horizontal first, so a few pixels differ by a few levels
    // in 255 (docs/vision-language.md).
    let imgs: Vec<RgbImage> = ["picture.png", "small.png"]
        .iter()
        .map(|f| crate::data::image::decode_rgb(&dir.join(f)).unwrap())
        .collect();
    let px = m.pixels(&imgs);
    close(
        &format!("{name} pixel_values[0]"),
        &px.get(0),
        &want["pixel_values"].get(0),
    );
    let d = (px.get(1) - want["pixel_values"].get(1)).abs();
    let (max, mean) = (
        d.max().double_value(&[]),
        d.mean(Kind::Float).double_value(&[]),
    );
    eprintln!("{name} pixel_values[1]: max abs diff {max:.3e}, mean {mean:.3e}");
    assert!(
        max < 8.0 / 255.0 / 0.26 && mean < 2e-3,
        "{name} small.png: {max} {mean}"
    );

    let pixels = &want["pixel_values"];
    let memory = tch::no_grad(|| m.model.image_memory(pixels, false));
    close(
        &format!("{name} image_embeds"),
        &memory,
        &want["image_embeds"],
    );

    // Teacher-forced logits of the caption positions (padded positions are not compared).
    let mask = &want["attention_mask"];
    let logits = tch::no_grad(|| m.model.logits_t(&memory, &want["input_ids"], mask, false));
    let all = &want["logits"];
    let t = logits.size()[1];
    let text = all.narrow(1, all.size()[1] - t, t);
    let keep = mask.unsqueeze(-1).to_kind(Kind::Float);
    close(
        &format!("{name} logits"),
        &(&logits * &keep),
        &(text * &keep),
    );

    let end = m.model.end_token();
    let prefix = m.prefix(None);
    for (key, d) in [
        ("greedy", Decoding::Greedy { max_len: 12 }),
        (
            "beam3",
            Decoding::Beam {
                width: 3,
                max_len: 12,
                alpha: 1.0,
            },
        ),
    ] {
        let got = m.decode(pixels, &prefix, &d).unwrap();
        for (i, hs) in got.iter().enumerate() {
            assert_eq!(
                hs[0].tokens,
                words(&want[key], i as i64, end),
                "{name} {key} image {i}"
            );
        }
    }
    if let Some(p) = prompt {
        let prefix = m.prefix(Some(p));
        let ids = Vec::<i64>::try_from(want["prompt_ids"].get(0)).unwrap();
        assert_eq!(
            prefix.0,
            [vec![m.model.start_token()], ids[1..].to_vec()].concat()
        );
        let got = m
            .decode(pixels, &prefix, &Decoding::Greedy { max_len: 12 })
            .unwrap();
        for (i, hs) in got.iter().enumerate() {
            assert_eq!(
                hs[0].tokens,
                words(&want["prompt_greedy"], i as i64, end),
                "{name} prompt {i}"
            );
        }
    }
    m
}

/// The decoded text of the greedy captions equals `transformers`' `batch_decode`.
pub(crate) fn texts(name: &str, m: &VlCaptioner) {
    let dir = fixture(name);
    let want = expected(&dir);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("captions.json")).unwrap()).unwrap();
    let prefix = m.prefix(None);
    let got = m
        .decode(
            &want["pixel_values"],
            &prefix,
            &Decoding::Greedy { max_len: 12 },
        )
        .unwrap();
    for (i, hs) in got.iter().enumerate() {
        assert_eq!(
            m.text(&prefix, &hs[0].tokens),
            json["greedy"][i].as_str().unwrap()
        );
    }
}

#[test]
fn a_folder_of_another_model_is_one_clear_error() {
    let e = VlCaptioner::load(&fixture("gpt2"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not blip or git"), "{e}");
    assert!(!e.contains('\n'));
    let e = VlCaptioner::load(Path::new("/nonexistent/blip"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");
}

/// SCST scores drawn captions by teacher forcing (`caption_logp`); that must be the probability
/// the cached decoding walk drew them with (`draw`: the sum of the chosen tokens' log-probs,
/// `[SEP]` included when finished), with a prompt and cut captions too, for BLIP and GIT.
#[test]
fn teacher_forced_caption_logp_is_the_drawn_captions_logp() {
    for (name, prompt) in [("blip", Some("a picture of")), ("git", None)] {
        let dir = fixture(name);
        let m = VlCaptioner::load(&dir, Device::Cpu).unwrap();
        let pixels = &expected(&dir)["pixel_values"]; // (2, 3, S, S)
        let prefix = m.prefix(prompt);
        let how = Draw::Sample(crate::model::decoding::Nucleus {
            max_len: 5,
            top_p: 1.0,
            temperature: 1.0,
            samples: 3,
            seed: 11,
        });
        let drawn = m.draw(pixels, &prefix, how).unwrap();
        assert_eq!(drawn.len(), 6);
        let owner = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1]);
        let memory = m.model.image_memory(pixels, false).index_select(0, &owner);
        let refs: Vec<&Drawn> = drawn.iter().collect();
        let got = m.caption_logp(&memory, &prefix, &refs);
        assert!(got.requires_grad(), "{name}: no gradient");
        for (i, d) in drawn.iter().enumerate() {
            let lp = got.double_value(&[i as i64]);
            assert!(
                (lp - d.hyp.logp).abs() < 1e-4 * (1.0 + d.hyp.logp.abs()),
                "{name} caption {i} ({:?}, finished {}): {lp} vs {}",
                d.hyp.tokens,
                d.finished,
                d.hyp.logp
            );
        }
    }
}
