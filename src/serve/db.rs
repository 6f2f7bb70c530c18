//! The ratings database (SQLite, WAL mode): one row per rating or edit a person made on the web
//! page. WAL with `synchronous = FULL` means a rating the server acknowledged is on disk, and a
//! process killed at any instant (kill -9 included) leaves the database consistent: SQLite rolls
//! the unfinished transaction back on the next open.
//!
//! `captag ratings export` turns the rows into a dataset in the Kaggle Flickr8k layout
//! (`captions.txt` + `Images/`) that `captag train` reads — the feedback loop.
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS captag_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    image_sha256 TEXT NOT NULL,
    run_id TEXT NOT NULL,
    decoding TEXT NOT NULL,
    style TEXT NOT NULL,
    caption TEXT NOT NULL,
    rating INTEGER CHECK (rating BETWEEN 1 AND 5),
    edited TEXT,
    created_at TEXT NOT NULL
);
";
const VERSION: &str = "1";

/// One rating as the page sends it (and as the export lists it, with `id` and `created_at`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    #[serde(default)]
    pub id: i64,
    pub image_sha256: String,
    #[serde(default)]
    pub run_id: String,
    /// The decoding settings the caption came from, e.g. `beam 3`.
    #[serde(default)]
    pub decoding: String,
    #[serde(default = "plain")]
    pub style: String,
    /// The caption as shown.
    pub caption: String,
    /// 1–5, or none when the person only edited the text.
    pub rating: Option<u8>,
    /// The person's corrected text, if any.
    pub edited: Option<String>,
    #[serde(default)]
    pub created_at: String,
}

/// The `style` of a rating of the LLM's post (`serve --llm`): kept in the database (the
/// `/api/ratings/export` JSON lists it) but not written into the captioner's dataset by
/// `ratings export` — a post with hashtags and emoji is not a photo description.
pub const LLM_STYLE: &str = "llm";

fn plain() -> String {
    "plain".into()
}

impl Rating {
    /// Why this rating cannot be stored (a one-line message for a 400 response), if anything.
    pub fn problem(&self) -> Option<String> {
        let sha_ok = self.image_sha256.len() == 64
            && self.image_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !sha_ok {
            return Some("image_sha256 must be the 64 hex digits /api/caption returned".into());
        }
        if self.caption.trim().is_empty() || self.caption.len() > 2000 {
            return Some("caption must be 1–2000 bytes of text".into());
        }
        if let Some(r) = self.rating {
            if !(1..=5).contains(&r) {
                return Some(format!("rating must be 1 to 5, not {r}"));
            }
        }
        if let Some(e) = &self.edited {
            if e.len() > 2000 {
                return Some("edited text is over 2000 bytes".into());
            }
        }
        if self.rating.is_none() && self.edited.as_deref().is_none_or(|e| e.trim().is_empty()) {
            return Some("send a rating (1–5), an edited caption, or both".into());
        }
        if [&self.run_id, &self.decoding, &self.style]
            .iter()
            .any(|s| s.len() > 200)
        {
            return Some("run_id, decoding and style are at most 200 bytes".into());
        }
        None
    }
}

pub struct Ratings {
    conn: Connection,
    path: PathBuf,
}

fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::invalid(format!("{}: ratings database: {e}", path.display()))
}

impl Ratings {
    /// Open (creating) the database at `path` in WAL mode; refuses a file that is not SQLite or
    /// holds another schema version.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(Error::invalid(format!(
                    "--db {}: folder {} does not exist",
                    path.display(),
                    parent.display()
                )));
            }
        }
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        Self::init(conn, path)
    }

    /// Open an existing database read-only (export).
    ///
    /// Opened read-only and never changed: `ratings export` reads it, and a database another
    /// program wrote (a foreign SQLite file given as `--db`) must not get captag's tables.
    /// A file without captag's schema marker is refused.
    pub fn open_existing(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "--db {}: no such database file",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_err(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| db_err(path, e))?;
        let v: std::result::Result<String, _> = conn.query_row(
            "SELECT value FROM captag_meta WHERE key = 'schema'",
            [],
            |r| r.get(0),
        );
        match v {
            Ok(v) if v == VERSION => Ok(Ratings {
                conn,
                path: path.to_path_buf(),
            }),
            Ok(other) => Err(Error::invalid(format!(
                "{}: ratings database has schema {other}; this captag reads {VERSION}",
                path.display()
            ))),
            Err(_) => Err(Error::invalid(format!(
                "--db {}: not a captag ratings database (no captag_meta schema; the file \
                 `captag serve --db` writes)",
                path.display()
            ))),
        }
    }

    fn init(conn: Connection, path: &Path) -> Result<Self> {
        let err = |e| db_err(path, e);
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        // Not a database at all: "file is not a database" surfaces here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::invalid(format!(
                "{}: ratings database: cannot use WAL mode (journal mode {mode})",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let v: Option<String> = conn
            .query_row(
                "SELECT value FROM captag_meta WHERE key = 'schema'",
                [],
                |r| r.get(0),
            )
            .ok();
        match v.as_deref() {
            None => {
                conn.execute(
                    "INSERT INTO captag_meta (key, value) VALUES ('schema', ?1)",
                    [VERSION],
                )
                .map_err(err)?;
            }
            Some(VERSION) => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{}: ratings database has schema {other}; this captag writes {VERSION}",
                    path.display()
                )))
            }
        }
        Ok(Ratings {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Store one rating (checked with [`Rating::problem`] first); returns its id.
    pub fn add(&self, r: &Rating) -> Result<i64> {
        if let Some(p) = r.problem() {
            return Err(Error::invalid(p));
        }
        self.conn
            .execute(
                "INSERT INTO ratings (image_sha256, run_id, decoding, style, caption, rating, \
                 edited, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                params![
                    r.image_sha256.to_ascii_lowercase(),
                    r.run_id,
                    r.decoding,
                    r.style,
                    r.caption,
                    r.rating,
                    r.edited.as_deref().map(str::trim).filter(|e| !e.is_empty()),
                ],
            )
            .map_err(|e| db_err(&self.path, e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every rating, oldest first.
    pub fn all(&self) -> Result<Vec<Rating>> {
        let err = |e| db_err(&self.path, e);
        let mut st = self
            .conn
            .prepare(
                "SELECT id, image_sha256, run_id, decoding, style, caption, rating, edited, \
                 created_at FROM ratings ORDER BY id",
            )
            .map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok(Rating {
                    id: r.get(0)?,
                    image_sha256: r.get(1)?,
                    run_id: r.get(2)?,
                    decoding: r.get(3)?,
                    style: r.get(4)?,
                    caption: r.get(5)?,
                    rating: r.get(6)?,
                    edited: r.get(7)?,
                    created_at: r.get(8)?,
                })
            })
            .map_err(err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(err)
    }
}

/// What `ratings export` wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Exported {
    pub captions: usize,
    pub images: usize,
    /// Ratings below the threshold with no edit.
    pub below_threshold: usize,
    /// Ratings whose image was not kept (`serve` ran without `--keep-images`).
    pub no_image: usize,
    /// Ratings of the LLM's post (style [`LLM_STYLE`]), not captions for the captioner.
    pub llm_posts: usize,
    /// Rows whose `image_sha256` is not 64 hex digits (a hand-edited database): the name
    /// would be a path, so the row is skipped and counted instead.
    pub bad_rows: usize,
}

/// The caption a rating contributes to the dataset: the edit if any, else the shown caption
/// when rated at least `min_rating`.
pub fn training_caption(r: &Rating, min_rating: u8) -> Option<&str> {
    match (&r.edited, r.rating) {
        (Some(e), _) if !e.trim().is_empty() => Some(e.trim()),
        (_, Some(x)) if x >= min_rating => Some(r.caption.trim()),
        _ => None,
    }
}

/// Write the kept captions as `out/captions.txt` (`image,caption`) and `out/Images/<sha>.<ext>`
/// copied from `images` (the `--keep-images` folder). `out` must not exist or be empty.
pub fn export(db: &Ratings, images: &Path, out: &Path, min_rating: u8) -> Result<Exported> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::invalid(format!(
            "--out {}: exists and is not empty; choose a new folder",
            out.display()
        )));
    }
    if !images.is_dir() {
        return Err(Error::invalid(format!(
            "--images {}: no such folder (the one `captag serve --keep-images` wrote)",
            images.display()
        )));
    }
    let img_dir = out.join("Images");
    std::fs::create_dir_all(&img_dir).map_err(|e| Error::io(&img_dir, e))?;
    let mut done = Exported::default();
    let mut csv = csv::Writer::from_writer(Vec::new());
    let header = csv.write_record(["image", "caption"]);
    header.map_err(|e| Error::invalid(e.to_string()))?;
    let mut copied = std::collections::HashSet::new();
    for r in db.all()? {
        if r.style == LLM_STYLE {
            done.llm_posts += 1;
            continue;
        }
        let Some(text) = training_caption(&r, min_rating) else {
            done.below_threshold += 1;
            continue;
        };
        let sha = r.image_sha256.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            done.bad_rows += 1;
            continue;
        }
        // Through the one resolver for paths found in data: a kept image that is a symlink
        // to a file outside --images is not copied.
        let Some(src) = ["jpg", "png"]
            .iter()
            .filter_map(|ext| crate::data::resolve_inside(images, &format!("{sha}.{ext}")))
            .find(|p| p.is_file())
        else {
            done.no_image += 1;
            continue;
        };
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if copied.insert(name.clone()) {
            let bytes = crate::input::read_bytes(&src, crate::input::IMAGE, "an image")?;
            crate::fsio::write_atomic(&img_dir.join(&name), &bytes, true)?;
            done.images += 1;
        }
        let line = text.replace(['\n', '\r'], " ");
        csv.write_record([name.as_str(), line.as_str()])
            .map_err(|e| Error::invalid(e.to_string()))?;
        done.captions += 1;
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| Error::invalid(e.to_string()))?;
    crate::fsio::write_atomic(&out.join("captions.txt"), &bytes, true)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rating(sha: &str, caption: &str, rating: Option<u8>, edited: Option<&str>) -> Rating {
        Rating {
            id: 0,
            image_sha256: sha.into(),
            run_id: "run@1".into(),
            decoding: "beam 3".into(),
            style: "plain".into(),
            caption: caption.into(),
            rating,
            edited: edited.map(Into::into),
            created_at: String::new(),
        }
    }

    #[test]
    fn bad_ratings_are_refused_with_a_reason() {
        let sha = "a".repeat(64);
        assert!(rating(&sha, "a dog", Some(5), None).problem().is_none());
        assert!(rating(&sha, "a dog", None, Some("two dogs"))
            .problem()
            .is_none());
        for bad in [
            rating("../../etc/passwd", "a dog", Some(5), None),
            rating(&sha, "", Some(5), None),
            rating(&sha, "a dog", Some(0), None),
            rating(&sha, "a dog", Some(6), None),
            rating(&sha, "a dog", None, None),
            rating(&sha, "a dog", None, Some("  ")),
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
    }

    #[test]
    fn ratings_persist_and_export_as_a_dataset() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("r.sqlite");
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        {
            let db = Ratings::open(&path).unwrap();
            db.add(&rating(&a, "a red circle", Some(5), None)).unwrap();
            db.add(&rating(&a, "a blue square", Some(2), None)).unwrap();
            db.add(&rating(&b, "a cat", Some(1), Some("two green triangles")))
                .unwrap();
            db.add(&rating(&"c".repeat(64), "gone", Some(5), None))
                .unwrap();
            let post = Rating {
                style: LLM_STYLE.into(),
                ..rating(&a, "Sunset walk 🌅 #beach", Some(5), None)
            };
            db.add(&post).unwrap();
            assert!(db.add(&rating(&a, "x", Some(9), None)).is_err());
        }
        let db = Ratings::open_existing(&path).unwrap();
        let all = db.all().unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[4].style, LLM_STYLE);
        assert_eq!(all[2].edited.as_deref(), Some("two green triangles"));
        assert!(all[0].created_at.ends_with('Z'));
        let images = t.path().join("kept");
        std::fs::create_dir(&images).unwrap();
        std::fs::write(images.join(format!("{a}.jpg")), b"jpeg bytes").unwrap();
        std::fs::write(images.join(format!("{b}.png")), b"png bytes").unwrap();
        let out = t.path().join("ds");
        let done = export(&db, &images, &out, 4).unwrap();
        assert_eq!(
            done,
            Exported {
                captions: 2,
                images: 2,
                below_threshold: 1,
                no_image: 1,
                llm_posts: 1,
                bad_rows: 0
            }
        );
        let csv = std::fs::read_to_string(out.join("captions.txt")).unwrap();
        assert_eq!(
            csv,
            format!("image,caption\n{a}.jpg,a red circle\n{b}.png,two green triangles\n")
        );
        assert!(
            export(&db, &images, &out, 4).is_err(),
            "a non-empty --out is refused"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("r.sqlite");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = Ratings::open(&path).err().unwrap().to_string();
        assert!(e.contains("ratings database"), "{e}");
    }
}
