//! Loading a GGUF file (llama architecture): tensors dequantised to f32, hyper-parameters from
//! the metadata, and the tokenizer rebuilt from `tokenizer.ggml.*`.

use super::config::Config;
use super::{attention, block, llama, mlp};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF's token type for control tokens (`<|im_start|>` and the like).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

pub struct GgufModel {
    pub config: Config,
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
}

pub fn load(path: &Path, device: &Device) -> Result<GgufModel> {
    let name = path.display();
    let mut file = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    // Checked here because candle's own words for it are "unknown magic 0x22e7628f".
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        bail!("{name}: not a GGUF file (it does not start with \"GGUF\"); give a .gguf model, a Hugging Face folder or a .whl");
    }
    file.rewind()
        .with_context(|| format!("{name}: cannot read"))?;
    let content = Content::read(&mut file)
        .map_err(|e| anyhow!("{name}: not a readable GGUF file: {}", plain(e)))?;
    let meta = Meta {
        content: &content,
        file: path,
    };
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        bail!("{name}: GGUF architecture \"{arch}\" is not supported (only \"llama\" is)");
    }
    let config = meta.config()?;
    let tokenizer = meta
        .tokenizer()
        .with_context(|| format!("{name}: cannot rebuild the tokenizer"))?;

    let mut tensors = HashMap::new();
    for gguf_name in content.tensor_infos.keys() {
        let Some(hf_name) = hf_name(gguf_name) else {
            continue;
        };
        let t = content
            .tensor(&mut file, gguf_name, device)
            .and_then(|q| q.dequantize(device))
            .map_err(|e| anyhow!("{name}: tensor \"{gguf_name}\": {}", plain(e)))?;
        // llama.cpp permutes Q and K rows so that interleaved RoPE works; undo it so the model
        // sees the Hugging Face half-split layout (and exported prefixes match Hugging Face keys).
        let t = if gguf_name.ends_with("attn_q.weight") {
            unpermute(&t, config.num_attention_heads)?
        } else if gguf_name.ends_with("attn_k.weight") {
            unpermute(&t, config.num_key_value_heads)?
        } else {
            t
        };
        tensors.insert(hf_name, t);
    }
    Ok(GgufModel {
        config,
        tensors,
        tokenizer,
    })
}

/// A candle error without the backtrace candle appends to its message when RUST_BACKTRACE is
/// set: a user's error line should not become fifty lines of candle's internals.
fn plain(e: candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => plain(*inner),
        e => e.to_string(),
    }
}

fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads / 2;
    Ok(w.reshape((heads, half, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// GGUF tensor name to Hugging Face tensor name: the names the model's parts load by.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some(llama::EMBED_TOKENS.to_string()),
        "output_norm.weight" => Some(format!("{}.weight", llama::NORM)),
        "output.weight" => Some(llama::LM_HEAD.to_string()),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf: &[&str] = match part {
        "attn_norm.weight" => &[block::INPUT_NORM],
        "ffn_norm.weight" => &[block::POST_NORM],
        "attn_q.weight" => &[block::SELF_ATTN, attention::Q_PROJ],
        "attn_k.weight" => &[block::SELF_ATTN, attention::K_PROJ],
        "attn_v.weight" => &[block::SELF_ATTN, attention::V_PROJ],
        "attn_output.weight" => &[block::SELF_ATTN, attention::O_PROJ],
        "ffn_gate.weight" => &[block::MLP, mlp::GATE_PROJ],
        "ffn_up.weight" => &[block::MLP, mlp::UP_PROJ],
        "ffn_down.weight" => &[block::MLP, mlp::DOWN_PROJ],
        _ => return None,
    };
    Some(format!(
        "{}.{}.weight",
        llama::block_name(layer),
        hf.join(".")
    ))
}

struct Meta<'a> {
    content: &'a Content,
    file: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .with_context(|| format!("{}: metadata key \"{key}\" is missing", self.file.display()))
    }

    fn string(&self, key: &str) -> Result<String> {
        Ok(self
            .get(key)?
            .to_string()
            .map_err(|e| self.bad(key, e))?
            .clone())
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        let n = match v {
            Value::U8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            other => bail!(
                "{}: metadata \"{key}\" is {other:?}, expected an unsigned integer",
                self.file.display()
            ),
        };
        Ok(n as usize)
    }

    fn f64(&self, key: &str) -> Result<f64> {
        match self.get(key)? {
            Value::F32(x) => Ok(*x as f64),
            Value::F64(x) => Ok(*x),
            other => bail!(
                "{}: metadata \"{key}\" is {other:?}, expected a float",
                self.file.display()
            ),
        }
    }

    fn bad(&self, key: &str, e: candle_core::Error) -> anyhow::Error {
        anyhow!("{}: metadata \"{key}\": {}", self.file.display(), plain(e))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let arr = self.get(key)?.to_vec().map_err(|e| self.bad(key, e))?;
        arr.iter()
            .map(|v| v.to_string().cloned().map_err(|e| self.bad(key, e)))
            .collect()
    }

    fn config(&self) -> Result<Config> {
        let heads = self.usize("llama.attention.head_count")?;
        let hidden = self.usize("llama.embedding_length")?;
        let kv_heads = self.usize("llama.attention.head_count_kv").unwrap_or(heads);
        let head_dim = self
            .usize("llama.rope.dimension_count")
            .unwrap_or(hidden / heads.max(1));
        let vocab = match self.usize("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => self
                .get("tokenizer.ggml.tokens")?
                .to_vec()
                .map_err(|e| self.bad("tokenizer.ggml.tokens", e))?
                .len(),
        };
        let has_output = self.content.tensor_infos.contains_key("output.weight");
        Ok(Config {
            model_type: "llama".into(),
            hidden_size: hidden,
            intermediate_size: self.usize("llama.feed_forward_length")?,
            num_hidden_layers: self.usize("llama.block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            vocab_size: vocab,
            rms_norm_eps: self.f64("llama.attention.layer_norm_rms_epsilon")?,
            rope_theta: self.f64("llama.rope.freq_base").unwrap_or(10_000.0),
            max_position_embeddings: self.usize("llama.context_length").unwrap_or(2048),
            tie_word_embeddings: !has_output,
            attention_bias: false,
            bos_token_id: self
                .usize("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|x| x as u32),
            eos_token_id: self
                .usize("tokenizer.ggml.eos_token_id")
                .ok()
                .map(|x| x as u32),
        })
    }

    /// Byte-level BPE as llama.cpp runs it for `tokenizer.ggml.model = gpt2`: vocabulary and
    /// merges from the metadata; digits split one by one (the `smollm` pre-tokenizer); control
    /// tokens matched whole as special tokens.
    fn tokenizer(&self) -> Result<Tokenizer> {
        let model = self.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            bail!(
                "tokenizer model \"{model}\" is not supported (only byte-level BPE, \"gpt2\"); \
                 use the model's Hugging Face folder with its tokenizer.json instead"
            );
        }
        let pre = self
            .string("tokenizer.ggml.pre")
            .unwrap_or_else(|_| "default".into());
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = self
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .with_context(|| {
                        format!("merge \"{m}\" is not two tokens separated by a space")
                    })
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow!("BPE: {e}"))?;
        let mut tok = Tokenizer::new(bpe);
        let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
        let pre_tokenizer = match pre.as_str() {
            "smollm" => Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level,
            ]),
            "gpt2" | "default" => Sequence::new(vec![byte_level]),
            other => bail!(
                "pre-tokenizer \"{other}\" is not supported (known: smollm, gpt2); \
                 use the model's Hugging Face folder with its tokenizer.json instead"
            ),
        };
        tok.with_pre_tokenizer(Some(pre_tokenizer));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        let types: Vec<i32> = match self.content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| self.bad("tokenizer.ggml.token_type", e))?
                .iter()
                .map(|x| x.to_i32().unwrap_or(1))
                .collect(),
            None => vec![],
        };
        let special: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|(_, &ty)| ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED)
            .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
            .collect();
        tok.add_special_tokens(special)
            .map_err(|e| anyhow!("special tokens: {e}"))?;
        // llama.cpp adds BOS when `tokenizer.ggml.add_bos_token` says so; for the byte-level
        // BPE models read here it adds none without the key. SmolLM2's GGUF says false.
        let adds_bos = self
            .content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .is_some_and(|v| v.to_bool().unwrap_or(false));
        if adds_bos {
            let id = self.usize("tokenizer.ggml.bos_token_id")?;
            let token = tokens.get(id).with_context(|| {
                format!("tokenizer.ggml.bos_token_id {id} is not a token of tokenizer.ggml.tokens")
            })?;
            tok.with_post_processor(Some(super::hf::bos_processor(token, id as u32)?));
        }
        Ok(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::llama::tests::{checkpoint, tiny_config};
    use std::collections::BTreeSet;

    #[test]
    fn every_llama_gguf_tensor_maps_to_a_name_the_model_loads() {
        let cfg = tiny_config(false, false);
        let mut gguf = vec!["token_embd.weight", "output_norm.weight", "output.weight"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        for i in 0..cfg.num_hidden_layers {
            for part in [
                "attn_norm",
                "ffn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ] {
                gguf.push(format!("blk.{i}.{part}.weight"));
            }
        }
        let mapped: BTreeSet<String> = gguf.iter().map(|g| hf_name(g).unwrap()).collect();
        let loaded: BTreeSet<String> = checkpoint(&cfg).into_iter().map(|(n, _)| n).collect();
        assert_eq!(mapped, loaded);
        assert_eq!(hf_name("blk.0.attn_rot_embd"), None);
    }
}
