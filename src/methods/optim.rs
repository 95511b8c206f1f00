//! AdamW (Loshchilov & Hutter 2019, PyTorch's and candle's update rule) as one fused,
//! multi-threaded pass per variable, after clipping the gradients' global norm (as
//! `torch.nn.utils.clip_grad_norm_` and Hugging Face Trainer's `max_grad_norm` do).
//!
//! candle's `AdamW` runs each update as a chain of about a dozen elementwise tensor ops per
//! variable, each allocating a fresh tensor: about 2.5 s per step over SmolLM2's 135M parameters
//! (CANDLE-NOTES.md), more than the fine-tuning baseline's forward. Here the parameter is
//! updated in place and the moments live in plain buffers: one read of the gradient and one
//! read-modify-write of parameter and moments per element. Elementwise work in fixed chunks
//! keeps results independent of the thread count.

use anyhow::{bail, Result};
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;
use std::sync::Mutex;

/// Elements per parallel work unit.
const CHUNK: usize = 32 * 1024;

/// A variable's first and second moments.
pub type Moments = (Vec<f32>, Vec<f32>);

pub struct AdamW {
    vars: Vec<Var>,
    /// Whether weight decay applies to each variable (Hugging Face Trainer exempts norms and
    /// biases; see `fine_tuning.rs`).
    decays: Vec<bool>,
    /// First and second moments, one buffer each per variable.
    moments: Vec<Mutex<Moments>>,
    step: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// The largest global L2 norm of one update's gradients over all the variables; a larger
    /// gradient is scaled down to it before the update. 0: no clipping.
    pub max_grad_norm: f64,
    /// The global norm of the last update's gradients, before clipping.
    last_grad_norm: Option<f64>,
}

impl AdamW {
    /// PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8), `weight_decay` on every variable
    /// (see [`AdamW::set_decay_mask`]), no clipping until `max_grad_norm` is set.
    pub fn new(vars: Vec<Var>, weight_decay: f64) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|v| {
                let n = v.elem_count();
                Mutex::new((vec![0f32; n], vec![0f32; n]))
            })
            .collect();
        Ok(Self {
            decays: vec![true; vars.len()],
            vars,
            moments,
            step: 0,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            max_grad_norm: 0.0,
            last_grad_norm: None,
        })
    }

    /// The optimiser a method trains with: `settings`' weight decay (on the variables
    /// `decays` flags) and gradient clipping.
    pub fn for_method(
        vars: Vec<Var>,
        decays: Vec<bool>,
        settings: &super::MethodSettings,
    ) -> Result<Self> {
        let mut opt = Self::new(vars, settings.weight_decay)?;
        opt.set_decay_mask(decays)?;
        opt.max_grad_norm = settings.max_grad_norm;
        Ok(opt)
    }

    /// Which variables weight decay applies to, one flag per variable in order.
    pub fn set_decay_mask(&mut self, decays: Vec<bool>) -> Result<()> {
        if decays.len() != self.vars.len() {
            bail!(
                "internal error: {} decay flags for {} variables",
                decays.len(),
                self.vars.len()
            );
        }
        self.decays = decays;
        Ok(())
    }

    /// The global norm of the last update's gradients, before clipping (None before a step).
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_grad_norm
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The steps taken and each variable's first and second moments (a checkpoint saves them).
    pub fn state(&self) -> (usize, Vec<Moments>) {
        let moments = self
            .moments
            .iter()
            .map(|m| m.lock().unwrap().clone())
            .collect();
        (self.step, moments)
    }

    /// Continues from a saved [`AdamW::state`].
    pub fn set_state(&mut self, step: usize, moments: Vec<Moments>) -> Result<()> {
        if moments.len() != self.vars.len()
            || moments
                .iter()
                .zip(&self.vars)
                .any(|((m, v), var)| m.len() != var.elem_count() || v.len() != var.elem_count())
        {
            bail!("the saved optimiser state does not match this method's variables");
        }
        self.step = step;
        self.moments = moments.into_iter().map(Mutex::new).collect();
        Ok(())
    }

    /// One update from `grads`, one per variable in order.
    pub fn step(&mut self, grads: &[Tensor]) -> Result<()> {
        if grads.len() != self.vars.len() {
            bail!(
                "internal error: {} gradients for {} variables",
                grads.len(),
                self.vars.len()
            );
        }
        // The moments live in CPU memory and the update is a CPU kernel: a GPU's gradients come
        // over (untested: no GPU here, docs/handoff.md). On the CPU this is a no-op.
        let grads: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_device(&candle_core::Device::Cpu)?.contiguous())
            .collect::<candle_core::Result<_>>()?;
        let norm = global_norm(&grads)?;
        self.last_grad_norm = Some(norm);
        let scale = clip_scale(norm, self.max_grad_norm);
        self.step += 1;
        let t = self.step as i32;
        for (((var, grad), moments), &decays) in self
            .vars
            .iter()
            .zip(&grads)
            .zip(&self.moments)
            .zip(&self.decays)
        {
            let decay = if decays { self.weight_decay } else { 0.0 };
            let op = Update {
                moments,
                grad_scale: scale,
                lr: self.lr as f32,
                beta1: self.beta1 as f32,
                beta2: self.beta2 as f32,
                eps: self.eps as f32,
                decay: (1.0 - self.lr * decay) as f32,
                correct1: (1.0 - self.beta1.powi(t)) as f32,
                correct2: (1.0 - self.beta2.powi(t)) as f32,
            };
            let update = |t: &Tensor| {
                t.inplace_op2(grad, &op)
                    .map_err(|e| anyhow::anyhow!("AdamW update: {e}"))
            };
            if var.device().is_cpu() {
                update(var.as_tensor())?;
            } else {
                let host = var.as_tensor().to_device(&candle_core::Device::Cpu)?;
                update(&host)?;
                var.set(&host.to_device(var.device())?)?;
            }
        }
        Ok(())
    }
}

/// The factor `torch.nn.utils.clip_grad_norm_` multiplies the gradients by: `max / (norm +
/// 1e-6)` when that is below 1, else 1 (no change). `max` 0 turns clipping off.
pub fn clip_scale(norm: f64, max: f64) -> f32 {
    if max <= 0.0 {
        return 1.0;
    }
    let coef = max / (norm + 1e-6);
    if coef < 1.0 {
        coef as f32
    } else {
        1.0
    }
}

/// The L2 norm of all the gradients together, as if they were one vector (summed in f64, in
/// fixed chunks, so the result does not depend on the thread count). Reads the gradients in
/// place: a copy of fine-tuning's 135M gradients would cost as much memory again.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0f64;
    for g in grads {
        let g = g.contiguous()?;
        let (storage, layout) = g.storage_and_layout();
        let (candle_core::Storage::Cpu(CpuStorage::F32(data)), Some((o0, o1))) =
            (&*storage, layout.contiguous_offsets())
        else {
            bail!("internal error: gradients must be contiguous f32 on the CPU");
        };
        let partial: Vec<f64> = data[o0..o1].par_chunks(CHUNK).map(sum_of_squares).collect();
        sum += partial.iter().sum::<f64>();
    }
    Ok(sum.sqrt())
}

/// The sum of squares of a chunk, in f64. Eight independent sums, so the loop vectorises: one
/// running sum is a chain of dependent adds, and made the fused AdamW step on SmolLM2's 135M
/// gradients 0.089 s -> 0.169 s (`gradprompt bench --only adamw`).
fn sum_of_squares(c: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let mut blocks = c.chunks_exact(8);
    for b in &mut blocks {
        for (l, &x) in lanes.iter_mut().zip(b) {
            *l += f64::from(x) * f64::from(x);
        }
    }
    let tail: f64 = blocks
        .remainder()
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

struct Update<'a> {
    moments: &'a Mutex<(Vec<f32>, Vec<f32>)>,
    /// The clipping factor ([`clip_scale`]), applied to the gradient as it is read.
    grad_scale: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    correct1: f32,
    correct2: f32,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        pl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (pl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("AdamW: parameters and gradients must be contiguous")
        };
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (p, g) else {
            candle_core::bail!("AdamW: f32 parameters only")
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut guard = self.moments.lock().unwrap();
        let (m, v) = &mut *guard;
        if p.len() != g.len() || p.len() != m.len() {
            candle_core::bail!("AdamW: parameter, gradient and moments differ in size");
        }
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    let gi = g[i] * self.grad_scale;
                    m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * gi;
                    v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * gi * gi;
                    let m_hat = m[i] / self.correct1;
                    let v_hat = v[i] / self.correct2;
                    p[i] = p[i] * self.decay - self.lr * m_hat / (v_hat.sqrt() + self.eps);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{global_norm, AdamW};
    use candle_core::{Device, Tensor, Var};

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
    }

    fn grad(values: &[f32]) -> Tensor {
        Tensor::new(values, &Device::Cpu).unwrap()
    }

    /// The gradient the update used, read back from the first moment: after one step it is
    /// `(1 - beta1) * g`. (Adam's first update is the same for any gradient scale, so the
    /// parameters alone cannot show clipping.)
    fn used_gradients(opt: &AdamW) -> Vec<Vec<f32>> {
        let (_, moments) = opt.state();
        moments
            .into_iter()
            .map(|(m, _)| m.iter().map(|x| x / (1.0 - opt.beta1 as f32)).collect())
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn a_gradient_above_the_max_norm_is_scaled_to_it_over_all_variables_together() {
        // Global norm 5 (3 and 4 in two variables): each is scaled by 1/5, not to norm 1 each.
        let mut opt = AdamW::new(vec![var(&[0.0, 0.0]), var(&[0.0])], 0.0).unwrap();
        opt.max_grad_norm = 1.0;
        opt.step(&[grad(&[3.0, 0.0]), grad(&[-4.0])]).unwrap();
        let used = used_gradients(&opt);
        assert!(close(&used[0], &[0.6, 0.0]), "{used:?}");
        assert!(close(&used[1], &[-0.8]), "{used:?}");
        assert!((opt.last_grad_norm().unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn a_gradient_within_the_max_norm_or_with_clipping_off_is_used_as_it_is() {
        let mut opt = AdamW::new(vec![var(&[0.0, 0.0])], 0.0).unwrap();
        opt.max_grad_norm = 1.0;
        opt.step(&[grad(&[0.3, -0.4])]).unwrap();
        assert!(close(&used_gradients(&opt)[0], &[0.3, -0.4]));

        let mut off = AdamW::new(vec![var(&[0.0, 0.0])], 0.0).unwrap();
        off.max_grad_norm = 0.0;
        off.step(&[grad(&[30.0, -40.0])]).unwrap();
        assert!(close(&used_gradients(&off)[0], &[30.0, -40.0]));
    }

    #[test]
    fn the_global_norm_is_the_norm_of_all_gradients_as_one_vector() {
        let big: Vec<f32> = (0..100_000).map(|i| (i % 7) as f32 - 3.0).collect();
        let expected = big.iter().map(|x| f64::from(x * x)).sum::<f64>() + 4.0;
        let n = global_norm(&[grad(&big), grad(&[2.0])]).unwrap();
        assert!((n - expected.sqrt()).abs() < 1e-9, "{n}");
    }

    #[test]
    fn weight_decay_skips_the_variables_the_mask_exempts() {
        let mut opt = AdamW::new(vec![var(&[1.0]), var(&[1.0])], 0.1).unwrap();
        opt.set_decay_mask(vec![true, false]).unwrap();
        opt.lr = 0.5;
        // A zero gradient: only the decay moves a weight.
        opt.step(&[grad(&[0.0]), grad(&[0.0])]).unwrap();
        let w: Vec<f32> = opt
            .vars()
            .iter()
            .map(|v| v.as_tensor().to_vec1::<f32>().unwrap()[0])
            .collect();
        assert!((w[0] - 0.95).abs() < 1e-6, "{w:?}");
        assert_eq!(w[1], 1.0);
    }
}
