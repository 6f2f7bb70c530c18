//! Reading what `captag bleu` scores: predictions as a COCO results file
//! (`[{"image_id": 42, "caption": "..."}]`, the format pycocoevalcap's `loadRes` reads) or plain
//! text with one caption per line, references as `{"image_id": ["ref", ...]}`, and pairing the
//! two by image id (or by position against an ordered id list, for plain text).
//!
//! Tokenization is the caller's: [`Paired::tokenize`] takes the tokenizer as a function so the
//! same pairs can be scored under any tokenization (captag uses `text::tokenize`).
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How many unmatched ids an error message lists before "and N more".
const SHOW_IDS: usize = 5;

/// One prediction: the image id when the file has one (JSON), and the raw caption.
pub type Prediction = (Option<String>, String);

/// Reads predictions. A file whose first non-blank character is `[` is a COCO results JSON
/// array; anything else is plain text, one caption per line (a blank line is an empty caption,
/// so positions stay aligned with the image list; `\r\n` endings are accepted).
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let text = crate::input::read_text(path, crate::input::TEXT, "a predictions file")?;
    parse_predictions(&text).map_err(|msg| Error::invalid(format!("{}: {msg}", path.display())))
}

/// Reads references: a JSON object from image id to its reference captions.
pub fn read_references_json(path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let text = crate::input::read_text(path, crate::input::TEXT, "a references file")?;
    serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{}: not a JSON object of image id -> list of reference captions: {}",
            path.display(),
            crate::input::one_line(e)
        ))
    })
}

/// Predictions matched with their references, in prediction order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    pub ids: Vec<String>,
    pub hyps: Vec<String>,
    pub refs: Vec<Vec<String>>,
}

impl Paired {
    /// Token lists ready for [`super::bleu::corpus_bleu`].
    pub fn tokenize<F: Fn(&str) -> Vec<String>>(
        &self,
        tok: F,
    ) -> (Vec<Vec<String>>, Vec<Vec<Vec<String>>>) {
        let hyps = self.hyps.iter().map(|h| tok(h)).collect();
        let refs = self
            .refs
            .iter()
            .map(|rs| rs.iter().map(|r| tok(r)).collect())
            .collect();
        (hyps, refs)
    }
}

/// Pairs predictions with references.
///
/// Predictions with ids are matched by id; plain-text predictions (no ids) are matched by
/// position with `order` (e.g. the split's image list), which must then be given and have the
/// same length. The two sides must cover the same ids exactly, as pycocoevalcap asserts:
/// predictions without references, references without predictions, duplicate predictions and
/// ids with an empty reference list are errors that name the first few offending ids.
pub fn pair_predictions(
    preds: Vec<Prediction>,
    refs: &BTreeMap<String, Vec<String>>,
    order: Option<&[String]>,
) -> Result<Paired> {
    if preds.is_empty() {
        return Err(Error::invalid("no predictions to score"));
    }
    let with_ids = preds.iter().filter(|(id, _)| id.is_some()).count();
    let pairs: Vec<(String, String)> = if with_ids == preds.len() {
        preds
            .into_iter()
            .filter_map(|(id, c)| id.map(|id| (id, c)))
            .collect()
    } else if with_ids == 0 {
        let order = order.ok_or_else(|| {
            Error::invalid(
                "predictions carry no image ids (plain text): an ordered list of image ids is \
                 needed to pair them with references",
            )
        })?;
        if order.len() != preds.len() {
            return Err(Error::invalid(format!(
                "{} predictions but {} image ids to pair them with by position",
                preds.len(),
                order.len()
            )));
        }
        order
            .iter()
            .cloned()
            .zip(preds.into_iter().map(|(_, c)| c))
            .collect()
    } else {
        return Err(Error::invalid(format!(
            "{with_ids} of {} predictions have an image id: all or none must",
            preds.len()
        )));
    };

    let mut seen = BTreeSet::new();
    let dups: Vec<&str> = pairs
        .iter()
        .filter(|(id, _)| !seen.insert(id.as_str()))
        .map(|(id, _)| id.as_str())
        .collect();
    check_none("duplicate predictions for", &dups)?;
    let no_refs: Vec<&str> = pairs
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| !refs.contains_key(*id))
        .collect();
    check_none("no references for predicted", &no_refs)?;
    let no_pred: Vec<&str> = refs
        .keys()
        .map(String::as_str)
        .filter(|id| !seen.contains(id))
        .collect();
    check_none("no prediction for referenced", &no_pred)?;
    let empty: Vec<&str> = pairs
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| refs.get(*id).is_some_and(|r| r.is_empty()))
        .collect();
    check_none("empty reference list for", &empty)?;

    let mut out = Paired {
        ids: vec![],
        hyps: vec![],
        refs: vec![],
    };
    for (id, caption) in pairs {
        out.refs.push(refs.get(&id).cloned().unwrap_or_default());
        out.ids.push(id);
        out.hyps.push(caption);
    }
    Ok(out)
}

fn check_none(what: &str, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // Ids come from the user's files: quoted with control characters escaped, cut if long.
    let shown: Vec<String> = ids
        .iter()
        .take(SHOW_IDS)
        .map(|id| crate::input::printable(id, 60))
        .collect();
    let more = if ids.len() > SHOW_IDS {
        format!(" and {} more", ids.len() - SHOW_IDS)
    } else {
        String::new()
    };
    Err(Error::invalid(format!(
        "{what} {} image id(s): {}{more}",
        ids.len(),
        shown.join(", ")
    )))
}

#[derive(Deserialize)]
struct CocoResult {
    image_id: serde_json::Value,
    caption: String,
}

fn parse_predictions(text: &str) -> std::result::Result<Vec<Prediction>, String> {
    // Editors on Windows like to start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !text.trim_start().starts_with('[') {
        return Ok(text.lines().map(|l| (None, l.to_string())).collect());
    }
    let rows: Vec<CocoResult> = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a COCO results array [{{\"image_id\": .., \"caption\": ..}}]: {}",
            crate::input::one_line(e)
        )
    })?;
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| {
            // COCO uses integer ids; Flickr-style ids are file names. Both become strings.
            let id = match r.image_id {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                other => {
                    return Err(format!(
                        "entry {i}: image_id {} is not a string or number",
                        crate::input::printable(&other.to_string(), 60)
                    ))
                }
            };
            Ok((Some(id), r.caption))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn parses_coco_results_with_string_and_number_ids() {
        let p = parse_predictions(
            r#" [{"image_id": 42, "caption": "a dog"}, {"image_id": "x.jpg", "caption": "b", "score": 1}]"#,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                (Some("42".into()), "a dog".into()),
                (Some("x.jpg".into()), "b".into())
            ]
        );
        assert!(parse_predictions(r#"[{"image_id": null, "caption": "a"}]"#).is_err());
        assert!(parse_predictions(r#"[{"image_id": 1}]"#)
            .unwrap_err()
            .contains("caption"));
    }

    #[test]
    fn parses_plain_lines_keeping_blank_ones() {
        let p = parse_predictions("a dog\r\n\nthe cat\n").unwrap();
        let caps: Vec<&str> = p.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(caps, ["a dog", "", "the cat"]);
        assert!(p.iter().all(|(id, _)| id.is_none()));
    }

    #[test]
    fn malformed_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preds.json");
        std::fs::write(&path, "[{\"image_id\": 1, \"caption\": }]").unwrap();
        let e = read_predictions(&path).unwrap_err().to_string();
        assert!(e.contains("preds.json") && e.contains("line 1"), "{e}");
        let rpath = dir.path().join("refs.json");
        std::fs::write(&rpath, "{\"a\": \"not a list\"}").unwrap();
        let e = read_references_json(&rpath).unwrap_err().to_string();
        assert!(e.contains("refs.json"), "{e}");
        std::fs::write(&rpath, "{\"a\": [\"x y\"], \"b\": []}").unwrap();
        assert_eq!(read_references_json(&rpath).unwrap().len(), 2);
    }

    #[test]
    fn pairs_by_id_in_prediction_order() {
        let r = refs(&[("1", &["a b"]), ("2", &["c d", "e"])]);
        let preds = vec![
            (Some("2".into()), "c".into()),
            (Some("1".into()), "a".into()),
        ];
        let p = pair_predictions(preds, &r, None).unwrap();
        assert_eq!(p.ids, ["2", "1"]);
        assert_eq!(p.refs[0], ["c d", "e"]);
        let (h, rs) = p.tokenize(|s| s.split_whitespace().map(String::from).collect());
        assert_eq!(
            (h[1].clone(), rs[1].clone()),
            (
                vec!["a".to_string()],
                vec![vec!["a".to_string(), "b".to_string()]]
            )
        );
    }

    #[test]
    fn pairs_plain_lines_by_order() {
        let r = refs(&[("x", &["a"]), ("y", &["b"])]);
        let preds = vec![(None, "a".into()), (None, "b".into())];
        let order = vec!["y".to_string(), "x".to_string()];
        let p = pair_predictions(preds.clone(), &r, Some(&order)).unwrap();
        assert_eq!(p.ids, ["y", "x"]);
        assert_eq!(p.refs, [vec!["b".to_string()], vec!["a".to_string()]]);
        assert!(pair_predictions(preds.clone(), &r, None).is_err());
        assert!(pair_predictions(preds, &r, Some(&order[..1])).is_err());
    }

    #[test]
    fn unmatched_ids_are_listed() {
        let r = refs(&[("1", &["a"]), ("2", &["b"])]);
        let preds: Vec<Prediction> = (1..=9)
            .map(|i| (Some(format!("{i}")), "a".to_string()))
            .collect();
        let e = pair_predictions(preds, &r, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "no references for predicted 7 image id(s): 3, 4, 5, 6, 7 and 2 more"
        );
        let preds = vec![(Some("1".to_string()), "a".to_string())];
        let e = pair_predictions(preds, &r, None).unwrap_err().to_string();
        assert_eq!(e, "no prediction for referenced 1 image id(s): 2");
        let dup = vec![
            (Some("1".into()), "a".into()),
            (Some("1".into()), "b".into()),
        ];
        assert!(pair_predictions(dup, &r, None)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let mixed = vec![(Some("1".into()), "a".into()), (None, "b".into())];
        assert!(pair_predictions(mixed, &r, None).is_err());
        let r = refs(&[("1", &[])]);
        let e = pair_predictions(vec![(Some("1".into()), "a".into())], &r, None).unwrap_err();
        assert!(e.to_string().contains("empty reference list"), "{e}");
    }
}
