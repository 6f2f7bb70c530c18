//! The one output guard (docs/ARCHITECTURE.md, "Input and output rules"): before any command
//! runs, every output path it was given is checked against everything it reads, so that no
//! command overwrites one of its inputs. The rule is kept in one place ([`fsio::
//! refuse_overwriting_inputs`]); this module is the one list of what each command reads and
//! writes, so a new command or flag is added here, not by a check in each command.
//!
//! An output may be no file the command reads, and no existing file inside a dataset folder,
//! run directory or image folder the command reads (`vocab build DIR --out DIR/captions.txt`,
//! `eval RUN --predictions RUN/model.safetensors`). Outputs that are folders (a run directory,
//! `--out DIR` of `damage`/`restore`) may not be an input; the files `restore` writes into its
//! folder are checked one by one where they are named.
use std::path::{Path, PathBuf};

use crate::cli::{
    CaptionArgs, Command, FeaturesCommand, RatingsCommand, RestoreCommand, TagsCommand,
};
use crate::fsio::{refuse_overwriting_inputs, Input};

/// What a command reads and the outputs it was given, as `(flag, path)`.
#[derive(Default)]
struct Io<'a> {
    inputs: Vec<Input<'a>>,
    outputs: Vec<(&'static str, PathBuf, bool)>,
}

impl<'a> Io<'a> {
    fn file(&mut self, p: &'a Path) -> &mut Self {
        self.inputs.push(Input::File(p));
        self
    }
    fn folder(&mut self, p: &'a Path) -> &mut Self {
        self.inputs.push(Input::Folder(p));
        self
    }
    /// A path that may be a file or a folder (an image or a folder of images, a weights file
    /// or a Hugging Face folder): a folder protects what is inside it, a file itself.
    fn either(&mut self, p: &'a Path) -> &mut Self {
        if p.is_dir() {
            self.folder(p)
        } else {
            self.file(p)
        }
    }
    fn opt_either(&mut self, p: &'a Option<PathBuf>) -> &mut Self {
        if let Some(p) = p {
            self.either(p);
        }
        self
    }
    fn opt_file(&mut self, p: &'a Option<PathBuf>) -> &mut Self {
        if let Some(p) = p {
            self.file(p);
        }
        self
    }
    fn opt_folder(&mut self, p: &'a Option<PathBuf>) -> &mut Self {
        if let Some(p) = p {
            self.folder(p);
        }
        self
    }
    /// An output file: it may not be an input nor lie inside an input folder.
    fn out(&mut self, flag: &'static str, p: &Path) -> &mut Self {
        self.outputs.push((flag, p.to_path_buf(), false));
        self
    }
    /// An output folder (a run directory, `--out DIR`) or a file the command extends rather
    /// than replaces (`serve --db`): it may not be an input. (A run directory kept inside the
    /// dataset folder is the user's choice; `--resume` reopens it.)
    fn out_dir(&mut self, flag: &'static str, p: &Path) -> &mut Self {
        self.outputs.push((flag, p.to_path_buf(), true));
        self
    }
}

fn caption_io<'a>(io: &mut Io<'a>, a: &'a CaptionArgs) {
    for run in &a.ensemble {
        io.folder(run);
    }
    io.folder(&a.checkpoint)
        .opt_folder(&a.clip)
        .opt_folder(&a.restore)
        .opt_file(&a.tags.text_tags)
        .opt_file(&a.tags.emoji)
        .opt_folder(&a.translate.translate);
    if let Some(Some(labels)) = &a.moods {
        io.file(labels);
    }
    for i in &a.inputs {
        io.either(i);
    }
    if let Some(dir) = &a.attention {
        io.out_dir("--attention", dir);
    }
}

fn features_io<'a>(io: &mut Io<'a>, a: &'a crate::cli::FeaturesArgs) {
    match &a.command {
        Some(FeaturesCommand::Merge(m)) => {
            for shard in &m.shards {
                io.file(shard);
            }
            io.out("--out", &m.out);
        }
        None => {
            io.opt_folder(&a.data).opt_either(&a.encoder_weights);
            match (&a.shard, &a.shard_out, &a.out) {
                (_, Some(p), _) => io.out("--shard-out", p),
                (Some(s), None, Some(out)) => io.out("--out", &s.path_for(out)),
                (None, _, Some(out)) => io.out("--out", out),
                _ => io,
            };
        }
    }
}

fn llm_io<'a>(io: &mut Io<'a>, c: &'a crate::cli::LlmCommand) {
    match c {
        crate::cli::LlmCommand::Train(t) => {
            io.folder(&t.model).file(&t.data).out_dir("--out", &t.out);
        }
        crate::cli::LlmCommand::Merge(m) => {
            io.folder(&m.model)
                .folder(&m.adapter)
                .out_dir("--out", &m.out);
        }
        crate::cli::LlmCommand::Pairs(p) => {
            io.folder(&p.data).out("--out", &p.out);
        }
        crate::cli::LlmCommand::Generate(_) | crate::cli::LlmCommand::Eval(_) => {}
    }
}

fn restore_io<'a>(io: &mut Io<'a>, a: &'a crate::cli::RestoreArgs) {
    match &a.command {
        Some(RestoreCommand::Train(t)) => {
            io.folder(&t.data)
                .opt_file(&t.encoder_weights)
                .out_dir("--out", &t.out);
        }
        Some(RestoreCommand::Eval(_)) => {}
        None => {
            let r = &a.apply;
            io.opt_folder(&r.run).opt_file(&r.mask);
            for i in &r.inputs {
                io.either(i);
            }
            if let Some(o) = &r.out {
                io.out_dir("--out", o);
            }
        }
    }
}

/// Refuses the command when one of its outputs is one of its inputs (see the module doc).
pub fn check(cmd: &Command) -> crate::Result<()> {
    let mut io = Io::default();
    match cmd {
        Command::Synth(_) | Command::Demo(_) | Command::Bleu(_) | Command::Data(_) => {}
        // Reads a folder, writes only to standard output.
        Command::Translate(_) => {}
        Command::Vocab(crate::cli::VocabCommand::Build { dir, out, .. }) => {
            io.folder(dir).out("--out", out);
        }
        Command::Features(a) => features_io(&mut io, a),
        Command::Train(a) => {
            io.folder(&a.data)
                .opt_either(&a.encoder_weights)
                .opt_either(&a.lm_weights)
                .opt_file(&a.features)
                .opt_folder(&a.distill.teacher)
                .opt_folder(&a.scst.init_from)
                .out_dir("--out", &a.out);
        }
        Command::Eval(a) => {
            io.folder(&a.checkpoint).folder(&a.data);
            for f in &a.features {
                io.file(f);
            }
            for run in &a.ensemble {
                io.folder(run);
            }
            if let Some(p) = &a.predictions {
                io.out("--predictions", p);
            }
        }
        Command::Caption(a) => caption_io(&mut io, a),
        Command::Tags(c) | Command::Emoji(c) => match c {
            TagsCommand::Train { data, out, .. } => {
                // Only the CSV is read (no image): a folder protects the folder, a file itself.
                if data.is_dir() {
                    io.folder(data);
                } else {
                    io.file(data);
                }
                io.out("--out", out);
            }
            TagsCommand::Eval { .. } | TagsCommand::Suggest { .. } => {}
        },
        Command::Serve(a) => {
            for run in &a.ensemble {
                io.folder(run);
            }
            io.folder(&a.checkpoint)
                .opt_file(&a.text_tags)
                .opt_file(&a.emoji)
                .opt_folder(&a.translate.translate)
                // The ratings database is read and extended across restarts (kept in the run
                // directory by some); SQLite refuses a file that is not a database.
                .out_dir("--db", &a.db);
            if let Some(k) = &a.keep_images {
                io.out_dir("--keep-images", k);
            }
        }
        Command::Ratings(RatingsCommand::Export {
            db, out, images, ..
        }) => {
            io.file(db).folder(images).out_dir("--out", out);
        }
        Command::Compare(a) => {
            io.file(&a.spec).out_dir("--out", &a.out);
        }
        // `plot` reads only RUN/metrics.jsonl and writes OUT.svg and OUT.png, which can never
        // be that file; a plot kept inside a run directory may be redrawn.
        Command::Plot(_) => {}
        Command::Damage(a) => {
            io.folder(&a.data).out_dir("--out", &a.out);
        }
        Command::Llm(c) => llm_io(&mut io, c),
        Command::Restore(a) => restore_io(&mut io, a),
    }
    // A folder output is compared with the inputs themselves only.
    let identity: Vec<Input> = io.inputs.iter().map(|i| Input::File(i.path())).collect();
    for (flag, out, is_dir) in &io.outputs {
        let inputs = if *is_dir { &identity } else { &io.inputs };
        refuse_overwriting_inputs(flag, out, inputs)?;
    }
    Ok(())
}
