//! Hashtag and mention extraction for Instagram captions (the Kaggle "Instagram Images with
//! Captions" CSVs, docs/ARCHITECTURE.md "Data formats"): the labels for the hashtag head, and the caption
//! text the caption decoder learns from.
//!
//! Rules:
//! - `#` followed by letters, digits or `_` starts a hashtag, wherever it stands (`#a#b` is two
//!   tags, `love#tag` is the word `love` and the tag `tag`); the tag ends at the first other
//!   character, so trailing punctuation and emoji are not part of it (`#tag.` → `tag`,
//!   `#tag🎄` → `tag`). A bare `#` and an all-digit `#1` are not tags (Instagram does not link
//!   them either); the bare `#` is dropped from the text, `#1` stays text.
//! - `@` starts a mention unless a letter or digit stands right before it (so `me@mail.com`
//!   stays text); user names also allow `.` inside (`@teamlab.planets`), not at the end.
//! - Tags and mentions are lower-cased and de-duplicated keeping first-seen order (`#Tag` and
//!   `#tag` are one label).
//! - Text: mentions are always removed (a user name is not a word of the sentence). A hashtag
//!   that is followed by a plain word on the same line is part of the sentence and keeps its
//!   word without the `#` (`#ProtectYourEnergy extends to your toes` keeps `ProtectYourEnergy`);
//!   a hashtag with only tags, mentions, emoji or punctuation after it on its line is a label
//!   block and is removed. Punctuation glued to a removed tag goes with it (`#tag.`).
//! - Newlines (and `\r`) are whitespace; the text has single spaces and no leading/trailing
//!   space. Emoji stay in the text (the tokenizer drops them).
use super::tokenize::is_word_char;

/// A caption split into its sentence text, hashtag labels and mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tagged {
    pub text: String,
    pub hashtags: Vec<String>,
    pub mentions: Vec<String>,
}

#[derive(Debug)]
enum Seg {
    Text(String),
    /// The tag as written (case kept, for the text when it stays inline).
    Hash(String),
    Mention(String),
}

/// Split an Instagram caption into text, hashtags and mentions (rules in the module docs).
pub fn extract_tags(raw: &str) -> Tagged {
    let mut out = Tagged::default();
    let mut words: Vec<String> = Vec::new();
    for line in raw.split(['\n', '\r']) {
        // One entry per whitespace chunk: its segments in order.
        let chunks: Vec<Vec<Seg>> = line.split_whitespace().map(scan_chunk).collect();
        // For every (chunk, segment) position: is there a plain word after it on this line?
        let flat: Vec<(usize, usize)> = chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, segs)| (0..segs.len()).map(move |si| (ci, si)))
            .collect();
        let mut word_after = vec![false; flat.len()];
        let mut seen_word = false;
        for (k, &(ci, si)) in flat.iter().enumerate().rev() {
            word_after[k] = seen_word;
            if let Seg::Text(t) = &chunks[ci][si] {
                seen_word |= t.chars().any(char::is_alphanumeric);
            }
        }
        let mut k = 0;
        for segs in &chunks {
            let mut word = String::new();
            let mut after_removed_tag = false;
            for seg in segs {
                match seg {
                    Seg::Text(t) => {
                        let punct_only = t.chars().all(|c| c.is_ascii_punctuation());
                        if !(after_removed_tag && punct_only) {
                            word.push_str(t);
                        }
                        after_removed_tag = false;
                    }
                    Seg::Hash(tag) => {
                        push_unique(&mut out.hashtags, tag.to_lowercase());
                        after_removed_tag = !word_after[k];
                        if word_after[k] {
                            word.push_str(tag);
                        }
                    }
                    Seg::Mention(name) => {
                        push_unique(&mut out.mentions, name.to_lowercase());
                        after_removed_tag = true;
                    }
                }
                k += 1;
            }
            if !word.is_empty() {
                words.push(word);
            }
        }
    }
    out.text = words.join(" ");
    out
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// Segments of one whitespace-free chunk.
fn scan_chunk(chunk: &str) -> Vec<Seg> {
    let chars: Vec<char> = chunk.chars().collect();
    let mut segs = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            let end = (i + 1..chars.len())
                .find(|&j| !is_tag_char(chars[j]))
                .unwrap_or(chars.len());
            let name: String = chars[i + 1..end].iter().collect();
            if name.is_empty() {
                i += 1; // bare `#`: not a tag, and not worth keeping as text
                continue;
            }
            if name.chars().all(|c| c.is_ascii_digit()) {
                text.push('#');
                text.push_str(&name);
            } else {
                flush(&mut text, &mut segs);
                segs.push(Seg::Hash(name));
            }
            i = end;
            continue;
        }
        if c == '@' && (i == 0 || !chars[i - 1].is_alphanumeric()) {
            let mut end = (i + 1..chars.len())
                .find(|&j| !(is_tag_char(chars[j]) || chars[j] == '.'))
                .unwrap_or(chars.len());
            while end > i + 1 && chars[end - 1] == '.' {
                end -= 1;
            }
            if end > i + 1 {
                flush(&mut text, &mut segs);
                segs.push(Seg::Mention(chars[i + 1..end].iter().collect()));
                i = end;
                continue;
            }
        }
        text.push(c);
        i += 1;
    }
    flush(&mut text, &mut segs);
    segs
}

fn is_tag_char(c: char) -> bool {
    is_word_char(c)
}

fn flush(text: &mut String, segs: &mut Vec<Seg>) {
    if !text.is_empty() {
        segs.push(Seg::Text(std::mem::take(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(raw: &str) -> (String, Vec<String>, Vec<String>) {
        let t = extract_tags(raw);
        (t.text, t.hashtags, t.mentions)
    }

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn trailing_tag_block_is_removed_and_lowercased() {
        let (text, h, m) =
            tags("Vitamin C for your fashion diet #KatyPursey #StayHome #ShoesdayTuesday @katyperrycollections");
        assert_eq!(text, "Vitamin C for your fashion diet");
        assert_eq!(h, v(&["katypursey", "stayhome", "shoesdaytuesday"]));
        assert_eq!(m, v(&["katyperrycollections"]));
    }

    #[test]
    fn inline_tag_keeps_its_word() {
        let (text, h, _) =
            tags("#ProtectYourEnergy2020 extends from your head to your toes ✨ #ShoesdayTuesday");
        assert_eq!(
            text,
            "ProtectYourEnergy2020 extends from your head to your toes ✨"
        );
        assert_eq!(h, v(&["protectyourenergy2020", "shoesdaytuesday"]));
        let (text, h, _) = tags("I love #Paris, in spring");
        assert_eq!(text, "I love Paris, in spring");
        assert_eq!(h, v(&["paris"]));
    }

    #[test]
    fn punctuation_and_emoji_are_not_part_of_tags() {
        let (text, h, _) = tags("Sunny day #beach. #sun, #fun! #xmas🎄");
        assert_eq!(h, v(&["beach", "sun", "fun", "xmas"]));
        assert_eq!(text, "Sunny day 🎄");
    }

    #[test]
    fn glued_tags_bare_hash_and_digits() {
        let (text, h, _) = tags("wow#a#b # ##");
        assert_eq!(h, v(&["a", "b"]));
        assert_eq!(text, "wow");
        let (text, h, _) = tags("We're #1 fan");
        assert!(h.is_empty());
        assert_eq!(text, "We're #1 fan");
    }

    #[test]
    fn case_variants_dedupe_in_first_seen_order() {
        let (_, h, m) = tags("#Tag #tag #TAG #other #Tag @Bob @bob");
        assert_eq!(h, v(&["tag", "other"]));
        assert_eq!(m, v(&["bob"]));
    }

    #[test]
    fn mentions_always_leave_the_text() {
        let (text, _, m) = tags("Walk the walk @vogueindia Jan 2020 \nStory link in bio");
        assert_eq!(text, "Walk the walk Jan 2020 Story link in bio");
        assert_eq!(m, v(&["vogueindia"]));
        let (text, _, m) =
            tags("THEE highlight of my Tokyo trip @teamlab.planets & @teamlab_borderless. ✨");
        assert_eq!(m, v(&["teamlab.planets", "teamlab_borderless"]));
        assert_eq!(text, "THEE highlight of my Tokyo trip & ✨");
        let (text, _, m) = tags("mail me@example.com");
        assert_eq!(text, "mail me@example.com");
        assert!(m.is_empty());
    }

    #[test]
    fn multi_line_caption_with_emoji() {
        let raw =
            "✨this is living✨\r\n\r\nEgypt Oct 2019 #travel\n#Egypt #Pyramids 🐪\nmore soon";
        let (text, h, _) = tags(raw);
        assert_eq!(text, "✨this is living✨ Egypt Oct 2019 🐪 more soon");
        assert_eq!(h, v(&["travel", "egypt", "pyramids"]));
    }

    #[test]
    fn tag_on_its_own_line_is_removed_even_if_words_follow_later() {
        let (text, h, _) = tags("#tbt\nFun day at the beach");
        assert_eq!(text, "Fun day at the beach");
        assert_eq!(h, v(&["tbt"]));
    }

    #[test]
    fn tags_only_and_empty() {
        assert_eq!(
            tags("#love #instagood"),
            (String::new(), v(&["love", "instagood"]), vec![])
        );
        assert_eq!(tags(""), (String::new(), vec![], vec![]));
        assert_eq!(tags("  \n "), (String::new(), vec![], vec![]));
        assert_eq!(tags("@ryanseacrest 👍🏻").0, "👍🏻");
    }

    #[test]
    fn non_ascii_tags() {
        let (text, h, _) = tags("Tokyo nights #東京 #Café");
        assert_eq!(h, v(&["東京", "café"]));
        assert_eq!(text, "Tokyo nights");
    }
}
