//! A frozen decoder block as one differentiable op, with a hand-written backward.
//!
//! Prompt methods differentiate through a model whose weights never change. Built from candle's
//! differentiable ops, one block was ~40 graph nodes (norms, rotary embeddings and softmax as
//! chains of elementwise ops, reshapes, the frozen-linear trick), and candle's backward pays two
//! extra full passes per node (a zeroed gradient buffer, then an add into it). A profile of
//! `gradprompt bench` put most of a step there and in the thread pool's barrier between those
//! small ops (docs/benchmarks.md). Here the forward runs candle's fused, non-differentiable ops
//! and keeps what the backward needs; the backward is the block's chain rule written out: eight
//! matmuls for the weights' input gradients, four for attention, and three single-pass,
//! multi-threaded kernels (RMSNorm, softmax, SwiGLU). Rotary embeddings are orthogonal, so their
//! backward is the fused rotation by the negative angle.
//!
//! For the prompt methods only the input's (and a key/value prefix's) gradients are computed: the
//! weights are frozen. The full fine-tuning baseline trains every weight: its blocks run the same
//! op with a [`WeightGradSink`], and the backward also computes each weight's gradient
//! (`G^T X` per projection, one row-sum per norm) and hands it to the model (`Llm::backward`),
//! since candle's autograd sees only the op's input. On the composed graph a fine-tuning step was
//! 1.16x PyTorch's, with about 14% of its samples in candle's elementwise kernels and 3% zeroing
//! gradient buffers (docs/benchmarks.md). Tests compare both paths with candle's composed ops
//! (`Llm::with_composed_backward`).

use super::attention::prepend_prefix;
use super::block::Block;
use super::kernels;
use super::rope::{Rope, Start};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Module, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Where the block op puts the gradients of trainable weights: `(weight, gradient)` pairs that
/// `Llm::backward` moves into candle's gradient store after the backward pass.
pub(crate) type WeightGradSink = Arc<Mutex<Vec<(Tensor, Tensor)>>>;

/// A block whose weights train: the weights themselves (the gradients are keyed by them) and
/// where their gradients go.
struct Trainable {
    weights: Block,
    sink: WeightGradSink,
}

/// Everything a block's forward needs besides its input.
pub(super) struct BlockOp {
    /// The weights the op computes with, outside any gradient graph.
    block: Block,
    /// Set when the weights train (fine-tuning).
    trainable: Option<Trainable>,
    rope: Rope,
    /// Additive attention bias `[b or 1, 1, t, n + t]`.
    mask: Tensor,
    /// Prefix slots in front of the text's keys (padded to the longest row's prefix).
    prefix_len: usize,
    /// Where each row's text positions start (its own prefix length).
    start: Start,
    /// Filled by the forward, taken (and so freed) by the backward.
    saved: Mutex<Option<Saved>>,
}

/// Activations kept from the forward for the backward.
struct Saved {
    x: Tensor,
    /// Queries after RoPE, grouped `[b, kv_heads, rep * t, hd]`.
    q: Tensor,
    /// Keys (prefix and text, after RoPE) and values `[b, kv_heads, s, hd]`.
    k: Tensor,
    v: Tensor,
    /// Attention probabilities, grouped `[b, kv_heads, rep * t, s]`.
    probs: Tensor,
    /// The residual stream after attention `[b, t, d]`.
    mid: Tensor,
    gate: Tensor,
    up: Tensor,
}

/// The gradients of a prefix's keys and values.
type KvGrad = (Tensor, Tensor);

fn cpu_tensor(storage: &CpuStorage, layout: &Layout) -> Result<Tensor> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((a, b)) => Tensor::from_slice(&data[a..b], layout.shape(), &candle_core::Device::Cpu),
        None => candle_core::bail!("block op: input must be contiguous"),
    }
}

fn into_storage(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    let shape = t.shape().clone();
    Ok((CpuStorage::F32(t.flatten_all()?.to_vec1::<f32>()?), shape))
}

impl BlockOp {
    /// `sink`: where the weights' gradients go when they train (the model's, for a trainable
    /// copy); `None` for a frozen block.
    pub fn new(
        block: &Block,
        rope: &Rope,
        mask: &Tensor,
        prefix_len: usize,
        start: Start,
        sink: Option<&WeightGradSink>,
    ) -> Self {
        Self {
            block: block.detached(),
            trainable: sink.map(|sink| Trainable {
                weights: block.clone(),
                sink: sink.clone(),
            }),
            rope: rope.clone(),
            mask: mask.clone(),
            prefix_len,
            start,
            saved: Default::default(),
        }
    }

    /// The block's output, keeping the activations its backward needs.
    fn forward(&self, x: &Tensor, prefix: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
        let (l, a, m) = (&self.block, &self.block.attn, &self.block.mlp);
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (a.heads, a.kv_heads, a.head_dim);
        let rep = h / kvh;
        let hn = l.input_norm.forward(x)?;
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            y.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = split(a.q_proj.forward(&hn)?, h)?;
        let k = split(a.k_proj.forward(&hn)?, kvh)?;
        let v = split(a.v_proj.forward(&hn)?, kvh)?;
        let q = self.rope.apply(&q, &self.start)?;
        let k = self.rope.apply(&k, &self.start)?;
        let (k, v) = prepend_prefix(k, v, prefix)?;
        let s = k.dim(2)?;
        let q = q.reshape((b, kvh, rep * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, h, t, s))?
            .broadcast_add(&self.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kvh, rep * t, s))?;
        let attn = probs
            .matmul(&v)?
            .reshape((b, h, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, h * hd))?;
        let mid = a.o_proj.forward_add(&attn, x)?;
        let hn2 = l.post_norm.forward(&mid)?;
        let gate = m.gate_proj.forward(&hn2)?;
        let up = m.up_proj.forward(&hn2)?;
        let act = kernels::swiglu(&gate, &up)?;
        let y = m.down_proj.forward_add(&act, &mid)?;
        *self.saved.lock().unwrap() = Some(Saved {
            x: x.clone(),
            q,
            k,
            v,
            probs,
            mid,
            gate,
            up,
        });
        Ok(y)
    }

    /// Gradients of the input and of the prefix's keys and values (each `[b, kv_heads, n, hd]`),
    /// given the output's gradient.
    fn backward(&self, dy: &Tensor, want_dx: bool) -> Result<(Option<Tensor>, Option<KvGrad>)> {
        let saved = self.saved.lock().unwrap().take();
        let Some(s) = saved else {
            candle_core::bail!("block op: backward without a forward (or run twice)")
        };
        let (l, a, m) = (&self.block, &self.block.attn, &self.block.mlp);
        let (b, t, d) = dy.dims3()?;
        let (h, kvh, hd) = (a.heads, a.kv_heads, a.head_dim);
        let rep = h / kvh;
        let n = self.prefix_len;
        let rows = b * t;
        let dy = dy.reshape((rows, d))?.contiguous()?;

        // MLP: y = mid + down(silu(gate) * up).
        let dact = dy.matmul(&m.down_proj.weight)?;
        let dgu = dact.apply_op3_no_bwd(&s.gate, &s.up, &SwigluBackward)?;
        let dg = dgu.narrow(0, 0, rows)?;
        let du = dgu.narrow(0, rows, rows)?;
        let dhn2 = (dg.matmul(&m.gate_proj.weight)? + du.matmul(&m.up_proj.weight)?)?;
        let mid = s.mid.reshape((rows, d))?;
        let dmid = (&dy + rms_norm_backward(&mid, &l.post_norm.weight, l.post_norm.eps, &dhn2)?)?;

        // Attention: mid = x + o_proj(probs @ v).
        let dattn = dmid
            .matmul(&a.o_proj.weight)?
            .reshape((b, t, h, hd))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, kvh, rep * t, hd))?;
        let dprobs = dattn.matmul(&s.v.t()?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let dscores = s
            .probs
            .apply_op2_no_bwd(&dprobs, &SoftmaxBackward { scale })?;
        let dq = dscores.matmul(&s.k)?;
        let dk = dscores.t()?.matmul(&s.q)?;
        let dv = s.probs.t()?.matmul(&dattn)?;
        let dprefix = if n > 0 {
            Some((dk.narrow(2, 0, n)?, dv.narrow(2, 0, n)?))
        } else {
            None
        };
        if !want_dx && self.trainable.is_none() {
            return Ok((None, dprefix));
        }
        let dq = self
            .rope
            .apply_inverse(&dq.reshape((b, h, t, hd))?, &self.start)?;
        let dk = self
            .rope
            .apply_inverse(&dk.narrow(2, n, t)?.contiguous()?, &self.start)?;
        let dv = dv.narrow(2, n, t)?;
        let merge = |g: Tensor, heads: usize| -> Result<Tensor> {
            g.transpose(1, 2)?.contiguous()?.reshape((rows, heads * hd))
        };
        let (dq, dk, dv) = (merge(dq, h)?, merge(dk, kvh)?, merge(dv, kvh)?);
        let dhn = ((dq.matmul(&a.q_proj.weight)? + dk.matmul(&a.k_proj.weight)?)?
            + dv.matmul(&a.v_proj.weight)?)?;
        if let Some(tr) = &self.trainable {
            let grads = OutputGrads {
                dy: &dy,
                dg: &dg,
                du: &du,
                dhn2: &dhn2,
                dmid: &dmid,
                dq: &dq,
                dk: &dk,
                dv: &dv,
                dhn: &dhn,
            };
            let pairs = self.weight_grads(&s, &tr.weights, &grads)?;
            tr.sink.lock().unwrap().extend(pairs);
        }
        if !want_dx {
            return Ok((None, dprefix));
        }
        let x = s.x.reshape((rows, d))?;
        let dx = (dmid + rms_norm_backward(&x, &l.input_norm.weight, l.input_norm.eps, &dhn)?)?;
        Ok((Some(dx.reshape((b, t, d))?), dprefix))
    }

    /// Every weight's gradient, paired with the weight, from the gradients of the block's
    /// projection outputs and norm outputs: `G^T X` for a projection `y = X W^T` (and the row sum
    /// of `G` for its bias), and `sum over rows of G * x_hat` for an RMSNorm weight. The
    /// projections' inputs are recomputed from what the forward kept (two norms, the SwiGLU
    /// product and `probs @ v`: a few percent of a step) rather than kept for every block.
    fn weight_grads(&self, s: &Saved, w: &Block, g: &OutputGrads) -> Result<Vec<(Tensor, Tensor)>> {
        let (l, a) = (&self.block, &self.block.attn);
        let (b, t, d) = s.x.dims3()?;
        let rows = b * t;
        let (h, hd) = (a.heads, a.head_dim);
        let x = s.x.reshape((rows, d))?;
        let mid = s.mid.reshape((rows, d))?;
        let hn = l.input_norm.forward(&x)?;
        let hn2 = l.post_norm.forward(&mid)?;
        let act = kernels::swiglu(&s.gate, &s.up)?;
        let act = act.reshape((rows, act.dim(D::Minus1)?))?;
        let attn = s
            .probs
            .matmul(&s.v)?
            .reshape((b, h, t, hd))?
            .transpose(1, 2)?
            .reshape((rows, h * hd))?;
        let mut out = Vec::with_capacity(14);
        let mut linear = |lin: &super::linear::Linear, gy: &Tensor, input: &Tensor| -> Result<()> {
            out.push((lin.weight.clone(), gy.t()?.matmul(input)?));
            if let Some(bias) = &lin.bias {
                out.push((bias.clone(), gy.sum(0)?));
            }
            Ok(())
        };
        linear(&w.mlp.down_proj, g.dy, &act)?;
        linear(&w.mlp.gate_proj, g.dg, &hn2)?;
        linear(&w.mlp.up_proj, g.du, &hn2)?;
        linear(&w.attn.o_proj, g.dmid, &attn)?;
        linear(&w.attn.q_proj, g.dq, &hn)?;
        linear(&w.attn.k_proj, g.dk, &hn)?;
        linear(&w.attn.v_proj, g.dv, &hn)?;
        let eps = l.post_norm.eps;
        out.push((
            w.post_norm.weight.clone(),
            rms_norm_weight_grad(&mid, eps, g.dhn2)?,
        ));
        let eps = l.input_norm.eps;
        out.push((
            w.input_norm.weight.clone(),
            rms_norm_weight_grad(&x, eps, g.dhn)?,
        ));
        Ok(out)
    }
}

/// The gradients of a block's intermediate outputs, each `[rows, width]`, that its weights'
/// gradients are made from.
struct OutputGrads<'a> {
    /// Of the block's output (= of `down_proj`'s output).
    dy: &'a Tensor,
    /// Of `gate_proj`'s and `up_proj`'s outputs.
    dg: &'a Tensor,
    du: &'a Tensor,
    /// Of the post-attention norm's output.
    dhn2: &'a Tensor,
    /// Of the residual stream after attention (= of `o_proj`'s output).
    dmid: &'a Tensor,
    /// Of the q, k and v projections' outputs (heads merged, before RoPE).
    dq: &'a Tensor,
    dk: &'a Tensor,
    dv: &'a Tensor,
    /// Of the input norm's output.
    dhn: &'a Tensor,
}

/// `sum over rows of g * x * r`, with `r = 1 / sqrt(mean(x^2) + eps)` per row: the gradient of
/// an RMSNorm's weight, for `x` and `g` `[rows, d]`.
fn rms_norm_weight_grad(x: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    let r = (x.sqr()?.mean_keepdim(1)? + eps)?.sqrt()?.recip()?;
    (g * x.broadcast_mul(&r)?)?.sum(0)
}

/// The block applied to `x` (`[b, t, d]`), differentiable with respect to `x` and, when given,
/// the prefix's keys and values.
pub(super) fn apply(op: BlockOp, x: &Tensor, prefix: Option<&(Tensor, Tensor)>) -> Result<Tensor> {
    let x = x.contiguous()?;
    match prefix {
        Some((pk, pv)) => x.apply_op3(&pk.contiguous()?, &pv.contiguous()?, WithPrefix(op)),
        None => x.apply_op1(op),
    }
}

impl CustomOp1 for BlockOp {
    fn name(&self) -> &'static str {
        "frozen-block"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        into_storage(&self.forward(&cpu_tensor(storage, layout)?, None)?)
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.backward(grad, true)?.0)
    }
}

/// The block with a key/value prefix (prefix tuning): the prefix's gradients flow too.
struct WithPrefix(BlockOp);

impl CustomOp3 for WithPrefix {
    fn name(&self) -> &'static str {
        "frozen-block-with-prefix"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        pk: &CpuStorage,
        pkl: &Layout,
        pv: &CpuStorage,
        pvl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let pk = cpu_tensor(pk, pkl)?;
        let pv = cpu_tensor(pv, pvl)?;
        into_storage(&self.0.forward(&cpu_tensor(x, xl)?, Some((&pk, &pv)))?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        pk: &Tensor,
        _pv: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The first block's input is plain token embeddings under prefix tuning: skip its
        // gradient (the rotary inverse and three matmuls) when nothing reads it.
        let (dx, dprefix) = self.0.backward(grad, x.track_op())?;
        let Some((dpk, dpv)) = dprefix else {
            candle_core::bail!("block op: a prefix op without prefix positions")
        };
        // A prefix shared by the batch (`[1, ...]`) gets the batch's summed gradient.
        let fold = |g: Tensor| -> Result<Tensor> {
            if pk.dim(0)? == 1 && g.dim(0)? != 1 {
                g.sum_keepdim(0)
            } else {
                g.contiguous()
            }
        };
        Ok((dx, Some(fold(dpk)?), Some(fold(dpv)?)))
    }
}

/// Per row of `[rows, d]`: with `r = 1 / sqrt(mean(x^2) + eps)` and `y = x * r * w`,
/// `dx = r * (g*w - x*r * mean(g*w * x*r))`.
fn rms_norm_backward(x: &Tensor, w: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(
        &g.contiguous()?,
        &RmsNormBackward {
            w: w.to_vec1::<f32>()?,
            eps: eps as f32,
        },
    )
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("block op kernels need contiguous inputs"),
    }
}

struct RmsNormBackward {
    w: Vec<f32>,
    eps: f32,
}

impl candle_core::CustomOp2 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (slice(xs, xl)?, slice(gs, gl)?);
        let d = self.w.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d).zip(g.par_chunks(d)))
            .for_each(|(o, (x, g))| {
                let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let r = 1.0 / (ms + self.eps).sqrt();
                let dot = x
                    .iter()
                    .zip(g)
                    .zip(&self.w)
                    .map(|((x, g), w)| g * w * x * r)
                    .sum::<f32>()
                    / d as f32;
                for i in 0..d {
                    let xh = x[i] * r;
                    o[i] = r * (g[i] * self.w[i] - xh * dot);
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// `dscores = scale * p * (dp - sum(dp * p))` per row (the softmax's input gradient, with the
/// attention's score scaling folded in).
struct SoftmaxBackward {
    scale: f64,
}

impl candle_core::CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, g) = (slice(ps, pl)?, slice(gs, gl)?);
        let s = *pl.dims().last().unwrap_or(&1);
        let scale = self.scale as f32;
        let mut out = vec![0f32; p.len()];
        out.par_chunks_mut(s * 64)
            .zip(p.par_chunks(s * 64).zip(g.par_chunks(s * 64)))
            .for_each(|(o, (p, g))| {
                for ((o, p), g) in o.chunks_mut(s).zip(p.chunks(s)).zip(g.chunks(s)) {
                    let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                    for i in 0..s {
                        o[i] = scale * p[i] * (g[i] - dot);
                    }
                }
            });
        Ok((CpuStorage::F32(out), pl.shape().clone()))
    }
}

/// With `a = silu(gate) * up`: given `da`, returns `[d gate; d up]` stacked as `[2 * rows, ff]`.
struct SwigluBackward;

impl CustomOp3 for SwigluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(
        &self,
        das: &CpuStorage,
        dal: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (da, g, u) = (slice(das, dal)?, slice(gs, gl)?, slice(us, ul)?);
        let n = da.len();
        let ff = *dal.dims().last().unwrap_or(&1);
        let rows = n / ff;
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        const CHUNK: usize = 16 * 1024;
        dg.par_chunks_mut(CHUNK)
            .zip(du.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (dg, du))| {
                let at = c * CHUNK;
                for i in 0..dg.len() {
                    let (x, up, d) = (g[at + i], u[at + i], da[at + i]);
                    let sig = 1.0 / (1.0 + (-x).exp());
                    let silu = x * sig;
                    dg[i] = d * up * sig * (1.0 + x * (1.0 - sig));
                    du[i] = d * silu;
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((2 * rows, ff))))
    }
}
