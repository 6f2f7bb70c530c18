//! Restoration metrics, pure functions over pixels (no tch), so they can be checked on hand
//! cases: mask IoU and F1 for the damage detector, PSNR and SSIM of a restored image against the
//! undamaged original (README, "Restoring damaged photos").
use image::RgbImage;

/// Counts of a predicted mask against the true one (`true` = damaged).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaskCounts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

impl MaskCounts {
    /// Counts over one pair of masks of equal length.
    pub fn of(pred: &[bool], truth: &[bool]) -> MaskCounts {
        let mut c = MaskCounts::default();
        for (&p, &t) in pred.iter().zip(truth) {
            match (p, t) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    pub fn add(&mut self, o: &MaskCounts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }

    /// |P ∩ T| / |P ∪ T|; 1 when both masks are empty (nothing to find, nothing claimed).
    pub fn iou(&self) -> f64 {
        let union = self.tp + self.fp + self.fn_;
        if union == 0 {
            1.0
        } else {
            self.tp as f64 / union as f64
        }
    }

    /// 2|P ∩ T| / (|P| + |T|) (the Dice coefficient); 1 when both are empty.
    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            1.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }
}

/// PSNR cap for identical images, so means over images stay finite.
pub const PSNR_MAX: f64 = 100.0;

/// Peak signal-to-noise ratio in dB over all channels, peak 255: `10·log10(255² / MSE)`
/// ([`PSNR_MAX`] for identical images). The images must have equal dimensions.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let n = a.as_raw().len().max(1) as f64;
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let mse = se / n;
    if mse == 0.0 {
        PSNR_MAX
    } else {
        (10.0 * (255.0f64 * 255.0 / mse).log10()).min(PSNR_MAX)
    }
}

/// Structural similarity (Wang et al. 2004) with their constants: an 11×11 Gaussian window of
/// σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255, over the windows that fit inside the image ("valid"),
/// computed per channel and averaged. Images smaller than the window use one window the size of
/// the image (uniform weights). The images must have equal dimensions.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = a.dimensions();
    let (w, h) = (w as usize, h as usize);
    if w == 0 || h == 0 {
        return 1.0;
    }
    let (kw, kh) = (11.min(w), 11.min(h));
    let weights = if kw == 11 && kh == 11 {
        gaussian_window(11, 1.5)
    } else {
        vec![1.0 / (kw * kh) as f64; kw * kh]
    };
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (ra, rb) = (a.as_raw(), b.as_raw());
    let mut total = 0.0;
    let mut count = 0usize;
    for ch in 0..3 {
        for y0 in 0..=h - kh {
            for x0 in 0..=w - kw {
                let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for dy in 0..kh {
                    for dx in 0..kw {
                        let g = weights[dy * kw + dx];
                        let i = ((y0 + dy) * w + x0 + dx) * 3 + ch;
                        let (x, y) = (ra[i] as f64, rb[i] as f64);
                        mx += g * x;
                        my += g * y;
                        xx += g * x * x;
                        yy += g * y * y;
                        xy += g * x * y;
                    }
                }
                let (vx, vy, cov) = (xx - mx * mx, yy - my * my, xy - mx * my);
                total += ((2.0 * mx * my + c1) * (2.0 * cov + c2))
                    / ((mx * mx + my * my + c1) * (vx + vy + c2));
                count += 1;
            }
        }
    }
    total / count.max(1) as f64
}

/// A normalised `n × n` Gaussian, row-major.
fn gaussian_window(n: usize, sigma: f64) -> Vec<f64> {
    let c = (n as f64 - 1.0) / 2.0;
    let g: Vec<f64> = (0..n)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    let mut out = Vec::with_capacity(n * n);
    for y in 0..n {
        for x in 0..n {
            out.push(g[y] * g[x] / (s * s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn iou_and_f1_by_hand() {
        // pred {0,1,2}, truth {1,2,3}: tp 2, fp 1, fn 1 ⇒ IoU 2/4, F1 4/6.
        let pred = [true, true, true, false, false];
        let truth = [false, true, true, true, false];
        let c = MaskCounts::of(&pred, &truth);
        assert_eq!(
            c,
            MaskCounts {
                tp: 2,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        assert!((c.iou() - 0.5).abs() < 1e-12);
        assert!((c.f1() - 4.0 / 6.0).abs() < 1e-12);
        let none = MaskCounts::of(&[false; 4], &[false; 4]);
        assert_eq!((none.iou(), none.f1()), (1.0, 1.0));
        let miss = MaskCounts::of(&[false, false], &[true, false]);
        assert_eq!((miss.iou(), miss.f1()), (0.0, 0.0));
        let mut sum = c;
        sum.add(&miss);
        assert_eq!(sum.fn_, 2);
    }

    #[test]
    fn psnr_by_hand() {
        let a = RgbImage::from_pixel(4, 4, Rgb([100, 100, 100]));
        assert_eq!(psnr(&a, &a), PSNR_MAX);
        // Every value off by 10: MSE 100 ⇒ 10·log10(65025/100) = 28.1308 dB.
        let b = RgbImage::from_pixel(4, 4, Rgb([110, 90, 110]));
        assert!((psnr(&a, &b) - 28.130_803_608_679_1).abs() < 1e-9);
        // One value of 48 off by 255: MSE 255²/48 ⇒ 10·log10(48) dB.
        let mut d = RgbImage::from_pixel(4, 4, Rgb([0, 0, 0]));
        d.put_pixel(0, 0, Rgb([0, 0, 255]));
        let z = RgbImage::new(4, 4);
        assert!((psnr(&d, &z) - 10.0 * 48f64.log10()).abs() < 1e-9);
    }

    #[test]
    fn ssim_by_hand() {
        let mut rng = 1u32;
        let noisy = RgbImage::from_fn(16, 16, |_, _| {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            Rgb([(rng >> 16) as u8, (rng >> 8) as u8, (rng >> 24) as u8])
        });
        assert!((ssim(&noisy, &noisy) - 1.0).abs() < 1e-12);
        // Two flat images a, b: no variance, so SSIM = (2ab + C1) / (a² + b² + C1) everywhere.
        let (a, b) = (100.0f64, 150.0f64);
        let c1 = (0.01f64 * 255.0).powi(2);
        let want = (2.0 * a * b + c1) / (a * a + b * b + c1);
        let fa = RgbImage::from_pixel(16, 12, Rgb([100, 100, 100]));
        let fb = RgbImage::from_pixel(16, 12, Rgb([150, 150, 150]));
        assert!((ssim(&fa, &fb) - want).abs() < 1e-9);
        // Smaller than the window: one uniform window of the whole image, same closed form.
        let sa = RgbImage::from_pixel(5, 3, Rgb([100, 100, 100]));
        let sb = RgbImage::from_pixel(5, 3, Rgb([150, 150, 150]));
        assert!((ssim(&sa, &sb) - want).abs() < 1e-9);
        // Structure destroyed: far below 1.
        let flat = RgbImage::from_pixel(16, 16, Rgb([128, 128, 128]));
        assert!(ssim(&noisy, &flat) < 0.2);
    }

    #[test]
    fn gaussian_window_sums_to_one() {
        let g = gaussian_window(11, 1.5);
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(g[5 * 11 + 5] > g[0]);
    }
}
