//! `captag` binary: parse the command line, run the job, print the error chain on one line and
//! exit with code 2 for bad input (3 when some of many inputs failed, 1 for internal failures).
use clap::Parser;

/// Runs before Rust's runtime replaces a closed stdout with `/dev/null` (see
/// `commands::out::note_standard_output_at_start`).
#[used]
#[link_section = ".init_array"]
static NOTE_STDOUT: extern "C" fn() = captag::commands::out::note_standard_output_at_start;

fn main() {
    // `captag caption DIR | head` should stop quietly like other Unix tools, not panic on a
    // closed pipe: restore the default SIGPIPE action that Rust's runtime ignores.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; only resets a signal disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    let cli = captag::cli::Cli::parse();
    if let Err(e) = captag::commands::run(cli) {
        // Not `eprintln!`, which panics (exit 101) when stderr is full or closed.
        captag::commands::out::write_err(&format!("error: {e:#}\n"));
        let code = match e.downcast_ref::<captag::Error>() {
            Some(captag::Error::Torch(_)) => 1,
            Some(captag::Error::Partial(_)) => 3,
            _ => 2,
        };
        std::process::exit(code);
    }
    // Standard error is an output like standard output: a lost diagnostic is a failure.
    if captag::commands::out::stderr_failed() {
        std::process::exit(2);
    }
}

/// Tensors of a CNN batch are tens to hundreds of MB (SqueezeNet's first activation for 32
/// images at 224 px is 100 MB). glibc serves every block over 32 MB with a fresh `mmap` and
/// returns it with `munmap` on free, so each batch page-faults and zeroes all of that memory
/// again: `captag features` spent as much time in the kernel as computing (7.8 s of 15.6 s for
/// 1,000 Flickr8k images). Serving large blocks from the heap and not trimming it keeps freed
/// blocks for the next batch (0.4 s in the kernel; docs/ARCHITECTURE.md, "Memory"). A user's
/// own `GLIBC_TUNABLES` malloc settings win.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc")) {
        // SAFETY: mallopt only changes allocator parameters; called before any other thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
