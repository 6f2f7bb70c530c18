//! Scene model of the synthetic dataset: what an image contains (1–3 coloured shapes of two sizes
//! on a muted background) and the geometric truths a caption may claim about it (left/right,
//! above/below, next to, region of the image). Captions ([`super::caption`]) and pixels
//! ([`super::draw`]) are both derived from a [`Scene`], so captions are true by construction and
//! can be checked against it without decoding an image.
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }
    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
        }
    }
}

/// Shape colours: saturated or extreme, so each is far (in RGB) from every other one and from
/// every [`Background`] tone, even after noise and JPEG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    White,
    Black,
    Purple,
    Orange,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::White,
        Colour::Black,
        Colour::Purple,
        Colour::Orange,
    ];
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::White => "white",
            Colour::Black => "black",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
        }
    }
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 170, 50],
            Colour::Blue => [30, 60, 220],
            Colour::Yellow => [240, 220, 30],
            Colour::White => [248, 248, 248],
            Colour::Black => [12, 12, 12],
            Colour::Purple => [140, 40, 175],
            Colour::Orange => [250, 140, 20],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    /// Words a caption may use for this size (synonyms give the references varied wording).
    pub fn words(self) -> &'static [&'static str] {
        match self {
            Size::Small => &["small", "little"],
            Size::Large => &["large", "big"],
        }
    }
    /// Half the side of the shape's bounding square, as a fraction of the image side.
    fn half_fraction(self) -> f32 {
        match self {
            Size::Small => 0.085,
            Size::Large => 0.16,
        }
    }
}

/// Muted background tones, never equal to a shape colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    Gray,
    Beige,
    Brown,
}

impl Background {
    pub const ALL: [Background; 3] = [Background::Gray, Background::Beige, Background::Brown];
    pub fn word(self) -> &'static str {
        match self {
            Background::Gray => "gray",
            Background::Beige => "beige",
            Background::Brown => "brown",
        }
    }
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Background::Gray => [128, 128, 128],
            Background::Beige => [190, 175, 140],
            Background::Brown => [115, 85, 60],
        }
    }
}

/// One shape. `(cx, cy)` is the centre of its bounding square in pixels (y grows downwards),
/// `half` half that square's side (the radius for a circle).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub cx: f32,
    pub cy: f32,
    pub half: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Image side in pixels.
    pub size: u32,
    pub background: Background,
    pub objects: Vec<Object>,
}

/// A centre offset smaller than this (fraction of the image side) is "the same" x or y.
const MARGIN: f32 = 0.12;
/// For left/right the vertical offset may be at most this fraction of the horizontal one (and
/// vice versa): a clearly diagonal pair gets no directional word.
const DOMINANCE: f32 = 0.7;
/// "next to" needs the centres at most this fraction of the image side apart.
const NEAR: f32 = 0.45;

/// A spatial relation "a REL b" between two objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    LeftOf,
    RightOf,
    Above,
    Below,
    NextTo,
}

impl Relation {
    /// Whether "a REL b" is true. This is the definition captions are tested against.
    pub fn holds(self, a: &Object, b: &Object, size: u32) -> bool {
        let s = size as f32;
        let (dx, dy) = (b.cx - a.cx, b.cy - a.cy);
        let horizontal = dx.abs() > MARGIN * s && dy.abs() <= DOMINANCE * dx.abs();
        let vertical = dy.abs() > MARGIN * s && dx.abs() <= DOMINANCE * dy.abs();
        match self {
            Relation::LeftOf => horizontal && dx > 0.0,
            Relation::RightOf => horizontal && dx < 0.0,
            Relation::Above => vertical && dy > 0.0,
            Relation::Below => vertical && dy < 0.0,
            Relation::NextTo => dx.hypot(dy) <= NEAR * s,
        }
    }

    /// The words between the two noun phrases.
    pub fn phrase(self) -> &'static str {
        match self {
            Relation::LeftOf => "to the left of",
            Relation::RightOf => "to the right of",
            Relation::Above => "above",
            Relation::Below => "below",
            Relation::NextTo => "next to",
        }
    }

    /// "a REL b" ⇔ "b INVERSE a".
    pub fn inverse(self) -> Relation {
        match self {
            Relation::LeftOf => Relation::RightOf,
            Relation::RightOf => Relation::LeftOf,
            Relation::Above => Relation::Below,
            Relation::Below => Relation::Above,
            Relation::NextTo => Relation::NextTo,
        }
    }
}

/// The relation a caption states for "a ... b": a directional one when one axis clearly
/// dominates, "next to" for a close diagonal pair, `None` (the caption says just "and") otherwise.
pub fn relation(a: &Object, b: &Object, size: u32) -> Option<Relation> {
    [
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
        Relation::NextTo,
    ]
    .into_iter()
    .find(|r| r.holds(a, b, size))
}

/// Whether `a` is clearly further left (`horizontal`) or higher than `b` — the claim of "from
/// left to right a then b" / "from top to bottom a then b".
pub fn clearly_before(a: &Object, b: &Object, size: u32, horizontal: bool) -> bool {
    let d = if horizontal { b.cx - a.cx } else { b.cy - a.cy };
    d > MARGIN * size as f32
}

/// Where in the image (by thirds) an object clearly is, as a caption phrase ("in the top left",
/// "at the bottom", "in the middle"); `None` when its centre is near a third boundary.
pub fn region(o: &Object, size: u32) -> Option<&'static str> {
    let s = size as f32;
    // 0 = left/top, 1 = centre, 2 = right/bottom; near a boundary (within 4% of the side) there
    // is no clear answer.
    let third = |v: f32| -> Option<usize> {
        let m = 0.04 * s;
        if v < s / 3.0 - m {
            Some(0)
        } else if v > 2.0 * s / 3.0 + m {
            Some(2)
        } else if v > s / 3.0 + m && v < 2.0 * s / 3.0 - m {
            Some(1)
        } else {
            None
        }
    };
    let phrase = match (third(o.cy)?, third(o.cx)?) {
        (0, 0) => "in the top left",
        (0, 1) => "at the top",
        (0, _) => "in the top right",
        (1, 0) => "on the left",
        (1, 1) => "in the middle",
        (1, _) => "on the right",
        (_, 0) => "in the bottom left",
        (_, 1) => "at the bottom",
        (_, _) => "in the bottom right",
    };
    Some(phrase)
}

/// A random scene: 1–3 shapes that do not overlap (rejection-sampled placements), repeats of a
/// colour+shape made likely enough that captions need counts, background gray unless `varied`.
pub fn random_scene(rng: &mut impl Rng, size: u32, varied: bool) -> Scene {
    let s = size as f32;
    let background = if varied {
        Background::ALL[rng.gen_range(0..Background::ALL.len())]
    } else {
        Background::Gray
    };
    let n = rng.gen_range(1..=3usize);
    // Space kept free between bounding squares and to the image edge, so shapes stay separate
    // after JPEG blurring.
    let gap = (0.04 * s).max(2.0);
    let mut objects: Vec<Object> = Vec::with_capacity(n);
    for _ in 0..n {
        let (shape, colour) = match objects.last() {
            Some(prev) if rng.gen_bool(0.3) => (prev.shape, prev.colour),
            _ => (
                Shape::ALL[rng.gen_range(0..Shape::ALL.len())],
                Colour::ALL[rng.gen_range(0..Colour::ALL.len())],
            ),
        };
        let size_class = if rng.gen_bool(0.5) {
            Size::Small
        } else {
            Size::Large
        };
        let half = size_class.half_fraction() * s;
        let (lo, hi) = (half + gap / 2.0, s - half - gap / 2.0);
        // A placement that cannot be found in 100 tries (crowded scene) is dropped: the scene
        // simply has fewer shapes.
        for _ in 0..100 {
            let cx = rng.gen_range(lo..hi);
            let cy = rng.gen_range(lo..hi);
            let free = objects.iter().all(|o| {
                (o.cx - cx).abs() >= o.half + half + gap || (o.cy - cy).abs() >= o.half + half + gap
            });
            if free {
                objects.push(Object {
                    shape,
                    colour,
                    size: size_class,
                    cx,
                    cy,
                    half,
                });
                break;
            }
        }
    }
    Scene {
        size,
        background,
        objects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn obj(cx: f32, cy: f32) -> Object {
        Object {
            shape: Shape::Circle,
            colour: Colour::Red,
            size: Size::Small,
            cx,
            cy,
            half: 8.0,
        }
    }

    #[test]
    fn relations_on_a_hand_built_scene() {
        // 96 px: margin 11.5 px, near 43.2 px.
        let a = obj(20.0, 48.0);
        let right = obj(70.0, 52.0);
        let below = obj(22.0, 85.0);
        let diagonal_far = obj(75.0, 90.0);
        let diagonal_near = obj(40.0, 66.0);
        assert_eq!(relation(&a, &right, 96), Some(Relation::LeftOf));
        assert_eq!(relation(&right, &a, 96), Some(Relation::RightOf));
        assert_eq!(relation(&a, &below, 96), Some(Relation::Above));
        assert_eq!(relation(&below, &a, 96), Some(Relation::Below));
        assert_eq!(relation(&a, &diagonal_far, 96), None);
        assert_eq!(relation(&a, &diagonal_near, 96), Some(Relation::NextTo));
        assert!(!Relation::LeftOf.holds(&a, &diagonal_near, 96));
        assert!(!Relation::Above.holds(&a, &diagonal_near, 96));
        // Within the margin: not left of, even though the centre is a little further right.
        assert!(!Relation::LeftOf.holds(&a, &obj(28.0, 80.0), 96));
        for r in [Relation::LeftOf, Relation::Above, Relation::NextTo] {
            assert_eq!(r.inverse().inverse(), r);
        }
    }

    #[test]
    fn regions_by_thirds() {
        assert_eq!(region(&obj(10.0, 10.0), 96), Some("in the top left"));
        assert_eq!(region(&obj(48.0, 48.0), 96), Some("in the middle"));
        assert_eq!(region(&obj(85.0, 48.0), 96), Some("on the right"));
        assert_eq!(region(&obj(48.0, 90.0), 96), Some("at the bottom"));
        assert_eq!(region(&obj(32.0, 48.0), 96), None);
    }

    #[test]
    fn random_scenes_fit_and_do_not_overlap() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for size in [32u32, 96, 224] {
            for _ in 0..500 {
                let varied = rng.gen_bool(0.5);
                let sc = random_scene(&mut rng, size, varied);
                assert!(varied || sc.background == Background::Gray);
                assert!((1..=3).contains(&sc.objects.len()));
                let s = size as f32;
                for (i, a) in sc.objects.iter().enumerate() {
                    assert!(a.cx - a.half >= 0.0 && a.cx + a.half <= s);
                    assert!(a.cy - a.half >= 0.0 && a.cy + a.half <= s);
                    for b in &sc.objects[i + 1..] {
                        let sep = a.half + b.half;
                        assert!((a.cx - b.cx).abs() >= sep || (a.cy - b.cy).abs() >= sep);
                    }
                }
            }
        }
    }
}
