//! Captions for synthetic scenes: five differently worded, all-true references per image in the
//! Flickr8k style (counts, colours, shapes, sizes, spatial relations, background), and one
//! Instagram-style caption with hashtags, emoji and @mentions as in the Kaggle dataset. Pure
//! functions of a [`Scene`] and an RNG, so they are tested without drawing anything.
use rand::seq::SliceRandom;
use rand::Rng;

use super::scene::{
    clearly_before, region, relation, Colour, Object, Relation, Scene, Shape, Size,
};

/// Number of reference captions per image, as in Flickr8k.
pub const CAPTIONS_PER_IMAGE: usize = 5;

/// Objects of one colour and shape (optionally also one size): counts refer to such a group,
/// so "two red circles" means exactly two.
struct Group {
    colour: Colour,
    shape: Shape,
    size: Option<Size>,
    members: Vec<usize>,
}

fn groups(scene: &Scene, by_size: bool) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (i, o) in scene.objects.iter().enumerate() {
        let size = by_size.then_some(o.size);
        match out
            .iter_mut()
            .find(|g| g.colour == o.colour && g.shape == o.shape && g.size == size)
        {
            Some(g) => g.members.push(i),
            None => out.push(Group {
                colour: o.colour,
                shape: o.shape,
                size,
                members: vec![i],
            }),
        }
    }
    out
}

fn number_word(n: usize) -> &'static str {
    match n {
        1 => "one",
        2 => "two",
        3 => "three",
        _ => "several",
    }
}

fn size_word(size: Size, rng: &mut impl Rng) -> &'static str {
    let words = size.words();
    words[rng.gen_range(0..words.len())]
}

/// "two small red circles", "a blue square", "a single green triangle".
fn group_phrase(g: &Group, rng: &mut impl Rng) -> String {
    let n = g.members.len();
    let count = if n == 1 {
        *["a", "a", "a", "one", "a single"]
            .choose(rng)
            .unwrap_or(&"a")
    } else {
        number_word(n)
    };
    let noun = if n == 1 {
        g.shape.word()
    } else {
        g.shape.plural()
    };
    match g.size {
        Some(s) => format!("{count} {} {} {noun}", size_word(s, rng), g.colour.word()),
        None => format!("{count} {} {noun}", g.colour.word()),
    }
}

/// "a, b and c".
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Every object of the scene, grouped, in a random group order.
fn list(scene: &Scene, by_size: bool, rng: &mut impl Rng) -> (String, usize) {
    let mut gs = groups(scene, by_size);
    gs.shuffle(rng);
    let first = gs.first().map_or(1, |g| g.members.len());
    let items: Vec<String> = gs.iter().map(|g| group_phrase(g, rng)).collect();
    (join_list(&items), first)
}

/// "a red circle" for one object; its size is named when another object shares its colour and
/// shape (so the phrase picks it out), otherwise at random.
fn object_phrase(scene: &Scene, i: usize, rng: &mut impl Rng) -> String {
    let o = &scene.objects[i];
    let twin = scene
        .objects
        .iter()
        .enumerate()
        .any(|(j, p)| j != i && p.colour == o.colour && p.shape == o.shape);
    if twin || rng.gen_bool(0.4) {
        format!(
            "a {} {} {}",
            size_word(o.size, rng),
            o.colour.word(),
            o.shape.word()
        )
    } else {
        format!("a {} {}", o.colour.word(), o.shape.word())
    }
}

fn same_kind(a: &Object, b: &Object) -> bool {
    a.colour == b.colour && a.shape == b.shape
}

/// "a" before a vowel-initial word becomes "an" ("an orange square"); templates always write "a".
fn fix_articles(caption: &str) -> String {
    let words: Vec<&str> = caption.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let next_vowel = words
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeiou".contains(c));
        out.push(if *w == "a" && next_vowel { "an" } else { w });
    }
    out.join(" ")
}

/// Captions naming every object: counts, colours, shapes, sometimes sizes and the background.
fn list_captions(scene: &Scene, rng: &mut impl Rng) -> Vec<String> {
    let bg = scene.background.word();
    let n = scene.objects.len();
    let mut out = Vec::new();
    let (counted, first) = list(scene, false, rng);
    let verb = if first > 1 { "are" } else { "is" };
    out.push(format!("there {verb} {counted}"));
    let (sized, _) = list(scene, true, rng);
    out.push(format!("a picture of {sized}"));
    let (counted, _) = list(scene, false, rng);
    out.push(format!("an image with {counted} on a {bg} background"));
    let (sized, _) = list(scene, true, rng);
    out.push(format!("{sized} on a {bg} background"));
    let (sized, _) = list(scene, true, rng);
    out.push(format!("a {bg} background with {sized}"));
    if n > 1 {
        let (counted, _) = list(scene, false, rng);
        out.push(format!("{} shapes showing {counted}", number_word(n)));
    } else if let Some(o) = scene.objects.first() {
        out.push(format!(
            "one {} {} on a {bg} background",
            o.colour.word(),
            o.shape.word()
        ));
    }
    out
}

/// Captions about where things are: pairwise relations, left-to-right order, a pair of twins,
/// one object's region. Only true statements are produced; there may be none.
fn spatial_captions(scene: &Scene, rng: &mut impl Rng) -> Vec<String> {
    let objs = &scene.objects;
    let size = scene.size;
    let mut out = Vec::new();
    // Ordered pairs of different-looking objects with a relation.
    let mut pairs: Vec<(usize, usize, Relation)> = Vec::new();
    for i in 0..objs.len() {
        for j in 0..objs.len() {
            if i != j && !(same_kind(&objs[i], &objs[j]) && objs[i].size == objs[j].size) {
                if let Some(r) = relation(&objs[i], &objs[j], size) {
                    pairs.push((i, j, r));
                }
            }
        }
    }
    if let Some(&(i, j, r)) = pairs.choose(rng) {
        let (a, b) = (object_phrase(scene, i, rng), object_phrase(scene, j, rng));
        out.push(format!("{a} {} {b}", r.phrase()));
        let (a, b) = (object_phrase(scene, i, rng), object_phrase(scene, j, rng));
        out.push(format!("there is {b} {} {a}", r.inverse().phrase()));
    }
    // "a red circle above a blue square and a green triangle": only when it holds for both, so
    // the sentence is true whichever way it is parsed.
    if objs.len() == 3 {
        let mut both = Vec::new();
        for i in 0..3 {
            let (j, k) = ((i + 1) % 3, (i + 2) % 3);
            for r in [
                Relation::LeftOf,
                Relation::RightOf,
                Relation::Above,
                Relation::Below,
            ] {
                if r.holds(&objs[i], &objs[j], size) && r.holds(&objs[i], &objs[k], size) {
                    both.push((i, j, k, r));
                }
            }
        }
        if let Some(&(i, j, k, r)) = both.choose(rng) {
            let (a, b, c) = (
                object_phrase(scene, i, rng),
                object_phrase(scene, j, rng),
                object_phrase(scene, k, rng),
            );
            out.push(format!("{a} {} {b} and {c}", r.phrase()));
        }
    }
    // "from left to right a ... then a ...".
    if objs.len() >= 2 {
        for horizontal in [true, false] {
            let mut order: Vec<usize> = (0..objs.len()).collect();
            let key = |i: &usize| if horizontal { objs[*i].cx } else { objs[*i].cy };
            order.sort_by(|a, b| key(a).total_cmp(&key(b)));
            let clear = order
                .windows(2)
                .all(|w| clearly_before(&objs[w[0]], &objs[w[1]], size, horizontal));
            if clear {
                let items: Vec<String> = order
                    .iter()
                    .map(|&i| object_phrase(scene, i, rng))
                    .collect();
                let dir = if horizontal {
                    "from left to right"
                } else {
                    "from top to bottom"
                };
                out.push(format!("{dir} {}", items.join(" then ")));
            }
        }
    }
    // "two red circles side by side": a group of exactly two.
    for g in groups(scene, false) {
        if let [i, j] = g.members[..] {
            let (a, b) = (&objs[i], &objs[j]);
            let how = match relation(a, b, size) {
                Some(Relation::LeftOf | Relation::RightOf) => Some("side by side"),
                Some(Relation::Above | Relation::Below) => Some("one above the other"),
                Some(Relation::NextTo) => Some("next to each other"),
                None => None,
            };
            if let Some(how) = how {
                out.push(format!(
                    "two {} {} {how}",
                    g.colour.word(),
                    g.shape.plural()
                ));
            }
        }
    }
    // "a small red circle in the top left".
    let placed: Vec<(usize, &str)> = objs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| region(o, size).map(|r| (i, r)))
        .collect();
    if let Some(&(i, r)) = placed.choose(rng) {
        out.push(format!("{} {r}", object_phrase(scene, i, rng)));
    }
    out
}

/// Five distinct, all-true captions for `scene`, differently worded: up to two about where
/// things are, the rest naming every object. Deterministic given `rng`'s state.
pub fn scene_captions(scene: &Scene, rng: &mut impl Rng) -> Vec<String> {
    let mut spatial = spatial_captions(scene, rng);
    spatial.shuffle(rng);
    let mut lists = list_captions(scene, rng);
    lists.shuffle(rng);
    let mut chosen: Vec<String> = Vec::with_capacity(CAPTIONS_PER_IMAGE);
    let take_spatial = spatial.len().min(2);
    for c in spatial.into_iter().take(take_spatial).chain(lists) {
        let c = fix_articles(&c);
        if chosen.len() < CAPTIONS_PER_IMAGE && !chosen.contains(&c) {
            chosen.push(c);
        }
    }
    chosen.shuffle(rng);
    chosen
}

/// Hashtags (without `#`) a post about this scene may carry: its colours and shapes, plus a
/// couple of generic ones.
pub const GENERIC_TAGS: [&str; 5] = ["shapes", "geometry", "art", "minimal", "colorful"];

fn colour_emoji(c: Colour) -> &'static str {
    match c {
        Colour::Red => "🔴",
        Colour::Green => "🟢",
        Colour::Blue => "🔵",
        Colour::Yellow => "🟡",
        Colour::White => "⚪",
        Colour::Black => "⚫",
        Colour::Purple => "🟣",
        Colour::Orange => "🟠",
    }
}

/// One Instagram-style caption: a short description, hashtags for every colour and shape in the
/// scene (some capitalized, some with trailing punctuation), sometimes emoji, an @mention, a line
/// break or a trailing space, and about 3% of the time nothing at all — the noise the real
/// dataset has.
pub fn instagram_caption(scene: &Scene, rng: &mut impl Rng) -> String {
    if rng.gen_bool(0.03) {
        return String::new();
    }
    let (described, _) = list(scene, rng.gen_bool(0.5), rng);
    let mut text = fix_articles(&described);
    if rng.gen_bool(0.5) {
        let mut cs = text.chars();
        if let Some(c) = cs.next() {
            text = c.to_uppercase().chain(cs).collect();
        }
    }
    if rng.gen_bool(0.35) {
        let emoji = match scene.objects.choose(rng) {
            Some(o) if rng.gen_bool(0.7) => colour_emoji(o.colour),
            _ => ["✨", "🎨", "😍", "💯"][rng.gen_range(0..4)],
        };
        text = format!("{text} {emoji}");
    }
    let mut tags: Vec<&str> = Vec::new();
    for o in &scene.objects {
        for t in [o.colour.word(), o.shape.word()] {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    let generic = rng.gen_range(1..=2);
    tags.extend(GENERIC_TAGS.choose_multiple(rng, generic));
    tags.shuffle(rng);
    let tags: Vec<String> = tags
        .iter()
        .map(|t| {
            let mut tag = if rng.gen_bool(0.2) {
                let mut cs = t.chars();
                cs.next()
                    .map_or(String::new(), |c| c.to_uppercase().chain(cs).collect())
            } else {
                t.to_string()
            };
            if rng.gen_bool(0.1) {
                tag.push(*['.', '!', ','].choose(rng).unwrap_or(&'.'));
            }
            format!("#{tag}")
        })
        .collect();
    let mut caption = if rng.gen_bool(0.05) {
        format!("{text}\n\n{}", tags.join(" "))
    } else {
        format!("{text} {}", tags.join(" "))
    };
    if rng.gen_bool(0.2) {
        let who = ["@shapes_daily", "@geometry.lover", "@artofshapes"][rng.gen_range(0..3)];
        caption = format!("{caption} {who}");
    }
    if rng.gen_bool(0.3) {
        caption.push(' ');
    }
    caption
}

#[cfg(test)]
#[path = "caption_tests.rs"]
pub(super) mod tests;
