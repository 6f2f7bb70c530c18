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
    let cli = captag::cli::Cli::parse();
    if let Err(e) = captag::commands::run(cli) {
        eprintln!("error: {e:#}");
        let code = match e.downcast_ref::<captag::Error>() {
            Some(captag::Error::Torch(_)) => 1,
            Some(captag::Error::Partial(_)) => 3,
            _ => 2,
        };
        std::process::exit(code);
    }
}
