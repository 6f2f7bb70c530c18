//! Grounded truth of a caption about a synthetic scene. BLEU rewards the templated wording; the
//! synthetic scenes are known exactly, so a caption can instead be read back into the claims it
//! makes (noun phrases with counts, sizes and colours, relations between them, left-to-right or
//! top-to-bottom orderings, regions, the background, the number of shapes) and each claim checked
//! against the scene. `eval`, `compare` and `demo` report the share of fully true captions and of
//! true claims on datasets written by `captag synth` (docs/ARCHITECTURE.md, "Grounded truth").
//!
//! The reader knows the generator's vocabulary (see [`super::caption`]); phrases it does not
//! recognise make no claim. A caption that names no shape at all counts as one false claim, so
//! "a picture of a gray background" is not "fully true".
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::scene::{clearly_before, region, Colour, Object, Relation, Scene, Shape, Size};
use super::{scene_for, SynthConfig, SynthLayout, MARKER};
use crate::error::{Error, Result};

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

/// What one caption claims about its scene, and how much of it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Claims about the picture the caption makes.
    pub claims: usize,
    /// Of those, the ones that hold.
    pub held: usize,
    /// Wording faults that are not claims ("a" before a vowel, "two red circle").
    pub grammar: Vec<String>,
    /// What is false, one line per claim that does not hold.
    pub false_claims: Vec<String>,
}

impl Verdict {
    /// Every claim holds (and there is at least one).
    pub fn fully_true(&self) -> bool {
        self.claims > 0 && self.held == self.claims
    }

    fn claim(&mut self, holds: bool, what: impl FnOnce() -> String) {
        self.claims += 1;
        if holds {
            self.held += 1;
        } else {
            self.false_claims.push(what());
        }
    }
}

/// The claims single words make — "X background", "two/three shapes" — and article grammar.
fn word_claims(scene: &Scene, t: &[&str], v: &mut Verdict) {
    for (i, w) in t.iter().enumerate() {
        let next_vowel = t
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeiou".contains(c));
        if (*w == "a" && next_vowel) || (*w == "an" && !next_vowel) {
            v.grammar
                .push(format!("article '{w}' before {:?}", t.get(i + 1)));
        }
        if *w == "background" {
            let bg = t.get(i.wrapping_sub(1)).copied().unwrap_or("");
            let actual = scene.background.word();
            v.claim(bg == actual, || {
                format!("'{bg} background': the background is {actual}")
            });
        }
        if *w == "shapes" {
            let n = match t.get(i.wrapping_sub(1)).copied() {
                Some("two") => Some(2),
                Some("three") => Some(3),
                _ => None,
            };
            let prev = t.get(i.wrapping_sub(1)).copied().unwrap_or("");
            let actual = scene.objects.len();
            v.claim(n == Some(actual), || {
                format!("'{prev} shapes': the picture has {actual}")
            });
        }
    }
}

/// Reads `caption` into claims and checks each against `scene`.
pub fn judge(scene: &Scene, caption: &str) -> Verdict {
    let mut v = Verdict::default();
    let t: Vec<&str> = caption
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect();
    let nps = noun_phrases(&t);
    if nps.is_empty() {
        v.claim(false, || "names no shape".into());
    }
    word_claims(scene, &t, &mut v);
    let phrase = |np: &Np| t[np.start..np.end].join(" ");
    for np in &nps {
        let m = matching(scene, np);
        v.claim(!m.is_empty(), || format!("'{}': no such shape", phrase(np)));
        // A count of shapes that are not there at all is not a second claim.
        if let (Some(n), false) = (np.exact, m.is_empty()) {
            v.claim(n == m.len(), || {
                format!("'{}': the picture has {}", phrase(np), m.len())
            });
        }
        if np.plural != np.exact.is_some_and(|n| n > 1) {
            v.grammar
                .push(format!("number agreement in '{}'", phrase(np)));
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
                let holds = exists_pair(scene, &nps[k], next, |a, b| r.holds(a, b, size));
                v.claim(holds, || {
                    format!(
                        "'{} {between} {}' does not hold",
                        phrase(&nps[k]),
                        phrase(next)
                    )
                });
                previous = Some(r);
                continue;
            }
            if between == "then" {
                let holds = ordered
                    && exists_pair(scene, &nps[k], next, |a, b| {
                        clearly_before(a, b, size, horizontal)
                    });
                v.claim(holds, || {
                    format!(
                        "'{} then {}': not in that order",
                        phrase(&nps[k]),
                        phrase(next)
                    )
                });
                continue;
            }
            // "A above B and C": A above C as well.
            if between == "and" {
                if let (Some(r), Some(first)) = (previous, k.checked_sub(1)) {
                    let holds = exists_pair(scene, &nps[first], next, |a, b| r.holds(a, b, size));
                    v.claim(holds, || {
                        format!(
                            "'{} {} {}' does not hold",
                            phrase(&nps[first]),
                            r.phrase(),
                            phrase(next)
                        )
                    });
                }
                continue;
            }
        }
        let m = matching(scene, &nps[k]);
        let twins =
            |r: Relation| m.len() == 2 && (r.holds(m[0], m[1], size) || r.holds(m[1], m[0], size));
        let holds = match between.as_str() {
            "side by side" => Some(twins(Relation::LeftOf)),
            "one above the other" => Some(twins(Relation::Above)),
            "next to each other" => Some(twins(Relation::NextTo)),
            w if w.starts_with("in the ")
                || w.starts_with("at the ")
                || w.starts_with("on the ") =>
            {
                Some(m.iter().any(|o| region(o, size) == Some(w)))
            }
            _ => None,
        };
        if let Some(holds) = holds {
            v.claim(holds, || {
                format!("'{} {between}' does not hold", phrase(&nps[k]))
            });
        }
    }
    v
}

/// Grounded-truth scores of a set of captions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Grounded {
    pub captions: usize,
    /// Captions whose every claim holds.
    pub fully_true: usize,
    pub claims: usize,
    pub claims_held: usize,
}

impl Grounded {
    pub fn add(&mut self, v: &Verdict) {
        self.captions += 1;
        self.fully_true += usize::from(v.fully_true());
        self.claims += v.claims;
        self.claims_held += v.held;
    }
    /// Share of fully true captions, in [0, 1].
    pub fn caption_rate(&self) -> f64 {
        self.fully_true as f64 / self.captions.max(1) as f64
    }
    /// Share of claims that hold, in [0, 1].
    pub fn claim_rate(&self) -> f64 {
        self.claims_held as f64 / self.claims.max(1) as f64
    }
}

impl std::fmt::Display for Grounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} captions fully true ({:.1}%), {}/{} claims hold ({:.1}%)",
            self.fully_true,
            self.captions,
            100.0 * self.caption_rate(),
            self.claims_held,
            self.claims,
            100.0 * self.claim_rate()
        )
    }
}

/// The scenes behind a dataset written by `captag synth` (Flickr8k layout), rebuilt from the
/// config in its `synth.json`: image `Images/synth_00042.jpg` is scene 41.
pub struct Scenes {
    cfg: SynthConfig,
}

#[derive(Deserialize)]
struct MarkerConfig {
    generator: String,
    complete: bool,
    config: SynthConfig,
}

impl Scenes {
    /// `None` when `dir` was not written (completely) by `captag synth` in the Flickr8k layout:
    /// real data has no scenes to check against. A `synth.json` that does not parse is an error.
    pub fn open(dir: &Path) -> Result<Option<Scenes>> {
        let path = dir.join(MARKER);
        let text = match crate::input::read_text(&path, crate::input::TEXT, "a synth marker") {
            Ok(t) => t,
            Err(Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let m: MarkerConfig = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!("{}: {}", path.display(), crate::input::one_line(e)))
        })?;
        let ours = m.generator == super::GENERATOR && m.complete;
        Ok((ours && m.config.layout == SynthLayout::Flickr8k).then_some(Scenes { cfg: m.config }))
    }

    /// The scene of image `id` (`synth_00042.jpg`), `None` for an id this dataset did not write.
    pub fn scene(&self, id: &str) -> Option<Scene> {
        let n: usize = id
            .strip_prefix("synth_")?
            .strip_suffix(".jpg")?
            .parse()
            .ok()?;
        (1..=self.cfg.count)
            .contains(&n)
            .then(|| scene_for(&self.cfg, n - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::scene::Background;
    use super::*;

    fn scene() -> Scene {
        let o = |colour, shape, size, cx, cy| Object {
            shape,
            colour,
            size,
            cx,
            cy,
            half: 8.0,
        };
        Scene {
            size: 96,
            background: Background::Gray,
            objects: vec![
                o(Colour::Red, Shape::Circle, Size::Small, 20.0, 48.0),
                o(Colour::Red, Shape::Circle, Size::Large, 48.0, 15.0),
                o(Colour::Blue, Shape::Square, Size::Small, 75.0, 50.0),
            ],
        }
    }

    #[test]
    fn claims_are_counted_one_by_one() {
        let s = scene();
        // Two noun phrases, each one existence claim, plus "two" = a count claim.
        let v = judge(&s, "there are two red circles and a blue square");
        assert_eq!((v.claims, v.held), (3, 3));
        assert!(v.fully_true() && v.grammar.is_empty());
        // The square exists, but it is not left of a red circle: 3 claims, 2 hold.
        let v = judge(&s, "a blue square to the left of a red circle");
        assert_eq!((v.claims, v.held), (3, 2), "{v:?}");
        assert!(!v.fully_true());
        assert_eq!(
            v.false_claims,
            ["'a blue square to the left of a red circle' does not hold"]
        );
        // A wrong background and a wrong shape count, a wrong article is grammar only.
        let v = judge(&s, "a image with a green triangle on a beige background");
        assert_eq!((v.claims, v.held), (2, 0), "{v:?}");
        assert_eq!(v.grammar.len(), 1);
        let v = judge(&s, "a picture of a gray background");
        assert_eq!((v.claims, v.held), (2, 1), "{v:?}");
    }

    #[test]
    fn grounded_rates() {
        let s = scene();
        let mut g = Grounded::default();
        for c in [
            "a blue square",
            "three red circles",
            "a blue square to the right of a red circle",
        ] {
            g.add(&judge(&s, c));
        }
        // Claims: 1 true; 2 (exists true, count false); 3 (two exist, and the square at x 75
        // is right of the small circle at x 20).
        assert_eq!(
            g,
            Grounded {
                captions: 3,
                fully_true: 2,
                claims: 6,
                claims_held: 5
            }
        );
        assert!((g.caption_rate() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn scenes_come_back_from_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Scenes::open(dir.path()).unwrap().is_none());
        let cfg = SynthConfig {
            count: 4,
            size: 64,
            ..SynthConfig::default()
        };
        super::super::generate(dir.path(), &cfg).unwrap();
        let scenes = Scenes::open(dir.path()).unwrap().unwrap();
        assert_eq!(scenes.scene("synth_00003.jpg"), Some(scene_for(&cfg, 2)));
        assert_eq!(scenes.scene("synth_00005.jpg"), None);
        assert_eq!(scenes.scene("other.jpg"), None);
        std::fs::write(dir.path().join(MARKER), b"{not json").unwrap();
        assert!(Scenes::open(dir.path()).is_err());
    }
}
