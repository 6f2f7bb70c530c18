//! The renamed flags: the new spelling, and the old one still accepted (hidden from `--help`).
use clap::{CommandFactory, Parser};

use super::{Cli, Command};

fn parse(args: &[&str]) -> Command {
    let mut all = vec!["captag"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all) {
        Ok(c) => c.command,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

const TRAIN: [&str; 5] = ["train", "--data", "d", "--out", "o"];

#[test]
fn grad_clip_and_its_old_spelling_clip() {
    for flag in ["--grad-clip", "--clip"] {
        let mut args = TRAIN.to_vec();
        args.extend([flag, "1.5"]);
        let Command::Train(t) = parse(&args) else {
            panic!("train")
        };
        assert_eq!(t.grad_clip, 1.5, "{flag}");
    }
    let Command::Train(t) = parse(&TRAIN) else {
        panic!("train")
    };
    assert_eq!(t.grad_clip, crate::config::defaults::GRAD_CLIP);
}

#[test]
fn kd_alpha_and_length_alpha_take_the_old_alpha_per_command() {
    for flag in ["--kd-alpha", "--alpha"] {
        let mut args = TRAIN.to_vec();
        args.extend(["--teacher", "t", flag, "0.25"]);
        let Command::Train(t) = parse(&args) else {
            panic!("train")
        };
        assert_eq!(t.distill.kd_alpha, 0.25, "{flag}");
    }
    for flag in ["--length-alpha", "--alpha"] {
        let Command::Caption(c) = parse(&["caption", "run", "x.png", flag, "0.7"]) else {
            panic!("caption")
        };
        assert_eq!(c.decode.length_alpha, 0.7, "{flag}");
        let Command::Eval(e) = parse(&["eval", "run", "--data", "d", flag, "0.7"]) else {
            panic!("eval")
        };
        assert_eq!(e.decode.length_alpha, 0.7, "{flag}");
    }
}

#[test]
fn old_spellings_are_hidden_from_help() {
    let mut cmd = Cli::command();
    for (sub, new, old) in [
        ("train", "--grad-clip", "--clip "),
        ("train", "--kd-alpha", "--alpha "),
        ("caption", "--length-alpha", "--alpha "),
    ] {
        let help = cmd
            .find_subcommand_mut(sub)
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains(new), "{sub}: {help}");
        assert!(!help.contains(old), "{sub} shows {old}: {help}");
    }
}
