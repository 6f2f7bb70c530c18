//! Synthetic photo damage, seeded and reproducible: strokes and scratches of random width,
//! blotches, stains, torn corners, faded patches and JPEG-block damage, each image with its exact
//! mask (README, "Restoring damaged photos").
//!
//! Why exact: the mask network learns the mask and the inpainter's hole loss is weighted by it,
//! so a pixel the generator changed but left out of the mask (or masked but left unchanged)
//! would teach both the wrong thing. Every operation paints through [`Canvas::set`], which
//! records the pixel in the mask and guarantees the written value differs from the original
//! (a value that happens to equal it is nudged), so "mask" and "pixels that differ from the
//! original" are the same set by construction — and the tests check it.
//!
//! Pure Rust (no tch): `captag damage` writes these to disk, and training makes them on the fly
//! on the loader's side, one seed per (epoch, image).
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Salt of `restore eval`'s damage seeds (training's dev damage uses another).
pub const EVAL_SALT: u64 = 0xE7A1_0000;

/// One kind of damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// A wandering brush stroke of random width (ink, paint, a marker).
    Stroke,
    /// A long, thin, nearly straight light line (a scratch in the emulsion).
    Scratch,
    /// An opaque irregular blob (a drop of paint, missing emulsion).
    Blotch,
    /// A translucent brownish irregular blob with a darker rim (water, coffee).
    Stain,
    /// A corner torn off along a jagged edge, showing the backing.
    TornCorner,
    /// A region washed out toward pale paper colour.
    Fade,
    /// A patch of 8×8 blocks flattened to coarse colours, as a broken JPEG shows them.
    JpegBlocks,
}

impl DamageKind {
    pub const ALL: [DamageKind; 7] = [
        DamageKind::Stroke,
        DamageKind::Scratch,
        DamageKind::Blotch,
        DamageKind::Stain,
        DamageKind::TornCorner,
        DamageKind::Fade,
        DamageKind::JpegBlocks,
    ];
}

/// What the generator draws per image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DamageConfig {
    /// Damage operations per image, drawn uniformly from `min_ops..=max_ops`.
    pub min_ops: usize,
    pub max_ops: usize,
    /// The kinds operations are drawn from (uniformly).
    pub kinds: Vec<DamageKind>,
    /// Widest stroke, as a share of the shorter image side.
    pub max_stroke: f64,
}

impl Default for DamageConfig {
    fn default() -> Self {
        DamageConfig {
            min_ops: 2,
            max_ops: 5,
            kinds: DamageKind::ALL.to_vec(),
            max_stroke: 0.06,
        }
    }
}

/// The most damage operations one image may get (`--max-ops`).
pub const MAX_OPS: usize = 100;

impl DamageConfig {
    pub fn validate(&self) -> crate::Result<()> {
        // Each operation is a drawing pass over the image: the count is bounded so a typo
        // (`--min-ops 1000000`) is an error, not hours of drawing.
        if self.max_ops > MAX_OPS {
            return Err(crate::Error::invalid(format!(
                "damage: --max-ops/--min-ops must be at most {MAX_OPS} (got {}..={})",
                self.min_ops, self.max_ops
            )));
        }
        if self.min_ops == 0 || self.min_ops > self.max_ops || self.kinds.is_empty() {
            return Err(crate::Error::invalid(format!(
                "damage: need 1 ≤ min_ops ≤ max_ops and at least one kind (got {}..={}, {} kinds)",
                self.min_ops,
                self.max_ops,
                self.kinds.len()
            )));
        }
        if !(self.max_stroke > 0.0 && self.max_stroke <= 0.5) {
            return Err(crate::Error::invalid(format!(
                "damage: max_stroke {} must be in (0, 0.5]",
                self.max_stroke
            )));
        }
        Ok(())
    }
}

/// A damaged image, its mask (255 = damaged, 0 = untouched) and the operations drawn.
#[derive(Clone, Debug)]
pub struct Damaged {
    pub image: RgbImage,
    pub mask: GrayImage,
    pub ops: Vec<DamageKind>,
}

/// SplitMix64 of `a` and `b`: per-image and per-epoch seeds from one run seed.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable seed for a named image (its id) under a run seed.
pub fn seed_for(seed: u64, id: &str) -> u64 {
    let mut f = crate::fsio::Fingerprint::default();
    f.update(id.as_bytes());
    mix(seed, u64::from_str_radix(&f.hex(), 16).unwrap_or(0))
}

/// Damage `img` with operations drawn from `cfg` by `seed`.
pub fn damage(img: &RgbImage, cfg: &DamageConfig, seed: u64) -> Damaged {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Canvas::new(img);
    let n = rng.gen_range(cfg.min_ops.max(1)..=cfg.max_ops.max(cfg.min_ops.max(1)));
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = cfg.kinds[rng.gen_range(0..cfg.kinds.len().max(1))];
        apply(&mut c, kind, cfg, &mut rng);
        ops.push(kind);
    }
    Damaged {
        image: c.out,
        mask: c.mask,
        ops,
    }
}

/// Apply one operation of `kind` to the canvas.
pub fn apply(c: &mut Canvas, kind: DamageKind, cfg: &DamageConfig, rng: &mut ChaCha8Rng) {
    match kind {
        DamageKind::Stroke => stroke(c, cfg, rng),
        DamageKind::Scratch => scratch(c, rng),
        DamageKind::Blotch => blotch(c, rng),
        DamageKind::Stain => stain(c, rng),
        DamageKind::TornCorner => torn_corner(c, rng),
        DamageKind::Fade => fade(c, rng),
        DamageKind::JpegBlocks => jpeg_blocks(c, rng),
    }
}

/// The image being damaged, the original it started from, and the mask of changed pixels.
pub struct Canvas<'a> {
    orig: &'a RgbImage,
    pub out: RgbImage,
    pub mask: GrayImage,
    w: i64,
    h: i64,
}

impl<'a> Canvas<'a> {
    pub fn new(orig: &'a RgbImage) -> Self {
        let (w, h) = orig.dimensions();
        Canvas {
            orig,
            out: orig.clone(),
            mask: GrayImage::new(w, h),
            w: w as i64,
            h: h as i64,
        }
    }

    fn side(&self) -> f32 {
        self.w.min(self.h) as f32
    }

    fn get(&self, x: i64, y: i64) -> [f32; 3] {
        let p = self.out.get_pixel(x as u32, y as u32).0;
        [p[0] as f32, p[1] as f32, p[2] as f32]
    }

    /// Write `v` at (x, y) (ignored outside the image) and mark it damaged. A value equal to the
    /// original pixel is nudged so that the mask is exactly the set of changed pixels.
    pub fn set(&mut self, x: i64, y: i64, v: [f32; 3]) {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            return;
        }
        let (xu, yu) = (x as u32, y as u32);
        let mut p = [0u8; 3];
        for (o, c) in p.iter_mut().zip(v) {
            *o = c.round().clamp(0.0, 255.0) as u8;
        }
        let orig = self.orig.get_pixel(xu, yu).0;
        if p == orig {
            p[0] = if orig[0] < 128 {
                orig[0] + 24
            } else {
                orig[0] - 24
            };
        }
        self.out.put_pixel(xu, yu, Rgb(p));
        self.mask.put_pixel(xu, yu, Luma([255]));
    }

    /// Blend toward `to` by `alpha` (0 = unchanged, 1 = replaced).
    fn blend(&mut self, x: i64, y: i64, to: [f32; 3], alpha: f32) {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            return;
        }
        let p = self.get(x, y);
        let v = [0, 1, 2].map(|i| p[i] + alpha * (to[i] - p[i]));
        self.set(x, y, v);
    }

    fn disk(&mut self, cx: f32, cy: f32, r: f32, color: [f32; 3]) {
        let (x0, x1) = ((cx - r).floor() as i64, (cx + r).ceil() as i64);
        let (y0, y1) = ((cy - r).floor() as i64, (cy + r).ceil() as i64);
        for y in y0.max(0)..=y1.min(self.h - 1) {
            for x in x0.max(0)..=x1.min(self.w - 1) {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.set(x, y, color);
                }
            }
        }
    }

    /// A polyline painted with disks of radius `r` every half pixel.
    fn line(&mut self, pts: &[(f32, f32)], r: f32, color: [f32; 3]) {
        for w in pts.windows(2) {
            let ((ax, ay), (bx, by)) = (w[0], w[1]);
            let len = ((bx - ax).powi(2) + (by - ay).powi(2)).sqrt();
            let steps = (len * 2.0).ceil().max(1.0) as usize;
            for s in 0..=steps {
                let t = s as f32 / steps as f32;
                self.disk(ax + t * (bx - ax), ay + t * (by - ay), r, color);
            }
        }
    }
}

/// Ink-like colours: near black, near white, or a grey.
fn ink(rng: &mut ChaCha8Rng) -> [f32; 3] {
    let v = match rng.gen_range(0..3) {
        0 => rng.gen_range(0.0..40.0),
        1 => rng.gen_range(215.0..255.0),
        _ => rng.gen_range(90.0..170.0),
    };
    let tint = rng.gen_range(-10.0..10.0);
    [v + tint, v, v - tint]
}

fn stroke(c: &mut Canvas, cfg: &DamageConfig, rng: &mut ChaCha8Rng) {
    let side = c.side();
    // At least 0.75 px: every pixel the path crosses has its centre within reach.
    let r = rng.gen_range(0.75..(cfg.max_stroke as f32 * side / 2.0).max(0.8));
    let (mut x, mut y) = (
        rng.gen_range(0.0..c.w as f32),
        rng.gen_range(0.0..c.h as f32),
    );
    let mut angle: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
    let mut pts = vec![(x, y)];
    for _ in 0..rng.gen_range(3..10) {
        angle += rng.gen_range(-1.2..1.2);
        let step = rng.gen_range(0.05..0.2) * side;
        x += step * angle.cos();
        y += step * angle.sin();
        pts.push((x, y));
    }
    let color = ink(rng);
    c.line(&pts, r, color);
}

fn scratch(c: &mut Canvas, rng: &mut ChaCha8Rng) {
    let side = c.side();
    let (x, y) = (
        rng.gen_range(0.0..c.w as f32),
        rng.gen_range(0.0..c.h as f32),
    );
    let angle: f32 = rng.gen_range(0.0..std::f32::consts::PI);
    let len = rng.gen_range(0.4..1.2) * side;
    let (dx, dy) = (angle.cos(), angle.sin());
    // A slight bend: both ends pushed sideways, the line still passes through (x, y).
    let bend = rng.gen_range(-0.04..0.04) * side;
    let pts = [
        (
            x - dx * len / 2.0 - dy * bend,
            y - dy * len / 2.0 + dx * bend,
        ),
        (x, y),
        (
            x + dx * len / 2.0 - dy * bend,
            y + dy * len / 2.0 + dx * bend,
        ),
    ];
    let v = rng.gen_range(200.0..255.0);
    c.line(&pts, rng.gen_range(0.75..1.25), [v, v, v]);
}

/// Pixels of an irregular blob: inside a circle whose radius wobbles with the angle.
fn blob(c: &Canvas, rng: &mut ChaCha8Rng, rmin: f32, rmax: f32) -> Vec<(i64, i64, f32)> {
    let side = c.side();
    let r = rng.gen_range(rmin..rmax) * side;
    let (cx, cy) = (
        rng.gen_range(0.0..c.w as f32),
        rng.gen_range(0.0..c.h as f32),
    );
    let waves: Vec<(f32, f32, f32)> = (0..3)
        .map(|k| {
            (
                (k + 2) as f32 + rng.gen_range(0.0..2.0f32).floor(),
                rng.gen_range(0.0..std::f32::consts::TAU),
                rng.gen_range(0.05..0.25),
            )
        })
        .collect();
    let reach = r * 1.8;
    let mut px = vec![];
    for y in ((cy - reach).floor() as i64).max(0)..=((cy + reach).ceil() as i64).min(c.h - 1) {
        for x in ((cx - reach).floor() as i64).max(0)..=((cx + reach).ceil() as i64).min(c.w - 1) {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let th = dy.atan2(dx);
            let wobble: f32 = waves.iter().map(|(f, ph, a)| a * (f * th + ph).sin()).sum();
            let edge = r * (1.0 + wobble);
            let d = (dx * dx + dy * dy).sqrt();
            if d <= edge {
                px.push((x, y, d / edge.max(1e-3)));
            }
        }
    }
    px
}

fn blotch(c: &mut Canvas, rng: &mut ChaCha8Rng) {
    let px = blob(c, rng, 0.02, 0.08);
    let base = ink(rng);
    for (x, y, _) in px {
        let n = rng.gen_range(-6.0..6.0);
        c.set(x, y, base.map(|v| v + n));
    }
}

fn stain(c: &mut Canvas, rng: &mut ChaCha8Rng) {
    let px = blob(c, rng, 0.04, 0.12);
    let tint = [
        rng.gen_range(120.0..170.0),
        rng.gen_range(85.0..120.0),
        rng.gen_range(40.0..70.0),
    ];
    let alpha = rng.gen_range(0.35..0.6);
    for (x, y, d) in px {
        // A darker rim where the liquid dried.
        let a = if d > 0.85 { alpha + 0.25 } else { alpha };
        c.blend(x, y, tint, a);
    }
}

fn torn_corner(c: &mut Canvas, rng: &mut ChaCha8Rng) {
    let side = c.side();
    let (a, b) = (
        rng.gen_range(0.1..0.3) * side,
        rng.gen_range(0.1..0.3) * side,
    );
    let corner = rng.gen_range(0..4);
    // A jagged tear from (a, 0) to (0, b) in the corner's own frame.
    let teeth = rng.gen_range(6..16);
    let jag: Vec<f32> = (0..=teeth)
        .map(|_| rng.gen_range(-0.06..0.06) * side)
        .collect();
    let backing = if rng.gen_bool(0.5) {
        let v = rng.gen_range(225.0..250.0);
        [v, v - 4.0, v - 12.0]
    } else {
        let v = rng.gen_range(5.0..35.0);
        [v, v, v]
    };
    for y in 0..c.h {
        for x in 0..c.w {
            let (u, v) = match corner {
                0 => (x as f32 + 0.5, y as f32 + 0.5),
                1 => (c.w as f32 - x as f32 - 0.5, y as f32 + 0.5),
                2 => (x as f32 + 0.5, c.h as f32 - y as f32 - 0.5),
                _ => (c.w as f32 - x as f32 - 0.5, c.h as f32 - y as f32 - 0.5),
            };
            // Position along the tear (0 at (a,0), 1 at (0,b)) and signed distance across it.
            let t = (((u - a) * -a + v * b) / (a * a + b * b)).clamp(0.0, 1.0);
            let k = (t * teeth as f32).min(teeth as f32 - 1e-3);
            let (i, f) = (k.floor() as usize, k.fract());
            let offset = jag[i] * (1.0 - f) + jag[i + 1] * f;
            let across = (u / a + v / b - 1.0) * (a * b) / (a * a + b * b).sqrt();
            if across < offset {
                let n = rng.gen_range(-3.0..3.0);
                c.set(x, y, backing.map(|q| q + n));
            }
        }
    }
}

fn fade(c: &mut Canvas, rng: &mut ChaCha8Rng) {
    let side = c.side();
    let (rx, ry) = (
        rng.gen_range(0.06..0.18) * side,
        rng.gen_range(0.06..0.18) * side,
    );
    let (cx, cy) = (
        rng.gen_range(0.0..c.w as f32),
        rng.gen_range(0.0..c.h as f32),
    );
    let strength = rng.gen_range(0.5..0.85);
    let paper = [
        rng.gen_range(225.0..245.0),
        rng.gen_range(215.0..235.0),
        rng.gen_range(190.0..215.0),
    ];
    for y in ((cy - ry).floor() as i64).max(0)..=((cy + ry).ceil() as i64).min(c.h - 1) {
        for x in ((cx - rx).floor() as i64).max(0)..=((cx + rx).ceil() as i64).min(c.w - 1) {
            let (dx, dy) = ((x as f32 + 0.5 - cx) / rx, (y as f32 + 0.5 - cy) / ry);
            let d2 = dx * dx + dy * dy;
            if d2 <= 1.0 {
                // Strongest in the middle, half as strong at the edge: the edge stays visible.
                c.blend(x, y, paper, strength * (1.0 - 0.5 * d2));
            }
        }
    }
}

fn jpeg_blocks(c: &mut Canvas, rng: &mut ChaCha8Rng) {
    let (bw, bh) = ((c.w / 8).max(1), (c.h / 8).max(1));
    let (nw, nh) = (rng.gen_range(1..=4.min(bw)), rng.gen_range(1..=4.min(bh)));
    let (bx0, by0) = (rng.gen_range(0..=bw - nw), rng.gen_range(0..=bh - nh));
    let step = rng.gen_range(24.0..64.0f32);
    for by in by0..by0 + nh {
        for bx in bx0..bx0 + nw {
            let (x0, y0) = (bx * 8, by * 8);
            let (x1, y1) = ((x0 + 8).min(c.w), (y0 + 8).min(c.h));
            let mut mean = [0.0f32; 3];
            let mut n = 0.0f32;
            for y in y0..y1 {
                for x in x0..x1 {
                    let p = c.get(x, y);
                    for i in 0..3 {
                        mean[i] += p[i];
                    }
                    n += 1.0;
                }
            }
            // The DC term only, coarsely quantised, with a chroma shift a lost AC/colour table
            // would cause.
            let shift: f32 = rng.gen_range(-30.0..30.0);
            let dc = [0, 1, 2].map(|i| {
                let m = mean[i] / n.max(1.0) + if i == 2 { shift } else { -shift / 2.0 };
                (m / step).round() * step
            });
            for y in y0..y1 {
                for x in x0..x1 {
                    c.set(x, y, dc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                rng.gen_range(0..=255),
            ])
        })
    }

    /// The mask is exactly the set of pixels that differ from the original.
    fn assert_exact(orig: &RgbImage, d: &Damaged) {
        for (x, y, p) in orig.enumerate_pixels() {
            let changed = d.image.get_pixel(x, y) != p;
            let masked = d.mask.get_pixel(x, y).0[0] == 255;
            assert_eq!(changed, masked, "pixel ({x},{y}) ops {:?}", d.ops);
            assert!(matches!(d.mask.get_pixel(x, y).0[0], 0 | 255));
        }
    }

    #[test]
    fn same_seed_same_damage_other_seed_other_damage() {
        let img = photo(64, 48, 1);
        let cfg = DamageConfig::default();
        let a = damage(&img, &cfg, 7);
        let b = damage(&img, &cfg, 7);
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.mask.as_raw(), b.mask.as_raw());
        assert_eq!(a.ops, b.ops);
        let c = damage(&img, &cfg, 8);
        assert_ne!(a.mask.as_raw(), c.mask.as_raw());
        assert_eq!(seed_for(3, "a.jpg"), seed_for(3, "a.jpg"));
        assert_ne!(seed_for(3, "a.jpg"), seed_for(3, "b.jpg"));
        assert_ne!(mix(1, 2), mix(2, 1));
    }

    #[test]
    fn masks_are_exactly_the_changed_pixels() {
        let cfg = DamageConfig::default();
        for seed in 0..40 {
            let img = photo(40 + seed as u32, 56, seed);
            let d = damage(&img, &cfg, seed);
            assert_exact(&img, &d);
            let holes = d.mask.as_raw().iter().filter(|&&m| m == 255).count();
            assert!(holes > 0, "seed {seed}: no damage");
        }
        // A flat image, where painted colours often equal the original: still exact.
        let flat = RgbImage::from_pixel(48, 48, Rgb([255, 255, 255]));
        for seed in 0..20 {
            assert_exact(&flat, &damage(&flat, &cfg, seed));
        }
    }

    #[test]
    fn every_kind_damages_something_and_not_everything() {
        let img = photo(96, 96, 3);
        for kind in DamageKind::ALL {
            let cfg = DamageConfig {
                min_ops: 1,
                max_ops: 1,
                kinds: vec![kind],
                ..Default::default()
            };
            for seed in 0..10 {
                let d = damage(&img, &cfg, seed);
                assert_exact(&img, &d);
                let holes = d.mask.as_raw().iter().filter(|&&m| m == 255).count();
                assert!(holes > 0, "{kind:?} seed {seed} changed nothing");
                assert!(holes < 96 * 96 * 3 / 4, "{kind:?} seed {seed}: {holes}");
            }
        }
    }

    #[test]
    fn tiny_images_do_not_panic() {
        let cfg = DamageConfig::default();
        for (w, h) in [(1, 1), (3, 2), (8, 1), (9, 17)] {
            let img = photo(w, h, 0);
            for seed in 0..10 {
                assert_exact(&img, &damage(&img, &cfg, seed));
            }
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut cfg = DamageConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.min_ops = 0;
        assert!(cfg.validate().is_err());
        cfg = DamageConfig {
            kinds: vec![],
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }
}
