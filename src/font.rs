//! A 5×7 bitmap font for labelling images captag writes (attention maps); no font files or system libraries.
//!
//! Each glyph is 7 rows of 5 pixels; in every row byte the low 5 bits are the
//! pixels, bit 4 being the leftmost column. A character cell is 6 pixels wide
//! (5 for the glyph plus 1 of spacing) and 7 tall, both multiplied by `scale`.
//! Characters without a glyph are drawn as a hollow box ("tofu").

use image::{Rgb, RgbImage};

/// Width of a glyph in font pixels.
pub const GLYPH_WIDTH: u32 = 5;
/// Height of a glyph in font pixels.
pub const GLYPH_HEIGHT: u32 = 7;
/// Horizontal advance per character in font pixels (glyph plus 1 px spacing).
pub const ADVANCE: u32 = GLYPH_WIDTH + 1;

/// One glyph: 7 rows, top to bottom; low 5 bits of each, bit 4 = leftmost.
type Glyph = [u8; GLYPH_HEIGHT as usize];

/// Glyphs for `a`..=`z`, in order.
#[rustfmt::skip]
const LOWER: [Glyph; 26] = [
    // 'a'
    [
        0b00000,
        0b00000,
        0b01110,
        0b00001,
        0b01111,
        0b10001,
        0b01111,
    ],
    // 'b'
    [
        0b10000,
        0b10000,
        0b10110,
        0b11001,
        0b10001,
        0b10001,
        0b11110,
    ],
    // 'c'
    [
        0b00000,
        0b00000,
        0b01110,
        0b10000,
        0b10000,
        0b10001,
        0b01110,
    ],
    // 'd'
    [
        0b00001,
        0b00001,
        0b01101,
        0b10011,
        0b10001,
        0b10001,
        0b01111,
    ],
    // 'e'
    [
        0b00000,
        0b00000,
        0b01110,
        0b10001,
        0b11111,
        0b10000,
        0b01110,
    ],
    // 'f'
    [
        0b00110,
        0b01001,
        0b01000,
        0b11100,
        0b01000,
        0b01000,
        0b01000,
    ],
    // 'g'
    [
        0b00000,
        0b00000,
        0b01111,
        0b10001,
        0b01111,
        0b00001,
        0b01110,
    ],
    // 'h'
    [
        0b10000,
        0b10000,
        0b10110,
        0b11001,
        0b10001,
        0b10001,
        0b10001,
    ],
    // 'i'
    [
        0b00100,
        0b00000,
        0b01100,
        0b00100,
        0b00100,
        0b00100,
        0b01110,
    ],
    // 'j'
    [
        0b00010,
        0b00000,
        0b00110,
        0b00010,
        0b00010,
        0b10010,
        0b01100,
    ],
    // 'k'
    [
        0b10000,
        0b10000,
        0b10010,
        0b10100,
        0b11000,
        0b10100,
        0b10010,
    ],
    // 'l'
    [
        0b01100,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b01110,
    ],
    // 'm'
    [
        0b00000,
        0b00000,
        0b11010,
        0b10101,
        0b10101,
        0b10001,
        0b10001,
    ],
    // 'n'
    [
        0b00000,
        0b00000,
        0b10110,
        0b11001,
        0b10001,
        0b10001,
        0b10001,
    ],
    // 'o'
    [
        0b00000,
        0b00000,
        0b01110,
        0b10001,
        0b10001,
        0b10001,
        0b01110,
    ],
    // 'p'
    [
        0b00000,
        0b00000,
        0b11110,
        0b10001,
        0b11110,
        0b10000,
        0b10000,
    ],
    // 'q'
    [
        0b00000,
        0b00000,
        0b01101,
        0b10011,
        0b01111,
        0b00001,
        0b00001,
    ],
    // 'r'
    [
        0b00000,
        0b00000,
        0b10110,
        0b11001,
        0b10000,
        0b10000,
        0b10000,
    ],
    // 's'
    [
        0b00000,
        0b00000,
        0b01110,
        0b10000,
        0b01110,
        0b00001,
        0b11110,
    ],
    // 't'
    [
        0b01000,
        0b01000,
        0b11100,
        0b01000,
        0b01000,
        0b01001,
        0b00110,
    ],
    // 'u'
    [
        0b00000,
        0b00000,
        0b10001,
        0b10001,
        0b10001,
        0b10011,
        0b01101,
    ],
    // 'v'
    [
        0b00000,
        0b00000,
        0b10001,
        0b10001,
        0b10001,
        0b01010,
        0b00100,
    ],
    // 'w'
    [
        0b00000,
        0b00000,
        0b10001,
        0b10001,
        0b10101,
        0b10101,
        0b01010,
    ],
    // 'x'
    [
        0b00000,
        0b00000,
        0b10001,
        0b01010,
        0b00100,
        0b01010,
        0b10001,
    ],
    // 'y'
    [
        0b00000,
        0b00000,
        0b10001,
        0b10001,
        0b01111,
        0b00001,
        0b01110,
    ],
    // 'z'
    [
        0b00000,
        0b00000,
        0b11111,
        0b00010,
        0b00100,
        0b01000,
        0b11111,
    ],
];

/// Glyphs for `A`..=`Z`, in order.
#[rustfmt::skip]
const UPPER: [Glyph; 26] = [
    // 'A'
    [
        0b01110,
        0b10001,
        0b10001,
        0b11111,
        0b10001,
        0b10001,
        0b10001,
    ],
    // 'B'
    [
        0b11110,
        0b10001,
        0b10001,
        0b11110,
        0b10001,
        0b10001,
        0b11110,
    ],
    // 'C'
    [
        0b01110,
        0b10001,
        0b10000,
        0b10000,
        0b10000,
        0b10001,
        0b01110,
    ],
    // 'D'
    [
        0b11100,
        0b10010,
        0b10001,
        0b10001,
        0b10001,
        0b10010,
        0b11100,
    ],
    // 'E'
    [
        0b11111,
        0b10000,
        0b10000,
        0b11110,
        0b10000,
        0b10000,
        0b11111,
    ],
    // 'F'
    [
        0b11111,
        0b10000,
        0b10000,
        0b11110,
        0b10000,
        0b10000,
        0b10000,
    ],
    // 'G'
    [
        0b01110,
        0b10001,
        0b10000,
        0b10111,
        0b10001,
        0b10001,
        0b01111,
    ],
    // 'H'
    [
        0b10001,
        0b10001,
        0b10001,
        0b11111,
        0b10001,
        0b10001,
        0b10001,
    ],
    // 'I'
    [
        0b01110,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b01110,
    ],
    // 'J'
    [
        0b00111,
        0b00010,
        0b00010,
        0b00010,
        0b00010,
        0b10010,
        0b01100,
    ],
    // 'K'
    [
        0b10001,
        0b10010,
        0b10100,
        0b11000,
        0b10100,
        0b10010,
        0b10001,
    ],
    // 'L'
    [
        0b10000,
        0b10000,
        0b10000,
        0b10000,
        0b10000,
        0b10000,
        0b11111,
    ],
    // 'M'
    [
        0b10001,
        0b11011,
        0b10101,
        0b10101,
        0b10001,
        0b10001,
        0b10001,
    ],
    // 'N'
    [
        0b10001,
        0b10001,
        0b11001,
        0b10101,
        0b10011,
        0b10001,
        0b10001,
    ],
    // 'O'
    [
        0b01110,
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b01110,
    ],
    // 'P'
    [
        0b11110,
        0b10001,
        0b10001,
        0b11110,
        0b10000,
        0b10000,
        0b10000,
    ],
    // 'Q'
    [
        0b01110,
        0b10001,
        0b10001,
        0b10001,
        0b10101,
        0b10010,
        0b01101,
    ],
    // 'R'
    [
        0b11110,
        0b10001,
        0b10001,
        0b11110,
        0b10100,
        0b10010,
        0b10001,
    ],
    // 'S'
    [
        0b01111,
        0b10000,
        0b10000,
        0b01110,
        0b00001,
        0b00001,
        0b11110,
    ],
    // 'T'
    [
        0b11111,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
    ],
    // 'U'
    [
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b01110,
    ],
    // 'V'
    [
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b10001,
        0b01010,
        0b00100,
    ],
    // 'W'
    [
        0b10001,
        0b10001,
        0b10001,
        0b10101,
        0b10101,
        0b10101,
        0b01010,
    ],
    // 'X'
    [
        0b10001,
        0b10001,
        0b01010,
        0b00100,
        0b01010,
        0b10001,
        0b10001,
    ],
    // 'Y'
    [
        0b10001,
        0b10001,
        0b01010,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
    ],
    // 'Z'
    [
        0b11111,
        0b00001,
        0b00010,
        0b00100,
        0b01000,
        0b10000,
        0b11111,
    ],
];

/// Glyphs for `0`..=`9`, in order.
#[rustfmt::skip]
const DIGITS: [Glyph; 10] = [
    // '0'
    [
        0b01110,
        0b10001,
        0b10011,
        0b10101,
        0b11001,
        0b10001,
        0b01110,
    ],
    // '1'
    [
        0b00100,
        0b01100,
        0b00100,
        0b00100,
        0b00100,
        0b00100,
        0b01110,
    ],
    // '2'
    [
        0b01110,
        0b10001,
        0b00001,
        0b00010,
        0b00100,
        0b01000,
        0b11111,
    ],
    // '3'
    [
        0b11111,
        0b00010,
        0b00100,
        0b00010,
        0b00001,
        0b10001,
        0b01110,
    ],
    // '4'
    [
        0b00010,
        0b00110,
        0b01010,
        0b10010,
        0b11111,
        0b00010,
        0b00010,
    ],
    // '5'
    [
        0b11111,
        0b10000,
        0b11110,
        0b00001,
        0b00001,
        0b10001,
        0b01110,
    ],
    // '6'
    [
        0b00110,
        0b01000,
        0b10000,
        0b11110,
        0b10001,
        0b10001,
        0b01110,
    ],
    // '7'
    [
        0b11111,
        0b00001,
        0b00010,
        0b00100,
        0b01000,
        0b01000,
        0b01000,
    ],
    // '8'
    [
        0b01110,
        0b10001,
        0b10001,
        0b01110,
        0b10001,
        0b10001,
        0b01110,
    ],
    // '9'
    [
        0b01110,
        0b10001,
        0b10001,
        0b01111,
        0b00001,
        0b00010,
        0b01100,
    ],
];

/// `<`
#[rustfmt::skip]
const LESS: Glyph = [
    0b00010,
    0b00100,
    0b01000,
    0b10000,
    0b01000,
    0b00100,
    0b00010,
];

/// `>`
#[rustfmt::skip]
const GREATER: Glyph = [
    0b01000,
    0b00100,
    0b00010,
    0b00001,
    0b00010,
    0b00100,
    0b01000,
];

/// `-`
#[rustfmt::skip]
const MINUS: Glyph = [
    0b00000,
    0b00000,
    0b00000,
    0b11111,
    0b00000,
    0b00000,
    0b00000,
];

/// `'`
#[rustfmt::skip]
const APOSTROPHE: Glyph = [
    0b00100,
    0b00100,
    0b01000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
];

/// `.`
#[rustfmt::skip]
const PERIOD: Glyph = [
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b01100,
    0b01100,
];

/// `,`
#[rustfmt::skip]
const COMMA: Glyph = [
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b01100,
    0b00100,
    0b01000,
];

/// `!`
#[rustfmt::skip]
const EXCLAMATION: Glyph = [
    0b00100,
    0b00100,
    0b00100,
    0b00100,
    0b00100,
    0b00000,
    0b00100,
];

/// `?`
#[rustfmt::skip]
const QUESTION: Glyph = [
    0b01110,
    0b10001,
    0b00001,
    0b00010,
    0b00100,
    0b00000,
    0b00100,
];

/// ` `
#[rustfmt::skip]
const SPACE: Glyph = [
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
];

/// Drawn for any character without a glyph: a hollow box.
#[rustfmt::skip]
const TOFU: Glyph = [
    0b11111,
    0b10001,
    0b10001,
    0b10001,
    0b10001,
    0b10001,
    0b11111,
];

/// The glyph drawn for `c`: its own one, or [`TOFU`] when the font has none.
#[rustfmt::skip]
const LPAREN: Glyph = [
    0b00010,
    0b00100,
    0b01000,
    0b01000,
    0b01000,
    0b00100,
    0b00010,
];

#[rustfmt::skip]
const RPAREN: Glyph = [
    0b01000,
    0b00100,
    0b00010,
    0b00010,
    0b00010,
    0b00100,
    0b01000,
];

#[rustfmt::skip]
const UNDERSCORE: Glyph = [
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b00000,
    0b11111,
];

#[rustfmt::skip]
const SLASH: Glyph = [
    0b00001,
    0b00010,
    0b00010,
    0b00100,
    0b01000,
    0b01000,
    0b10000,
];

#[rustfmt::skip]
const COLON: Glyph = [
    0b00000,
    0b01100,
    0b01100,
    0b00000,
    0b01100,
    0b01100,
    0b00000,
];

#[rustfmt::skip]
const PERCENT: Glyph = [
    0b11001,
    0b11010,
    0b00010,
    0b00100,
    0b01000,
    0b01011,
    0b10011,
];

#[rustfmt::skip]
const PLUS: Glyph = [
    0b00000,
    0b00100,
    0b00100,
    0b11111,
    0b00100,
    0b00100,
    0b00000,
];

#[rustfmt::skip]
const EQUALS: Glyph = [
    0b00000,
    0b00000,
    0b11111,
    0b00000,
    0b11111,
    0b00000,
    0b00000,
];

#[rustfmt::skip]
const LBRACKET: Glyph = [
    0b01110,
    0b01000,
    0b01000,
    0b01000,
    0b01000,
    0b01000,
    0b01110,
];

#[rustfmt::skip]
const RBRACKET: Glyph = [
    0b01110,
    0b00010,
    0b00010,
    0b00010,
    0b00010,
    0b00010,
    0b01110,
];

#[rustfmt::skip]
const HASH: Glyph = [
    0b01010,
    0b01010,
    0b11111,
    0b01010,
    0b11111,
    0b01010,
    0b01010,
];

#[rustfmt::skip]
const STAR: Glyph = [
    0b00000,
    0b10101,
    0b01110,
    0b11111,
    0b01110,
    0b10101,
    0b00000,
];

fn glyph(c: char) -> &'static Glyph {
    match c {
        'a'..='z' => &LOWER[(c as u8 - b'a') as usize],
        'A'..='Z' => &UPPER[(c as u8 - b'A') as usize],
        '0'..='9' => &DIGITS[(c as u8 - b'0') as usize],
        '<' => &LESS,
        '>' => &GREATER,
        '-' => &MINUS,
        '\'' => &APOSTROPHE,
        '.' => &PERIOD,
        ',' => &COMMA,
        '!' => &EXCLAMATION,
        '?' => &QUESTION,
        ' ' => &SPACE,
        '(' => &LPAREN,
        ')' => &RPAREN,
        '_' => &UNDERSCORE,
        '/' => &SLASH,
        ':' => &COLON,
        '%' => &PERCENT,
        '+' => &PLUS,
        '=' => &EQUALS,
        '[' => &LBRACKET,
        ']' => &RBRACKET,
        '#' => &HASH,
        '*' => &STAR,
        _ => &TOFU,
    }
}

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
