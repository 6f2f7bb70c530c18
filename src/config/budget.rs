//! The one memory estimate (docs/ARCHITECTURE.md, "Memory"): before a model or a job
//! allocates, the bytes it will need are estimated from its sizes and compared with what the
//! machine has, so a size of 10⁹ in a flag or a `config.json` is one error line naming it
//! instead of a libtorch abort, a Rust capacity panic or minutes of swapping.
//!
//! The estimates are lower bounds in `u128` (no size product can overflow): parameters × 4
//! bytes (×4 when training: weights, gradients and Adam's two moments) plus the activations of
//! one batch where the job knows its batch. They only need to be within a small factor: what
//! they catch is a size several orders of magnitude beyond the machine, not a tight fit.
//! "What the machine has" is the smallest of physical memory (`MemTotal`), the address-space
//! limit (`ulimit -v`) and the cgroup's `memory.max`.
use crate::{Error, Result};

/// A bound on the bytes this process can use: physical memory, `RLIMIT_AS` and the cgroup
/// limit, whichever is smallest (`u64::MAX` when none can be read).
pub fn machine_bytes() -> u64 {
    let mut limit = u64::MAX;
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
        let total = info
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kb) = total {
            limit = limit.min(kb.saturating_mul(1024));
        }
    }
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) } == 0
        && rl.rlim_cur != libc::RLIM_INFINITY
    {
        limit = limit.min(rl.rlim_cur);
    }
    if let Ok(max) = std::fs::read_to_string("/sys/fs/cgroup/memory.max") {
        if let Ok(b) = max.trim().parse::<u64>() {
            limit = limit.min(b);
        }
    }
    limit
}

/// `12.5 GiB`, `3.1 TiB`, `8.0e9 TiB`: a byte count that may be far past `u64`.
pub fn human(bytes: u128) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    let g = bytes as f64 / GIB;
    if g < 1024.0 {
        format!("{g:.1} GiB")
    } else if g < 1024.0 * 1e6 {
        format!("{:.1} TiB", g / 1024.0)
    } else {
        format!("{:.1e} TiB", g / 1024.0)
    }
}

/// Refuses a job that needs more than the machine has; `what` names the flags or fields that
/// set its size ("--hidden 1000000000", "config.json: hidden_size 1000000000, ...").
pub fn check(need: u128, what: impl FnOnce() -> String) -> Result<()> {
    let have = machine_bytes();
    if need > have as u128 {
        return Err(Error::invalid(format!(
            "{} needs at least {} of memory, more than the {} this machine has; choose smaller \
             sizes",
            what(),
            human(need),
            human(have as u128)
        )));
    }
    Ok(())
}

/// `a × b × ...` without overflow (negative sizes count as 0: validation reports them).
pub fn product(xs: &[i64]) -> u128 {
    xs.iter()
        .fold(1u128, |acc, &x| acc.saturating_mul(x.max(0) as u128))
}

/// Bytes of `n` `f32`s.
pub fn f32s(n: u128) -> u128 {
    n.saturating_mul(4)
}

/// Parameters of a GPT-2-shaped transformer: token and position embeddings, and per layer
/// the attention (4·d²) and MLP (2·d·inner) matrices.
pub fn gpt2_params(n_embd: i64, n_layer: i64, vocab: i64, positions: i64, inner: i64) -> u128 {
    let per_layer = product(&[4, n_embd, n_embd]).saturating_add(product(&[2, n_embd, inner]));
    product(&[vocab, n_embd])
        .saturating_add(product(&[positions, n_embd]))
        // At least one layer: a width alone is a model (fewer layers are refused elsewhere).
        .saturating_add(per_layer.saturating_mul(n_layer.max(1) as u128))
}

/// Parameters of a CLIP vision tower (patch embedding, positions, layers, projection).
pub fn clip_vision_params(c: &super::clip::ClipVisionConfig, projection_dim: i64) -> u128 {
    let h = c.hidden_size;
    let per_layer = product(&[4, h, h]).saturating_add(product(&[2, h, c.intermediate_size]));
    product(&[c.num_channels, c.patch_size, c.patch_size, h])
        .saturating_add(product(&[c.patches().saturating_add(1), h]))
        .saturating_add(per_layer.saturating_mul(c.num_hidden_layers.max(1) as u128))
        .saturating_add(product(&[h, projection_dim]))
}

/// The dimension fields of a Hugging Face config, for the error line.
pub fn fields(named: &[(&str, i64)]) -> String {
    named
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_sizes_are_refused_without_overflow() {
        let p = gpt2_params(
            1_000_000_000_000,
            1_000_000_000,
            50257,
            1024,
            4_000_000_000_000,
        );
        assert!(p > u64::MAX as u128 / 4);
        let e = check(f32s(p), || "config.json: n_embd 1e12".into()).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("config.json: n_embd 1e12 needs at least "),
            "{e}"
        );
        assert!(!e.contains('\n'));
        // GPT-2 small: ~124M parameters, about half a gigabyte.
        let small = gpt2_params(768, 12, 50257, 1024, 3072);
        assert!((120_000_000..130_000_000).contains(&small), "{small}");
        assert!(machine_bytes() > 1 << 20);
    }
}
