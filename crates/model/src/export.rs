//! A checkpoint as a Hugging Face model directory (`covenant export`): `config.json`,
//! `generation_config.json`, the tokenizer's files and the weights as safetensors (`format: pt`),
//! in shards of at most a given size with `model.safetensors.index.json` when there is more
//! than one. `LlamaForCausalLM.from_pretrained` and `pipeline("text-generation")` load it.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::checkpoint::{decode_safetensors, encode_safetensors, write_atomic};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::trainer::{read_checkpoint_config, CONFIG_FILE, MODEL_FILE};

/// The tokenizer that goes with the model.
#[derive(Debug, Clone)]
pub struct ExportTokenizer<'a> {
    /// Its `tokenizer.json` (Hugging Face `tokenizers`).
    pub json: &'a [u8],
    pub vocab_size: usize,
    /// The end-of-text token and its id (also the start and the padding token).
    pub eos: &'a str,
    pub eos_id: u32,
}

/// What [`export_hf`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub config: ModelConfig,
    pub files: Vec<PathBuf>,
    pub shards: usize,
    /// Bytes of tensor data in the shards.
    pub weight_bytes: u64,
}

/// Writes the checkpoint in `checkpoint` (`config.json` + `model.safetensors`, as nodes and the
/// trainer write them) with `tokenizer` into the new or empty directory `out`, in shards of at
/// most `max_shard_bytes` (a tensor larger than that gets a shard of its own). `progress` is
/// told the weight bytes written so far and their total after each shard.
pub fn export_hf(
    checkpoint: &Path,
    tokenizer: &ExportTokenizer,
    out: &Path,
    max_shard_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Exported> {
    let cfg = read_checkpoint_config(checkpoint)?;
    if tokenizer.vocab_size != cfg.vocab_size {
        return Err(ModelError::InvalidConfig(format!(
            "the tokenizer has {} tokens, the model {}",
            tokenizer.vocab_size, cfg.vocab_size
        )));
    }
    let mpath = checkpoint.join(MODEL_FILE);
    let bytes = std::fs::read(&mpath).map_err(|e| ModelError::io(&mpath, e))?;
    let ignorable: &[&str] = if cfg.tie_embeddings {
        &["lm_head.weight"]
    } else {
        &[]
    };
    let specs = cfg.param_shapes();
    let values =
        decode_safetensors(&bytes, &specs, ignorable).map_err(|e| ModelError::ckpt(&mpath, e))?;
    drop(bytes);
    empty_dir(out)?;
    let mut files = write_shards(out, &specs, &values, max_shard_bytes, progress)?;
    let shards = files.len().saturating_sub(usize::from(files.len() > 1));
    for (name, value) in side_files(&cfg, tokenizer) {
        let path = out.join(name);
        write_atomic(&path, &value)?;
        files.push(path);
    }
    Ok(Exported {
        weight_bytes: values.iter().map(|v| 4 * v.len() as u64).sum(),
        config: cfg,
        files,
        shards,
    })
}

fn empty_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let mut entries = std::fs::read_dir(out).map_err(|e| ModelError::io(out, e))?;
    if entries.next().is_some() {
        return Err(ModelError::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "not empty: remove it or choose another output directory",
            ),
        ));
    }
    Ok(())
}

/// The weights in order, in shards of at most `max_bytes`, and the index when there are several.
fn write_shards(
    out: &Path,
    specs: &[(String, Vec<usize>)],
    values: &[Vec<f32>],
    max_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<PathBuf>> {
    let total: u64 = values.iter().map(|v| 4 * v.len() as u64).sum();
    let mut written = 0u64;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut size = 0u64;
    for (i, v) in values.iter().enumerate() {
        let b = 4 * v.len() as u64;
        match groups.last_mut() {
            Some(g) if size + b <= max_bytes => g.push(i),
            _ => {
                groups.push(vec![i]);
                size = 0;
            }
        }
        size += b;
    }
    let n = groups.len();
    let name = |k: usize| {
        if n == 1 {
            MODEL_FILE.to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        }
    };
    let mut files = Vec::new();
    let mut weight_map = serde_json::Map::new();
    for (k, g) in groups.iter().enumerate() {
        let tensors: Vec<(&str, &[usize], &[f32])> = g
            .iter()
            .map(|&i| {
                (
                    specs[i].0.as_str(),
                    specs[i].1.as_slice(),
                    values[i].as_slice(),
                )
            })
            .collect();
        let path = out.join(name(k));
        let bytes = encode_safetensors(&tensors).map_err(|e| ModelError::ckpt(&path, e))?;
        write_atomic(&path, &bytes)?;
        for &i in g {
            weight_map.insert(specs[i].0.clone(), name(k).into());
            written += 4 * values[i].len() as u64;
        }
        progress(written, total);
        files.push(path);
    }
    if n > 1 {
        let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        let path = out.join("model.safetensors.index.json");
        write_atomic(&path, &pretty(&index))?;
        files.push(path);
    }
    Ok(files)
}

/// `config.json`, `generation_config.json` and the tokenizer's files.
fn side_files(cfg: &ModelConfig, t: &ExportTokenizer) -> Vec<(&'static str, Vec<u8>)> {
    let mut config = cfg.to_hf_json();
    config["bos_token_id"] = t.eos_id.into();
    config["eos_token_id"] = t.eos_id.into();
    let generation = json!({
        "bos_token_id": t.eos_id,
        "eos_token_id": t.eos_id,
        "pad_token_id": t.eos_id,
        "max_length": cfg.max_seq_len,
    });
    let tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": t.eos,
        "eos_token": t.eos,
        "unk_token": t.eos,
        "pad_token": t.eos,
        "model_max_length": cfg.max_seq_len,
        "clean_up_tokenization_spaces": false,
    });
    let special =
        json!({ "bos_token": t.eos, "eos_token": t.eos, "unk_token": t.eos, "pad_token": t.eos });
    vec![
        (CONFIG_FILE, pretty(&config)),
        ("generation_config.json", pretty(&generation)),
        ("tokenizer.json", t.json.to_vec()),
        ("tokenizer_config.json", pretty(&tokenizer_config)),
        ("special_tokens_map.json", pretty(&special)),
    ]
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}
