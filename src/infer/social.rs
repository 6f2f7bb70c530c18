//! The social post style (`caption --style social`, the web page): a description, emoji and
//! hashtags composed into one text a person could post as it is:
//!
//! ```text
//! A dog runs on the beach 🐶🌊
//!
//! #dog #beach #sunset
//! ```
//!
//! Pure string work, so the page and the command line print the same text for the same parts.
//! Why each rule:
//! - The description comes from the decoder as lower-case PTB tokens (`a dog 's toy`, `do n't`,
//!   `here .`); it is joined back into prose (`a dog's toy`, `don't`, `here.`), whitespace is
//!   collapsed and the first letter capitalised.
//! - It ends with a full stop, unless it already ends with `.`, `!`, `?`, `…` or an emoji; when
//!   emoji follow on the same line, a single final `.` is dropped instead (`…beach 🐶🌊`, not
//!   `…beach. 🐶🌊`), the way such posts are written.
//! - Emoji are written together in their normalised form ([`crate::text::emoji`]: ❤ and ❤️
//!   are one), each once, leaving out those the description already has.
//! - Hashtags go in their own paragraph after a blank line, each once (case-insensitively, and
//!   not one the description already carries as `#tag`), with a leading `#` added or kept and
//!   anything that would end the tag on Instagram (spaces, punctuation) removed; at most
//!   [`MAX_HASHTAGS`], Instagram's limit per post.
use crate::text::emoji::find_emoji;
use crate::text::extract_tags;
use crate::text::tokenize::is_word_char;

/// Instagram refuses a post with more hashtags than this.
pub const MAX_HASHTAGS: usize = 30;

/// Clitics the tokenizer splits off a word (`dog 's`, `do n't`): written back onto it.
const CLITICS: [&str; 7] = ["'s", "'re", "'m", "'d", "'ve", "'ll", "n't"];

/// One post text from a description, emoji and hashtags (rules in the module docs). Any part
/// may be empty; all empty gives `""`.
pub fn compose<E: AsRef<str>, H: AsRef<str>>(
    description: &str,
    emoji: &[E],
    hashtags: &[H],
) -> String {
    let mut text = prose(description);
    let in_text: Vec<String> = find_emoji(&text).into_iter().map(|m| m.label).collect();
    let mut marks: Vec<String> = vec![];
    for e in emoji {
        let e = e.as_ref().trim();
        let mut found: Vec<String> = find_emoji(e).into_iter().map(|m| m.label).collect();
        if found.is_empty() && !e.is_empty() {
            found.push(e.to_string()); // not an emoji to us (`♡`): kept as the user wrote it
        }
        for m in found {
            if !in_text.contains(&m) && !marks.contains(&m) {
                marks.push(m);
            }
        }
    }
    let marks = marks.concat();
    if !text.is_empty() {
        if marks.is_empty() {
            if !ends_sentence(&text) {
                text.push('.');
            }
        } else if text.ends_with('.') && !text.ends_with("..") {
            text.pop();
        }
    }
    let first = [text.as_str(), marks.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let tags = tag_line(&text, hashtags);
    match (first.is_empty(), tags.is_empty()) {
        (_, true) => first,
        (true, false) => tags,
        (false, false) => format!("{first}\n\n{tags}"),
    }
}

/// Tokens joined back into a sentence with its first letter capitalised.
fn prose(description: &str) -> String {
    let mut out = String::new();
    for w in description.split_whitespace() {
        let lower = w.to_lowercase();
        let glued = CLITICS.contains(&lower.as_str())
            || w.chars()
                .all(|c| matches!(c, '.' | ',' | '!' | '?' | ';' | ':'));
        if !out.is_empty() && !glued {
            out.push(' ');
        }
        out.push_str(w);
    }
    match out.char_indices().find(|(_, c)| c.is_alphanumeric()) {
        Some((i, c)) if c.is_lowercase() => {
            let upper: String = c.to_uppercase().collect();
            out.replace_range(i..i + c.len_utf8(), &upper);
            out
        }
        _ => out,
    }
}

/// Does the text already end like a sentence (punctuation before closing quotes, or emoji)?
fn ends_sentence(text: &str) -> bool {
    if find_emoji(text).last().is_some_and(|m| m.end == text.len()) {
        return true;
    }
    let core = text.trim_end_matches(['"', '\'', ')', ']', '”', '’', '»']);
    core.ends_with(['.', '!', '?', '…'])
}

/// `#a #b` from the hashtags: cleaned, each once, none the text already has, at most
/// [`MAX_HASHTAGS`].
fn tag_line<H: AsRef<str>>(text: &str, hashtags: &[H]) -> String {
    let mut seen: Vec<String> = extract_tags(text).hashtags;
    let mut out: Vec<String> = vec![];
    for h in hashtags {
        let tag: String = h.as_ref().chars().filter(|&c| is_word_char(c)).collect();
        let key = tag.to_lowercase();
        if tag.is_empty() || tag.chars().all(|c| c.is_ascii_digit()) || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        out.push(format!("#{tag}"));
        if out.len() == MAX_HASHTAGS {
            break;
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&str; 0] = [];

    #[test]
    fn description_emoji_and_hashtags() {
        assert_eq!(
            compose("a dog runs on the beach", &["🐶", "🌊"], &["dog", "beach"]),
            "A dog runs on the beach 🐶🌊\n\n#dog #beach"
        );
        let emoji = vec!["❤️".to_string()];
        let tags = vec!["love".to_string()];
        assert_eq!(compose("so happy", &emoji, &tags), "So happy ❤️\n\n#love");
    }

    #[test]
    fn end_punctuation() {
        assert_eq!(compose("a dog runs", &NONE, &NONE), "A dog runs.");
        assert_eq!(compose("a dog runs .", &NONE, &NONE), "A dog runs.");
        assert_eq!(compose("what a day!", &NONE, &NONE), "What a day!");
        assert_eq!(compose("wait for it...", &NONE, &NONE), "Wait for it...");
        assert_eq!(compose("he said \"go.\"", &NONE, &NONE), "He said \"go.\"");
        assert_eq!(compose("sunset vibes 🌅", &NONE, &NONE), "Sunset vibes 🌅");
        // Before emoji a lone full stop goes; other endings stay.
        assert_eq!(compose("a dog runs.", &["🐶"], &NONE), "A dog runs 🐶");
        assert_eq!(compose("what a day!", &["🎉"], &NONE), "What a day! 🎉");
        assert_eq!(compose("and then...", &["😱"], &NONE), "And then... 😱");
    }

    #[test]
    fn tokens_become_prose() {
        assert_eq!(
            compose(
                "  a dog 's toy , and a cat   that do n't care ",
                &NONE,
                &NONE
            ),
            "A dog's toy, and a cat that don't care."
        );
        assert_eq!(
            compose("\"quoted\" words", &NONE, &NONE),
            "\"Quoted\" words."
        );
        assert_eq!(compose("élan", &NONE, &NONE), "Élan.");
        assert_eq!(compose("3 dogs", &NONE, &NONE), "3 dogs.");
    }

    #[test]
    fn no_duplicates() {
        assert_eq!(
            compose(
                "a dog 🐶 #dog on the beach",
                &["🐶", "🌊", "🌊", "", " "],
                &["#dog", "Beach", "beach", "#BEACH", "sun set!", "#", "2020", "sun_set"],
            ),
            "A dog 🐶 #dog on the beach 🌊\n\n#Beach #sunset #sun_set"
        );
        // ❤ and ❤️ are one emoji, written fully qualified; one string may hold several.
        assert_eq!(compose("love", &["❤", "❤️", "😍❤"], &NONE), "Love ❤️😍");
        assert_eq!(compose("love", &["♡"], &NONE), "Love ♡");
    }

    #[test]
    fn missing_parts() {
        assert_eq!(compose("", &["🐶"], &["dog"]), "🐶\n\n#dog");
        assert_eq!(compose("  ", &NONE, &["dog"]), "#dog");
        assert_eq!(compose("", &["🐶"], &NONE), "🐶");
        assert_eq!(compose("", &NONE, &NONE), "");
        assert_eq!(compose("a dog", &NONE, &["dog"]), "A dog.\n\n#dog");
    }

    #[test]
    fn at_most_thirty_hashtags() {
        let tags: Vec<String> = (0..40).map(|i| format!("tag{i}")).collect();
        let text = compose("x", &NONE, &tags);
        assert_eq!(text.matches('#').count(), MAX_HASHTAGS);
        assert!(text.ends_with("#tag29"));
    }
}
