//! Variable-store weights as safetensors under stable variable names (the names are the
//! `nn::Path`s the modules are built with; docs/ARCHITECTURE.md "Run directory").
use std::collections::HashMap;
use std::path::Path;

use tch::{nn::VarStore, Tensor};

use crate::{Error, Result};

pub fn write_tensors(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let tmp = crate::fsio::tmp_path(path);
    Tensor::write_safetensors(named, &tmp)
        .map_err(|e| Error::invalid(format!("{}: cannot write tensors: {e}", tmp.display())))?;
    crate::fsio::commit(&tmp, path, true)
}

pub fn save_vars(vs: &VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(&named, path)
}

/// Load every variable of `vs` from a safetensors file, with a clear error for a file that is
/// not a checkpoint, a missing name, or a shape that does not match (another vocabulary or
/// architecture).
pub fn load_vars(vs: &mut VarStore, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "{}: no such weights file",
            path.display()
        )));
    }
    let named: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|_| {
            Error::invalid(format!(
                "{}: not a valid safetensors file (corrupt or truncated?)",
                path.display()
            ))
        })?
        .into_iter()
        .collect();
    let mut vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let dst = &vars[name];
        let src = named.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "{}: has no tensor `{name}` — it was written for another architecture",
                path.display()
            ))
        })?;
        if src.size() != dst.size() {
            return Err(Error::invalid(format!(
                "{}: `{name}` has shape {:?}, the model expects {:?} (vocabulary or config mismatch)",
                path.display(),
                src.size(),
                dst.size()
            )));
        }
    }
    tch::no_grad(|| {
        for (name, dst) in vars.iter_mut() {
            dst.copy_(&named[name].to_kind(dst.kind()).to_device(dst.device()));
        }
    });
    Ok(())
}
