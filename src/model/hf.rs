//! A Hugging Face model folder, both ways: loading `config.json`, `tokenizer.json` and either
//! `model.safetensors` or sharded `*.safetensors` with `model.safetensors.index.json`; and the
//! files of such a folder for a model we hold (a fine-tuned copy), which transformers'
//! `AutoModelForCausalLM.from_pretrained` loads and [`load`] reads back.

use super::config::Config;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use tokenizers::Tokenizer;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

pub struct HfModel {
    pub config: Config,
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
}

pub fn load(dir: &Path, device: &Device) -> Result<HfModel> {
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        bail!(
            "{}: no config.json in this folder (a Hugging Face model folder needs config.json, \
             tokenizer.json and *.safetensors)",
            dir.display()
        );
    }
    let config = Config::from_hf_json(&config_path)?;
    let tok_path = dir.join(TOKENIZER_FILE);
    if !tok_path.is_file() {
        bail!("{}: no tokenizer.json in this folder", dir.display());
    }
    let mut tokenizer = Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow!("{}: not a valid tokenizer: {e}", tok_path.display()))?;
    honour_add_bos_token(dir, &config, &mut tokenizer)?;

    let single = dir.join(WEIGHTS_FILE);
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<std::path::PathBuf> = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shard_files(&index)?
            .into_iter()
            .map(|f| dir.join(f))
            .collect()
    } else {
        bail!(
            "{}: no model.safetensors or model.safetensors.index.json in this folder",
            dir.display()
        );
    };
    let mut tensors = HashMap::new();
    for f in files {
        tensors.extend(read_safetensors(&f, device)?);
    }
    Ok(HfModel {
        config,
        tensors,
        tokenizer,
    })
}

/// transformers' Llama tokenizers add BOS when `tokenizer_config.json` says `"add_bos_token":
/// true`, whatever `tokenizer.json`'s post-processor holds (they rebuild it); where the
/// post-processor does not already add one, it is added here, so the tokenizer itself answers
/// whether BOS is added (`task::bos_tokens`). `false` or no key: `tokenizer.json` decides. The
/// built-in model has no tokenizer_config.json and no post-processor: no BOS.
fn honour_add_bos_token(dir: &Path, config: &Config, tok: &mut Tokenizer) -> Result<()> {
    let path = dir.join(TOKENIZER_CONFIG_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    if v.get("add_bos_token").and_then(|b| b.as_bool()) != Some(true)
        || !crate::task::bos_tokens(tok)?.is_empty()
    {
        return Ok(());
    }
    let named = match v.get("bos_token") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        None => None,
    };
    let (token, id) = match named {
        Some(t) => {
            let id = tok.token_to_id(&t).with_context(|| {
                format!(
                    "{}: \"bos_token\" {t:?} is not in tokenizer.json",
                    path.display()
                )
            })?;
            (t, id)
        }
        None => {
            let id = config.bos_token_id.with_context(|| {
                format!("{}: \"add_bos_token\" is true but neither it nor config.json names the BOS token; add \"bos_token\"", path.display())
            })?;
            let t = tok.id_to_token(id).with_context(|| {
                format!("config.json: \"bos_token_id\" {id} is not in tokenizer.json")
            })?;
            (t, id)
        }
    };
    tok.with_post_processor(Some(bos_processor(&token, id)?));
    Ok(())
}

/// A post-processor that puts `token` (id `id`) before every text, as Llama's tokenizer.json
/// does (`<s> $A`, and `<s> $A <s> $B` for pairs).
pub(crate) fn bos_processor(
    token: &str,
    id: u32,
) -> Result<tokenizers::processors::template::TemplateProcessing> {
    let bos = serde_json::json!({"SpecialToken": {"id": token, "type_id": 0}});
    let seq = |s: &str, t: u32| serde_json::json!({"Sequence": {"id": s, "type_id": t}});
    let json = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [bos, seq("A", 0)],
        "pair": [bos, seq("A", 0), {"SpecialToken": {"id": token, "type_id": 1}}, seq("B", 1)],
        "special_tokens": {token: {"id": token, "ids": [id], "tokens": [token]}},
    });
    serde_json::from_value(json).map_err(|e| anyhow!("cannot build a BOS post-processor: {e}"))
}

fn shard_files(index: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("{}: cannot read", index.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: no \"weight_map\" object", index.display()))?;
    map.values()
        .map(|f| {
            f.as_str().map(str::to_string).with_context(|| {
                format!("{}: weight_map values must be file names", index.display())
            })
        })
        .collect()
}

/// The files of a Hugging Face model folder holding `tensors` (named as in a checkpoint, a tied
/// head left out as `Llm::named_tensors` does): `config.json`, `model.safetensors`,
/// `tokenizer.json` and `tokenizer_config.json`, as (file name, bytes) for one atomic folder
/// write.
pub fn folder_files(
    config: &Config,
    tensors: &[(String, Tensor)],
    tokenizer: &Tokenizer,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let config_json = serde_json::to_vec_pretty(&config.to_hf_json())?;
    let weights = weights_file(tensors)?;
    let tokenizer_json = tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("cannot write the tokenizer as JSON: {e}"))?;
    // Without it, AutoTokenizer picks a class from model_type (LlamaTokenizerFast), which adds
    // a BOS token whatever tokenizer.json says; the plain fast tokenizer encodes exactly as we
    // do, its BOS (if any) from tokenizer.json's post-processor, which add_bos_token repeats.
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": !crate::task::bos_tokens(tokenizer)?.is_empty(),
        "add_eos_token": false,
        "model_max_length": config.max_position_embeddings,
    });
    Ok(vec![
        (CONFIG_FILE, config_json),
        (WEIGHTS_FILE, weights),
        (TOKENIZER_FILE, tokenizer_json.into_bytes()),
        (
            TOKENIZER_CONFIG_FILE,
            serde_json::to_vec_pretty(&tokenizer_config)?,
        ),
    ])
}

/// `model.safetensors` holding `tensors`, as transformers reads it.
pub fn weights_file(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    // transformers refuses a safetensors file whose metadata lacks `"format": "pt"`.
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let contiguous = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), t.contiguous()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(safetensors::serialize(
        contiguous.iter().map(|(n, t)| (*n, t)),
        Some(meta),
    )?)
}

/// Reads every tensor of a safetensors file, as f32, with an error naming the file when it is
/// truncated or malformed.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        bail!("{}: file not found", path.display());
    }
    let loaded = candle_core::safetensors::load(path, device)
        .map_err(|e| anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    loaded
        .into_iter()
        .map(|(name, t)| {
            let t = t
                .to_dtype(candle_core::DType::F32)
                .map_err(|e| anyhow!("{}: tensor \"{name}\": {e}", path.display()))?;
            Ok((name, t))
        })
        .collect()
}
