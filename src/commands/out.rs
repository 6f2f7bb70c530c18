//! The checked output writer (docs/ARCHITECTURE.md, "Input and output rules"): everything a
//! command prints on standard output goes through [`outln!`], which returns an error instead of
//! panicking (`println!` panics on a full device) or pretending (Rust's `stdout` silently drops
//! writes to a closed descriptor, so a command whose stdout was closed "succeeded" having
//! printed nothing). A write error becomes one error line and exit code 2; a closed pipe
//! (`captag ... | head`) ends the process quietly through SIGPIPE, as for other Unix tools.
use std::io::Write;
use std::os::fd::FromRawFd;

use crate::{Error, Result};

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes whether the parent started captag with its standard output closed. It must run
/// before Rust's runtime starts: the runtime points a closed descriptor 0–2 at `/dev/null`
/// (so that no file captag opens can take number 1 and receive the output), and after that a
/// closed stdout cannot be told from a parent's deliberate `/dev/null` (Python's
/// `subprocess.DEVNULL` opens it read-write, as the runtime does). So `main.rs` registers this
/// as an ELF constructor (`.init_array`), which the loader runs before `main`; it only asks
/// the kernel whether descriptor 1 exists.
pub extern "C" fn note_standard_output_at_start() {
    // SAFETY: F_GETFD only queries the descriptor table.
    let closed = unsafe { libc::fcntl(1, libc::F_GETFD) } == -1;
    STDOUT_CLOSED.store(closed, std::sync::atomic::Ordering::Relaxed);
}

/// Write one already formatted chunk to file descriptor 1, unbuffered.
pub fn write(text: &str) -> Result<()> {
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::invalid(
            "cannot write to standard output: it is closed",
        ));
    }
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: fd 1 is borrowed, never closed: ManuallyDrop keeps the File from closing it.
    let mut fd = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    fd.write_all(text.as_bytes()).map_err(|e| {
        Error::invalid(format!(
            "cannot write to standard output: {}",
            crate::error::human_io(&e)
        ))
    })
}

/// `println!` that reports write errors: `outln!("{x}")?`.
macro_rules! outln {
    () => { $crate::commands::out::write("\n") };
    ($($arg:tt)*) => { $crate::commands::out::write(&format!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use outln;

// Standard error lives at the bottom layer (`fsio`), so every layer can report without
// importing `commands`; re-exported here beside `outln!`.
pub use crate::fsio::{stderr_failed, write_err};
