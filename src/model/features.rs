//! [`ImageFeatures`], the one value that flows from an encoder (or the feature cache) to a
//! decoder: the pooled vector every decoder can read and, where the encoder has one, its last
//! conv grid as a sequence of cells for attention and transformer decoders
//! (docs/ARCHITECTURE.md, "Features").
use tch::{Device, Kind, Tensor};

/// Training batches hold the five captions of an image together; `owner` then says which of
/// `U` distinct images each of the batch's `B` rows belongs to, so that decoders compute
/// per-image work (grid projections, a transformer's memory keys and values) once per image
/// and expand it to rows with [`ImageFeatures::expand`] — the same numbers as repeating the
/// image per row, a fraction of the work.
#[derive(Debug)]
pub struct ImageFeatures {
    /// `(U, D)` image vectors.
    pub pooled: Tensor,
    /// `(U, N, C)` grid cells in row-major order (N = H·W), when present. May be float16 when
    /// it comes from a cache; [`ImageFeatures::to_device`] makes it float32.
    pub grid: Option<Tensor>,
    /// `(B,)` int64: the image of each row. `None`: one row per image (`B = U`).
    pub owner: Option<Tensor>,
}

impl ImageFeatures {
    /// The whole of a feature cache (tensors shared, not copied).
    pub fn of_cache(cache: &crate::data::features::FeatureCache) -> Self {
        ImageFeatures {
            pooled: cache.pooled.shallow_clone(),
            grid: cache.grid.as_ref().map(Tensor::shallow_clone),
            owner: None,
        }
    }

    /// One row per image of `(U, ..)` features.
    pub fn new(pooled: Tensor, grid: Option<Tensor>) -> Self {
        ImageFeatures {
            pooled,
            grid,
            owner: None,
        }
    }

    /// Per-image `(U, ..)` ⇒ per-row `(B, ..)`.
    pub fn expand(&self, per_image: &Tensor) -> Tensor {
        match &self.owner {
            Some(o) => per_image.index_select(0, o),
            None => per_image.shallow_clone(),
        }
    }

    /// The pooled vector of every row `(B, D)`.
    pub fn rows_pooled(&self) -> Tensor {
        self.expand(&self.pooled)
    }

    /// The same features with one row per image (owner applied).
    pub fn expanded(&self) -> Self {
        ImageFeatures {
            pooled: self.rows_pooled(),
            grid: self.grid.as_ref().map(|g| self.expand(g)),
            owner: None,
        }
    }

    /// From an encoder's `(B, C, H, W)` conv map.
    pub fn from_conv(pooled: Tensor, conv: &Tensor) -> Self {
        let grid = conv.flatten(2, 3).transpose(1, 2); // (B, H·W, C)
        ImageFeatures::new(pooled, Some(grid))
    }

    /// Rows `B`.
    pub fn len(&self) -> i64 {
        match &self.owner {
            Some(o) => o.size()[0],
            None => self.pooled.size()[0],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `rows` (an int64 index tensor). With an owner only the owner is reindexed.
    pub fn select(&self, rows: &Tensor) -> Self {
        let r = rows.to_device(self.pooled.device());
        match &self.owner {
            Some(o) => ImageFeatures {
                pooled: self.pooled.shallow_clone(),
                grid: self.grid.as_ref().map(Tensor::shallow_clone),
                owner: Some(o.index_select(0, &r.to_device(o.device()))),
            },
            None => ImageFeatures::new(
                self.pooled.index_select(0, &r),
                self.grid.as_ref().map(|g| g.index_select(0, &r)),
            ),
        }
    }

    /// Images `start..start+len` (expands an owner first).
    pub fn narrow(&self, start: i64, len: i64) -> Self {
        if self.owner.is_some() {
            return self.expanded().narrow(start, len);
        }
        ImageFeatures::new(
            self.pooled.narrow(0, start, len),
            self.grid.as_ref().map(|g| g.narrow(0, start, len)),
        )
    }

    /// On `device` as float32 (ready for a decoder).
    pub fn to_device(&self, device: Device) -> Self {
        ImageFeatures {
            pooled: self.pooled.to_device(device).to_kind(Kind::Float),
            grid: self
                .grid
                .as_ref()
                .map(|g| g.to_device(device).to_kind(Kind::Float)),
            owner: self.owner.as_ref().map(|o| o.to_device(device)),
        }
    }

    /// Drop the grid (it is large; pooled-only decoders never read it).
    pub fn without_grid(self) -> Self {
        ImageFeatures { grid: None, ..self }
    }

    pub fn shallow_clone(&self) -> Self {
        ImageFeatures {
            pooled: self.pooled.shallow_clone(),
            grid: self.grid.as_ref().map(Tensor::shallow_clone),
            owner: self.owner.as_ref().map(Tensor::shallow_clone),
        }
    }

    /// Concatenate along the batch (owners expanded); the grid survives only if every part has
    /// one.
    pub fn cat(parts: &[ImageFeatures]) -> Self {
        let parts: Vec<ImageFeatures> = parts.iter().map(ImageFeatures::expanded).collect();
        let pooled: Vec<&Tensor> = parts.iter().map(|p| &p.pooled).collect();
        let grids: Option<Vec<&Tensor>> = parts.iter().map(|p| p.grid.as_ref()).collect();
        ImageFeatures::new(
            Tensor::cat(&pooled, 0),
            grids.filter(|g| !g.is_empty()).map(|g| Tensor::cat(&g, 0)),
        )
    }

    /// The grid, or the pooled vector as a one-cell grid `(U, 1, D)`, per image.
    pub fn memory(&self) -> Tensor {
        match &self.grid {
            Some(g) => g.shallow_clone(),
            None => self.pooled.unsqueeze(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_maps_become_row_major_cells() {
        let conv = Tensor::arange(2 * 3 * 2 * 2, (Kind::Float, Device::Cpu)).view([2, 3, 2, 2]);
        let f = ImageFeatures::from_conv(Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), &conv);
        let g = f.grid.as_ref().unwrap();
        assert_eq!(g.size(), [2, 4, 3]);
        // cell (0,1) of image 1, channel 2 = conv[1, 2, 0, 1]
        assert_eq!(g.double_value(&[1, 1, 2]), conv.double_value(&[1, 2, 0, 1]));
        let s = f.select(&Tensor::from_slice(&[1i64, 1]));
        assert_eq!(s.grid.unwrap().size(), [2, 4, 3]);
    }
}
