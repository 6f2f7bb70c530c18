//! The documentation is true: every repository path, `captag` command and flag that README.md
//! and `docs/*.md` name exists. Only `--help` runs, so the test takes seconds.
//!
//! What is read, per Markdown file: fenced code blocks (lines ending in `\` joined to the next;
//! `NAME="..."` assignments in a block substituted for `$NAME` in its later lines), inline code
//! spans (`` `...` ``, which may wrap over lines within a paragraph), and link targets
//! (`[text](target)`, `![alt](target)`) outside fenced blocks.
//!
//! 1. **Links** resolve relative to the Markdown file that holds them (as GitHub renders them);
//!    `http(s):` and `mailto:` targets and `#anchor`s are not checked.
//! 2. **Repository paths** in code spans and fenced blocks are relative to the repository root.
//!    A word is a repository path when it starts with `src/`, `docs/`, `bench/`, `benches/`,
//!    `tests/`, `scripts/`, `notebooks/` or `.ci/`, or is `Makefile`, `Cargo.toml`, `build.rs`,
//!    `data/README.md` or `checkpoints/README.md`; it must exist. A word ending in `.rs` that
//!    does not start that way (`model/decoder/mod.rs`, `data/loader.rs`, `show_tell.rs`, as
//!    ARCHITECTURE.md names files inside `src/`) must be the tail of a file under `src/`,
//!    `tests/` or `benches/`.
//!    Not repository paths, so not checked: everything under `data/` and `checkpoints/` (the
//!    user's datasets, weights, caches and runs, ignored by git), absolute paths (`/tmp/...`),
//!    home paths (`~/...`), and words that hold a placeholder or pattern (`<`, `{`, `*`, `…`,
//!    `...`, `$`, `NAME`-style capitals after a slash). Trailing punctuation is stripped.
//! 3. **Commands**: every `captag [global flags] <command> [<subcommand>]` in a code span or a
//!    fenced block (commands and subcommands as `captag --help` and `captag <command> --help`
//!    list them) must print its `--help` with exit code 0. Where `captag` starts a line or a span,
//!    a lower-case word after it that is not a command fails (elsewhere, as in "the PNGs captag
//!    draws", it is prose); placeholders (`<command>`, `RUN`) are skipped.
//! 4. **Flags of a command line**: in a fenced block, and in a code span that starts with
//!    `captag`, each `--flag` (and `-x` short flag) of the line must appear in that command's
//!    `--help` or in `captag --help` (the global flags `--device`, `--seed`, `--threads`, `-q`,
//!    `-v`). A line ends at a shell comment (` #`), `|`, `&&`, `;` or a redirection.
//! 5. **Flags named alone**: every other `--flag` in a code span (`--min-ops/--max-ops` is two)
//!    must appear in some captag command's `--help`, or in the text of a script under
//!    `notebooks/`, `bench/` or `scripts/` (e.g. `make_hf_fixtures.py --real-out`). A span that
//!    runs `cargo`, `make`, `python`, `pip` or `git` names their flags and is skipped.
//! 6. No page points outside the repository to the build machine's shared folder.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOTS: &[&str] = &[
    "src/",
    "docs/",
    "bench/",
    "benches/",
    "tests/",
    "scripts/",
    "notebooks/",
    ".ci/",
];
const ROOT_FILES: &[&str] = &[
    "Makefile",
    "Cargo.toml",
    "build.rs",
    "data/README.md",
    "checkpoints/README.md",
];
const GLOBAL_WITH_VALUE: &[&str] = &["--device", "--seed", "--threads"];
/// A code span that runs one of these names that program's flags, not captag's (rule 5).
const OTHER_PROGRAMS: &[&str] = &["cargo", "make", "python", "python3", "pip", "git"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, relative to the repository root.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().unwrap()))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// What one Markdown file names.
#[derive(Default)]
struct Named {
    /// Lines of fenced code blocks, continuations joined, variables substituted.
    fenced: Vec<String>,
    /// Inline code spans, newlines made spaces.
    spans: Vec<String>,
    /// Link and image targets.
    links: Vec<String>,
}

fn parse(text: &str) -> Named {
    let mut named = Named::default();
    let mut prose = String::new();
    let mut in_fence = false;
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            vars.clear();
            pending.clear();
            prose.push('\n');
            continue;
        }
        if !in_fence {
            prose.push_str(line);
            prose.push('\n');
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        if let Some((name, value)) = assignment(&full) {
            let value = substitute(&value, &vars);
            vars.insert(name, value);
            continue;
        }
        named.fenced.push(substitute(&full, &vars));
    }
    for paragraph in prose.split("\n\n") {
        let mut rest = paragraph;
        while let Some(start) = rest.find('`') {
            let after = &rest[start + 1..];
            match after.find('`') {
                Some(end) => {
                    named.spans.push(after[..end].replace('\n', " "));
                    rest = &after[end + 1..];
                }
                None => break,
            }
        }
        let mut rest = paragraph;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            match after.find(')') {
                Some(end) => {
                    named.links.push(after[..end].trim().to_string());
                    rest = &after[end + 1..];
                }
                None => break,
            }
        }
    }
    named
}

/// `NAME="value"` (a shell variable a block's later lines use as `$NAME`).
fn assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = line.trim().split_once('=')?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return None;
    }
    let value = value.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some((name.to_string(), value.to_string()))
}

fn substitute(line: &str, vars: &HashMap<String, String>) -> String {
    line.split_whitespace()
        .map(|w| match w.strip_prefix('$').and_then(|n| vars.get(n)) {
            Some(v) => v.clone(),
            None => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word without quotes, brackets and trailing punctuation.
fn clean(word: &str) -> &str {
    word.trim_start_matches(['(', '[', '"', '\'', '`'])
        .trim_end_matches([')', ']', '"', '\'', '`', ',', '.', ';', ':'])
}

fn is_placeholder(word: &str) -> bool {
    word.contains(['<', '{', '*', '…', '$', '|'])
        || word.contains("...")
        || word
            .split('/')
            .skip(1)
            .any(|part| part.len() > 1 && part.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
}

/// Every file under `dir`, as paths relative to the repository root.
fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(repo().join(dir)) else {
        return;
    };
    for entry in entries {
        let path = dir.join(entry.unwrap().file_name());
        if repo().join(&path).is_dir() {
            walk(&path, out);
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
}

/// Repository paths in one piece of code (rule 2); returns the missing ones.
fn missing_paths(code: &str, sources: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for word in code.split_whitespace() {
        // `--out=docs/x` and `-o docs/x` alike: the value is what may be a path.
        let word = clean(word.rsplit('=').next().unwrap_or(word));
        if word.is_empty() || is_placeholder(word) {
            continue;
        }
        let rooted = ROOTS.iter().any(|r| word.starts_with(r)) || ROOT_FILES.contains(&word);
        if rooted {
            if !repo().join(word).exists() {
                missing.push(word.to_string());
            }
        } else if word.ends_with(".rs") && !word.starts_with(['/', '~', '.']) {
            let tail = format!("/{word}");
            if !sources.iter().any(|s| s.ends_with(&tail) || s == word) {
                missing.push(word.to_string());
            }
        }
    }
    missing
}

/// `captag --help`-style output: the names under `Commands:`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Runs `captag <cmd> --help` once per command.
#[derive(Default)]
struct Helps(BTreeMap<Vec<String>, (bool, String)>);

fn run_help(cmd: &[String]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_captag"))
        .args(cmd)
        .arg("--help")
        .output()
        .expect("failed to start captag");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

impl Helps {
    fn get(&mut self, cmd: &[String]) -> &(bool, String) {
        self.0.entry(cmd.to_vec()).or_insert_with(|| run_help(cmd))
    }

    /// Runs the `--help` of several commands side by side (each start loads libtorch).
    fn prefetch(&mut self, cmds: Vec<Vec<String>>) {
        let done: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = cmds
                .into_iter()
                .map(|c| s.spawn(move || (run_help(&c), c)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (help, cmd) in done {
            self.0.insert(cmd, help);
        }
    }

    /// Every command and subcommand `captag --help` lists.
    fn prefetch_all(&mut self, commands: &BTreeSet<String>) {
        self.prefetch(commands.iter().map(|c| vec![c.clone()]).collect());
        let subs: Vec<Vec<String>> = commands
            .iter()
            .flat_map(|c| {
                let help = &self.0[&vec![c.clone()]].1;
                subcommands(help)
                    .into_iter()
                    .map(move |s| vec![c.clone(), s])
            })
            .collect();
        self.prefetch(subs);
    }
}

/// The flags in one word: `--flag=value` ⇒ `--flag`, `--min-ops/--max-ops` ⇒ both.
fn flag_words(word: &str) -> Vec<String> {
    clean(word)
        .split('/')
        .filter(|w| {
            let long = w.starts_with("--") && w.len() > 2;
            let short = w.len() == 2 && w.starts_with('-') && w.as_bytes()[1].is_ascii_alphabetic();
            long || short
        })
        .map(|w| w.split('=').next().unwrap().to_string())
        .collect()
}

/// `--flag` appears in `help` as a whole word.
fn mentions(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let before = help[..i].chars().next_back();
        let after = help[i + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// A command named in `code`: the words of `captag ...` up to the end of the shell command.
struct Invocation {
    command: Vec<String>,
    flags: Vec<String>,
}

/// Every `captag` invocation in one line of code; `Err` names a word after `captag` that is
/// not a command.
fn invocations(
    code: &str,
    commands: &BTreeSet<String>,
    helps: &mut Helps,
) -> Vec<Result<Invocation, String>> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let starts_command = i == 0 || words[..i] == ["$"] || w.starts_with(['`', '(']);
        let w = w.trim_start_matches(['(', '`', '$']);
        if w != "captag" && !w.ends_with("/captag") {
            continue;
        }
        // The shell command ends at a comment, pipe, list or redirection.
        let rest: Vec<&str> = words[i + 1..]
            .iter()
            .copied()
            .take_while(|w| {
                !matches!(
                    *w,
                    "#" | "|" | "||" | "&&" | ";" | ">" | ">>" | "2>&1" | "&"
                )
            })
            .take_while(|w| !w.starts_with('#'))
            .collect();
        let mut flags = Vec::new();
        let mut j = 0;
        // Global flags before the command.
        while j < rest.len() && rest[j].starts_with('-') {
            let flag = rest[j].split('=').next().unwrap();
            flags.push(flag.to_string());
            j += 1;
            if GLOBAL_WITH_VALUE.contains(&flag) && !rest[j - 1].contains('=') && j < rest.len() {
                // A shell arithmetic value spans words: `$((S ^ 0xE7A10000))`.
                if rest[j].starts_with("$(") {
                    while j < rest.len() && !rest[j].ends_with(')') {
                        j += 1;
                    }
                }
                j += 1;
            }
        }
        let Some(first) = rest.get(j).map(|w| clean(w)) else {
            continue;
        };
        if !first.starts_with(|c: char| c.is_ascii_lowercase()) || is_placeholder(first) {
            continue;
        }
        if !commands.contains(first) {
            // `... the PNGs captag draws` is prose; `captag draws` at the start of a line is not.
            if starts_command {
                found.push(Err(format!("`captag {first}`: not a captag command")));
            }
            continue;
        }
        let mut command = vec![first.to_string()];
        j += 1;
        let (ok, help) = helps.get(&command).clone();
        if ok {
            if let Some(next) = rest.get(j).map(|w| clean(w)) {
                if subcommands(&help).contains(next) {
                    command.push(next.to_string());
                    j += 1;
                }
            }
        }
        for w in &rest[j..] {
            if clean(w) == "--" {
                break;
            }
            flags.extend(flag_words(w));
        }
        found.push(Ok(Invocation { command, flags }));
    }
    found
}

#[test]
fn every_path_command_and_flag_the_docs_name_exists() {
    let mut sources = Vec::new();
    for dir in ["src", "tests", "benches"] {
        walk(Path::new(dir), &mut sources);
    }
    let mut scripts = String::new();
    for dir in ["notebooks", "bench", "scripts"] {
        let mut files = Vec::new();
        walk(Path::new(dir), &mut files);
        for f in files {
            scripts.push_str(&fs::read_to_string(repo().join(f)).unwrap_or_default());
        }
    }

    let mut helps = Helps::default();
    let (ok, top) = helps.get(&[]).clone();
    assert!(ok, "captag --help failed:\n{top}");
    let commands = subcommands(&top);
    assert!(
        commands.contains("train") && commands.contains("caption"),
        "no commands in:\n{top}"
    );
    helps.prefetch_all(&commands);

    let mut errors: Vec<String> = Vec::new();
    let mut checked_commands = BTreeSet::new();
    for file in markdown_files() {
        let where_ = file.display().to_string();
        let text = fs::read_to_string(repo().join(&file)).unwrap();
        // The folder beside a developer's checkout that a user's clone does not have.
        for shared in [concat!("..", "/shared"), concat!("/work", "/shared")] {
            if text.contains(shared) {
                errors.push(format!(
                    "{where_}: points outside the repository ({shared})"
                ));
            }
        }
        let named = parse(&text);

        // 1. Links.
        for link in &named.links {
            let target = link.split_whitespace().next().unwrap_or("");
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = repo().join(file.parent().unwrap()).join(target);
            if !resolved.exists() {
                errors.push(format!("{where_}: link ({link}) does not resolve"));
            }
        }

        // 2. Paths.
        for code in named.fenced.iter().chain(&named.spans) {
            for path in missing_paths(code, &sources) {
                errors.push(format!("{where_}: `{path}` does not exist"));
            }
        }

        // 3 and 4. Commands, and the flags of command lines.
        let code_lines = named.fenced.iter().map(|l| (l, true)).chain(
            named
                .spans
                .iter()
                .map(|s| (s, s.trim_start().starts_with("captag "))),
        );
        let mut alone_flags = BTreeSet::new();
        for (code, check_flags) in code_lines {
            let invs = invocations(code, &commands, &mut helps);
            let other_program = code
                .split_whitespace()
                .any(|w| OTHER_PROGRAMS.contains(&clean(w)));
            if invs.is_empty() && !check_flags && !other_program {
                for w in code.split_whitespace().filter(|w| !is_placeholder(w)) {
                    alone_flags.extend(flag_words(w).into_iter().filter(|f| f.starts_with("--")));
                }
            }
            for inv in invs {
                let inv = match inv {
                    Ok(inv) => inv,
                    Err(e) => {
                        errors.push(format!("{where_}: {e} (in `{code}`)"));
                        continue;
                    }
                };
                let (ok, help) = helps.get(&inv.command).clone();
                let name = inv.command.join(" ");
                checked_commands.insert(name.clone());
                if !ok {
                    errors.push(format!("{where_}: `captag {name} --help` failed:\n{help}"));
                    continue;
                }
                if !check_flags {
                    continue;
                }
                for flag in inv.flags {
                    if !mentions(&help, &flag) && !mentions(&top, &flag) {
                        errors.push(format!(
                            "{where_}: `{flag}` is not a flag of `captag {name}` (in `{code}`)"
                        ));
                    }
                }
            }
        }

        // 5. Flags named alone: some command or script has them.
        let all_commands: Vec<Vec<String>> = commands.iter().map(|c| vec![c.clone()]).collect();
        for flag in alone_flags {
            let mut known = mentions(&top, &flag) || mentions(&scripts, &flag);
            for cmd in &all_commands {
                if known {
                    break;
                }
                let (_, help) = helps.get(cmd).clone();
                known = mentions(&help, &flag);
                for sub in subcommands(&help) {
                    if known {
                        break;
                    }
                    let full = vec![cmd[0].clone(), sub];
                    known = mentions(&helps.get(&full).1, &flag);
                }
            }
            if !known {
                errors.push(format!(
                    "{where_}: `{flag}` is no flag of any captag command or script"
                ));
            }
        }
    }
    assert!(
        checked_commands.len() >= 10,
        "the docs should name most commands; found only {checked_commands:?}"
    );
    assert!(
        errors.is_empty(),
        "the docs are not true:\n{}",
        errors.join("\n")
    );
}

/// The comparison specs the docs ship (the JSON files of `docs/`) are ones
/// `captag compare` accepts: names, ensembles of the spec's runs, no unknown fields.
#[test]
fn the_committed_compare_specs_load() {
    let mut n = 0;
    for e in fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            captag::experiments::compare::Spec::load(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "{n} specs");
}
