//! A 5×7 bitmap font for labelling images captag writes (attention maps); no font files or system libraries.
//!
//! Each glyph is 7 rows of 5 pixels; in every row byte the low 5 bits are the
//! pixels, bit 4 being the leftmost column. A character cell is 6 pixels wide
//! (5 for the glyph plus 1 of spacing) and 7 tall, both multiplied by `scale`.
//! Characters without a glyph are drawn as a hollow box ("tofu").

use image::{Rgb, RgbImage};

mod glyphs;
use glyphs::glyph;

/// Width of a glyph in font pixels.
pub const GLYPH_WIDTH: u32 = 5;
/// Height of a glyph in font pixels.
pub const GLYPH_HEIGHT: u32 = 7;
/// Horizontal advance per character in font pixels (glyph plus 1 px spacing).
pub const ADVANCE: u32 = GLYPH_WIDTH + 1;

/// Width in pixels that [`draw_text`] advances over for `text` at `scale`:
/// 6 × `scale` per character, the trailing 1-pixel spacing included.
pub fn text_width(text: &str, scale: u32) -> u32 {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.saturating_mul(ADVANCE).saturating_mul(scale)
}

/// Draws `text` left to right with its top-left corner at (`x`, `y`), each
/// font pixel a `scale`×`scale` square of `color`.
///
/// Whatever falls outside the image is clipped silently; `x`/`y` past the
/// image or `scale` 0 draw nothing. Never panics.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, color: Rgb<u8>) {
    if scale == 0 {
        return;
    }
    let (width, height) = (u64::from(img.width()), u64::from(img.height()));
    let scale = u64::from(scale);
    let (x, y) = (u64::from(x), u64::from(y));
    if y >= height {
        return;
    }
    for (i, c) in text.chars().enumerate() {
        // u64 throughout: u32 inputs times small factors cannot overflow it.
        let cell_x = x + i as u64 * u64::from(ADVANCE) * scale;
        if cell_x >= width {
            break;
        }
        for (row, bits) in glyph(c).iter().enumerate() {
            let top = y + row as u64 * scale;
            if top >= height {
                break;
            }
            let bottom = (top + scale).min(height);
            for col in 0..u64::from(GLYPH_WIDTH) {
                if bits >> (GLYPH_WIDTH as u64 - 1 - col) & 1 == 0 {
                    continue;
                }
                let left = cell_x + col * scale;
                if left >= width {
                    break;
                }
                let right = (left + scale).min(width);
                for py in top..bottom {
                    for px in left..right {
                        // In range: px < width and py < height, both u32 values.
                        img.put_pixel(px as u32, py as u32, color);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glyphs::*;
    use super::*;

    const BG: Rgb<u8> = Rgb([0, 0, 0]);
    const FG: Rgb<u8> = Rgb([255, 255, 255]);

    /// Coordinates of every pixel set to `FG`.
    fn lit(img: &RgbImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| **p == FG)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    fn render(text: &str, scale: u32, w: u32, h: u32) -> RgbImage {
        let mut img = RgbImage::from_pixel(w, h, BG);
        draw_text(&mut img, 0, 0, text, scale, FG);
        img
    }

    #[test]
    fn a_at_scale_1_stays_in_its_box() {
        let mut img = RgbImage::from_pixel(20, 20, BG);
        draw_text(&mut img, 3, 4, "a", 1, FG);
        let px = lit(&img);
        assert!(!px.is_empty());
        for (x, y) in px {
            assert!((3..8).contains(&x) && (4..11).contains(&y), "({x},{y})");
        }
    }

    #[test]
    fn width_counts_advance_and_scale() {
        assert_eq!(text_width("ab", 2), 24);
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("a dog", 1), 30);
        assert_eq!(text_width("ab", 0), 0);
    }

    #[test]
    fn scale_multiplies_pixels() {
        let one = lit(&render("k", 1, 10, 10)).len();
        let three = lit(&render("k", 3, 30, 30)).len();
        assert_eq!(three, one * 9);
    }

    #[test]
    fn off_the_edge_never_panics() {
        let mut img = RgbImage::from_pixel(10, 10, BG);
        draw_text(&mut img, 7, 7, "hello world", 3, FG);
        draw_text(&mut img, 10, 0, "x", 1, FG);
        draw_text(&mut img, 0, 10, "x", 1, FG);
        draw_text(&mut img, u32::MAX, u32::MAX, "xyz", u32::MAX, FG);
        draw_text(&mut img, 0, 0, "big", u32::MAX, FG);
        let mut empty = RgbImage::new(0, 0);
        draw_text(&mut empty, 0, 0, "a", 2, FG);
        // Clipped part of a glyph still drew something inside.
        assert!(!lit(&img).is_empty());
    }

    #[test]
    fn outside_or_scale_zero_draws_nothing() {
        let mut img = RgbImage::from_pixel(10, 10, BG);
        draw_text(&mut img, 0, 0, "abc", 0, FG);
        draw_text(&mut img, 10, 0, "abc", 1, FG);
        draw_text(&mut img, 0, 10, "abc", 1, FG);
        assert!(lit(&img).is_empty());
    }

    #[test]
    fn unknown_char_draws_a_box() {
        for c in ["@", "é", "\u{1F600}", "~"] {
            let img = render(c, 1, 6, 7);
            for y in 0..7 {
                for x in 0..5 {
                    let edge = x == 0 || x == 4 || y == 0 || y == 6;
                    assert_eq!(img.get_pixel(x, y) == &FG, edge, "{c:?} at ({x},{y})");
                }
            }
        }
        assert_eq!(lit(&render(" ", 1, 6, 7)).len(), 0);
    }

    #[test]
    fn different_chars_draw_different_patterns() {
        let all: Vec<char> = ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain("<>-'.,!?()_/:%+=[]#*".chars())
            .collect();
        let patterns: Vec<Vec<(u32, u32)>> = all
            .iter()
            .map(|c| lit(&render(&c.to_string(), 1, 6, 7)))
            .collect();
        for (i, a) in patterns.iter().enumerate() {
            assert!(!a.is_empty(), "{:?} is blank", all[i]);
            assert_ne!(
                *a,
                lit(&render("@", 1, 6, 7)),
                "{:?} looks like tofu",
                all[i]
            );
            for (j, b) in patterns.iter().enumerate().skip(i + 1) {
                // 'O'/'0' are told apart by the slash in '0'.
                assert_ne!(a, b, "{:?} and {:?} are drawn alike", all[i], all[j]);
            }
        }
    }

    #[test]
    fn glyphs_use_only_five_bits() {
        let all = LOWER.iter().chain(&UPPER).chain(&DIGITS).chain([
            &LESS,
            &GREATER,
            &MINUS,
            &APOSTROPHE,
            &PERIOD,
            &COMMA,
            &EXCLAMATION,
            &QUESTION,
            &SPACE,
            &TOFU,
        ]);
        for g in all {
            assert!(g.iter().all(|row| row >> GLYPH_WIDTH == 0));
        }
    }

    #[test]
    fn characters_advance_six_pixels_per_scale() {
        let mut img = RgbImage::from_pixel(40, 20, BG);
        draw_text(&mut img, 0, 0, "@@", 2, FG);
        // Second box starts at x = 12, with a 2-px gap after the first (x 10..12).
        assert_eq!(img.get_pixel(12, 0), &FG);
        assert_eq!(img.get_pixel(10, 0), &BG);
        assert_eq!(img.get_pixel(11, 5), &BG);
    }
}
