//! Damaged-photo restoration (docs/ARCHITECTURE.md, "Restoration"; README, "Restoring damaged
//! photos"): synthetic damage with exact masks ([`damage`]), a mask U-Net that finds the damage
//! and a partial-convolution U-Net that fills it ([`unet`], [`pconv`]), classical fills as
//! baselines ([`fill`]), metrics ([`metrics`]), training into a run directory ([`train`]) and
//! restoring/evaluating with a trained run ([`apply`]).
//!
//! A vertical slice beside `train`/`eval`/`infer`: it uses `run` (lock, recovery, the epoch
//! commit), `model` (weights I/O, the SqueezeNet features for the perceptual loss) and `data`
//! (dataset layouts, image decoding and resizing), and nothing above it uses it but `commands`.
pub mod apply;
pub mod captioning;
pub mod damage;
pub mod fill;
pub mod metrics;
pub mod pconv;
pub mod train;
pub mod unet;

use image::{GrayImage, RgbImage};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::{Error, Result};
use unet::{MaskUNet, NetConfig, PConvUNet};

/// Both networks in one variable store (`mask.*`, `inpaint.*`), trained together: their
/// parameters are disjoint, so one Adam over the summed losses is two independent Adams.
#[derive(Debug)]
pub struct Restorer {
    pub vs: VarStore,
    pub mask: MaskUNet,
    pub inpaint: PConvUNet,
    pub net: NetConfig,
}

impl Restorer {
    pub fn new(net: &NetConfig, device: Device) -> Restorer {
        let vs = VarStore::new(device);
        let mask = MaskUNet::new(vs.root() / "mask", net.mask_channels, net.mask_depth);
        let inpaint = PConvUNet::new(
            vs.root() / "inpaint",
            net.inpaint_channels,
            net.inpaint_depth,
        );
        Restorer {
            vs,
            mask,
            inpaint,
            net: net.clone(),
        }
    }

    /// `img [B, 3, S, S]` in [0, 1] ⇒ damage probability `[B, 1, S, S]`.
    pub fn detect(&self, img: &Tensor) -> Tensor {
        tch::no_grad(|| self.mask.forward_t(img, false).sigmoid())
    }

    /// `img [B, 3, S, S]`, `hole [B, 1, S, S]` (1 = damaged) ⇒ the composite in [0, 1]: known
    /// pixels from `img`, holes from the inpainter.
    pub fn fill(&self, img: &Tensor, hole: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let valid = 1.0f64 - hole;
            let out = self.inpaint.forward_t(img, &valid, false).clamp(0.0, 1.0);
            img * &valid + out * hole
        })
    }
}

/// RGB images (all the same size) ⇒ `[B, 3, H, W]` in [0, 1].
pub fn images_tensor(imgs: &[&RgbImage], device: Device) -> Tensor {
    let (w, h) = imgs.first().map_or((0, 0), |i| i.dimensions());
    let mut flat = Vec::with_capacity(imgs.len() * 3 * (w * h) as usize);
    for img in imgs {
        for c in 0..3 {
            flat.extend(img.pixels().map(|p| p.0[c] as f32 / 255.0));
        }
    }
    Tensor::from_slice(&flat)
        .view([imgs.len() as i64, 3, h as i64, w as i64])
        .to_device(device)
}

/// Hole masks ⇒ `[B, 1, H, W]`, 1 where the mask is non-zero (damaged).
pub fn masks_tensor(masks: &[&GrayImage], device: Device) -> Tensor {
    let (w, h) = masks.first().map_or((0, 0), |m| m.dimensions());
    let flat: Vec<f32> = masks
        .iter()
        .flat_map(|m| m.as_raw().iter().map(|&v| if v > 0 { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_slice(&flat)
        .view([masks.len() as i64, 1, h as i64, w as i64])
        .to_device(device)
}

/// Row `b` of `[B, 3, H, W]` in [0, 1] ⇒ an RGB image.
pub fn tensor_image(t: &Tensor, b: i64) -> Result<RgbImage> {
    let x = (t.get(b).clamp(0.0, 1.0) * 255.0)
        .round()
        .permute([1, 2, 0])
        .contiguous()
        .to_kind(Kind::Uint8)
        .to_device(Device::Cpu);
    let s = x.size();
    let bytes = Vec::<u8>::try_from(x.flatten(0, -1)).map_err(Error::Torch)?;
    RgbImage::from_raw(s[1] as u32, s[0] as u32, bytes)
        .ok_or_else(|| Error::invalid("restore: image tensor of the wrong size"))
}

/// Row `b` of `[B, 1, H, W]` ⇒ a mask (255 where the value is > `threshold`).
pub fn tensor_mask(t: &Tensor, b: i64, threshold: f64) -> Result<GrayImage> {
    let x = t
        .get(b)
        .get(0)
        .gt(threshold)
        .to_kind(Kind::Uint8)
        .to_device(Device::Cpu)
        * 255;
    let s = x.size();
    let bytes = Vec::<u8>::try_from(x.flatten(0, -1)).map_err(Error::Torch)?;
    GrayImage::from_raw(s[1] as u32, s[0] as u32, bytes)
        .ok_or_else(|| Error::invalid("restore: mask tensor of the wrong size"))
}

/// A mask as booleans (row-major, `true` = damaged).
pub fn holes(mask: &GrayImage) -> Vec<bool> {
    mask.as_raw().iter().map(|&v| v > 0).collect()
}

/// PNG bytes of an 8-bit image buffer.
pub fn encode_png<P>(img: &image::ImageBuffer<P, Vec<u8>>) -> Result<Vec<u8>>
where
    P: image::PixelWithColorType + image::Pixel<Subpixel = u8>,
{
    let mut buf = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut buf),
        img.as_raw(),
        img.width(),
        img.height(),
        P::COLOR_TYPE,
    )
    .map_err(|e| Error::invalid(format!("cannot encode PNG: {e}")))?;
    Ok(buf)
}

/// A mask shrunk to `size × size`: a cell is damaged when any pixel it covers is, so no damage
/// disappears at the lower resolution.
pub fn shrink_mask(mask: &GrayImage, size: u32) -> GrayImage {
    let (w, h) = mask.dimensions();
    let mut out = GrayImage::new(size, size);
    for ty in 0..size {
        let (y0, y1) = span(ty, size, h);
        for tx in 0..size {
            let (x0, x1) = span(tx, size, w);
            let any = (y0..y1).any(|y| (x0..x1).any(|x| mask.get_pixel(x, y).0[0] > 0));
            if any {
                out.put_pixel(tx, ty, image::Luma([255]));
            }
        }
    }
    out
}

/// Source pixels `[a, b)` that target cell `t` of `n` covers along a side of `len`.
fn span(t: u32, n: u32, len: u32) -> (u32, u32) {
    let a = (t as u64 * len as u64 / n as u64) as u32;
    let b = (((t as u64 + 1) * len as u64).div_ceil(n as u64) as u32).max(a + 1);
    (a.min(len.saturating_sub(1)), b.min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_keeps_thin_damage() {
        let mut m = GrayImage::new(100, 60);
        for y in 0..60 {
            m.put_pixel(37, y, image::Luma([255]));
        }
        let s = shrink_mask(&m, 10);
        assert_eq!(s.dimensions(), (10, 10));
        for y in 0..10 {
            assert_eq!(s.get_pixel(3, y).0[0], 255);
            assert_eq!(s.get_pixel(5, y).0[0], 0);
        }
        // Upscaling (a 4-px mask to 8): every cell maps to a source pixel.
        let mut t = GrayImage::new(4, 4);
        t.put_pixel(1, 2, image::Luma([255]));
        let u = shrink_mask(&t, 8);
        assert_eq!(u.as_raw().iter().filter(|&&v| v > 0).count(), 4);
    }

    #[test]
    fn image_tensors_round_trip() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 90, 7]));
        let t = images_tensor(&[&img, &img], Device::Cpu);
        assert_eq!(t.size(), vec![2, 3, 3, 5]);
        assert_eq!(tensor_image(&t, 1).unwrap(), img);
        let mut m = GrayImage::new(5, 3);
        m.put_pixel(4, 0, image::Luma([9]));
        let mt = masks_tensor(&[&m], Device::Cpu);
        let back = tensor_mask(&mt, 0, 0.5).unwrap();
        assert_eq!(holes(&back), holes(&m));
        let png = encode_png(&img).unwrap();
        assert_eq!(image::load_from_memory(&png).unwrap().to_rgb8(), img);
    }
}
