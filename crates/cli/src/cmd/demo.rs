//! `covenant demo`: the README's first command. Prepares the bundled corpus on first use and
//! trains the default model on it, printing the result.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::train;

#[derive(clap::Args)]
pub struct Args {
    /// Model preset to train.
    #[arg(long, default_value = "small")]
    preset: String,
    /// Optimizer steps.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Where metrics, the loss plot and checkpoints go.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// CPU threads for libtorch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub fn run(a: Args) -> Result<()> {
    let seq = covenant_model::ModelConfig::preset(&a.preset)?.max_seq_len;
    let data = bundled_data_for(seq)?;
    train::run(train::Args {
        preset: a.preset,
        data: Some(data),
        out: a.out,
        steps: a.steps,
        batch: 8,
        lr: 1e-3,
        warmup: None,
        weight_decay: 0.1,
        eval_every: 25,
        eval_batches: 8,
        ckpt_every: 50,
        resume: false,
        stop_after: None,
        seed: 0,
        threads: a.threads,
        device: "auto".into(),
        algo: vec![super::replicas::Algo::Single],
        replicas: 4,
        inner_steps: 30,
        outer_lr: None,
        outer_momentum: 0.9,
    })
}

/// The bundled corpus prepared at sequence length `seq` (cached; prepared on first use).
pub fn bundled_data_for(seq: usize) -> Result<PathBuf> {
    let dir = cache_dir().join(format!("data/bundled-seq{seq}"));
    covenant_data::prepare_bundled(&dir, seq as u32)
        .with_context(|| format!("preparing the bundled corpus in {}", dir.display()))?;
    Ok(dir)
}

/// `$COVENANT_CACHE`, else `.cache/covenant` under the current directory.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("COVENANT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache/covenant"))
}
