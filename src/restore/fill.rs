//! Classical hole fills, the baselines the inpainter is measured against (README, "Restoring
//! damaged photos"): iterative diffusion from the hole boundary, and a mask-normalised blur.
//! Pure Rust over pixels; `hole[i]` is pixel `i` (row-major) to be filled.
use image::RgbImage;

/// Diffusion fill: hole pixels are first seeded from the outside in (each takes the mean of its
/// already-known 8-neighbours, ring by ring, as Telea's fast-marching order does), then relaxed
/// by `iters` Gauss–Seidel sweeps of the discrete Laplace equation (each hole pixel becomes the
/// mean of its 4-neighbours) with the known pixels fixed. A hole covering the whole image is
/// filled with mid grey.
pub fn diffusion(img: &RgbImage, hole: &[bool], iters: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut v: Vec<f32> = img.as_raw().iter().map(|&x| x as f32).collect();
    let mut known: Vec<bool> = hole.iter().map(|&m| !m).collect();
    if !known.iter().any(|&k| k) {
        return RgbImage::from_pixel(w as u32, h as u32, image::Rgb([128, 128, 128]));
    }
    // Onion peel: fill the ring of hole pixels touching known ones, repeat.
    loop {
        let ring: Vec<usize> = (0..w * h)
            .filter(|&i| !known[i] && neighbours8(i, w, h).any(|j| known[j]))
            .collect();
        if ring.is_empty() {
            break;
        }
        for &i in &ring {
            let mut s = [0.0f32; 3];
            let mut n = 0.0;
            for j in neighbours8(i, w, h).filter(|&j| known[j]) {
                for c in 0..3 {
                    s[c] += v[j * 3 + c];
                }
                n += 1.0;
            }
            for c in 0..3 {
                v[i * 3 + c] = s[c] / n;
            }
        }
        for &i in &ring {
            known[i] = true;
        }
    }
    let holes: Vec<usize> = (0..w * h).filter(|&i| hole[i]).collect();
    for _ in 0..iters {
        for &i in &holes {
            let mut s = [0.0f32; 3];
            let mut n = 0.0;
            for j in neighbours4(i, w, h) {
                for c in 0..3 {
                    s[c] += v[j * 3 + c];
                }
                n += 1.0;
            }
            for c in 0..3 {
                v[i * 3 + c] = s[c] / n;
            }
        }
    }
    to_image(&v, w, h)
}

/// Blur fill: a hole pixel becomes the Gaussian-weighted (σ = `sigma` px) mean of the known
/// pixels around it (normalised convolution, `blur(X·M) / blur(M)`); where no known pixel is in
/// reach (3σ), the mean of all known pixels.
pub fn blur(img: &RgbImage, hole: &[bool], sigma: f32) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src: Vec<f32> = img.as_raw().iter().map(|&x| x as f32).collect();
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let k: Vec<f32> = (-r..=r)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let valid: Vec<f32> = hole.iter().map(|&m| if m { 0.0 } else { 1.0 }).collect();
    // Separable: horizontal then vertical pass over [X·M (3 channels), M].
    let mut tmp = vec![0.0f32; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 4];
            for (t, &g) in k.iter().enumerate() {
                let xx = x as i64 + t as i64 - r;
                if xx < 0 || xx >= w as i64 {
                    continue;
                }
                let j = y * w + xx as usize;
                for c in 0..3 {
                    acc[c] += g * valid[j] * src[j * 3 + c];
                }
                acc[3] += g * valid[j];
            }
            tmp[(y * w + x) * 4..(y * w + x) * 4 + 4].copy_from_slice(&acc);
        }
    }
    let mean = {
        let n: f32 = valid.iter().sum();
        let mut m = [128.0f32; 3];
        if n > 0.0 {
            for (c, mc) in m.iter_mut().enumerate() {
                *mc = (0..w * h).map(|i| valid[i] * src[i * 3 + c]).sum::<f32>() / n;
            }
        }
        m
    };
    let mut out = src.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if !hole[i] {
                continue;
            }
            let mut acc = [0.0f32; 4];
            for (t, &g) in k.iter().enumerate() {
                let yy = y as i64 + t as i64 - r;
                if yy < 0 || yy >= h as i64 {
                    continue;
                }
                let j = (yy as usize * w + x) * 4;
                for c in 0..4 {
                    acc[c] += g * tmp[j + c];
                }
            }
            for c in 0..3 {
                out[i * 3 + c] = if acc[3] > 1e-6 {
                    acc[c] / acc[3]
                } else {
                    mean[c]
                };
            }
        }
    }
    to_image(&out, w, h)
}

fn to_image(v: &[f32], w: usize, h: usize) -> RgbImage {
    let bytes: Vec<u8> = v
        .iter()
        .map(|x| x.round().clamp(0.0, 255.0) as u8)
        .collect();
    // The buffer holds 3·w·h values by construction.
    RgbImage::from_raw(w as u32, h as u32, bytes)
        .unwrap_or_else(|| RgbImage::new(w as u32, h as u32))
}

fn neighbours4(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = ((i % w) as i64, (i / w) as i64);
    [(-1, 0), (1, 0), (0, -1), (0, 1)]
        .into_iter()
        .filter_map(move |(dx, dy)| index(x + dx, y + dy, w, h))
}

fn neighbours8(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = ((i % w) as i64, (i / w) as i64);
    (-1..=1)
        .flat_map(|dy| (-1..=1).map(move |dx| (dx, dy)))
        .filter(|&d| d != (0, 0))
        .filter_map(move |(dx, dy)| index(x + dx, y + dy, w, h))
}

fn index(x: i64, y: i64, w: usize, h: usize) -> Option<usize> {
    (x >= 0 && y >= 0 && x < w as i64 && y < h as i64).then(|| y as usize * w + x as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A horizontal ramp with a square hole in the middle.
    fn ramp_with_hole() -> (RgbImage, Vec<bool>) {
        let img = RgbImage::from_fn(20, 10, |x, _| Rgb([(x * 10) as u8, 50, 200]));
        let hole: Vec<bool> = (0..200)
            .map(|i| (6..12).contains(&(i % 20)) && (3..7).contains(&(i / 20)))
            .collect();
        (img, hole)
    }

    #[test]
    fn fills_touch_only_the_hole() {
        let (img, hole) = ramp_with_hole();
        for out in [diffusion(&img, &hole, 50), blur(&img, &hole, 2.0)] {
            for (i, (a, b)) in img.pixels().zip(out.pixels()).enumerate() {
                if !hole[i] {
                    assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn diffusion_recovers_a_linear_ramp() {
        // A linear function is harmonic: the Laplace fill reproduces it (to rounding).
        let (img, hole) = ramp_with_hole();
        let out = diffusion(&img, &hole, 500);
        for (a, b) in img.pixels().zip(out.pixels()) {
            for c in 0..3 {
                assert!((a.0[c] as i32 - b.0[c] as i32).abs() <= 1, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn flat_colour_stays_flat_and_full_holes_are_grey() {
        let img = RgbImage::from_pixel(8, 8, Rgb([10, 20, 30]));
        let hole: Vec<bool> = (0..64).map(|i| i % 3 == 0).collect();
        assert_eq!(diffusion(&img, &hole, 10), img);
        assert_eq!(blur(&img, &hole, 1.5), img);
        let all = vec![true; 64];
        assert_eq!(diffusion(&img, &all, 10).get_pixel(3, 3).0, [128, 128, 128]);
        assert_eq!(blur(&img, &all, 1.5).get_pixel(3, 3).0, [128, 128, 128]);
    }
}
