//! Image preprocessing: decode a JPEG/PNG file to RGB, resize and crop it, and normalize it
//! into a CHW `f32` buffer ready for a CNN encoder.
//!
//! The geometry follows torchvision on PIL images (`Resize(size)` + `CenterCrop(size)`, or
//! `Resize((size, size))`), and the resampling reproduces Pillow's bilinear resize bit for bit
//! (`image/resample.rs`), so captag's tensors equal the Python notebooks'
//! `Resize → CenterCrop → ToTensor → Normalize` up to JPEG-decoder differences (zune-jpeg here,
//! libjpeg-turbo in PIL: on 4:2:0 files about one byte in six differs, by 1–2 levels, rarely up
//! to 4; see bench/README.md). Normalization and the HWC → CHW transpose
//! happen in one pass through per-channel lookup tables computed with torchvision's own `f32`
//! operations.
use std::io::Cursor;
use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod clip;
mod resample;
pub use resample::resize_crop_rgb;
use resample::{resample_crop, Geometry};

/// How a picture of any shape becomes `size × size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// torchvision `Resize(size)` + `CenterCrop(size)`: shorter side to `size`, keep aspect,
    /// cut the centre square.
    CenterCrop,
    /// torchvision `Resize((size, size))`: ignore the aspect ratio (Keras `load_img` style).
    Squash,
    /// `CLIPImageProcessor` (`clip.rs`): the shorter side to `shortest_edge` with Pillow's
    /// `filter`, the longer truncated, then the `size × size` centre cut at floor offsets.
    ClipCrop {
        shortest_edge: u32,
        filter: clip::Filter,
    },
}

/// Pixel scaling expected by the pretrained weights the encoder was trained with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Normalization {
    /// torchvision: RGB / 255, then mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225].
    ImageNet,
    /// Keras `preprocess_input(mode='caffe')`: RGB → BGR, 0..255, minus [103.939, 116.779, 123.68].
    CaffeBgr,
    /// Keras `mode='tf'` (MobileNet): x / 127.5 − 1.
    MinusOneOne,
    /// EfficientNet-Lite's TF-Lite input: (x − 127) / 128.
    Centered127,
    /// `CLIPImageProcessor`: `x · (1/255)`, then `(x − mean) / std` with the model's own
    /// values (`preprocessor_config.json`).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
}

/// Everything that decides the tensor an image file becomes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub size: u32,
    pub resize: ResizeMode,
    pub norm: Normalization,
}

impl Preprocess {
    /// `CLIPImageProcessor`'s defaults (224 px, bicubic, OpenAI's mean and std).
    pub fn clip_default() -> Self {
        clip::ClipPreprocess::default().preprocess()
    }

    /// Settings every image can be preprocessed with (a hand-edited run config is refused
    /// here, not by a failure inside the resampler): the first problem.
    pub fn check(&self) -> std::result::Result<(), String> {
        if let ResizeMode::ClipCrop { shortest_edge, .. } = self.resize {
            if shortest_edge < self.size {
                return Err(format!(
                    "preprocess: shortest_edge {shortest_edge} is below the crop {}",
                    self.size
                ));
            }
        }
        if let Normalization::MeanStd { mean, std } = self.norm {
            if mean.iter().chain(&std).any(|x| !x.is_finite()) || std.contains(&0.0) {
                return Err("preprocess: mean/std must be finite, std non-zero".into());
            }
        }
        Ok(())
    }

    /// Number of `f32`s one image becomes: `3 * size * size`.
    pub fn output_len(&self) -> usize {
        let s = self.size as usize;
        3 * s * s
    }
}

/// `--max-megapixels`' default: the largest picture any command decodes. A 50-megapixel phone
/// photo is the biggest a user is likely to caption; 40 keeps one decode under 120 MB of RGB.
pub const DEFAULT_MAX_MEGAPIXELS: u64 = 40;

static MAX_PIXELS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_MEGAPIXELS * 1_000_000);

/// Sets the pixel limit of every decode in this process (the global `--max-megapixels`).
pub fn set_max_pixels(pixels: u64) {
    MAX_PIXELS.store(pixels, std::sync::atomic::Ordering::Relaxed);
}

/// The pixel limit of every decode (width × height).
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Decodes `path` and preprocesses it: `3 * size * size` floats, channel-major (CHW).
pub fn load_chw(path: &Path, p: &Preprocess) -> Result<Vec<f32>> {
    let img = decode_rgb(path)?;
    Ok(preprocess_rgb(&img, p))
}

/// [`load_chw`] into a caller-provided buffer (the batch loader writes straight into its batch).
pub fn load_chw_into(path: &Path, p: &Preprocess, out: &mut [f32]) -> Result<()> {
    let img = decode_rgb(path)?;
    preprocess_rgb_into(&img, p, out)
}

/// Reads and decodes a JPEG or PNG (format sniffed from the bytes, not the extension); grayscale,
/// alpha, palette and CMYK images come back as 8-bit RGB. The EXIF orientation is applied, so a
/// phone photo taken sideways is captioned upright (PIL leaves that to `ImageOps.exif_transpose`;
/// Flickr8k's images carry no orientation tag, so features there are unchanged).
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = crate::input::read_bytes(path, crate::input::IMAGE, "an image")?;
    decode_rgb_bytes(&bytes, path)
}

/// [`decode_rgb`] of bytes already read; `path` only names the image in errors.
///
/// This is the one decode every command goes through (datasets, `caption`, `restore`,
/// `damage`, the server), so the decompression-bomb check lives here: the size in the header
/// is checked against [`max_pixels`] before a pixel is decoded (a 109 KB PNG can declare
/// 30000×30000, 2.7 GB of RGB).
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let bad = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(crate::input::one_line(e)))?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg) => {
            // zune-jpeg runs in lenient mode inside `image` and grey-fills a cut-off scan; PIL
            // refuses such files ("image file is truncated"), and so do we.
            if !jpeg_is_complete(bytes) {
                return Err(bad("truncated JPEG (no end-of-image marker)".into()));
            }
        }
        Some(image::ImageFormat::Png) => {}
        _ => return Err(bad("not a JPEG or PNG file".into())),
    }
    let (w, h) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(crate::input::one_line(e)))?
        .into_dimensions()
        .map_err(|e| bad(crate::input::one_line(e)))?;
    let (pixels, limit) = (w as u64 * h as u64, max_pixels());
    if pixels > limit {
        return Err(bad(format!(
            "{w}×{h} is {:.1} megapixels, over the --max-megapixels limit of {}",
            pixels as f64 / 1e6,
            limit as f64 / 1e6
        )));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| bad(crate::input::one_line(e)))?;
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        image::DynamicImage::from_decoder(decoder).map_err(|e| bad(crate::input::one_line(e)))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("image has no pixels".into()));
    }
    Ok(img.into_rgb8())
}

/// Preprocesses an RGB image into a new CHW buffer (see [`preprocess_rgb_into`]).
pub fn preprocess_rgb(img: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let mut out = vec![0.0; p.output_len()];
    // The buffer has exactly the required length, so this cannot fail.
    let _ = preprocess_rgb_into(img, p, &mut out);
    out
}

/// Resizes/crops `img` as `p` says and writes normalized CHW floats into `out`, which must hold
/// exactly [`Preprocess::output_len`] values.
pub fn preprocess_rgb_into(img: &RgbImage, p: &Preprocess, out: &mut [f32]) -> Result<()> {
    if out.len() != p.output_len() {
        return Err(Error::invalid(format!(
            "image buffer holds {} floats, preprocessing to {}px needs {}",
            out.len(),
            p.size,
            p.output_len()
        )));
    }
    if p.size == 0 {
        return Ok(());
    }
    let (w, h) = img.dimensions();
    if let (
        ResizeMode::ClipCrop {
            shortest_edge,
            filter,
        },
        true,
    ) = (p.resize, w > 0 && h > 0)
    {
        let crop = clip::resize_crop(img, shortest_edge, p.size, filter);
        normalize_hwc_to_chw(&crop, p.size as usize * 3, 0, 0, p.size, p.norm, out);
        return Ok(());
    }
    if w == 0 || h == 0 {
        // Nothing to resample: a black picture is the only sensible reading.
        let (lut, _) = lookup_tables(p.norm);
        for (plane, table) in out.chunks_exact_mut(p.output_len() / 3).zip(&lut) {
            plane.fill(table[0]);
        }
        return Ok(());
    }
    let g = Geometry::new(w, h, p.size, p.resize);
    let s = p.size as usize;
    if g.resized == (w, h) {
        // Already the target size (all of Flickr8k here): crop straight from the decoded pixels,
        // skipping the copy `resample_crop` would make.
        normalize_hwc_to_chw(
            img.as_raw(),
            w as usize * 3,
            g.x0,
            g.y0,
            p.size,
            p.norm,
            out,
        );
    } else {
        let crop = resample_crop(img, &g, p.size);
        normalize_hwc_to_chw(&crop, s * 3, 0, 0, p.size, p.norm, out);
    }
    Ok(())
}

/// Per-output-channel lookup tables (byte value → normalized float) and, for each output
/// channel, which RGB input channel feeds it. Computed in `f32` with the same operations as
/// torchvision (`x.float().div(255)`, `.sub_(mean).div_(std)`) and Keras, so values agree exactly.
fn lookup_tables(norm: Normalization) -> ([[f32; 256]; 3], [usize; 3]) {
    let mut lut = [[0f32; 256]; 3];
    let src = match norm {
        Normalization::CaffeBgr => [2, 1, 0],
        _ => [0, 1, 2],
    };
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, out) in table.iter_mut().enumerate() {
            let x = v as f32;
            *out = match norm {
                Normalization::ImageNet => {
                    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
                    const STD: [f32; 3] = [0.229, 0.224, 0.225];
                    (x / 255.0 - MEAN[c]) / STD[c]
                }
                Normalization::CaffeBgr => {
                    const MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
                    x - MEAN_BGR[c]
                }
                Normalization::MinusOneOne => x / 127.5 - 1.0,
                Normalization::Centered127 => (x - 127.0) / 128.0,
                // `CLIPImageProcessor`'s own order of operations (rescale, then normalise).
                Normalization::MeanStd { mean, std } => (x * (1.0 / 255.0) - mean[c]) / std[c],
            };
        }
    }
    (lut, src)
}

/// Reads the `size × size` window at (`x0`, `y0`) of packed RGB rows (`stride` bytes apart)
/// into the three channel planes of `out`, each byte through its channel's lookup table.
/// Plane by plane, so each output stream is written sequentially (measured faster than
/// writing three planes per pixel).
fn normalize_hwc_to_chw(
    src: &[u8],
    stride: usize,
    x0: u32,
    y0: u32,
    size: u32,
    norm: Normalization,
    out: &mut [f32],
) {
    let s = size as usize;
    let (lut, ch) = lookup_tables(norm);
    for ((plane, table), &c) in out.chunks_exact_mut(s * s).zip(&lut).zip(&ch) {
        for (y, out_row) in plane.chunks_exact_mut(s).enumerate() {
            let base = (y0 as usize + y) * stride + x0 as usize * 3;
            let row = &src[base + c..base + s * 3];
            for (o, &v) in out_row.iter_mut().zip(row.iter().step_by(3)) {
                *o = table[v as usize];
            }
        }
    }
}

/// Position of the first `0xFF` at or after `from`, eight bytes at a time (the classic
/// has-zero-byte test on the complement); entropy-coded data is mostly scanned here.
fn find_ff(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let tail = b.get(from..)?;
    let mut skipped = 0;
    for word in tail.chunks_exact(8) {
        let x = !u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        if x.wrapping_sub(LO) & !x & HI != 0 {
            break;
        }
        skipped += 8;
    }
    tail[skipped..]
        .iter()
        .position(|&x| x == 0xFF)
        .map(|p| from + skipped + p)
}

/// Whether a JPEG stream is complete: walking its segments (skipping the entropy-coded data
/// after each SOS, where `FF 00` and `FF D0..D7` are not markers) reaches an EOI marker. Bytes
/// after EOI are allowed, as libjpeg allows them.
fn jpeg_is_complete(b: &[u8]) -> bool {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    loop {
        // Tolerate stray bytes and fill bytes before a marker, as libjpeg does (with a warning).
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 | 0x00 => continue,
            _ => {
                let Some(len) = b.get(i..i + 2) else {
                    return false;
                };
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                i += len;
                if len < 2 || i > b.len() {
                    return false;
                }
                if marker == 0xDA {
                    // Entropy-coded data runs until an FF that starts a real marker.
                    loop {
                        let Some(ff) = find_ff(b, i) else {
                            return false;
                        };
                        let mut j = ff + 1;
                        while j < b.len() && b[j] == 0xFF {
                            j += 1;
                        }
                        match b.get(j) {
                            None => return false,
                            Some(0x00) | Some(0xD0..=0xD7) => i = j + 1,
                            Some(_) => {
                                i = j - 1;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn pre(size: u32, resize: ResizeMode, norm: Normalization) -> Preprocess {
        Preprocess { size, resize, norm }
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 37 % 256) as u8, (y * 71 % 256) as u8, 9])
        })
    }

    #[test]
    fn output_is_three_planes_of_size_squared() {
        for mode in [ResizeMode::CenterCrop, ResizeMode::Squash] {
            let p = pre(6, mode, Normalization::ImageNet);
            assert_eq!(preprocess_rgb(&gradient(10, 7), &p).len(), 3 * 6 * 6);
            assert_eq!(preprocess_rgb(&gradient(6, 6), &p).len(), 3 * 6 * 6);
        }
        let p = pre(4, ResizeMode::Squash, Normalization::ImageNet);
        assert!(preprocess_rgb_into(&gradient(5, 5), &p, &mut [0.0; 47]).is_err());
    }

    // Expected values: torch `x.float().div(255)` + `T.Normalize(mean, std)` (ImageNet), numpy
    // float32 `x[::-1] - [103.939, 116.779, 123.68]` (caffe), `x / 127.5 - 1` (tf).
    #[test]
    fn normalization_of_a_constant_colour() {
        let img = RgbImage::from_pixel(30, 20, Rgb([10, 128, 250])); // resized: constant stays
        let cases = [
            (
                Normalization::ImageNet,
                [-1.946_656_5_f32, 0.205_182_2, 2.552_854_3],
            ),
            (Normalization::CaffeBgr, [146.061, 11.221_001, -113.68]),
            (
                Normalization::MinusOneOne,
                [-0.921_568_63, 0.003_921_628, 0.960_784_3],
            ),
        ];
        for (norm, want) in cases {
            let out = preprocess_rgb(&img, &pre(8, ResizeMode::CenterCrop, norm));
            for (c, plane) in out.chunks_exact(64).enumerate() {
                assert!(
                    plane.iter().all(|&v| v == want[c]),
                    "{norm:?} channel {c}: {}",
                    plane[0]
                );
            }
        }
    }

    #[test]
    fn find_ff_agrees_with_a_plain_search() {
        let plain: Vec<u8> = (0..100u32).map(|i| (i * 37 % 255) as u8).collect(); // no 0xFF
        assert_eq!(find_ff(&plain, 0), None);
        assert_eq!(find_ff(&plain, 500), None);
        for pos in [0, 7, 8, 9, 63, 99] {
            let mut b = plain.clone();
            b[pos] = 0xFF;
            for from in [0, 1, 8, pos, pos + 1] {
                let want = b
                    .get(from..)
                    .and_then(|t| t.iter().position(|&x| x == 0xFF));
                assert_eq!(
                    find_ff(&b, from),
                    want.map(|p| p + from),
                    "ff at {pos}, from {from}"
                );
            }
        }
    }

    fn write_jpeg(path: &Path, img: &RgbImage) {
        let mut f = std::fs::File::create(path).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 90)
            .encode_image(img)
            .unwrap();
    }

    #[test]
    fn exif_orientation_is_applied() {
        use image::ImageEncoder;
        // 4×2: left half red, right half blue; EXIF orientation 6 = rotate 90° clockwise.
        let img = RgbImage::from_fn(4, 2, |x, _| {
            if x < 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let mut bytes = vec![];
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100);
        let tiff: Vec<u8> = vec![
            b'I', b'I', 42, 0, 8, 0, 0, 0, // little-endian TIFF, first IFD at 8
            1, 0, // one entry
            0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, // Orientation (SHORT) = 6
            0, 0, 0, 0, // no next IFD
        ];
        enc.set_exif_metadata(tiff).unwrap();
        enc.write_image(img.as_raw(), 4, 2, image::ExtendedColorType::Rgb8)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("phone.jpg");
        std::fs::write(&p, &bytes).unwrap();
        let got = decode_rgb(&p).unwrap();
        assert_eq!(got.dimensions(), (2, 4));
        // Rotated clockwise: the left (red) half is now on top.
        assert!(got.get_pixel(0, 0).0[0] > 200 && got.get_pixel(0, 3).0[2] > 200);
    }

    #[test]
    fn decodes_jpeg_and_png_of_any_colour_type() {
        let dir = tempfile::tempdir().unwrap();
        let jpg = dir.path().join("a.jpg");
        write_jpeg(&jpg, &gradient(40, 30));
        let p = pre(16, ResizeMode::CenterCrop, Normalization::ImageNet);
        assert_eq!(load_chw(&jpg, &p).unwrap().len(), 3 * 16 * 16);
        assert_eq!(decode_rgb(&jpg).unwrap().dimensions(), (40, 30));

        let gray = dir.path().join("g.png");
        image::GrayImage::from_pixel(5, 4, image::Luma([77]))
            .save(&gray)
            .unwrap();
        assert!(decode_rgb(&gray)
            .unwrap()
            .pixels()
            .all(|&p| p == Rgb([77, 77, 77])));
        let rgba = dir.path().join("named-like-a.jpg"); // format comes from the bytes
        image::RgbaImage::from_pixel(5, 4, image::Rgba([1, 2, 3, 4]))
            .save_with_format(&rgba, image::ImageFormat::Png)
            .unwrap();
        assert!(decode_rgb(&rgba)
            .unwrap()
            .pixels()
            .all(|&p| p == Rgb([1, 2, 3])));
    }

    #[test]
    fn truncated_or_fake_images_are_image_errors() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.jpg");
        write_jpeg(&full, &gradient(64, 48));
        let bytes = std::fs::read(&full).unwrap();
        assert!(jpeg_is_complete(&bytes));
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0, 0, 0x12]); // junk after EOI is allowed
        assert!(jpeg_is_complete(&padded));

        let half = dir.path().join("half.jpg");
        std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, "this is not a picture\n").unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        let p = pre(8, ResizeMode::Squash, Normalization::ImageNet);
        for bad in [&half, &text, &empty] {
            match load_chw(bad, &p) {
                Err(Error::Image { path, .. }) => assert_eq!(&path, bad),
                other => panic!("{}: {other:?}", bad.display()),
            }
        }
        let missing = dir.path().join("missing.jpg");
        assert!(matches!(load_chw(&missing, &p), Err(Error::Io { .. })));
    }
}
