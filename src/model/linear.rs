//! A linear layer that knows whether its weight is frozen.
//!
//! candle's matmul backward always computes the weight gradient, even when the weight is a
//! plain tensor that nobody will read the gradient of. For a frozen model that is about a third
//! of the backward work and gigabytes of memory. A frozen layer therefore computes its output
//! outside the graph and adds a zero-valued custom op whose backward returns only the input
//! gradient `grad @ W`.
//!
//! A frozen layer also keeps its weight transposed (`[in, out]`, made on first use): gemm then
//! reads it in place, where from PyTorch's `[out, in]` it repacks the weight on every call
//! (9% of a forward's samples, and more on short rows). Measured on SmolLM2's shapes, 2 threads
//! (beside other work, best of 100): 512 rows, 576 -> 576 1.98 -> 1.68 ms, 576 -> 192 1.10 ->
//! 1.09 ms, 576 -> 1536 9.00 -> 8.71 ms, 1536 -> 576 9.95 -> 8.61 ms; 96 rows, 1536 -> 576
//! 3.26 -> 1.67 ms. The backward's `grad @ W` already reads `[out, in]` in place. The copy
//! costs the frozen weights' size once more in memory; a weight that trains keeps none (it
//! would go stale at the first update).

use super::kernels;
use super::weights::{join, WeightMap};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use std::sync::{Arc, OnceLock};

const WEIGHT: &str = "weight";
const BIAS: &str = "bias";

#[derive(Debug, Clone)]
pub struct Linear {
    /// [out, in], as stored by PyTorch. Not public: a frozen layer's transposed copy would go
    /// stale if the weight were replaced or changed in place; build a new `Linear` instead.
    pub(super) weight: Tensor,
    pub(super) bias: Option<Tensor>,
    /// The weight as `[in, out]` for the frozen forward, made on first use and shared by the
    /// layer's clones and detached copies; None where the weight trains.
    transposed: Option<Arc<OnceLock<Tensor>>>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let transposed = (!weight.is_variable()).then(Arc::default);
        Self {
            weight,
            bias,
            transposed,
        }
    }

    /// `{name}.weight` `[out, inp]` and `{name}.bias` `[out]`: required when `bias`, otherwise
    /// taken if the checkpoint has one.
    pub(super) fn load(
        w: &mut WeightMap,
        name: &str,
        (out, inp): (usize, usize),
        bias: bool,
    ) -> anyhow::Result<Self> {
        let weight = w.take(&join(name, WEIGHT), &[out, inp])?;
        let b = if bias {
            Some(w.take(&join(name, BIAS), &[out])?)
        } else {
            w.take_opt(&join(name, BIAS), &[out])?
        };
        Ok(Self::new(weight, b))
    }

    /// The tensors under the names `load` takes them by.
    pub(super) fn tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![(WEIGHT.to_string(), &self.weight)];
        if let Some(b) = &self.bias {
            out.push((BIAS.to_string(), b));
        }
        out
    }

    fn trainable(&self) -> bool {
        self.weight.is_variable()
    }

    /// The same values outside any gradient graph (storage shared, nothing copied). A trainable
    /// weight's copy keeps no transposed weight: its values change at every update.
    pub(super) fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
            transposed: if self.trainable() {
                None
            } else {
                self.transposed.clone()
            },
        }
    }

    /// Keeps no transposed weight (a model too large to hold its weights twice).
    pub(super) fn without_transposed(&mut self) {
        self.transposed = None;
    }

    /// Whether a transposed weight is kept (made on first use).
    pub fn keeps_transposed(&self) -> bool {
        self.transposed.is_some()
    }

    /// `x @ W^T (+ residual)` with the kernels, from the transposed weight where it is kept.
    fn frozen_matmul(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let Some(cell) = &self.transposed else {
            return kernels::linear(x, &self.weight, residual);
        };
        let w_t = match cell.get() {
            Some(t) => t,
            None => {
                // Two threads may both make it; one is kept, both are equal.
                let _ = cell.set(self.weight.t()?.contiguous()?);
                cell.get().expect("set above")
            }
        };
        kernels::linear_t(x, w_t, residual)
    }
}

impl Linear {
    /// `residual + self(x)`, the residual added inside the matmul where nothing trains.
    pub(super) fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if self.bias.is_none() && self.fast(x) && !residual.track_op() {
            return self.frozen_matmul(x, Some(residual));
        }
        residual + self.forward(x)?
    }

    /// Neither the input nor the weight trains: the kernels' matmul, which skips candle's
    /// zeroing of the output (docs/benchmarks.md).
    fn fast(&self, x: &Tensor) -> bool {
        !x.track_op() && !self.trainable() && kernels::applies(x)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fast(x) {
            let y = self.frozen_matmul(x, None)?;
            return match &self.bias {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            };
        }
        let dims = x.dims().to_vec();
        let (out_dim, in_dim) = self.weight.dims2()?;
        let rows = x.elem_count() / in_dim;
        let x2 = x.reshape((rows, in_dim))?;
        // The input-only backward is a CPU op; on a GPU the frozen weight's gradient is computed
        // and dropped (correct, slower).
        let y = if !self.trainable() && x.track_op() && x.device().is_cpu() {
            let value = x2.detach().matmul(&self.weight.t()?)?;
            let grad_path = x2.apply_op1(InputGradOnly {
                weight: self.weight.clone(),
            })?;
            (value + grad_path)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_shape = dims;
        *out_shape.last_mut().unwrap() = out_dim;
        y.reshape(out_shape)
    }
}

/// Forward: zeros of the output shape. Backward: `grad @ W`, the gradient of `x @ W^T` with
/// respect to `x` alone.
struct InputGradOnly {
    weight: Tensor,
}

impl CustomOp1 for InputGradOnly {
    fn name(&self) -> &'static str {
        "frozen-linear-input-grad"
    }

    fn cpu_fwd(&self, _storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let rows = layout.dims()[0];
        let out_dim = self.weight.dim(0)?;
        Ok((
            CpuStorage::F32(vec![0f32; rows * out_dim]),
            Shape::from((rows, out_dim)),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.weight)?))
    }
}
