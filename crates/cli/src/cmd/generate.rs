//! `covenant generate`: text sampled from a checkpoint's model, with a key/value cache.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use covenant_model::SampleOptions;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (`config.json` + `model.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate at most (it stops earlier at the end-of-text token).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 for greedy decoding; higher is more random.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Nucleus sampling: the smallest set of likeliest tokens whose probability reaches this.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The tokenizer. Default: the checkpoint's `tokenizer.json` if it has one, else the bundled.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// auto (CUDA if present), cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print JSON (prompt and new tokens, text, timings) instead of the text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (tok, model) =
        super::checkpoint::load(&a.checkpoint, a.tokenizer.as_deref(), &a.device, a.threads)?;
    let prompt = tok.encode(&a.prompt).context("tokenizing the prompt")?;
    let o = SampleOptions {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        stop: Some(tok.eot_id()),
    };
    let g = model.generate(&prompt, &o)?;
    let text = tok.decode(&g.tokens).context("decoding the continuation")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "prompt_tokens": prompt,
            "tokens": g.tokens,
            "text": text,
            "prompt_secs": g.prompt_secs,
            "decode_secs": g.decode_secs,
            "tokens_per_sec": g.tokens_per_sec(),
            "device": model.device_description(),
        });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(out, "{}{text}", a.prompt);
    }
    eprintln!(
        "{} new tokens ({} prompt tokens in {:.3} s), {} on {}",
        g.tokens.len(),
        prompt.len(),
        g.prompt_secs,
        g.tokens_per_sec().map_or("—".into(), |r| format!(
            "{r:.1} tokens/s after the prompt"
        )),
        model.device_description(),
    );
    Ok(())
}
