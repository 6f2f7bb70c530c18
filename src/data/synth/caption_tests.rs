//! Tests of the synthetic captions: a small parser reads each caption back into claims (noun
//! phrases with counts, relations between them, orderings, regions, background) and every claim
//! is checked against the scene it was written for.
use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::super::scene::{random_scene, Background, Colour, Object, Relation, Scene, Shape, Size};
use super::*;

/// A noun phrase read back from a caption: "two small red circles", "a blue square".
#[derive(Debug)]
struct Np {
    exact: Option<usize>,
    size: Option<Size>,
    colour: Colour,
    shape: Shape,
    plural: bool,
    start: usize,
    end: usize,
}

fn parse_size(w: &str) -> Option<Size> {
    [Size::Small, Size::Large]
        .into_iter()
        .find(|s| s.words().contains(&w))
}

fn parse_shape(w: &str) -> Option<(Shape, bool)> {
    Shape::ALL.into_iter().find_map(|s| {
        if s.word() == w {
            Some((s, false))
        } else if s.plural() == w {
            Some((s, true))
        } else {
            None
        }
    })
}

/// Noun phrases at `[a|an|one|two|three|a single] [size] colour shape`.
fn noun_phrases(t: &[&str]) -> Vec<Np> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let (exact, mut j) = match t[i] {
            "a" | "an" if t.get(i + 1) == Some(&"single") => (Some(1), i + 2),
            "a" | "an" => (None, i + 1),
            "one" => (Some(1), i + 1),
            "two" => (Some(2), i + 1),
            "three" => (Some(3), i + 1),
            _ => {
                i += 1;
                continue;
            }
        };
        let size = t.get(j).and_then(|w| parse_size(w));
        if size.is_some() {
            j += 1;
        }
        let colour = t
            .get(j)
            .and_then(|w| Colour::ALL.into_iter().find(|c| c.word() == *w));
        let shape = t.get(j + 1).and_then(|w| parse_shape(w));
        match (colour, shape) {
            (Some(colour), Some((shape, plural))) => {
                out.push(Np {
                    exact,
                    size,
                    colour,
                    shape,
                    plural,
                    start: i,
                    end: j + 2,
                });
                i = j + 2;
            }
            _ => i += 1,
        }
    }
    out
}

fn matching<'a>(scene: &'a Scene, np: &Np) -> Vec<&'a Object> {
    scene
        .objects
        .iter()
        .filter(|o| {
            o.colour == np.colour && o.shape == np.shape && np.size.is_none_or(|s| s == o.size)
        })
        .collect()
}

fn exists_pair(scene: &Scene, a: &Np, b: &Np, f: impl Fn(&Object, &Object) -> bool) -> bool {
    let (ma, mb) = (matching(scene, a), matching(scene, b));
    ma.iter()
        .any(|x| mb.iter().any(|y| !std::ptr::eq(*x, *y) && f(x, y)))
}

fn parse_relation(words: &str) -> Option<Relation> {
    match words {
        "to the left of" => Some(Relation::LeftOf),
        "to the right of" => Some(Relation::RightOf),
        "above" => Some(Relation::Above),
        "below" => Some(Relation::Below),
        "next to" => Some(Relation::NextTo),
        _ => None,
    }
}

/// Checks every claim in `caption` against `scene`; the error says which claim is false.
pub(in crate::data::synth) fn check_caption(
    scene: &Scene,
    caption: &str,
) -> std::result::Result<(), String> {
    let t: Vec<&str> = caption
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect();
    let nps = noun_phrases(&t);
    if nps.is_empty() {
        return Err("no noun phrase".into());
    }
    for (i, w) in t.iter().enumerate() {
        let next_vowel = t
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeiou".contains(c));
        if (*w == "a" && next_vowel) || (*w == "an" && !next_vowel) {
            return Err(format!("article '{w}' before '{:?}'", t.get(i + 1)));
        }
        if *w == "background" {
            let bg = t.get(i.wrapping_sub(1)).copied().unwrap_or("");
            if bg != scene.background.word() {
                return Err(format!("background {bg}"));
            }
        }
        if *w == "shapes" {
            let n = match t.get(i.wrapping_sub(1)).copied() {
                Some("two") => 2,
                Some("three") => 3,
                other => return Err(format!("count word {other:?} before shapes")),
            };
            if n != scene.objects.len() {
                return Err(format!("{n} shapes"));
            }
        }
    }
    for np in &nps {
        let m = matching(scene, np);
        if m.is_empty() {
            return Err(format!("no object for {np:?}"));
        }
        if np.exact.is_some_and(|n| n != m.len()) {
            return Err(format!("count of {np:?} is {}", m.len()));
        }
        if np.plural != np.exact.is_some_and(|n| n > 1) {
            return Err(format!("number agreement in {np:?}"));
        }
    }
    let size = scene.size;
    let horizontal = caption.starts_with("from left to right");
    let ordered = horizontal || caption.starts_with("from top to bottom");
    let mut previous: Option<Relation> = None;
    for k in 0..nps.len() {
        let after_end = nps.get(k + 1).map_or(t.len(), |n| n.start);
        let between = t[nps[k].end..after_end].join(" ");
        if let Some(next) = nps.get(k + 1) {
            if let Some(r) = parse_relation(&between) {
                if !exists_pair(scene, &nps[k], next, |a, b| r.holds(a, b, size)) {
                    return Err(format!("relation {r:?} between {k} and {}", k + 1));
                }
                previous = Some(r);
                continue;
            }
            if between == "then" {
                if !ordered
                    || !exists_pair(scene, &nps[k], next, |a, b| {
                        clearly_before(a, b, size, horizontal)
                    })
                {
                    return Err(format!("order between {k} and {}", k + 1));
                }
                continue;
            }
            // "A above B and C": A above C as well.
            if between == "and" {
                if let (Some(r), Some(first)) = (previous, k.checked_sub(1)) {
                    if !exists_pair(scene, &nps[first], next, |a, b| r.holds(a, b, size)) {
                        return Err(format!("relation {r:?} between {first} and {}", k + 1));
                    }
                }
                continue;
            }
        }
        let m = matching(scene, &nps[k]);
        let twins = |rs: &[Relation]| {
            m.len() == 2
                && rs
                    .iter()
                    .any(|r| r.holds(m[0], m[1], size) || r.holds(m[1], m[0], size))
        };
        let ok = match between.as_str() {
            "side by side" => twins(&[Relation::LeftOf]),
            "one above the other" => twins(&[Relation::Above]),
            "next to each other" => twins(&[Relation::NextTo]),
            w if w.starts_with("in the ")
                || w.starts_with("at the ")
                || w.starts_with("on the ") =>
            {
                m.iter().any(|o| region(o, size) == Some(w))
            }
            _ => true,
        };
        if !ok {
            return Err(format!("'{between}' after {k}"));
        }
    }
    Ok(())
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
