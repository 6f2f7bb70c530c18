//! The library's error type. Every variant is a user-facing, one-line explanation of bad input
//! or a failed operation; `main` prints it and exits with code 2 for input errors (3 when only
//! some of many inputs failed, 1 for libtorch failures).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory the user named could not be read or written.
    /// (The cause is part of the message and deliberately not a `source`: `main` prints the
    /// whole chain, which would repeat it.)
    #[error("{path}: {cause}")]
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
    /// A failure inside libtorch.
    #[error("libtorch: {0}")]
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
