//! Variable-store weights as safetensors under stable variable names (the names are the
//! `nn::Path`s the modules are built with; docs/ARCHITECTURE.md "Run directory").
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};
use tch::{nn::VarStore, Kind, Tensor};

use crate::{Error, Result};

pub fn write_tensors(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let tmp = crate::fsio::tmp_path(path);
    // One human line for a full disk, not tch's Debug dump of the I/O error.
    Tensor::write_safetensors(named, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::invalid(format!(
            "{}: cannot write tensors: {}",
            path.display(),
            crate::error::human_text(&e.to_string())
        ))
    })?;
    crate::fsio::commit(&tmp, path, true)
}

pub fn save_vars(vs: &VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(&named, path)
}

use crate::input::shape_i64;

/// The libtorch kind of a safetensors dtype, for the dtypes captag and torchvision write.
fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// Every tensor of a safetensors file (weights or optimizer state), read through the bounded
/// reader ([`crate::input::CHECKPOINT`]); a file that is not safetensors, or holds a dtype or
/// shape libtorch cannot take, is one clear error line.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{}: no such weights file",
            path.display()
        )));
    }
    let bytes = crate::input::read_bytes(path, crate::input::CHECKPOINT, "a checkpoint")?;
    let bad = |why: &str| {
        Error::invalid(format!(
            "{}: not a valid safetensors file ({why})",
            path.display()
        ))
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|_| bad("corrupt or truncated?"))?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype())
            .ok_or_else(|| bad(&format!("`{name}` has dtype {:?}", view.dtype())))?;
        let shape = shape_i64(view.shape())
            .ok_or_else(|| bad(&format!("`{name}` has an impossible shape")))?;
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|_| bad(&format!("`{name}` cannot be loaded")))?;
        // Refused where loaded: a NaN or infinite weight would make every caption empty and
        // every score 0.00 instead of an error (checkpoints, encoder weights, HF folders all
        // come through here).
        if matches!(
            kind,
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) && t.numel() > 0
        {
            let finite = t.isfinite().all().int64_value(&[]) != 0;
            if !finite {
                return Err(Error::invalid(format!(
                    "{}: tensor `{name}` holds NaN or infinite values; refusing the weights",
                    path.display()
                )));
            }
        }
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Load every variable of `vs` from a safetensors file, with a clear error for a file that is
/// not a checkpoint, a missing name, or a shape that does not match (another vocabulary or
/// architecture).
pub fn load_vars(vs: &mut VarStore, path: &Path) -> Result<()> {
    load_under(vs, path, "")
}

/// Load the variables of `vs` named `prefix` + N from the file's tensors N (a pretrained
/// encoder's file into a run's `encoder.*`); the store's other variables are left alone.
pub fn load_under(vs: &mut VarStore, path: &Path, prefix: &str) -> Result<()> {
    let named: HashMap<String, Tensor> = read_tensors(path)?
        .into_iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t))
        .collect();
    let mut vars = vs.variables();
    vars.retain(|name, _| name.starts_with(prefix));
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let dst = &vars[name];
        let src = named.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "{}: has no tensor `{}` — it was written for another architecture",
                path.display(),
                &name[prefix.len()..]
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
