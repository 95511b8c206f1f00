//! Checkpoint tensors by name, in both directions: `WeightMap` hands a part the tensors it loads,
//! `join` builds the names a part gives its tensors back under. Each part (`Linear`, `RmsNorm`,
//! `Attention`, `Mlp`, `Block`, `Llm`) writes its names once, as constants that its loader and
//! its `tensors` both use, so loading, export and fine-tuning cannot disagree on a name.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// Pulls named tensors out of a weight map, checking shapes, so that a wrong file says which
/// tensor is missing or misshapen.
pub(super) struct WeightMap {
    tensors: HashMap<String, Tensor>,
}

impl WeightMap {
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .remove(name)
            .with_context(|| format!("tensor \"{name}\" is missing"))?;
        if t.dims() != shape {
            bail!(
                "tensor \"{name}\" has shape {:?}, expected {:?}",
                t.dims(),
                shape
            );
        }
        Ok(if t.dtype() == DType::F32 {
            t
        } else {
            t.to_dtype(DType::F32)?
        })
    }

    /// The names no part has taken.
    pub fn remaining(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn take_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.tensors.contains_key(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `prefix.name`, the way checkpoint names nest (`model.layers.3` + `self_attn`).
pub(super) fn join(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

/// A part's tensors with `prefix.` in front of their names.
pub(super) fn nest<'a>(
    prefix: &str,
    tensors: Vec<(String, &'a Tensor)>,
) -> Vec<(String, &'a Tensor)> {
    tensors
        .into_iter()
        .map(|(name, t)| (join(prefix, &name), t))
        .collect()
}
