//! Crash-safe file writes, used for every output captag produces (run directories, vocabularies,
//! feature caches, synthetic datasets): a reader or a crash never sees a half-written file.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The temporary sibling `path` is staged in (same directory, so the rename is atomic).
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Move a finished temp file over `path`; with `durable`, fsync the file and (best effort) the
/// directory so the rename itself survives a crash.
pub fn commit(tmp: &Path, path: &Path, durable: bool) -> Result<()> {
    fault_point();
    if durable {
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(tmp, e))?;
        fault_point();
    }
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::io(path, e));
    }
    fault_point();
    if durable {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir);
        }
    }
    Ok(())
}

/// fsync a directory so the renames in it survive a crash (best effort: some file systems
/// refuse it, and nothing can be done about that).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The fault-injection hook of the kill -9 test (docs/ARCHITECTURE.md, "Fault injection"):
/// with `CAPTAG_FAULT_AT=N` in the environment the process SIGKILLs itself at the N-th call.
/// Calls sit between the file operations of every crash-safe write and of the epoch commit,
/// and after every optimizer step. Without the variable a call is one relaxed atomic load.
pub fn fault_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<u64> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let at = *AT.get_or_init(|| {
        std::env::var("CAPTAG_FAULT_AT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    if at > 0 && SEEN.fetch_add(1, Ordering::Relaxed) + 1 == at {
        // SAFETY: signals this process; no memory is involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Write `bytes` to `path` atomically (temp file + rename), fsynced when `durable`.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let tmp = tmp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    commit(&tmp, path, durable)
}

/// Something a command reads, as the output guard sees it (docs/ARCHITECTURE.md, "Input and
/// output rules").
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A file (or a folder read as one thing, such as a CLIP download): an output may not be
    /// it, compared by device and inode so hard links, `./` spellings and symlinks count.
    File(&'a Path),
    /// A dataset folder, a run directory, a folder of images: an output may not be the folder
    /// nor any file already inside it (symlinks resolved). A dataset given as its captions
    /// file protects the file's folder, where its images and split lists live. Files named
    /// `predictions*` inside a folder are what `eval` writes into a run directory itself, and
    /// may be replaced.
    Folder(&'a Path),
}

impl<'a> Input<'a> {
    pub fn path(&self) -> &'a Path {
        match self {
            Input::File(p) | Input::Folder(p) => p,
        }
    }
}

/// No command overwrites one of its own inputs (docs/ARCHITECTURE.md, "Input and output
/// rules"): refuses `out` when it is (the same file or directory as) one of `inputs`, or an
/// existing file inside an input folder, before anything is written. Paths that do not exist
/// yet cannot be inputs. `flag` names the output in the message.
///
/// The one check every command runs (`commands::guard` lists each command's inputs and
/// outputs); a comparison of paths as strings would miss `a/../a`, hard links and symlinks.
pub fn refuse_overwriting_inputs(flag: &str, out: &Path, inputs: &[Input]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(());
    };
    let refuse = |input: &Path| {
        Err(Error::invalid(format!(
            "{flag} {}: is also an input of this command ({}); choose another output path",
            out.display(),
            input.display()
        )))
    };
    for input in inputs {
        let path = input.path();
        if let Ok(i) = std::fs::metadata(path) {
            if (i.dev(), i.ino()) == (o.dev(), o.ino()) {
                return refuse(path);
            }
            if let Input::Folder(_) = input {
                let folder = if i.is_dir() {
                    path.to_path_buf()
                } else {
                    match path.parent() {
                        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                        _ => PathBuf::from("."),
                    }
                };
                let own = out
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("predictions"));
                if let (Ok(f), Ok(c)) = (folder.canonicalize(), out.canonicalize()) {
                    if c.starts_with(&f) && (!own || c == f) {
                        return Err(Error::invalid(format!(
                            "{flag} {}: is also an input of this command (it lies inside {}, \
                             which the command reads); choose an output outside it",
                            out.display(),
                            folder.display()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Short stable fingerprint (FNV-1a, 64 bit, hex) of a byte stream.
#[derive(Clone, Copy, Debug)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x100_0000_01b3);
        self
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
    pub fn of_file(path: &Path) -> Result<String> {
        let bytes =
            crate::input::read_bytes(path, crate::input::CHECKPOINT, "a fingerprinted file")?;
        Ok(Fingerprint::default().update(&bytes).hex())
    }
}

static STDERR_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Write one already formatted chunk to file descriptor 2, unbuffered. Standard error is
/// treated like standard output: `eprintln!` panics when the write fails (`2>/dev/full`), which
/// made `data stats` and `train` exit with 101; here a failed write is remembered instead (the
/// progress line is lost, nothing else can be done with it) and `main` exits with code 2 at the
/// end, as a failed stdout does. Every diagnostic line goes through [`errln!`].
pub fn write_err(text: &str) {
    // SAFETY: fd 2 is borrowed, never closed: ManuallyDrop keeps the File from closing it.
    let mut fd = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(2)
    });
    if fd.write_all(text.as_bytes()).is_err() {
        STDERR_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether a write to standard error failed (see [`write_err`]).
pub fn stderr_failed() -> bool {
    STDERR_FAILED.load(std::sync::atomic::Ordering::Relaxed)
}

/// `eprintln!` that does not panic when standard error cannot be written: `errln!("{x}")`.
macro_rules! errln {
    () => { $crate::fsio::write_err("\n") };
    ($($arg:tt)*) => { $crate::fsio::write_err(&format!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use errln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one", true).unwrap();
        write_atomic(&p, b"two", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(&dir.path().join("no/such/x"), b"1", true).is_err());
    }

    #[test]
    fn an_input_is_never_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.json"));
        std::fs::write(&a, "x").unwrap();
        let f = |p| Input::File(p);
        assert!(refuse_overwriting_inputs("--out", &b, &[f(&a)]).is_ok());
        std::fs::write(&b, "y").unwrap();
        assert!(refuse_overwriting_inputs("--out", &b, &[f(&a)]).is_ok());
        // The same file under another name (a hard link or a ./ path) is still the input.
        std::fs::hard_link(&a, dir.path().join("c")).unwrap();
        let e = refuse_overwriting_inputs("--out", &dir.path().join("c"), &[f(&a)]).unwrap_err();
        assert!(e.to_string().contains("is also an input"), "{e}");
        let same = dir.path().join(".").join("a.csv");
        assert!(refuse_overwriting_inputs("--out", &same, &[f(&b), f(&a)]).is_err());
    }

    #[test]
    fn nothing_inside_an_input_folder_is_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("Images")).unwrap();
        std::fs::write(data.join("captions.txt"), "x").unwrap();
        std::fs::write(data.join("Images/a.jpg"), "x").unwrap();
        std::fs::write(data.join("predictions_dev.json"), "[]").unwrap();
        let folder = [Input::Folder(&data)];
        for inside in ["captions.txt", "Images/a.jpg", "Images/../captions.txt"] {
            let e = refuse_overwriting_inputs("--out", &data.join(inside), &folder).unwrap_err();
            assert!(e.to_string().contains("lies inside"), "{e}");
        }
        // Through a symlink from elsewhere too.
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(data.join("captions.txt"), &link).unwrap();
        assert!(refuse_overwriting_inputs("--out", &link, &folder).is_err());
        // The folder given as its captions file protects the folder.
        let file = data.join("captions.txt");
        let e =
            refuse_overwriting_inputs("--out", &data.join("Images/a.jpg"), &[Input::Folder(&file)]);
        assert!(e.is_err());
        // New files, files elsewhere and eval's own predictions are fine.
        assert!(refuse_overwriting_inputs("--out", &data.join("new.json"), &folder).is_ok());
        assert!(refuse_overwriting_inputs("--out", &dir.path().join("x"), &folder).is_ok());
        assert!(
            refuse_overwriting_inputs("--out", &data.join("predictions_dev.json"), &folder).is_ok()
        );
    }

    #[test]
    fn fingerprint_separates_fields() {
        let a = Fingerprint::default().update(b"ab").update(b"c").hex();
        let b = Fingerprint::default().update(b"a").update(b"bc").hex();
        assert_ne!(a, b);
        assert_eq!(a, Fingerprint::default().update(b"ab").update(b"c").hex());
    }
}
