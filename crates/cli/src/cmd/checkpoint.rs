//! A checkpoint's model and tokenizer, as `covenant export`, `generate` and `eval` load them.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use covenant_data::Tokenizer;
use covenant_model::{OptimConfig, Trainer};

use super::train::parse_device;

/// The tokenizer `given`, else the one in `beside`, else the bundled one.
pub fn tokenizer(given: Option<&Path>, beside: Option<&Path>) -> Result<Tokenizer> {
    let in_dir = beside
        .map(|d| d.join("tokenizer.json"))
        .filter(|p| p.is_file());
    let path = match (given, in_dir) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => p,
        (None, None) => covenant_data::bundled::tokenizer_path(),
    };
    Tokenizer::load(&path).with_context(|| format!("loading the tokenizer {}", path.display()))
}

/// The model in `dir` (`config.json` + `model.safetensors`) on `device` with `threads` libtorch
/// threads, and its tokenizer ([`tokenizer`]), which must have the model's vocabulary.
pub fn load(
    dir: &Path,
    tokenizer_path: Option<&Path>,
    device: &str,
    threads: usize,
) -> Result<(Tokenizer, Trainer)> {
    set_threads(threads)?;
    let tok = tokenizer(tokenizer_path, Some(dir))?;
    let model = Trainer::from_hf(dir, OptimConfig::default(), 0, parse_device(device)?)
        .with_context(|| format!("loading {}", dir.display()))?;
    ensure!(
        model.model_config().vocab_size == tok.vocab_size() as usize,
        "the tokenizer has {} tokens, the model {}: pass the run's --tokenizer",
        tok.vocab_size(),
        model.model_config().vocab_size
    );
    Ok((tok, model))
}

/// libtorch's CPU threads (`--threads`).
pub fn set_threads(threads: usize) -> Result<()> {
    ensure!(threads > 0, "--threads must be at least 1");
    covenant_model::set_num_threads(threads);
    Ok(())
}
