//! Prompt/response pairs for LoRA fine-tuning from Instagram posts (`captag llm pairs`,
//! docs/llm.md). The response is the real caption exactly as posted (hashtags, emoji, casing,
//! line breaks kept, only outer whitespace trimmed). Two recipes make the prompt, and each pair
//! names its own (`recipe`): `image`, the seed project's — the photo described by a captioner,
//! CLIP moods, predicted hashtags ([`prompt_from_photo`], filled in by `infer::llm_post`) — and
//! `text`, for posts without images — the caption's own content words (stop words dropped,
//! first eight distinct) and hashtags, saying so ([`prompt_for`]). This module reads the posts
//! and writes the text recipe; it runs no model. Posts are held out by a hash of their image
//! name, so a post and its pair are never on both sides.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::text::extract_tags;
use crate::{Error, Result};

/// One prompt/response pair of a `PAIRS.jsonl` file (`captag llm pairs` writes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub prompt: String,
    pub response: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `train` or `test` (absent: train).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Where the pair came from (the post), for held-out splits by post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Which recipe made the prompt: [`RECIPE_IMAGE`] or [`RECIPE_TEXT`] (absent in files
    /// written before the image recipe: those are all text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
}

/// The prompt describes the photo: captioner, CLIP moods, image hashtags (`caption --llm`'s).
pub const RECIPE_IMAGE: &str = "image";
/// The prompt is built from the caption's own words and hashtags (no image).
pub const RECIPE_TEXT: &str = "text";

impl Pair {
    pub fn is_test(&self) -> bool {
        self.split.as_deref() == Some("test")
    }
}

/// Every pair of a JSON-lines file; a bad line is an error naming it.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = crate::input::read_text(path, crate::input::TEXT, "a pairs file")?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: Pair = serde_json::from_str(line).map_err(|e| {
            Error::invalid(format!(
                "{}:{}: not a {{\"prompt\", \"response\"}} JSON object ({e})",
                path.display(),
                i + 1
            ))
        })?;
        pairs.push(p);
    }
    if pairs.is_empty() {
        return Err(Error::invalid(format!("{}: no pairs", path.display())));
    }
    Ok(pairs)
}

/// The system message of every pair.
pub const SYSTEM: &str =
    "You write Instagram posts: a caption in the poster's own voice, with emoji and hashtags.";

const STOP: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with", "by",
    "from", "up", "out", "so", "as", "is", "am", "are", "was", "were", "be", "been", "it", "its",
    "this", "that", "these", "those", "i", "me", "my", "we", "our", "you", "your", "he", "she",
    "his", "her", "they", "them", "their", "im", "i'm", "it's", "just", "all", "not", "no", "do",
    "did", "have", "has", "had", "will", "can", "what", "when", "who", "how", "than", "then",
    "too", "very", "into", "about", "u", "get", "got",
];

/// The prompt of one post: what its caption is about and its hashtags.
pub fn prompt_for(caption: &str) -> Option<String> {
    let tagged = extract_tags(caption);
    let mut words: Vec<String> = Vec::new();
    for w in tagged.text.split_whitespace() {
        let w: String = w
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .collect::<String>()
            .to_lowercase();
        let w = w.trim_matches('\'').to_string();
        if w.chars().count() < 2 || STOP.contains(&w.as_str()) || words.contains(&w) {
            continue;
        }
        words.push(w);
        if words.len() == 8 {
            break;
        }
    }
    if words.is_empty() && tagged.hashtags.is_empty() {
        return None;
    }
    let mut p = String::from(
        "Write an Instagram caption for my photo. No picture is available; what the post is \
         about, from its own caption",
    );
    if !words.is_empty() {
        p += &format!(": {}.", words.join(", "));
    } else {
        p += ": (no words).";
    }
    if !tagged.hashtags.is_empty() {
        let tags: Vec<String> = tagged
            .hashtags
            .iter()
            .take(10)
            .map(|t| format!("#{t}"))
            .collect();
        p += &format!(" Hashtags: {}.", tags.join(" "));
    }
    Some(p)
}

/// The prompt for a photo captag has captioned (`caption --llm`): the seed project's recipe,
/// its description, moods and hashtags, in the words the training prompts use.
pub fn prompt_from_photo(caption: &str, moods: &[String], hashtags: &[String]) -> String {
    let mut p = format!(
        "Write an Instagram caption for my photo. What the photo shows: {}.",
        caption.trim().trim_end_matches('.')
    );
    if !moods.is_empty() {
        p += &format!(" Mood: {}.", moods.join(", "));
    }
    if !hashtags.is_empty() {
        let tags: Vec<String> = hashtags.iter().map(|t| format!("#{t}")).collect();
        p += &format!(" Hashtags: {}.", tags.join(" "));
    }
    p
}

/// FNV-1a of the post's name: the held-out split is a property of the post alone.
fn held_out(id: &str, share: f64) -> bool {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % 10_000) as f64 / 10_000.0 < share
}

/// The caption CSVs of an Instagram folder: `captions_csv_extended.csv` alone when present (it
/// holds both originals), else `captions_csv.csv` (header) and `captions_csv2.csv` (none).
fn csv_files(dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
    for base in [dir.to_path_buf(), dir.join("instagram_data")] {
        let ext = base.join("captions_csv_extended.csv");
        if ext.is_file() {
            return Ok(vec![(ext, true)]);
        }
        let mut found = vec![];
        if base.join("captions_csv.csv").is_file() {
            found.push((base.join("captions_csv.csv"), true));
        }
        for two in [
            base.join("captions_csv2.csv"),
            dir.join("instagram_data2/captions_csv2.csv"),
        ] {
            if two.is_file() {
                found.push((two, false));
                break;
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Err(Error::invalid(format!(
        "{}: no captions_csv.csv, captions_csv2.csv or captions_csv_extended.csv — not an \
         Instagram captions folder",
        dir.display()
    )))
}

/// Counts of what [`read_posts`] and [`text_pairs`] read and left out.
#[derive(Debug, Default)]
pub struct PairStats {
    pub posts: usize,
    pub empty: usize,
    pub no_prompt: usize,
    pub without_hashtags: usize,
}

/// One post with a caption: its name in the CSV, the caption as posted (outer whitespace
/// trimmed) and where its picture would be (the CSV's folder + the name, `.jpg` added when it
/// has no image extension; `None` when the name points outside the dataset).
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: String,
    pub caption: String,
    pub image: Option<PathBuf>,
}

impl Post {
    /// The pair of this post with `prompt` (made by `recipe`), split by the post's name.
    pub fn pair(&self, prompt: String, recipe: &str, test_share: f64) -> Pair {
        let split = if held_out(&self.id, test_share) {
            "test"
        } else {
            "train"
        };
        Pair {
            prompt,
            response: self.caption.clone(),
            system: Some(SYSTEM.to_string()),
            split: Some(split.into()),
            id: Some(self.id.clone()),
            recipe: Some(recipe.to_string()),
        }
    }

    /// The picture, when it is a file (whether it decodes is the captioner's to find out).
    pub fn image_file(&self) -> Option<&Path> {
        self.image.as_deref().filter(|p| p.is_file())
    }
}

/// The picture a CSV row names, as the dataset loader resolves it (`img/insta2` →
/// `CSV_DIR/img/insta2.jpg`).
fn image_path(csv_dir: &Path, id: &str) -> Option<PathBuf> {
    let lower = id.to_ascii_lowercase();
    let rel = if [".jpg", ".jpeg", ".png"].iter().any(|e| lower.ends_with(e)) {
        id.to_string()
    } else {
        format!("{id}.jpg")
    };
    super::resolve_inside(csv_dir, &rel)
}

/// Every post with a caption (and, with `with_hashtags`, a hashtag), in file order.
pub fn read_posts(dir: &Path, with_hashtags: bool) -> Result<(Vec<Post>, PairStats)> {
    let mut stats = PairStats::default();
    let mut posts = Vec::new();
    for (path, header) in csv_files(dir)? {
        let csv_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(header)
            .flexible(true)
            .from_path(&path)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        for row in rdr.records() {
            let row = row.map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            stats.posts += 1;
            let (Some(id), Some(caption)) = (row.get(1), row.get(2)) else {
                stats.empty += 1;
                continue;
            };
            let caption = caption.trim();
            if caption.is_empty() {
                stats.empty += 1;
                continue;
            }
            if with_hashtags && extract_tags(caption).hashtags.is_empty() {
                stats.without_hashtags += 1;
                continue;
            }
            posts.push(Post {
                id: id.to_string(),
                caption: caption.to_string(),
                image: image_path(&csv_dir, id),
            });
        }
    }
    Ok((posts, stats))
}

/// The text recipe's pair of every post whose caption has words or hashtags
/// (`stats.no_prompt` counts the others).
pub fn text_pairs(posts: &[Post], test_share: f64, stats: &mut PairStats) -> Vec<Pair> {
    let mut pairs = Vec::with_capacity(posts.len());
    for post in posts {
        match prompt_for(&post.caption) {
            Some(prompt) => pairs.push(post.pair(prompt, RECIPE_TEXT, test_share)),
            None => stats.no_prompt += 1,
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_names_content_words_and_hashtags() {
        let p = prompt_for("Sunday brunch with the girls 🥂 #brunch #NYC @anna").unwrap();
        assert!(
            p.ends_with(": sunday, brunch, girls. Hashtags: #brunch #nyc."),
            "{p}"
        );
        assert!(p.contains("No picture is available"), "{p}");
        assert_eq!(prompt_for("🥂🥂 @anna"), None);
    }

    #[test]
    fn the_split_depends_on_the_post_only() {
        let n = (0..2000)
            .filter(|i| held_out(&format!("img/insta{i}"), 0.1))
            .count();
        assert!((150..250).contains(&n), "{n}");
        assert_eq!(held_out("img/insta7", 0.1), held_out("img/insta7", 0.1));
    }

    #[test]
    fn posts_find_their_pictures_beside_the_csv_and_text_pairs_say_so() {
        let d = tempfile::tempdir().unwrap();
        let csv = "Sr No,Image File,Caption\n1,img/insta1,Beach day #beach\n2,img/insta2,\n\
                   3,../../etc/x,Sunny #sun\n4,img/insta4.png,🥂🥂\n";
        std::fs::write(d.path().join("captions_csv.csv"), csv).unwrap();
        let (posts, stats) = read_posts(d.path(), false).unwrap();
        assert_eq!((stats.posts, stats.empty, posts.len()), (4, 1, 3));
        assert_eq!(posts[0].image, Some(d.path().join("img/insta1.jpg")));
        assert_eq!(posts[1].image, None, "outside the dataset");
        assert_eq!(posts[2].image, Some(d.path().join("img/insta4.png")));
        assert_eq!(posts[0].image_file(), None, "not written");
        let mut stats = PairStats::default();
        let pairs = text_pairs(&posts, 0.1, &mut stats);
        assert_eq!((pairs.len(), stats.no_prompt), (2, 1));
        assert_eq!(pairs[0].recipe.as_deref(), Some(RECIPE_TEXT));
        assert_eq!(pairs[0].response, "Beach day #beach");
        let line = serde_json::to_string(&pairs[0]).unwrap();
        assert!(line.contains("\"recipe\":\"text\""), "{line}");
        let old: Pair = serde_json::from_str("{\"prompt\":\"p\",\"response\":\"r\"}").unwrap();
        assert_eq!(old.recipe, None);
    }
}
