//! covenant-model: a LLaMA-style decoder on libtorch (tch), bit-compatible with Hugging Face
//! `LlamaForCausalLM`, its AdamW trainer, flat parameter views and safetensors checkpoints.
//!
//! This is the only crate that uses `tch`; everything it exposes is plain data
//! ([`ParamView`], [`StepStats`], [`ModelConfig`]). See docs/MODEL.md.

// `%` instead of `is_multiple_of`: the workspace's MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

mod checkpoint;
mod config;
mod error;
mod export;
mod generate;
mod likelihood;
mod llama;
mod optim;
mod trainer;

pub use checkpoint::{decode_safetensors, encode_safetensors, safetensors_header};
pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use export::{export_hf, ExportTokenizer, Exported};
pub use generate::{Generated, SampleOptions};
pub use optim::OptimConfig;
pub use trainer::{
    set_num_threads, DeviceChoice, ParamView, StepStats, Trainer, CONFIG_FILE, MANIFEST_FILE,
    MODEL_FILE, OPTIM_FILE,
};
