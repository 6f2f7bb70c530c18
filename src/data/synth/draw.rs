//! Pixels for synthetic scenes: filled circles, squares and upward triangles rasterized into an
//! `image::RgbImage` with 2×2 supersampled edges, optional colour jitter and per-pixel noise, and
//! JPEG encoding. No drawing crate: the three shapes are a few lines each.
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, RgbImage};
use rand::Rng;

use super::scene::{Object, Scene, Shape};
use crate::error::{Error, Result};

/// Whether the point `(x, y)` (pixel units, y down) is inside the shape.
fn inside(o: &Object, x: f32, y: f32) -> bool {
    let (dx, dy) = (x - o.cx, y - o.cy);
    match o.shape {
        Shape::Circle => dx * dx + dy * dy <= o.half * o.half,
        Shape::Square => dx.abs() <= o.half && dy.abs() <= o.half,
        // Apex at the top centre, base along the bottom of the bounding square: inside when below
        // both slanted edges (|dx| grows by half a unit per unit down from the apex).
        Shape::Triangle => dy <= o.half && dy >= -o.half && dx.abs() <= (dy + o.half) / 2.0,
    }
}

/// Adds up to ±`amount` to each channel.
fn jitter(rgb: [u8; 3], amount: i32, rng: &mut impl Rng) -> [u8; 3] {
    rgb.map(|c| (c as i32 + rng.gen_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// Draws `scene`. With `noise`, the background and shape colours are jittered a little per image
/// and every channel of every pixel gets light, roughly Gaussian noise (σ ≈ 5 levels), so a model
/// cannot key on exact pixel values.
pub fn render(scene: &Scene, noise: bool, rng: &mut impl Rng) -> RgbImage {
    let n = scene.size;
    let bg = if noise {
        let shift = rng.gen_range(-10..=10);
        scene
            .background
            .rgb()
            .map(|c| (c as i32 + shift).clamp(0, 255) as u8)
    } else {
        scene.background.rgb()
    };
    let mut img = RgbImage::from_pixel(n, n, image::Rgb(bg));
    for o in &scene.objects {
        let fill = if noise {
            jitter(o.colour.rgb(), 12, rng)
        } else {
            o.colour.rgb()
        };
        let x0 = (o.cx - o.half - 1.0).floor().max(0.0) as u32;
        let y0 = (o.cy - o.half - 1.0).floor().max(0.0) as u32;
        let x1 = ((o.cx + o.half + 1.0).ceil() as u32).min(n);
        let y1 = ((o.cy + o.half + 1.0).ceil() as u32).min(n);
        for y in y0..y1 {
            for x in x0..x1 {
                let (fx, fy) = (x as f32, y as f32);
                let covered = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
                    .iter()
                    .filter(|(sx, sy)| inside(o, fx + sx, fy + sy))
                    .count() as u32;
                if covered > 0 {
                    let p = img.get_pixel_mut(x, y);
                    for (dst, &src) in p.0.iter_mut().zip(&fill) {
                        *dst = ((src as u32 * covered + *dst as u32 * (4 - covered)) / 4) as u8;
                    }
                }
            }
        }
    }
    if noise {
        for p in img.pixels_mut() {
            for v in p.0.iter_mut() {
                // Sum of four uniform bytes: mean 510, σ ≈ 148; scaled by 1/30 to σ ≈ 5.
                let r: u32 = rng.gen();
                let sum: i32 = r.to_le_bytes().iter().map(|&b| b as i32).sum();
                *v = (*v as i32 + (sum - 510) / 30).clamp(0, 255) as u8;
            }
        }
    }
    img
}

/// JPEG bytes of `img` at `quality` (1–100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::invalid(format!("cannot encode synthetic JPEG: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::super::scene::{Background, Colour, Size};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn scene(shape: Shape) -> Scene {
        let o = Object {
            shape,
            colour: Colour::Red,
            size: Size::Large,
            cx: 48.0,
            cy: 48.0,
            half: 16.0,
        };
        Scene {
            size: 96,
            background: Background::Gray,
            objects: vec![o],
        }
    }

    #[test]
    fn shapes_cover_the_expected_area() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // Areas of a 32-px bounding square: square 1024, circle π·16² ≈ 804, triangle 512.
        for (shape, area) in [
            (Shape::Square, 1024.0),
            (Shape::Circle, 804.2),
            (Shape::Triangle, 512.0),
        ] {
            let img = render(&scene(shape), false, &mut rng);
            // Fractional coverage from the red channel: 128 = background, 220 = fully red.
            let covered: f64 = img
                .pixels()
                .map(|p| (p.0[0] as f64 - 128.0) / (220.0 - 128.0))
                .sum();
            assert!(
                (covered - area).abs() / area < 0.03,
                "{shape:?}: {covered} vs {area}"
            );
            assert_eq!(img.get_pixel(48, 50).0, Colour::Red.rgb());
            assert_eq!(img.get_pixel(2, 2).0, Background::Gray.rgb());
        }
    }

    #[test]
    fn triangle_points_up() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let img = render(&scene(Shape::Triangle), false, &mut rng);
        // Near the apex only the middle is filled; along the base nearly the full width.
        assert_eq!(img.get_pixel(36, 34).0, Background::Gray.rgb());
        assert_eq!(img.get_pixel(36, 62).0, Colour::Red.rgb());
    }

    #[test]
    fn noise_is_light_and_jpeg_decodes() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let img = render(&scene(Shape::Square), true, &mut rng);
        let centre = img.get_pixel(48, 48).0;
        let red = Colour::Red.rgb();
        assert!(
            (0..3).all(|c| (centre[c] as i32 - red[c] as i32).abs() < 40),
            "{centre:?}"
        );
        let bytes = encode_jpeg(&img, 95).unwrap();
        let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (96, 96));
    }
}
