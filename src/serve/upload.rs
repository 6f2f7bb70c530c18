//! An uploaded image, checked before anything expensive happens: the format is sniffed from the
//! bytes (never the file name), the pixel count is read from the header and refused before the
//! full decode (a decompression bomb never allocates), and only then is it decoded (EXIF
//! orientation applied, like `captag caption`). Nothing the client sends names a file: kept
//! images are stored under their SHA-256.
use sha2::{Digest, Sha256};

/// Why an upload was refused, with the HTTP status it maps to.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// 415: not a JPEG or PNG.
    NotAnImage(String),
    /// 413: more pixels than the server accepts.
    TooManyPixels(String),
    /// 400: looks like an image but does not decode.
    Bad(String),
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::NotAnImage(_) => 415,
            Refused::TooManyPixels(_) => 413,
            Refused::Bad(_) => 400,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            Refused::NotAnImage(m) | Refused::TooManyPixels(m) | Refused::Bad(m) => m,
        }
    }
}

/// A decoded upload.
pub struct Upload {
    pub image: image::RgbImage,
    pub sha256: String,
    /// `jpg` or `png`, from the bytes.
    pub ext: &'static str,
}

/// Sniff, bound and decode `bytes`.
pub fn check(bytes: &[u8], max_pixels: u64) -> Result<Upload, Refused> {
    if bytes.is_empty() {
        return Err(Refused::Bad("empty upload: send the image bytes".into()));
    }
    let ext = match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg) => "jpg",
        Ok(image::ImageFormat::Png) => "png",
        Ok(other) => {
            return Err(Refused::NotAnImage(format!(
                "{other:?} images are not supported: send a JPEG or PNG"
            )))
        }
        Err(_) => {
            return Err(Refused::NotAnImage(
                "not an image: send a JPEG or PNG".into(),
            ))
        }
    };
    let (w, h) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Refused::Bad(format!("cannot read the image header: {e}")))?
        .into_dimensions()
        .map_err(|e| Refused::Bad(format!("cannot read the image header: {e}")))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(Refused::TooManyPixels(format!(
            "image is {w}×{h} = {:.1} megapixels; this server accepts at most {:.1}",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    }
    let image = crate::data::image::decode_rgb_bytes(bytes, std::path::Path::new("upload"))
        .map_err(|e| Refused::Bad(e.to_string()))?;
    let sha256 = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Upload { image, sha256, ext })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn each_bad_upload_gets_its_status() {
        let ok = check(&png(8, 6), 100).ok().unwrap();
        assert_eq!((ok.image.width(), ok.image.height(), ok.ext), (8, 6, "png"));
        assert_eq!(ok.sha256.len(), 64);
        assert_eq!(check(b"", 100).err().unwrap().status(), 400);
        assert_eq!(check(b"hello, world", 100).err().unwrap().status(), 415);
        assert_eq!(
            check(b"GIF89a\x01\0\x01\0", 100).err().unwrap().status(),
            415
        );
        // Over the pixel limit: refused from the header.
        assert_eq!(check(&png(20, 10), 100).err().unwrap().status(), 413);
        // A PNG cut in half: sniffed as PNG, fails to decode.
        let p = png(8, 6);
        assert_eq!(check(&p[..p.len() / 2], 100).err().unwrap().status(), 400);
    }

    #[test]
    fn a_bomb_header_is_refused_before_decoding() {
        // A PNG header claiming 100000 × 100000 pixels and no data.
        let mut p = png(1, 1);
        p[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        p[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let e = check(&p, 40_000_000).err().unwrap();
        assert!(
            e.status() == 413 || e.status() == 400,
            "{e:?}: must not try to allocate 10 gigapixels"
        );
    }
}
