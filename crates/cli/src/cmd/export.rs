//! `covenant export`: a checkpoint as a Hugging Face model directory.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint directory (`config.json` + `model.safetensors`): a validator's published
    /// checkpoint (`<store>/ckpt/<window>`) or `covenant train`'s `checkpoints/step-N`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The Hugging Face model directory to write (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// The model's tokenizer (`tokenizer.json`). Default: the bundled one, as the demo's runs use.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Largest weight file, MiB: larger models are split into shards with an index.
    #[arg(long, default_value_t = 2048)]
    pub max_shard_mib: u64,
}

pub fn export(a: ExportArgs) -> Result<()> {
    ensure!(
        (1..=1 << 20).contains(&a.max_shard_mib),
        "--max-shard-mib must be in 1..=1048576, got {}",
        a.max_shard_mib
    );
    let tok = super::checkpoint::tokenizer(a.tokenizer.as_deref(), Some(&a.checkpoint))?;
    let eos = covenant_data::tokenizer::EOT;
    let t = covenant_model::ExportTokenizer {
        json: tok.json(),
        vocab_size: tok.vocab_size() as usize,
        eos,
        eos_id: tok.eot_id(),
    };
    eprintln!("exporting {} …", a.checkpoint.display());
    let t0 = Instant::now();
    let pb = crate::progress::bytes(0, "writing shards");
    let mut progress = |done: u64, total: u64| {
        pb.set_length(total);
        pb.set_position(done);
    };
    let e = covenant_model::export_hf(
        &a.checkpoint,
        &t,
        &a.out,
        a.max_shard_mib << 20,
        &mut progress,
    )
    .with_context(|| format!("exporting {}", a.checkpoint.display()))?;
    pb.finish_and_clear();
    let _ = writeln!(
        std::io::stdout().lock(),
        "wrote {} ({} parameters, {:.1} MiB of fp32 weights in {} shard(s), {} files) in {:.1} s: \
         LlamaForCausalLM.from_pretrained({:?}) loads it",
        a.out.display(),
        e.config.num_params(),
        e.weight_bytes as f64 / (1u64 << 20) as f64,
        e.shards,
        e.files.len(),
        t0.elapsed().as_secs_f64(),
        a.out.display().to_string(),
    );
    Ok(())
}
