//! Tests of the synthetic captions: the grounded-truth reader ([`super::super::truth`]) reads each
//! caption back into claims and every claim is checked against the scene it was written for.
use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::super::scene::{random_scene, Background, Colour, Object, Scene, Shape, Size};
use super::*;

/// Checks every claim in `caption` against `scene` and its wording; the error says what is wrong.
pub(in crate::data::synth) fn check_caption(
    scene: &Scene,
    caption: &str,
) -> std::result::Result<(), String> {
    let v = super::super::truth::judge(scene, caption);
    if v.fully_true() && v.grammar.is_empty() {
        Ok(())
    } else {
        Err(format!("{:?} {:?}", v.false_claims, v.grammar))
    }
}

fn scenes(n: usize, seed: u64) -> Vec<Scene> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| random_scene(&mut rng, [32, 96, 128][i % 3], true))
        .collect()
}

#[test]
fn every_caption_is_true_for_its_scene() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut relations = 0;
    for scene in scenes(3000, 2) {
        let caps = scene_captions(&scene, &mut rng);
        assert_eq!(caps.len(), CAPTIONS_PER_IMAGE, "{scene:?}");
        let distinct: BTreeSet<&String> = caps.iter().collect();
        assert_eq!(distinct.len(), CAPTIONS_PER_IMAGE, "{caps:?}");
        for c in &caps {
            if let Err(e) = check_caption(&scene, c) {
                panic!("false caption {c:?}: {e}\nscene {scene:?}");
            }
            relations += usize::from(c.contains(" of ") && !c.starts_with("a picture of"));
        }
    }
    assert!(relations > 500, "too few relation captions: {relations}");
}

#[test]
fn the_checker_catches_false_captions() {
    let o = |colour, shape, size, cx, cy| Object {
        shape,
        colour,
        size,
        cx,
        cy,
        half: 8.0,
    };
    let scene = Scene {
        size: 96,
        background: Background::Gray,
        objects: vec![
            o(Colour::Red, Shape::Circle, Size::Small, 20.0, 48.0),
            o(Colour::Red, Shape::Circle, Size::Large, 48.0, 15.0),
            o(Colour::Blue, Shape::Square, Size::Small, 75.0, 50.0),
        ],
    };
    for good in [
        "there are two red circles and a blue square",
        "a small red circle to the left of a blue square",
        "from left to right a small red circle then a large red circle then a blue square",
        "a blue square to the right of a small red circle",
        "an image with a blue square on a gray background",
        "three shapes showing two red circles and one blue square",
    ] {
        assert_eq!(check_caption(&scene, good), Ok(()), "{good}");
    }
    for bad in [
        "there is a red circle and a blue square and a red square",
        "a single red circle",
        "three red circles",
        "a blue square to the left of a red circle",
        "a large red circle below a blue square",
        "a image with a blue square",
        "an image with a blue square on a beige background",
        "two shapes showing two red circles",
        "two red circles one above the other",
        "from left to right a blue square then a red circle",
        "a blue square in the top left",
    ] {
        assert!(check_caption(&scene, bad).is_err(), "{bad}");
    }
}

#[test]
fn vocabulary_is_small() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut vocab = BTreeSet::new();
    for scene in scenes(3000, 4) {
        for c in scene_captions(&scene, &mut rng) {
            vocab.extend(
                c.split_whitespace()
                    .map(|w| w.trim_end_matches(',').to_string()),
            );
        }
    }
    println!(
        "synthetic caption vocabulary: {} words: {vocab:?}",
        vocab.len()
    );
    assert!(vocab.len() < 80, "{}", vocab.len());
}

#[test]
fn instagram_captions_tag_the_content() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut empty, mut multiline, mut mentions, mut capitalized) = (0, 0, 0, 0);
    let all = scenes(2000, 6);
    for scene in &all {
        let cap = instagram_caption(scene, &mut rng);
        if cap.is_empty() {
            empty += 1;
            continue;
        }
        multiline += usize::from(cap.contains('\n'));
        mentions += usize::from(cap.contains('@'));
        let tags: BTreeSet<String> = cap
            .split_whitespace()
            .filter_map(|w| w.strip_prefix('#'))
            .map(|w| {
                capitalized += usize::from(w.starts_with(|c: char| c.is_uppercase()));
                w.trim_end_matches(['.', '!', ',']).to_lowercase()
            })
            .collect();
        for o in &scene.objects {
            assert!(
                tags.contains(o.colour.word()) && tags.contains(o.shape.word()),
                "{cap}"
            );
        }
        for t in &tags {
            let known = scene
                .objects
                .iter()
                .any(|o| o.colour.word() == t || o.shape.word() == t)
                || GENERIC_TAGS.contains(&t.as_str());
            assert!(known, "tag {t} in {cap}");
        }
    }
    assert!((20..=120).contains(&empty), "{empty}");
    assert!(multiline > 30 && mentions > 200 && capitalized > 200);
}
