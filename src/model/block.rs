//! One decoder block: RMSNorm, self-attention and the residual add, then RMSNorm, the MLP and the
//! residual add. This is the composed forward, built from candle ops that a path that trains can
//! differentiate; `block_op.rs` runs the same block as one op with a hand-written backward.

use super::attention::Attention;
use super::config::Config;
use super::mlp::Mlp;
use super::rms_norm::RmsNorm;
use super::rope::{Rope, Start};
use super::weights::{join, nest, WeightMap};
use anyhow::Result;
use candle_core::Tensor;

pub(super) const INPUT_NORM: &str = "input_layernorm";
pub(super) const SELF_ATTN: &str = "self_attn";
pub(super) const POST_NORM: &str = "post_attention_layernorm";
pub(super) const MLP: &str = "mlp";

#[derive(Debug, Clone)]
pub(super) struct Block {
    pub input_norm: RmsNorm,
    pub attn: Attention,
    pub post_norm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    /// The block under `name` (`model.layers.3`).
    pub fn load(w: &mut WeightMap, name: &str, cfg: &Config) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_norm: RmsNorm::load(w, &join(name, INPUT_NORM), d, eps)?,
            attn: Attention::load(w, &join(name, SELF_ATTN), cfg)?,
            post_norm: RmsNorm::load(w, &join(name, POST_NORM), d, eps)?,
            mlp: Mlp::load(w, &join(name, MLP), cfg)?,
        })
    }

    /// The tensors under the names `load` takes them by. The norms come first: the model's
    /// fingerprint hashes tensors in this order, and `artifact.rs` refuses a prompt whose
    /// fingerprint differs, so reordering would orphan every saved prompt.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = nest(INPUT_NORM, self.input_norm.tensors());
        out.extend(nest(POST_NORM, self.post_norm.tensors()));
        out.extend(nest(SELF_ATTN, self.attn.tensors()));
        out.extend(nest(MLP, self.mlp.tensors()));
        out
    }

    /// The same weights outside any gradient graph (storage shared): what the block op computes
    /// with when the weights train, so its forward takes the frozen kernels.
    pub fn detached(&self) -> Self {
        Self {
            input_norm: self.input_norm.detached(),
            attn: self.attn.detached(),
            post_norm: self.post_norm.detached(),
            mlp: self.mlp.detached(),
        }
    }

    /// `x` `[b, t, d]` through the block, each row's text at positions from its `start`; also
    /// returns the keys (after RoPE) and values the attention used, prefix included.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        start: &Start,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let hn = self.input_norm.forward(x)?;
        let (attn, kv) = self.attn.forward(&hn, rope, mask, prefix, start)?;
        let x = self.attn.o_proj.forward_add(&attn, x)?;
        let hn = self.post_norm.forward(&x)?;
        let x = self
            .mlp
            .down_proj
            .forward_add(&self.mlp.activation(&hn)?, &x)?;
        Ok((x, kv))
    }
}
