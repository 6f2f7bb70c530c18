//! Hashtag training targets: per image row, the multi-hot vector the head learns, the tag
//! sequence the GRU generator learns, the positive weights, and the dev truth sets.
use tch::Tensor;

use crate::model::tagger::{MAX_TAGS, TAG_OFFSET};
use crate::text::taglist::TagList;
use crate::text::vocab::{END, START};

/// Hashtag labels per image row.
#[derive(Debug)]
pub struct TagData {
    pub list: TagList,
    /// Multi-hot `(N, T)` over image rows (head).
    pub targets: Tensor,
    /// `[<start> tag.. <end>]` per image row in generator ids (GRU), most frequent tag first.
    pub seqs: Vec<Vec<i64>>,
    /// `(T,)` BCE positive weights: `clamp((N − n_t) / n_t, 1, 30)`.
    pub pos_weight: Tensor,
    /// True tags of each dev image (`dev_images` order), not cut to the label list.
    pub dev_truth: Vec<Vec<String>>,
}

impl TagData {
    pub fn new(list: TagList, truth_by_row: &[Vec<String>], dev_truth: Vec<Vec<String>>) -> Self {
        let t = list.len() as i64;
        let targets =
            Tensor::from_slice(&list.multi_hot(truth_by_row)).view([truth_by_row.len() as i64, t]);
        let seqs = truth_by_row
            .iter()
            .map(|truth| {
                let mut ids = list.ids(truth);
                ids.sort_unstable();
                ids.truncate(MAX_TAGS);
                let mut seq = vec![START];
                seq.extend(ids.iter().map(|&i| i as i64 + TAG_OFFSET));
                seq.push(END);
                seq
            })
            .collect();
        let n = list.images.max(1) as f64;
        let w: Vec<f32> = list
            .counts
            .iter()
            .map(|&c| ((n - c as f64) / c.max(1) as f64).clamp(1.0, 30.0) as f32)
            .collect();
        TagData {
            list,
            targets,
            seqs,
            pos_weight: Tensor::from_slice(&w),
            dev_truth,
        }
    }

    /// Training targets of image rows: multi-hot `(B, T)` for the head, padded sequences
    /// `(B, L)` for the generator.
    pub fn batch(&self, rows: &[i64], generator: bool) -> Tensor {
        if generator {
            let seqs: Vec<&[i64]> = rows
                .iter()
                .map(|&r| self.seqs[r as usize].as_slice())
                .collect();
            super::pad_batch(&seqs)
        } else {
            self.targets.index_select(0, &Tensor::from_slice(rows))
        }
    }
}
