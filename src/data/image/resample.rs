//! Resizing exactly as Pillow's `Image.resize(size, BILINEAR)` does it (`libImaging/Resample.c`,
//! Pillow 13), which is what torchvision's `Resize(antialias=True)` runs on PIL images: a
//! triangle filter whose support widens with the downscale factor (antialiasing), 22-bit
//! fixed-point coefficients, two separable passes each rounded to `u8`. Only the output pixels
//! inside the final crop are computed; each depends only on its own coefficients, so the result
//! equals resizing the whole picture and cropping afterwards.
use image::RgbImage;

use super::ResizeMode;

/// Resizes and crops like torchvision on a PIL image, returning the `size × size` RGB result
/// (the `u8` image `ToTensor` would see).
pub fn resize_crop_rgb(img: &RgbImage, resize: ResizeMode, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let out = if let ResizeMode::ClipCrop {
        shortest_edge,
        filter,
    } = resize
    {
        super::clip::resize_crop(img, shortest_edge, size, filter)
    } else if w == 0 || h == 0 || size == 0 {
        vec![0; 3 * size as usize * size as usize]
    } else {
        resample_crop(img, &Geometry::new(w, h, size, resize), size)
    };
    // The buffer length is 3·size² by construction.
    RgbImage::from_raw(size, size, out).unwrap_or_else(|| RgbImage::new(size, size))
}

/// Where the `size × size` output window sits: the size the whole picture is resized to, and
/// the crop's top-left corner in resized coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Geometry {
    pub(super) resized: (u32, u32),
    pub(super) x0: u32,
    pub(super) y0: u32,
}

impl Geometry {
    pub(super) fn new(w: u32, h: u32, s: u32, resize: ResizeMode) -> Self {
        match resize {
            ResizeMode::Squash => Geometry {
                resized: (s, s),
                x0: 0,
                y0: 0,
            },
            // Resampled by `clip::resize_crop` (Pillow's bicubic or bilinear), not here; this
            // is its geometry.
            ResizeMode::ClipCrop { shortest_edge, .. } => {
                let (resized, x0, y0) = super::clip::geometry(w, h, shortest_edge, s);
                Geometry { resized, x0, y0 }
            }
            ResizeMode::CenterCrop => {
                // torchvision `_compute_resized_output_size`: int(size * long / short), truncated.
                let long = |l: u32, short: u32| (s as f64 * l as f64 / short as f64) as u32;
                let resized = if w <= h {
                    (s, long(h, w).max(s))
                } else {
                    (long(w, h).max(s), s)
                };
                Geometry {
                    resized,
                    x0: center_offset(resized.0, s),
                    y0: center_offset(resized.1, s),
                }
            }
        }
    }
}

/// torchvision `center_crop`: `int(round((len - size) / 2.0))`, Python's round-half-to-even.
fn center_offset(len: u32, size: u32) -> u32 {
    let diff = len.saturating_sub(size);
    let half = diff / 2;
    if diff % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Pillow's `PRECISION_BITS` for 8-bit images: 32 − 8 − 2.
const PRECISION_BITS: u32 = 22;

/// Resampling weights for a contiguous run of output pixels along one axis: output pixel `i`
/// reads `count[i]` input pixels from `start[i]` with `weights[i * ksize..]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

impl Coeffs {
    /// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` (bilinear filter, support 1), for
    /// output pixels `first .. first + n` of an `in_size → out_size` resize.
    fn bilinear(in_size: u32, out_size: u32, first: u32, n: u32) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support (1.0) × filterscale
        let ksize = support.ceil() as usize * 2 + 1;
        let mut c = Coeffs {
            ksize,
            start: Vec::with_capacity(n as usize),
            count: Vec::with_capacity(n as usize),
            weights: vec![0; n as usize * ksize],
        };
        let mut pre = vec![0f64; ksize];
        for (i, xx) in (first..first + n).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's `(int)` truncates toward zero; both bounds are then clamped into the image.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let cnt = (xmax - xmin).clamp(0, ksize as i64) as usize;
            let mut ww = 0.0;
            for (x, k) in pre.iter_mut().enumerate().take(cnt) {
                let t = ((x as i64 + xmin) as f64 - center + 0.5) * ss;
                *k = (1.0 - t.abs()).max(0.0);
                ww += *k;
            }
            let row = &mut c.weights[i * ksize..i * ksize + cnt];
            for (dst, &k) in row.iter_mut().zip(&pre) {
                let k = if ww != 0.0 { k / ww } else { k };
                let f = k * (1u32 << PRECISION_BITS) as f64;
                *dst = if k < 0.0 {
                    (f - 0.5) as i32
                } else {
                    (f + 0.5) as i32
                };
            }
            c.start.push(xmin as usize);
            c.count.push(cnt);
        }
        c
    }

    /// The input range `[first, end)` these output pixels read.
    fn span(&self) -> (usize, usize) {
        let first = self.start.iter().copied().min().unwrap_or(0);
        let end = self
            .start
            .iter()
            .zip(&self.count)
            .map(|(s, c)| s + c)
            .max()
            .unwrap_or(first);
        (first, end)
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let k = &self.weights[i * self.ksize..i * self.ksize + self.count[i]];
        (self.start[i], k)
    }
}

/// Pillow `clip8`: drop the fraction bits and clamp to a byte.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `img` to `g.resized` and returns only the `size × size` window at (`g.x0`, `g.y0`),
/// as packed RGB. Each pass is skipped when its axis keeps its length, as Pillow skips it, and
/// the passes run in Pillow 13's order (`ImagingResampleInner`): vertical first when the height
/// shrinks by more than twice as many pixels as the width, else horizontal first (older Pillow
/// releases always went horizontal first). The order matters because each pass rounds to `u8`.
pub(super) fn resample_crop(img: &RgbImage, g: &Geometry, size: u32) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let (rw, rh) = g.resized;
    let s = size as usize;
    let (x0, y0) = (g.x0 as usize, g.y0 as usize);
    let (src, stride) = (img.as_raw().as_slice(), w as usize * 3);
    let horiz = (rw != w).then(|| Coeffs::bilinear(w, rw, g.x0, size));
    let vert = (rh != h).then(|| Coeffs::bilinear(h, rh, g.y0, size));
    let vertical_first = h > rh && (h - rh) as i64 > (w as i64 - rw as i64) * 2;
    match (horiz, vert) {
        (Some(hc), Some(vc)) if vertical_first => {
            // Only the input columns the horizontal pass will read.
            let (c0, c1) = hc.span();
            let mid = pass_vertical(src, stride, 0, c0, c1 - c0, &vc);
            pass_horizontal(&mid, (c1 - c0) * 3, 0..s, c0, &hc)
        }
        (Some(hc), Some(vc)) => {
            // Only the input rows the vertical pass will read (Pillow's ybox_first/last).
            let (r0, r1) = vc.span();
            let mid = pass_horizontal(src, stride, r0..r1, 0, &hc);
            pass_vertical(&mid, s * 3, r0, 0, s, &vc)
        }
        (Some(hc), None) => pass_horizontal(src, stride, y0..y0 + s, 0, &hc),
        (None, Some(vc)) => pass_vertical(src, stride, 0, x0, s, &vc),
        (None, None) => {
            let mut out = Vec::with_capacity(s * s * 3);
            for y in y0..y0 + s {
                out.extend_from_slice(&src[y * stride + x0 * 3..y * stride + (x0 + s) * 3]);
            }
            out
        }
    }
}

/// Pillow `ImagingResampleHorizontal_8bpc` for the buffer rows `rows` of packed RGB `src`
/// (`stride` bytes per row) whose first column is input column `col_base`.
fn pass_horizontal(
    src: &[u8],
    stride: usize,
    rows: std::ops::Range<usize>,
    col_base: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let width = stride / 3;
    match c.ksize {
        3 if width >= 3 => horizontal_fixed::<3>(src, stride, rows, col_base, c),
        5 if width >= 5 => horizontal_fixed::<5>(src, stride, rows, col_base, c),
        7 if width >= 7 => horizontal_fixed::<7>(src, stride, rows, col_base, c),
        9 if width >= 9 => horizontal_fixed::<9>(src, stride, rows, col_base, c),
        _ => horizontal_any(src, stride, rows, col_base, c),
    }
}

/// [`pass_horizontal`] with every output pixel reading a window of exactly `K` input pixels
/// (its taps, zero-weighted padding around them), so the inner loop has a fixed length and
/// unrolls; zero weights add nothing, so the sums are Pillow's exactly.
fn horizontal_fixed<const K: usize>(
    src: &[u8],
    stride: usize,
    rows: std::ops::Range<usize>,
    col_base: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let n = c.start.len();
    let width = stride / 3;
    let half = 1i32 << (PRECISION_BITS - 1);
    let windows: Vec<(usize, [i32; K])> = (0..n)
        .map(|x| {
            let (start, k) = c.taps(x);
            let rel = start - col_base;
            let first = rel.min(width - K);
            let mut w = [0i32; K];
            w[rel - first..rel - first + k.len()].copy_from_slice(k);
            (first * 3, w)
        })
        .collect();
    let mut out = vec![0u8; rows.len() * n * 3];
    for (y, out_row) in rows.zip(out.chunks_exact_mut(n * 3)) {
        let in_row = &src[y * stride..(y + 1) * stride];
        for (px, (off, w)) in out_row.chunks_exact_mut(3).zip(&windows) {
            let win = &in_row[*off..*off + 3 * K];
            let (mut r, mut g, mut b) = (half, half, half);
            for t in 0..K {
                r += win[3 * t] as i32 * w[t];
                g += win[3 * t + 1] as i32 * w[t];
                b += win[3 * t + 2] as i32 * w[t];
            }
            px[0] = clip8(r);
            px[1] = clip8(g);
            px[2] = clip8(b);
        }
    }
    out
}

/// [`pass_horizontal`] for any kernel size (large downscale factors).
fn horizontal_any(
    src: &[u8],
    stride: usize,
    rows: std::ops::Range<usize>,
    col_base: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let n = c.start.len();
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; rows.len() * n * 3];
    for (y, out_row) in rows.zip(out.chunks_exact_mut(n * 3)) {
        let in_row = &src[y * stride..(y + 1) * stride];
        for (x, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (start, k) = c.taps(x);
            let (mut r, mut g, mut b) = (half, half, half);
            for (&kk, p) in k
                .iter()
                .zip(in_row[(start - col_base) * 3..].chunks_exact(3))
            {
                r += p[0] as i32 * kk;
                g += p[1] as i32 * kk;
                b += p[2] as i32 * kk;
            }
            px[0] = clip8(r);
            px[1] = clip8(g);
            px[2] = clip8(b);
        }
    }
    out
}

/// Pillow `ImagingResampleVertical_8bpc` over the `width` columns from `col0` of packed RGB
/// `src` whose first row is input row `row_base`. Whole rows are accumulated tap by tap so the
/// inner loop vectorizes.
fn pass_vertical(
    src: &[u8],
    stride: usize,
    row_base: usize,
    col0: usize,
    width: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; c.start.len() * width * 3];
    let mut acc = vec![0i32; width * 3];
    for (y, out_row) in out.chunks_exact_mut(width * 3).enumerate() {
        let (start, k) = c.taps(y);
        acc.fill(half);
        for (t, &kk) in k.iter().enumerate() {
            let base = (start + t - row_base) * stride + col0 * 3;
            for (a, &p) in acc.iter_mut().zip(&src[base..base + width * 3]) {
                *a += p as i32 * kk;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// The gradient the Pillow parity numbers below were made from.
    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                ((x * 37 + y * 11) % 256) as u8,
                ((x * 5 + y * 71) % 256) as u8,
                ((x * y * 13) % 256) as u8,
            ])
        })
    }

    // Expected bytes from Pillow 13.0 + torchvision 0.26 (/tmp/pyref), `grad` = `gradient` above:
    //   t = T.Compose([T.Resize(s), T.CenterCrop(s)])  # "crop";  T.Resize((s, s))  # "squash"
    //   np.asarray(t(grad(w, h))).reshape(-1).tolist()
    #[test]
    fn resize_matches_pillow_bit_for_bit() {
        use ResizeMode::{CenterCrop as C, Squash as Q};
        #[rustfmt::skip]
        let cases: [(u32, u32, ResizeMode, u32, &[u8]); 6] = [
            (7, 5, C, 3, &[24, 33, 3, 82, 40, 12, 150, 50, 22, 41, 145, 14, 99, 152, 54, 167, 162, 102, 58, 110, 24, 116, 117, 96, 184, 127, 153]),
            (7, 5, Q, 3, &[37, 34, 5, 116, 45, 17, 195, 56, 29, 54, 146, 22, 133, 157, 78, 212, 168, 134, 71, 111, 40, 150, 122, 131, 177, 133, 124]),
            (23, 17, C, 5, &[83, 103, 35, 151, 119, 85, 109, 113, 96, 134, 118, 105, 124, 137, 136, 116, 130, 85, 140, 132, 117, 132, 124, 114, 117, 130, 128, 142, 134, 123, 146, 132, 101, 111, 114, 114, 149, 129, 110, 106, 127, 133, 153, 130, 125, 161, 119, 98, 103, 129, 124, 147, 134, 114, 107, 121, 131, 141, 131, 129, 160, 133, 112, 113, 122, 128, 142, 104, 132, 123, 124, 138, 114, 143, 130]),
            (23, 17, Q, 4, &[116, 114, 63, 125, 120, 100, 122, 121, 115, 130, 147, 101, 134, 128, 105, 130, 125, 116, 126, 137, 129, 116, 122, 117, 138, 125, 104, 127, 135, 113, 127, 119, 126, 118, 129, 117, 138, 130, 116, 132, 110, 133, 126, 129, 136, 123, 142, 136]),
            (3, 2, Q, 5, &[0, 0, 0, 15, 2, 0, 37, 5, 0, 59, 8, 0, 74, 10, 0, 1, 7, 0, 16, 9, 0, 38, 12, 1, 60, 15, 2, 75, 17, 3, 6, 36, 0, 21, 38, 3, 43, 41, 7, 65, 44, 11, 80, 46, 13, 10, 64, 0, 25, 66, 5, 47, 69, 12, 69, 72, 19, 84, 74, 23, 11, 71, 0, 26, 73, 5, 48, 76, 13, 70, 79, 21, 85, 81, 26]),
            // 9×31 → 4×13, crop top = round(4.5) = 4 (half to even).
            (9, 31, C, 4, &[144, 119, 71, 169, 129, 108, 66, 141, 108, 122, 151, 116, 169, 129, 84, 162, 139, 143, 78, 135, 127, 147, 115, 155, 192, 121, 110, 104, 131, 110, 100, 123, 126, 174, 94, 128, 181, 130, 136, 73, 109, 172, 126, 121, 120, 201, 131, 124]),
        ];
        for (w, h, mode, s, want) in cases {
            let got = resize_crop_rgb(&gradient(w, h), mode, s);
            assert_eq!(got.as_raw().as_slice(), want, "{w}x{h} {mode:?} {s}");
        }
    }

    /// Left third red, middle green, right third blue.
    fn thirds(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| match 3 * x / w {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        })
    }

    #[test]
    fn centre_crop_picks_the_centre() {
        let green = Rgb([0, 255, 0]);
        // Shorter side already the target: a pure crop.
        let out = resize_crop_rgb(&thirds(30, 10), ResizeMode::CenterCrop, 10);
        assert!(out.pixels().all(|&p| p == green));
        // Downscaled 90×30 → 30×10 first: inner columns are pure green, the edges blend.
        let out = resize_crop_rgb(&thirds(90, 30), ResizeMode::CenterCrop, 10);
        assert!((0..10).all(|y| (1..9).all(|x| *out.get_pixel(x, y) == green)));
        assert!(out.pixels().all(|p| p[1] > p[0] && p[1] > p[2]));
    }

    #[test]
    fn squash_keeps_everything_crop_cuts_the_sides() {
        let squash = resize_crop_rgb(&thirds(60, 20), ResizeMode::Squash, 12);
        let crop = resize_crop_rgb(&thirds(60, 20), ResizeMode::CenterCrop, 12);
        assert_eq!(squash.dimensions(), (12, 12));
        assert_eq!(crop.dimensions(), (12, 12));
        assert_eq!(*squash.get_pixel(0, 5), Rgb([255, 0, 0]));
        assert_eq!(*squash.get_pixel(11, 5), Rgb([0, 0, 255]));
        assert!(crop.pixels().all(|p| p[1] > p[0] && p[1] > p[2]));
    }

    #[test]
    fn crop_offset_rounds_half_to_even_like_python() {
        assert_eq!(center_offset(224, 224), 0);
        assert_eq!(center_offset(225, 224), 0); // round(0.5) = 0
        assert_eq!(center_offset(226, 224), 1);
        assert_eq!(center_offset(227, 224), 2); // round(1.5) = 2
        assert_eq!(center_offset(229, 224), 2); // round(2.5) = 2
                                                // int(224 * 500 / 375) = 298 wide; round(37.0) = 37.
        let g = Geometry::new(500, 375, 224, ResizeMode::CenterCrop);
        assert_eq!(
            g,
            Geometry {
                resized: (298, 224),
                x0: 37,
                y0: 0
            }
        );
    }

    /// Many shapes at once, from `bench/image_reference.py --make-parity DIR N` (Pillow and
    /// torchvision as installed there): `CAPTAG_PIL_CASES=DIR cargo test --release --lib --
    /// --ignored pillow_parity`.
    #[test]
    #[ignore = "needs cases generated by bench/image_reference.py --make-parity"]
    fn pillow_parity_on_generated_cases() {
        let dir = std::env::var("CAPTAG_PIL_CASES").expect("set CAPTAG_PIL_CASES to the cases dir");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let png = entry.unwrap().path();
            if png.extension().is_none_or(|e| e != "png") {
                continue;
            }
            let stem = png.file_stem().unwrap().to_string_lossy().into_owned();
            let parts: Vec<&str> = stem.split('_').collect();
            let mode = match parts[1] {
                "crop" => ResizeMode::CenterCrop,
                _ => ResizeMode::Squash,
            };
            let size: u32 = parts[2].parse().unwrap();
            let img = crate::data::image::decode_rgb(&png).unwrap();
            let want = std::fs::read(png.with_extension("rgb")).unwrap();
            let got = resize_crop_rgb(&img, mode, size);
            assert!(
                got.as_raw() == &want,
                "{stem}: {:?} {mode:?} {size}",
                img.dimensions()
            );
            checked += 1;
        }
        assert!(checked > 0, "no cases in {dir}");
        eprintln!("{checked} cases bit-identical to Pillow");
    }
}
