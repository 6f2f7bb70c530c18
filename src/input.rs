//! The one bounded reader: every file captag reads (images, captions CSV/JSON, BLEU inputs,
//! vocabularies, tag lists, configs, metrics, checkpoints, feature caches) is opened here.
//!
//! A path is read only if it is a regular file no larger than the limit for its kind:
//! - a FIFO is opened with `O_NONBLOCK`, so opening it never waits for a writer, and is then
//!   refused (a plain `open` + `read` would block forever);
//! - a character device (`/dev/zero`, also through a symlink) is refused before a byte is read
//!   (reading it would grow memory without bound);
//! - a file over the limit (a 3 GB sparse `.jpg`) is refused from its size alone, and the read
//!   itself stops one byte past the limit, so a file that grows while being read stays bounded.
//!
//! The type and size come from `fstat` on the opened descriptor (after a cheap path `stat`
//! that keeps devices from even being opened), so swapping the path between check and read
//! cannot slip a special file through.
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::{Error, Result};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Images (JPEG/PNG). A Flickr8k picture is ~100 KB and a 50-megapixel phone JPEG ~25 MB;
/// anything over 256 MiB is not a photo captag should decode (decoded pixels are bounded
/// separately by the `image` crate's allocation limit).
pub const IMAGE: u64 = 256 * MIB;

/// Text and JSON inputs: captions files (Kaggle/UIUC/Instagram CSV, Karpathy JSON), split
/// lists, BLEU predictions/references, vocabularies, tag lists, run configs, metrics, comparison
/// specs. The largest real one, Karpathy's `dataset_coco.json`, is ~150 MB; they are parsed in
/// memory, so 1 GiB bounds what a mistaken path can cost.
pub const TEXT: u64 = GIB;

/// Checkpoints (`*.safetensors` weights, optimizer state). VGG19's weights are ~550 MB and an
/// Adam state doubles a model; 16 GiB leaves room for much larger encoders.
pub const CHECKPOINT: u64 = 16 * GIB;

/// Feature caches (`captag features`). Pooled vectors are small, but a `--grid` cache keeps
/// every image's conv map as float16: VGG19's 14×14×512 grid is ~200 KB an image, so
/// Flickr8k's cache is ~1.2 GB and COCO's 123k images make ~25 GB. The cache is loaded whole,
/// so 64 GiB is the most any machine that can train from it would hold.
pub const FEATURE_CACHE: u64 = 64 * GIB;

/// `3.0 GiB`, `256 MiB`, `12 KiB`, `17 bytes`.
pub fn human_size(bytes: u64) -> String {
    let units = [(GIB, "GiB"), (MIB, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in units {
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Refuse anything but a regular file of at most `limit` bytes.
fn check_meta(path: &Path, meta: &Metadata, limit: u64, what: &str) -> Result<()> {
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{}: not a regular file ({}); captag reads only regular files",
            path.display(),
            kind_of(meta)
        )));
    }
    if meta.len() > limit {
        return Err(over_limit(path, meta.len(), limit, what));
    }
    Ok(())
}

fn over_limit(path: &Path, size: u64, limit: u64, what: &str) -> Error {
    Error::invalid(format!(
        "{}: {} is over the {} limit for {what}",
        path.display(),
        human_size(size),
        human_size(limit)
    ))
}

/// Open `path` for reading if it is a regular file of at most `limit` bytes; `what` names the
/// kind of file in the size error ("an image", "a checkpoint").
///
/// The open uses `O_NONBLOCK` (a FIFO opens at once instead of waiting for a writer; regular
/// files ignore the flag) and `O_NOCTTY`; type and size are then taken from the descriptor.
pub fn open_regular(path: &Path, limit: u64, what: &str) -> Result<File> {
    // A path stat first, so a device is refused without being opened (opening some devices
    // has side effects); the descriptor is checked again below against a swap in between.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    check_meta(path, &meta, limit, what)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    check_meta(path, &meta, limit, what)?;
    Ok(file)
}

/// Check that `path` is a regular file of at most `limit` bytes, for code that must hand the
/// path itself to a library. Prefer [`read_bytes`], which cannot race with a swapped path.
pub fn check_regular(path: &Path, limit: u64, what: &str) -> Result<()> {
    open_regular(path, limit, what).map(drop)
}

/// The whole of `path`, a regular file of at most `limit` bytes (see [`open_regular`]).
pub fn read_bytes(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, limit, what)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0).min(limit);
    let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    // One byte past the limit: a file that grew after the size check is still refused.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::invalid(format!(
            "{}: grew past the {} limit for {what} while being read",
            path.display(),
            human_size(limit)
        )));
    }
    Ok(bytes)
}

/// [`read_bytes`] as UTF-8 text; invalid UTF-8 is an error naming the byte offset.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let bytes = read_bytes(path, limit, what)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// At most the first `n` bytes of `path` (for sniffing a format), with the same checks.
pub fn read_head(path: &Path, n: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, limit, what)?;
    let mut head = Vec::new();
    file.take(n.min(limit))
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    Ok(head)
}

/// A shape read from a file header (safetensors) as libtorch sizes; `None` when a dimension does
/// not fit an `i64`, so a crafted header is an error instead of a wrapped size.
pub fn shape_i64(shape: &[usize]) -> Option<Vec<i64>> {
    shape.iter().map(|&d| i64::try_from(d).ok()).collect()
}

// Lives with the error type (the bottom layer), which quotes text the same way.
pub use crate::error::printable;

/// A parser's error (serde, csv, image) for a message: [`printable`], up to 300 characters.
/// Parsers quote the input (serde's ``unknown variant `…` ``), which may hold any character.
pub fn one_line(e: impl std::fmt::Display) -> String {
    printable(&e.to_string(), 300)
}

/// Whether `path` names something to read rather than a directory: a regular file, but also a
/// FIFO, device or socket, so that dataset detection hands those to the reader, which refuses
/// them with a clear error instead of detection silently looking past them.
pub fn is_readable_candidate(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::time::{Duration, Instant};

    fn mkfifo(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jpg");
        mkfifo(&p);
        let t = Instant::now();
        let e = read_bytes(&p, IMAGE, "an image").unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(!e.contains('\n'));
        // Past the path stat (as after a swap), the descriptor check refuses it too.
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        let e = check_meta(&p, &f.metadata().unwrap(), IMAGE, "an image").unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("zero.jpg");
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let e = read_bytes(&p, IMAGE, "an image").unwrap_err().to_string();
        assert!(e.contains("not a regular file (a character device)"), "{e}");
        assert!(read_text(Path::new("/dev/zero"), TEXT, "a captions file").is_err());
    }

    #[test]
    fn a_sparse_file_over_the_limit_is_refused_without_reading() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big.jpg");
        File::create(&p).unwrap().set_len(3_000_000_000).unwrap();
        let t = Instant::now();
        let e = read_bytes(&p, IMAGE, "an image").unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(
            e.ends_with("big.jpg: 2.8 GiB is over the 256 MiB limit for an image"),
            "{e}"
        );
        assert!(check_regular(&p, IMAGE, "an image").is_err());
        assert!(check_regular(&p, CHECKPOINT, "a checkpoint").is_ok());
    }

    #[test]
    fn a_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = read_text(d.path(), TEXT, "a captions file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file (a directory)"), "{e}");
        assert!(!is_readable_candidate(d.path()));
    }

    #[test]
    fn a_regular_file_is_read_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        std::fs::write(&p, "héllo\n").unwrap();
        assert_eq!(read_text(&p, TEXT, "a captions file").unwrap(), "héllo\n");
        assert_eq!(read_bytes(&p, 7, "x").unwrap().len(), 7);
        assert_eq!(read_head(&p, 2, TEXT, "x").unwrap(), b"h\xc3");
        let e = read_bytes(&p, 6, "a tag list").unwrap_err().to_string();
        assert!(
            e.ends_with("7 bytes is over the 6 bytes limit for a tag list"),
            "{e}"
        );
        std::fs::write(&p, b"ok\xff").unwrap();
        let e = read_text(&p, TEXT, "x").unwrap_err().to_string();
        assert!(
            e.ends_with("not UTF-8 text (invalid byte at offset 2)"),
            "{e}"
        );
        let e = read_bytes(&d.path().join("none"), TEXT, "x").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(is_readable_candidate(&p));
    }

    #[test]
    fn quoted_text_stays_on_one_line() {
        assert_eq!(printable("a\"\nb\r\u{1b}[2J", 80), "a\"\\nb\\r\\u{1b}[2J");
        assert_eq!(printable("héllo wörld", 5), "héllo…");
        assert_eq!(printable("tab\there", 80), "tab\\there");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(IMAGE), "256 MiB");
        assert_eq!(human_size(3 * GIB + GIB / 2), "3.5 GiB");
        assert_eq!(human_size(2048), "2 KiB");
        assert_eq!(human_size(5), "5 bytes");
    }
}
