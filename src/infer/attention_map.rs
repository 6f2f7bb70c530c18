//! `caption --attention DIR`: one PNG per caption showing where a soft-attention decoder looked
//! for each word — the image repeated once per word (and `<end>`), brightened where the word's
//! attention weights over the `side × side` grid are high (bilinear upsampling, normalised per
//! word as Show, Attend and Tell's figures do), with the word written under its tile.
use std::path::{Path, PathBuf};

use image::{imageops, Rgb, RgbImage};

use crate::font;
use crate::{Error, Result};

/// Tile side in pixels.
const TILE: u32 = 160;
/// Height of the label strip under each tile.
const LABEL: u32 = 20;

/// Bilinear sample of a `side × side` grid at continuous cell coordinates.
fn sample(grid: &[f32], side: usize, gx: f32, gy: f32) -> f32 {
    let cx = gx.clamp(0.0, (side - 1) as f32);
    let cy = gy.clamp(0.0, (side - 1) as f32);
    let (x0, y0) = (cx.floor() as usize, cy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(side - 1), (y0 + 1).min(side - 1));
    let (fx, fy) = (cx - x0 as f32, cy - y0 as f32);
    let at = |x: usize, y: usize| grid[y * side + x];
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// The picture for one caption: `words` and one weight row per word plus one for `<end>`.
pub fn render(image: &RgbImage, words: &[String], weights: &[Vec<f32>]) -> Result<RgbImage> {
    let n = weights.first().map_or(0, Vec::len);
    let side = (n as f64).sqrt().round() as usize;
    if n == 0 || side * side != n || weights.iter().any(|w| w.len() != n) {
        return Err(Error::invalid(format!(
            "attention weights over {n} cells are not a square grid"
        )));
    }
    let base = imageops::resize(image, TILE, TILE, imageops::FilterType::Triangle);
    let labels: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .chain(std::iter::once("<end>"))
        .collect();
    let mut out = RgbImage::from_pixel(TILE * labels.len() as u32, TILE + LABEL, Rgb([255; 3]));
    for (i, (w, label)) in weights.iter().zip(&labels).enumerate() {
        let max = w.iter().cloned().fold(f32::MIN, f32::max).max(1e-12);
        let x0 = i as u32 * TILE;
        for (x, y, p) in base.enumerate_pixels() {
            // Cell centres sit at (k + 0.5) / side of the image.
            let g = |v: u32| (v as f32 + 0.5) / TILE as f32 * side as f32 - 0.5;
            let a = (sample(w, side, g(x), g(y)) / max).clamp(0.0, 1.0);
            let shade = 0.25 + 0.75 * a;
            let px = Rgb(p.0.map(|c| (c as f32 * shade).round() as u8));
            out.put_pixel(x0 + x, y, px);
        }
        let scale = if font::text_width(label, 2) <= TILE - 4 {
            2
        } else {
            1
        };
        let tx = x0 + (TILE.saturating_sub(font::text_width(label, scale))) / 2;
        font::draw_text(&mut out, tx, TILE + 3, label, scale, Rgb([0, 0, 0]));
    }
    Ok(out)
}

/// Write `render(..)` for the image at `src` into `dir` as `<file stem>.attention.png`.
pub fn write(dir: &Path, src: &Path, words: &[String], weights: &[Vec<f32>]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let img = crate::data::image::decode_rgb(src)?;
    let pic = render(&img, words, weights)?;
    let stem = src
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let path = dir.join(format!("{stem}.attention.png"));
    let mut bytes = std::io::Cursor::new(vec![]);
    pic.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    crate::fsio::write_atomic(&path, bytes.get_ref(), false)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attended_cell_is_the_brightest_part_of_its_tile() {
        let img = RgbImage::from_pixel(64, 64, Rgb([200, 200, 200]));
        // 2×2 grid, all weight on the bottom-right cell.
        let w = vec![vec![0.0, 0.0, 0.0, 1.0]];
        let pic = render(&img, &[], &w).unwrap();
        assert_eq!(pic.dimensions(), (TILE, TILE + LABEL));
        let bright = pic.get_pixel(TILE - 5, TILE - 5).0[0];
        let dark = pic.get_pixel(5, 5).0[0];
        assert!(bright > 190 && dark < 60, "{bright} {dark}");
    }

    #[test]
    fn non_square_weights_are_an_error() {
        let img = RgbImage::new(8, 8);
        assert!(render(&img, &["a".into()], &[vec![0.5; 3], vec![0.5; 3]]).is_err());
    }
}
