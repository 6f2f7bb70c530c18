//! The library's error type. Every variant is a user-facing, one-line explanation of bad input
//! or a failed operation; `main` prints it and exits with code 2 for input errors (3 when only
//! some of many inputs failed, 1 for libtorch failures).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory the user named could not be read or written.
    /// (The cause is part of the message and deliberately not a `source`: `main` prints the
    /// whole chain, which would repeat it.)
    #[error("{}: {}", path.display(), human_io(cause))]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Input that exists but is not what it should be (malformed CSV/JSON, no dataset, ...).
    #[error("{0}")]
    Invalid(String),
    /// An image that could not be decoded.
    #[error("{path}: cannot decode image: {reason}")]
    Image { path: PathBuf, reason: String },
    /// Some inputs of a many-input command (`caption DIR`) failed, each already reported on its
    /// own line, while the others succeeded: `main` exits with code 3.
    #[error("{0}")]
    Partial(String),
    /// A failure inside libtorch (its first line: libtorch appends a C++ backtrace).
    #[error("libtorch: {}", human_text(&.0.to_string()))]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// An I/O error as a person reads it: "No space left on device", without Rust's
/// " (os error 28)" suffix or a Debug dump.
pub fn human_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// A library's error text as one human line: an OS error code buried in it (`Os { code: 28,
/// ... }` from a Debug dump, or `(os error 28)`) becomes its sentence ("No space left on
/// device"); otherwise the first line, without the backtrace libtorch appends.
pub fn human_text(s: &str) -> String {
    let code = ["code: ", "os error "].iter().find_map(|k| {
        let i = s.find(k)? + k.len();
        let digits: String = s[i..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<i32>().ok()
    });
    if let Some(c) = code {
        return human_io(&std::io::Error::from_raw_os_error(c));
    }
    printable(s.lines().next().unwrap_or("").trim(), 300)
}

/// Text from a file quoted in an error message: at most `max_chars` characters (then `…`),
/// with control characters escaped (`\n`, `\r`, `\u{1b}`), so the message stays one line and
/// cannot move the terminal's cursor.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_become_one_human_line() {
        let dump =
            r#"IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })"#;
        assert_eq!(human_text(dump), "No space left on device");
        assert_eq!(human_text("boom (os error 28)"), "No space left on device");
        assert_eq!(
            human_text("shape mismatch\nException raised from foo at bar.cpp:12"),
            "shape mismatch"
        );
    }

    #[test]
    fn io_errors_read_like_sentences() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = Error::io("/runs/a/last.safetensors", full);
        assert_eq!(
            e.to_string(),
            "/runs/a/last.safetensors: No space left on device"
        );
        let custom = std::io::Error::other("disk on fire (really)");
        assert_eq!(human_io(&custom), "disk on fire (really)");
    }
}
