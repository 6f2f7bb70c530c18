//! A decoding as a user asks for it — `caption`/`eval` flags or the web API's query — checked
//! once, by one rule, into a [`Decoding`]. The CLI and the server differ only in where the
//! numbers come from and in the server's own cap on beam width ([`SERVER_MAX_BEAM`]).
use super::Decoding;
use crate::config::defaults;
use crate::{Error, Result};

/// The most captions one request may sample per image (CLI and web API alike).
pub const MAX_SAMPLES: usize = 100;
/// The widest beam a request may ask for (the web server caps it lower, `SERVER_MAX_BEAM`).
pub const MAX_BEAM: usize = 100;
/// The web server's cap on `beam`: a server-side limit on work per request, not a rule of
/// decoding (the CLI takes any width).
pub const SERVER_MAX_BEAM: usize = 10;

/// `beam`, `length-alpha`, `max-len`, `top-p`, `temperature`, `samples` and the sampling seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeRequest {
    /// Beam width (1 = greedy; 0 reads as 1).
    pub beam: usize,
    /// Beam search's length exponent (`logp / len^alpha`).
    pub length_alpha: f64,
    pub max_len: usize,
    /// Nucleus sampling instead of beam search.
    pub top_p: Option<f64>,
    pub temperature: f64,
    pub samples: usize,
    pub seed: u64,
}

impl Default for DecodeRequest {
    fn default() -> Self {
        DecodeRequest {
            beam: defaults::BEAM,
            length_alpha: defaults::LENGTH_ALPHA,
            max_len: defaults::MAX_LEN,
            top_p: None,
            temperature: defaults::SAMPLE_TEMPERATURE,
            samples: defaults::SAMPLES,
            seed: 0,
        }
    }
}

impl DecodeRequest {
    /// The decoding asked for, or what is wrong with the request. `flag` spells a setting's
    /// name the way the asker wrote it (`--top-p` on the command line, `top_p` in a query).
    pub fn validate(&self, flag: impl Fn(&str) -> String) -> Result<Decoding> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.max_len == 0 {
            return bad(format!("{} must be ≥ 1", flag("max-len")));
        }
        // Refused, not reinterpreted: a beam of 0 used to decode greedily, a NaN length
        // exponent to rank every beam as NaN.
        if !(1..=MAX_BEAM).contains(&self.beam) {
            return bad(format!(
                "{} must be 1 (greedy) to {MAX_BEAM}, not {}",
                flag("beam"),
                self.beam
            ));
        }
        if !self.length_alpha.is_finite() {
            return bad(format!(
                "{} must be a finite number, not {}",
                flag("length-alpha"),
                self.length_alpha
            ));
        }
        let Some(top_p) = self.top_p else {
            return Ok(Decoding::from_beam(
                self.beam,
                self.max_len,
                self.length_alpha,
            ));
        };
        if !(top_p > 0.0 && top_p <= 1.0) {
            return bad(format!("{} must be in (0, 1], not {top_p}", flag("top-p")));
        }
        let t = self.temperature;
        if !(t > 0.0 && t.is_finite()) {
            return bad(format!(
                "{} must be a positive number, not {t}",
                flag("temperature")
            ));
        }
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return bad(format!(
                "{} must be 1 to {MAX_SAMPLES}, not {}",
                flag("samples"),
                self.samples
            ));
        }
        Ok(Decoding::Sample {
            max_len: self.max_len,
            top_p,
            temperature: t,
            samples: self.samples,
            seed: self.seed,
        })
    }
}

/// A command-line flag's spelling of a setting: `--top-p`.
pub fn cli_flag(name: &str) -> String {
    format!("--{name}")
}

/// A query parameter's spelling of a setting: `top_p`.
pub fn query_field(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_asker() {
        let r = DecodeRequest::default();
        assert_eq!(
            r.validate(cli_flag).unwrap(),
            Decoding::Greedy { max_len: 30 }
        );
        let beam = DecodeRequest { beam: 3, ..r };
        assert!(matches!(
            beam.validate(cli_flag).unwrap(),
            Decoding::Beam { width: 3, .. }
        ));
        let many = DecodeRequest {
            top_p: Some(0.9),
            samples: MAX_SAMPLES + 1,
            ..r
        };
        let e = many.validate(cli_flag).unwrap_err().to_string();
        assert!(e.contains("--samples must be 1 to 100"), "{e}");
        let e = many.validate(query_field).unwrap_err().to_string();
        assert!(e.contains("samples must be 1 to 100"), "{e}");
        let hot = DecodeRequest {
            top_p: Some(1.5),
            ..r
        };
        let e = hot.validate(query_field).unwrap_err().to_string();
        assert!(e.starts_with("top_p must be in (0, 1]"), "{e}");
        let ok = DecodeRequest {
            top_p: Some(0.9),
            samples: 4,
            seed: 7,
            ..r
        };
        assert!(matches!(
            ok.validate(cli_flag).unwrap(),
            Decoding::Sample {
                samples: 4,
                seed: 7,
                ..
            }
        ));
    }
}
