//! SentencePiece models (`.spm`, `.model`: a `ModelProto` protobuf) read without the
//! `sentencepiece` library and run through the `tokenizers` crate: the few protobuf fields a
//! tokenizer needs are read by hand ([`SpmModel::parse`]), and the `tokenizer.json` that
//! `transformers`' `SpmConverter.build_tokenizer_from_spm_proto` would build is assembled from
//! them ([`SpmModel::tokenizer_json`]): Unigram (Marian's `source.spm`/`target.spm`) or BPE with
//! merges ranked by piece score (M2M100's `sentencepiece.bpe.model`), the model's precompiled
//! normalisation map, SentencePiece's whitespace rules and Metaspace, so that the pieces equal
//! `SentencePieceProcessor.encode(text, out_type=str)` (docs/translation.md).
use std::path::Path;

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::{Error, Result};

/// A piece's type in the model (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

#[derive(Debug, Clone)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The fields of a SentencePiece `ModelProto` a tokenizer needs.
#[derive(Debug, Clone)]
pub struct SpmModel {
    pub pieces: Vec<Piece>,
    /// 1 Unigram, 2 BPE, 3 word, 4 char (`TrainerSpec.model_type`).
    pub model_type: u64,
    pub unk_id: u32,
    pub unk_piece: String,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

/// A protobuf wire-format reader over one message's bytes.
struct Wire<'a> {
    buf: &'a [u8],
    at: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, at: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or("a field runs past the end of the file")?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end.
    fn next(&mut self) -> std::result::Result<Option<(u64, Field<'a>)>, String> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            t => return Err(format!("unsupported protobuf wire type {t}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn utf8(b: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a piece is not UTF-8".to_string())
}

impl SpmModel {
    pub fn read(path: &Path) -> Result<SpmModel> {
        let bytes = crate::input::read_bytes(path, crate::input::TEXT, "a SentencePiece model")?;
        SpmModel::parse(&bytes).map_err(|e| {
            Error::invalid(format!(
                "{}: not a SentencePiece model ({e})",
                path.display()
            ))
        })
    }

    /// `ModelProto`: pieces (1), trainer_spec (2), normalizer_spec (3); other fields skipped.
    pub fn parse(bytes: &[u8]) -> std::result::Result<SpmModel, String> {
        let mut m = SpmModel {
            pieces: vec![],
            model_type: 1,
            unk_id: 0,
            unk_piece: "<unk>".into(),
            byte_fallback: false,
            precompiled_charsmap: vec![],
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        };
        let mut w = Wire::new(bytes);
        while let Some((num, f)) = w.next()? {
            match (num, f) {
                (1, Field::Bytes(b)) => m.pieces.push(parse_piece(b)?),
                (2, Field::Bytes(b)) => {
                    let mut t = Wire::new(b);
                    while let Some((num, f)) = t.next()? {
                        match (num, f) {
                            (3, Field::Varint(x)) => m.model_type = x,
                            (35, Field::Varint(x)) => m.byte_fallback = x != 0,
                            (40, Field::Varint(x)) => m.unk_id = x as u32,
                            (45, Field::Bytes(s)) => m.unk_piece = utf8(s)?,
                            _ => {}
                        }
                    }
                }
                (3, Field::Bytes(b)) => {
                    let mut n = Wire::new(b);
                    while let Some((num, f)) = n.next()? {
                        match (num, f) {
                            (2, Field::Bytes(s)) => m.precompiled_charsmap = s.to_vec(),
                            (3, Field::Varint(x)) => m.add_dummy_prefix = x != 0,
                            (4, Field::Varint(x)) => m.remove_extra_whitespaces = x != 0,
                            (5, Field::Varint(x)) => m.escape_whitespaces = x != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err("no pieces".into());
        }
        if m.unk_id as usize >= m.pieces.len() {
            return Err(format!("unk_id {} outside the vocabulary", m.unk_id));
        }
        if !matches!(m.model_type, 1 | 2) {
            return Err(format!(
                "model type {} (only Unigram and BPE models are read)",
                m.model_type
            ));
        }
        Ok(m)
    }

    /// The `tokenizer.json` of `SpmConverter.build_tokenizer_from_spm_proto` (legacy mode).
    pub fn tokenizer_json(&self) -> Value {
        let model = if self.model_type == 1 {
            let vocab: Vec<Value> = self
                .pieces
                .iter()
                .map(|p| json!([p.piece, p.score]))
                .collect();
            json!({"type": "Unigram", "unk_id": self.unk_id, "vocab": vocab,
                   "byte_fallback": self.byte_fallback})
        } else {
            let vocab: serde_json::Map<String, Value> = self
                .pieces
                .iter()
                .enumerate()
                .map(|(i, p)| (p.piece.clone(), json!(i)))
                .collect();
            let user_defined = self.pieces.iter().any(|p| p.kind == PieceType::UserDefined);
            json!({"type": "BPE", "dropout": null, "unk_token": self.unk_piece,
                   "continuing_subword_prefix": null, "end_of_word_suffix": null,
                   "fuse_unk": true, "byte_fallback": self.byte_fallback,
                   "ignore_merges": user_defined, "vocab": vocab, "merges": self.merges()})
        };
        let mut norm = vec![];
        if !self.precompiled_charsmap.is_empty() {
            norm.push(json!({"type": "Precompiled",
                             "precompiled_charsmap": base64(&self.precompiled_charsmap)}));
        }
        let replace = |pat: Value, content: &str| json!({"type": "Replace", "pattern": pat, "content": content});
        if self.remove_extra_whitespaces {
            norm.push(replace(json!({"Regex": r"\A +| +\z"}), ""));
            norm.push(replace(json!({"Regex": " {2,}"}), " "));
        }
        if self.escape_whitespaces {
            norm.push(replace(json!({"String": " "}), "▁"));
        }
        if self.add_dummy_prefix {
            norm.push(replace(json!({"Regex": r"\A▁"}), "▁▁"));
        }
        let mut pre = vec![];
        if self.add_dummy_prefix {
            pre.push(json!({"type": "Metaspace", "replacement": "▁",
                            "prepend_scheme": "always", "split": false}));
        }
        let mut user: Vec<&str> = self
            .pieces
            .iter()
            .filter(|p| p.kind == PieceType::UserDefined)
            .map(|p| p.piece.as_str())
            .collect();
        if !user.is_empty() {
            user.sort_by_key(|p| std::cmp::Reverse(p.chars().count()));
            let pattern: Vec<String> = user.iter().map(|p| fancy_escape(p)).collect();
            pre.push(
                json!({"type": "Split", "pattern": {"Regex": pattern.join("|")},
                            "behavior": "Isolated", "invert": false}),
            );
        }
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "Sequence", "normalizers": norm},
            "pre_tokenizer": if pre.is_empty() { Value::Null } else { json!({"type": "Sequence", "pretokenizers": pre}) },
            "post_processor": null, "decoder": null, "model": model,
        })
    }

    /// BPE merges from the pieces, as `build_tokenizer_from_spm_proto` generates them: every
    /// split of a normal piece into two normal pieces, ranked by the merged piece's score
    /// (higher first), then its id.
    fn merges(&self) -> Vec<Value> {
        use std::collections::HashMap;
        let normal: HashMap<&str, (f32, usize)> = self
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == PieceType::Normal)
            .map(|(i, p)| (p.piece.as_str(), (p.score, i)))
            .collect();
        let mut ranked: Vec<(f32, usize, &str, &str)> = vec![];
        for (tok, &(score, id)) in &normal {
            for (split, _) in tok.char_indices().skip(1) {
                let (l, r) = tok.split_at(split);
                if normal.contains_key(l) && normal.contains_key(r) {
                    ranked.push((-score, id, l, r));
                }
            }
        }
        ranked.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(b.2))
                .then(a.3.cmp(b.3))
        });
        ranked
            .into_iter()
            .map(|(_, _, l, r)| json!([l, r]))
            .collect()
    }

    /// The model as a `tokenizers` tokenizer whose tokens are SentencePiece's pieces and whose
    /// ids are the model's own piece ids.
    pub fn tokenizer(&self) -> std::result::Result<Tokenizer, String> {
        self.tokenizer_json()
            .to_string()
            .parse()
            .map_err(|e| format!("the `tokenizers` library refused it ({e})"))
    }
}

fn parse_piece(b: &[u8]) -> std::result::Result<Piece, String> {
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut w = Wire::new(b);
    while let Some((num, f)) = w.next()? {
        match (num, f) {
            (1, Field::Bytes(s)) => p.piece = utf8(s)?,
            (2, Field::Fixed32(x)) => p.score = f32::from_bits(x),
            (3, Field::Varint(x)) => {
                p.kind = match x {
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    _ => PieceType::Normal,
                }
            }
            _ => {}
        }
    }
    Ok(p)
}

/// A literal for the `fancy-regex` pattern of a `Split` pre-tokenizer.
fn fancy_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Standard base64 with padding (how `tokenizer.json` stores `precompiled_charsmap`).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SentencePiece pieces back to text: `▁` is a space, byte pieces `<0xNN>` are bytes, the
/// leading space of the dummy prefix and the ends are trimmed (what `decode_pieces` and
/// `transformers`' `convert_tokens_to_string` give).
pub fn pieces_to_text(pieces: &[&str]) -> String {
    let mut bytes: Vec<u8> = vec![];
    for p in pieces {
        match p
            .strip_prefix("<0x")
            .and_then(|h| h.strip_suffix('>'))
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(b) => bytes.push(b),
            None => bytes.extend_from_slice(p.replace('▁', " ").as_bytes()),
        }
    }
    String::from_utf8_lossy(&bytes).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    /// A hand-built ModelProto: two pieces, a BPE trainer spec, a normaliser spec.
    #[test]
    fn parses_a_hand_built_model_proto() {
        fn field(num: u64, wire: u64, payload: &[u8]) -> Vec<u8> {
            let mut out = vec![((num << 3) | wire) as u8];
            if num >= 16 {
                out = vec![
                    (((num << 3) | wire) as u8 & 0x7f) | 0x80,
                    ((num << 3) >> 7) as u8,
                ];
            }
            if wire == 2 {
                out.push(payload.len() as u8);
            }
            out.extend_from_slice(payload);
            out
        }
        let piece = |s: &str, score: f32, kind: u8| {
            let mut b = field(1, 2, s.as_bytes());
            b.extend(field(2, 5, &score.to_le_bytes()));
            b.extend(field(3, 0, &[kind]));
            field(1, 2, &b)
        };
        let mut proto = piece("<unk>", 0.0, 2);
        proto.extend(piece("▁a", -1.5, 1));
        let mut trainer = field(3, 0, &[2]);
        trainer.extend(field(40, 0, &[0]));
        proto.extend(field(2, 2, &trainer));
        proto.extend(field(3, 2, &field(3, 0, &[0])));
        let m = SpmModel::parse(&proto).unwrap();
        assert_eq!(m.pieces.len(), 2);
        assert_eq!(m.pieces[1].piece, "▁a");
        assert_eq!(m.pieces[1].score, -1.5);
        assert_eq!(m.pieces[0].kind, PieceType::Unknown);
        assert_eq!(m.model_type, 2);
        assert!(!m.add_dummy_prefix && m.remove_extra_whitespaces);
        assert!(SpmModel::parse(&proto[..proto.len() - 1]).is_err());
        assert!(SpmModel::parse(b"").is_err());
    }

    #[test]
    fn pieces_become_text() {
        assert_eq!(pieces_to_text(&["▁a", "▁do", "g", "<0x21>"]), "a dog!");
        assert_eq!(pieces_to_text(&["▁", "<0xE0>", "<0xA4>", "<0x95>"]), "क");
    }
}
