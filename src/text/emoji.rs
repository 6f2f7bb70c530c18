//! Emoji in Instagram captions: finding them, naming each with one label, and removing them from
//! the text a model reads. The labels of the caption-text ⇒ emoji model (`captag emoji`:
//! `model::text_tagger` with `LabelKind::Emoji`).
//!
//! An emoji is often several code points, and the same emoji is written several ways, so a
//! character test is not enough (UTS #51 "Unicode Emoji" defines the sequences):
//! - **Pictographs**: the code points that are both `Emoji` and `Extended_Pictographic` (table
//!   below). Those whose default presentation is emoji (😍, 🔥) are emoji on their own; those
//!   that default to text (❤ U+2764, ☀, ✌, ♥) are emoji too — Instagram writers use the bare
//!   ❤ as the heart emoji — except the symbols below U+2300 (© ® ™ ‼ ⁉ ↔ ↩ ...), which are
//!   emoji only with the variation selector U+FE0F (`™` in `Brand™` is text). U+FE0E asks for
//!   text presentation: not an emoji.
//! - **Modifiers**: skin tones U+1F3FB–U+1F3FF after a pictograph belong to it; tag characters
//!   U+E0020–U+E007F after one (🏴 + `gbeng` + cancel: the England flag) too.
//! - **ZWJ sequences**: pictographs joined by U+200D are one emoji (👩‍❤️‍💋‍👩, 🏳️‍🌈, 🤦‍♀️).
//! - **Flags**: two regional indicators (🇮 + 🇳 = 🇮🇳); a lone one is not an emoji.
//! - **Keycaps**: `0-9 # *`, optional U+FE0F, U+20E3 (1️⃣).
//!
//! Labels are normalised so that spellings of one emoji are one label: skin tones are dropped
//! (👍🏽 → 👍: a tone is the writer's choice, not something the caption's content predicts, and
//! folding keeps rare variants from splitting the counts), variation selectors are dropped and
//! U+FE0F is put back after every text-default pictograph, so ❤ and ❤️ are both `❤️`. That
//! fully-qualified form is what emoji-test.txt lists and what renders as an emoji everywhere,
//! so a suggested label can be printed as it is.
//!
//! The pictograph table was generated from Unicode 14 property data (Python `regex`'s
//! `\p{Emoji}`, `\p{Extended_Pictographic}`, `\p{Emoji_Presentation}`); newer emoji fall
//! outside it and are ignored, which costs a rare label, never a wrong one.

/// Emoji presentation by default (`E`) or text presentation by default (`T`).
const E: bool = true;
const T: bool = false;

/// `(first, last, emoji presentation)`: the code points that are `Emoji` and
/// `Extended_Pictographic` (so not the keycap bases, regional indicators and skin tones), in
/// ascending order.
#[rustfmt::skip]
const PICTOGRAPHS: &[(u32, u32, bool)] = &[
    (0xA9, 0xA9, T), (0xAE, 0xAE, T), (0x203C, 0x203C, T), (0x2049, 0x2049, T), (0x2122, 0x2122, T),
    (0x2139, 0x2139, T), (0x2194, 0x2199, T), (0x21A9, 0x21AA, T), (0x231A, 0x231B, E),
    (0x2328, 0x2328, T), (0x23CF, 0x23CF, T), (0x23E9, 0x23EC, E), (0x23ED, 0x23EF, T),
    (0x23F0, 0x23F0, E), (0x23F1, 0x23F2, T), (0x23F3, 0x23F3, E), (0x23F8, 0x23FA, T),
    (0x24C2, 0x24C2, T), (0x25AA, 0x25AB, T), (0x25B6, 0x25B6, T), (0x25C0, 0x25C0, T),
    (0x25FB, 0x25FC, T), (0x25FD, 0x25FE, E), (0x2600, 0x2604, T), (0x260E, 0x260E, T),
    (0x2611, 0x2611, T), (0x2614, 0x2615, E), (0x2618, 0x2618, T), (0x261D, 0x261D, T),
    (0x2620, 0x2620, T), (0x2622, 0x2623, T), (0x2626, 0x2626, T), (0x262A, 0x262A, T),
    (0x262E, 0x262F, T), (0x2638, 0x263A, T), (0x2640, 0x2640, T), (0x2642, 0x2642, T),
    (0x2648, 0x2653, E), (0x265F, 0x2660, T), (0x2663, 0x2663, T), (0x2665, 0x2666, T),
    (0x2668, 0x2668, T), (0x267B, 0x267B, T), (0x267E, 0x267E, T), (0x267F, 0x267F, E),
    (0x2692, 0x2692, T), (0x2693, 0x2693, E), (0x2694, 0x2697, T), (0x2699, 0x2699, T),
    (0x269B, 0x269C, T), (0x26A0, 0x26A0, T), (0x26A1, 0x26A1, E), (0x26A7, 0x26A7, T),
    (0x26AA, 0x26AB, E), (0x26B0, 0x26B1, T), (0x26BD, 0x26BE, E), (0x26C4, 0x26C5, E),
    (0x26C8, 0x26C8, T), (0x26CE, 0x26CE, E), (0x26CF, 0x26CF, T), (0x26D1, 0x26D1, T),
    (0x26D3, 0x26D3, T), (0x26D4, 0x26D4, E), (0x26E9, 0x26E9, T), (0x26EA, 0x26EA, E),
    (0x26F0, 0x26F1, T), (0x26F2, 0x26F3, E), (0x26F4, 0x26F4, T), (0x26F5, 0x26F5, E),
    (0x26F7, 0x26F9, T), (0x26FA, 0x26FA, E), (0x26FD, 0x26FD, E), (0x2702, 0x2702, T),
    (0x2705, 0x2705, E), (0x2708, 0x2709, T), (0x270A, 0x270B, E), (0x270C, 0x270D, T),
    (0x270F, 0x270F, T), (0x2712, 0x2712, T), (0x2714, 0x2714, T), (0x2716, 0x2716, T),
    (0x271D, 0x271D, T), (0x2721, 0x2721, T), (0x2728, 0x2728, E), (0x2733, 0x2734, T),
    (0x2744, 0x2744, T), (0x2747, 0x2747, T), (0x274C, 0x274C, E), (0x274E, 0x274E, E),
    (0x2753, 0x2755, E), (0x2757, 0x2757, E), (0x2763, 0x2764, T), (0x2795, 0x2797, E),
    (0x27A1, 0x27A1, T), (0x27B0, 0x27B0, E), (0x27BF, 0x27BF, E), (0x2934, 0x2935, T),
    (0x2B05, 0x2B07, T), (0x2B1B, 0x2B1C, E), (0x2B50, 0x2B50, E), (0x2B55, 0x2B55, E),
    (0x3030, 0x3030, T), (0x303D, 0x303D, T), (0x3297, 0x3297, T), (0x3299, 0x3299, T),
    (0x1F004, 0x1F004, E), (0x1F0CF, 0x1F0CF, E), (0x1F170, 0x1F171, T), (0x1F17E, 0x1F17F, T),
    (0x1F18E, 0x1F18E, E), (0x1F191, 0x1F19A, E), (0x1F201, 0x1F201, E), (0x1F202, 0x1F202, T),
    (0x1F21A, 0x1F21A, E), (0x1F22F, 0x1F22F, E), (0x1F232, 0x1F236, E), (0x1F237, 0x1F237, T),
    (0x1F238, 0x1F23A, E), (0x1F250, 0x1F251, E), (0x1F300, 0x1F320, E), (0x1F321, 0x1F321, T),
    (0x1F324, 0x1F32C, T), (0x1F32D, 0x1F335, E), (0x1F336, 0x1F336, T), (0x1F337, 0x1F37C, E),
    (0x1F37D, 0x1F37D, T), (0x1F37E, 0x1F393, E), (0x1F396, 0x1F397, T), (0x1F399, 0x1F39B, T),
    (0x1F39E, 0x1F39F, T), (0x1F3A0, 0x1F3CA, E), (0x1F3CB, 0x1F3CE, T), (0x1F3CF, 0x1F3D3, E),
    (0x1F3D4, 0x1F3DF, T), (0x1F3E0, 0x1F3F0, E), (0x1F3F3, 0x1F3F3, T), (0x1F3F4, 0x1F3F4, E),
    (0x1F3F5, 0x1F3F5, T), (0x1F3F7, 0x1F3F7, T), (0x1F3F8, 0x1F3FA, E), (0x1F400, 0x1F43E, E),
    (0x1F43F, 0x1F43F, T), (0x1F440, 0x1F440, E), (0x1F441, 0x1F441, T), (0x1F442, 0x1F4FC, E),
    (0x1F4FD, 0x1F4FD, T), (0x1F4FF, 0x1F53D, E), (0x1F549, 0x1F54A, T), (0x1F54B, 0x1F54E, E),
    (0x1F550, 0x1F567, E), (0x1F56F, 0x1F570, T), (0x1F573, 0x1F579, T), (0x1F57A, 0x1F57A, E),
    (0x1F587, 0x1F587, T), (0x1F58A, 0x1F58D, T), (0x1F590, 0x1F590, T), (0x1F595, 0x1F596, E),
    (0x1F5A4, 0x1F5A4, E), (0x1F5A5, 0x1F5A5, T), (0x1F5A8, 0x1F5A8, T), (0x1F5B1, 0x1F5B2, T),
    (0x1F5BC, 0x1F5BC, T), (0x1F5C2, 0x1F5C4, T), (0x1F5D1, 0x1F5D3, T), (0x1F5DC, 0x1F5DE, T),
    (0x1F5E1, 0x1F5E1, T), (0x1F5E3, 0x1F5E3, T), (0x1F5E8, 0x1F5E8, T), (0x1F5EF, 0x1F5EF, T),
    (0x1F5F3, 0x1F5F3, T), (0x1F5FA, 0x1F5FA, T), (0x1F5FB, 0x1F64F, E), (0x1F680, 0x1F6C5, E),
    (0x1F6CB, 0x1F6CB, T), (0x1F6CC, 0x1F6CC, E), (0x1F6CD, 0x1F6CF, T), (0x1F6D0, 0x1F6D2, E),
    (0x1F6D5, 0x1F6D9, E), (0x1F6DC, 0x1F6DF, E), (0x1F6E0, 0x1F6E5, T), (0x1F6E9, 0x1F6E9, T),
    (0x1F6EB, 0x1F6EC, E), (0x1F6F0, 0x1F6F0, T), (0x1F6F3, 0x1F6F3, T), (0x1F6F4, 0x1F6FC, E),
    (0x1F7E0, 0x1F7EB, E), (0x1F7F0, 0x1F7F0, E), (0x1F90C, 0x1F93A, E), (0x1F93C, 0x1F945, E),
    (0x1F947, 0x1F9FF, E), (0x1FA70, 0x1FA7C, E), (0x1FA80, 0x1FAC6, E), (0x1FAC8, 0x1FAC8, E),
    (0x1FACC, 0x1FADD, E), (0x1FADF, 0x1FAEB, E), (0x1FAEF, 0x1FAFA, E),
];

const VS15: char = '\u{FE0E}';
const VS16: char = '\u{FE0F}';
const ZWJ: char = '\u{200D}';
const KEYCAP: char = '\u{20E3}';

/// `Some(emoji presentation by default)` for a pictograph, `None` for anything else.
fn pictograph(c: char) -> Option<bool> {
    let cp = c as u32;
    let i = PICTOGRAPHS.partition_point(|&(_, last, _)| last < cp);
    match PICTOGRAPHS.get(i) {
        Some(&(first, _, emoji)) if first <= cp => Some(emoji),
        _ => None,
    }
}

fn is_skin_tone(c: char) -> bool {
    ('\u{1F3FB}'..='\u{1F3FF}').contains(&c)
}

fn is_regional(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

fn is_tag(c: char) -> bool {
    ('\u{E0020}'..='\u{E007F}').contains(&c)
}

/// Parts of emoji that mean nothing on their own (a stray selector, joiner, skin tone or
/// regional indicator): not labels, but not words either, so [`strip_emoji`] removes them.
fn is_component(c: char) -> bool {
    matches!(c, VS15 | VS16 | ZWJ | KEYCAP) || is_skin_tone(c) || is_regional(c) || is_tag(c)
}

/// One emoji in a text: where it is (byte offsets) and its normalised label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmojiMatch {
    pub start: usize,
    pub end: usize,
    pub label: String,
}

/// Every emoji in `text`, in order (rules in the module docs).
pub fn find_emoji(text: &str) -> Vec<EmojiMatch> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let Some((mut j, mut label)) = element(&chars, i) else {
            i += 1;
            continue;
        };
        while chars.get(j).is_some_and(|&(_, c)| c == ZWJ) {
            let Some((next, part)) = element(&chars, j + 1) else {
                break;
            };
            label.push(ZWJ);
            label.push_str(&part);
            j = next;
        }
        out.push(EmojiMatch {
            start: at(i),
            end: at(j),
            label,
        });
        i = j;
    }
    out
}

/// One emoji element (no ZWJ) starting at `chars[i]`: the index after it and its label.
fn element(chars: &[(usize, char)], i: usize) -> Option<(usize, String)> {
    let c = chars.get(i)?.1;
    let next = |k: usize| chars.get(k).map(|&(_, c)| c);
    if c.is_ascii_digit() || c == '#' || c == '*' {
        let j = if next(i + 1) == Some(VS16) {
            i + 2
        } else {
            i + 1
        };
        return (next(j) == Some(KEYCAP)).then(|| (j + 1, format!("{c}{VS16}{KEYCAP}")));
    }
    if is_regional(c) {
        let d = next(i + 1).filter(|&d| is_regional(d))?;
        return Some((i + 2, format!("{c}{d}")));
    }
    let emoji_default = pictograph(c)?;
    let (mut j, mut vs16, mut tone) = (i + 1, false, false);
    let mut tags = String::new();
    while let Some(d) = next(j) {
        match d {
            VS16 => vs16 = true,
            VS15 => return None,
            d if is_skin_tone(d) => tone = true,
            d if is_tag(d) => tags.push(d),
            _ => break,
        }
        j += 1;
    }
    if !emoji_default && !vs16 && !tone && (c as u32) < 0x2300 {
        return None; // ©, ™, ↔ as text
    }
    let mut label = c.to_string();
    if !emoji_default {
        label.push(VS16);
    }
    label.push_str(&tags);
    Some((j, label))
}

/// The distinct emoji labels of `text`, in first-seen order (`😍😍❤️ ❤` → `😍`, `❤️`).
pub fn emoji_labels(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for m in find_emoji(text) {
        if !out.contains(&m.label) {
            out.push(m.label);
        }
    }
    out
}

/// `text` without its emoji (and without stray emoji components), as the emoji model reads it:
/// an emoji separates words like a space (`fun😍day` → `fun day`); whitespace is collapsed to
/// single spaces and trimmed.
pub fn strip_emoji(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut last = 0;
    for m in find_emoji(text) {
        kept.push_str(&text[last..m.start]);
        kept.push(' ');
        last = m.end;
    }
    kept.push_str(&text[last..]);
    let kept: String = kept
        .chars()
        .map(|c| if is_component(c) { ' ' } else { c })
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<String> {
        emoji_labels(text)
    }

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table_is_sorted_and_disjoint() {
        for w in PICTOGRAPHS.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{:X?}", w);
        }
    }

    #[test]
    fn single_code_point_emoji_and_plain_text() {
        assert_eq!(
            labels("Sunset 🌅 at the beach 🏖🔥"),
            v(&["🌅", "🏖\u{FE0F}", "🔥"])
        );
        assert!(labels("plain text, #tag @user 2019 ♡ ★ — 東京").is_empty());
    }

    #[test]
    fn variation_selectors_are_normalised() {
        // ❤ with and without U+FE0F: one fully-qualified label.
        assert_eq!(labels("❤ and ❤️ and ❤️❤"), v(&["❤\u{FE0F}"]));
        assert_eq!(labels("☀️☀"), v(&["☀\u{FE0F}"]));
        // Text-default symbols below U+2300 need U+FE0F; U+FE0E asks for text.
        assert!(labels("Brand™ © 2020 ↔ ‼").is_empty());
        assert_eq!(labels("‼️ ™️"), v(&["‼\u{FE0F}", "™\u{FE0F}"]));
        assert!(labels("❤\u{FE0E}").is_empty());
    }

    #[test]
    fn skin_tones_fold_into_the_base() {
        assert_eq!(labels("👍🏻 👍🏿 👍"), v(&["👍"]));
        assert_eq!(labels("✌🏽"), v(&["✌\u{FE0F}"]));
        // A lone modifier is no label, and leaves the text.
        assert!(labels("🏽").is_empty());
        assert_eq!(strip_emoji("ok🏽 then"), "ok then");
    }

    #[test]
    fn zwj_sequences_are_one_emoji() {
        let kiss = "👩\u{200D}❤\u{FE0F}\u{200D}💋\u{200D}👩";
        assert_eq!(labels(kiss), v(&[kiss]));
        // Written without U+FE0F and with skin tones: the same label.
        let couple = "👩🏽\u{200D}❤\u{200D}💋\u{200D}👩🏻";
        assert_eq!(labels(couple), v(&[kiss]));
        assert_eq!(
            labels("🤦🏼\u{200D}♀️ 🏳️\u{200D}🌈 👨\u{200D}👩\u{200D}👧"),
            v(&[
                "🤦\u{200D}♀\u{FE0F}",
                "🏳\u{FE0F}\u{200D}🌈",
                "👨\u{200D}👩\u{200D}👧"
            ])
        );
        // A dangling joiner is not part of the emoji.
        let m = find_emoji("🔥\u{200D} x");
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].start, m[0].end, m[0].label.as_str()), (0, 4, "🔥"));
    }

    #[test]
    fn flags_and_keycaps() {
        assert_eq!(labels("India 🇮🇳🇺🇸!"), v(&["🇮🇳", "🇺🇸"]));
        // A lone regional indicator is no flag; the odd one of three is left over.
        assert_eq!(labels("🇮🇳🇺"), v(&["🇮🇳"]));
        let england = "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
        assert_eq!(labels(england), v(&[england]));
        assert_eq!(
            labels("2⃣ 2️⃣ #️⃣ 10"),
            v(&["2\u{FE0F}\u{20E3}", "#\u{FE0F}\u{20E3}"])
        );
    }

    #[test]
    fn matches_carry_byte_offsets() {
        let text = "a😍b🇮🇳";
        let m = find_emoji(text);
        assert_eq!(m.len(), 2);
        assert_eq!(&text[m[0].start..m[0].end], "😍");
        assert_eq!(&text[m[1].start..m[1].end], "🇮🇳");
        assert_eq!(m[1].end, text.len());
    }

    #[test]
    fn stripping_leaves_the_words() {
        assert_eq!(
            strip_emoji("fun😍day ❤️ at the\u{FE0F} beach 🇮🇳"),
            "fun day at the beach"
        );
        assert_eq!(strip_emoji("✨this is living✨"), "this is living");
        assert_eq!(strip_emoji("Brand™ 2020"), "Brand™ 2020");
        assert_eq!(strip_emoji("😍🔥"), "");
        assert_eq!(strip_emoji(""), "");
    }
}
