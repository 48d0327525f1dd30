//! `covenant model`: presets and parameter counts (nothing is allocated).

use anyhow::Result;
use covenant_model::ModelConfig;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// List the presets with their parameter counts.
    List,
    /// Print a preset's architecture and parameter count, computed without allocating the model.
    Info {
        /// Preset name (see `covenant model list`).
        #[arg(long, default_value = "small")]
        preset: String,
        /// Override the vocabulary size (the tokenizer decides it).
        #[arg(long)]
        vocab: Option<usize>,
        /// Print the config as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also what a miner and a validator need: memory by part, bytes up and down and
        /// compute per window (docs/SCALING.md).
        #[arg(long)]
        roles: bool,
        /// With --roles: the run's parameters, `local` (the local networks' spec) or
        /// `reference` (the reference run's: G 20, H 30, 20 evaluations a window, packed indices).
        #[arg(long, default_value = "local", value_parser = ["local", "reference"])]
        run: String,
        /// With --roles: miners in the network.
        #[arg(long, default_value_t = 20)]
        peers: u64,
        /// With --roles: sequences per inner step (default: the run spec's).
        #[arg(long)]
        batch: Option<usize>,
    },
}

pub fn run(c: ModelCommand) -> Result<()> {
    match c {
        ModelCommand::List => {
            println!(
                "{:<14} {:>18} {:>8} {:>7} {:>6} {:>9} {:>7} {:>5}",
                "preset", "parameters", "hidden", "layers", "heads", "kv heads", "vocab", "tied"
            );
            for name in ModelConfig::preset_names() {
                let c = ModelConfig::preset(name)?;
                println!(
                    "{:<14} {:>18} {:>8} {:>7} {:>6} {:>9} {:>7} {:>5}",
                    name,
                    human(c.num_params()),
                    c.hidden_size,
                    c.n_layers,
                    c.n_heads,
                    c.n_kv_heads,
                    c.vocab_size,
                    if c.tie_embeddings { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        ModelCommand::Info {
            preset,
            vocab,
            json,
            roles,
            run,
            peers,
            batch,
        } => {
            let mut c = ModelConfig::preset(&preset)?;
            if let Some(v) = vocab {
                c = c.with_vocab(v);
            }
            c.validate()?;
            if json {
                let mut v = serde_json::to_value(&c)?;
                v["num_params"] = c.num_params().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            print!("{}", info_text(&preset, &c));
            if roles {
                anyhow::ensure!(
                    (1..=1_000_000).contains(&peers),
                    "--peers must be in 1..=1000000, got {peers}"
                );
                let mut spec = covenant_node::RunSpec::local("roles", &preset);
                if run == "reference" {
                    spec.params = covenant_core::RunParams::reference();
                    spec.indices = covenant_node::Indices::Packed;
                }
                if let Some(b) = batch {
                    anyhow::ensure!((1..=65_536).contains(&b), "--batch must be in 1..=65536");
                    spec.batch = b;
                }
                let costs = covenant_node::cost::roles(&spec, &c, peers)?;
                print!("{}", roles_text(&costs, &spec, &run, peers));
                if preset == "covenant-72b" {
                    print!("{}", sharding_text(&costs));
                }
            }
            Ok(())
        }
    }
}

fn gib(b: u64) -> String {
    let (g, m, k) = (
        b as f64 / (1u64 << 30) as f64,
        b as f64 / (1u64 << 20) as f64,
        b as f64 / 1024.0,
    );
    if g >= 10.0 {
        format!("{g:.0} GiB")
    } else if g >= 1.0 {
        format!("{g:.1} GiB")
    } else if m >= 1.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{k:.0} KiB")
    }
}

/// `model info --roles`: each role's memory, traffic and compute per window.
fn roles_text(
    c: &covenant_node::cost::Costs,
    spec: &covenant_node::RunSpec,
    run: &str,
    peers: u64,
) -> String {
    let p = &spec.params;
    let mut s = format!(
        "\nper role, on a {run} run (G {}, H {}, batch {} sequences, {} evaluations and up to {} downloads a window, {} peers)\n",
        p.aggregation_size, p.inner_steps, spec.batch, c.evaluations, c.downloads, peers
    );
    s.push_str(&format!(
        "upload               {} bytes ({:.0}x below dense fp32, {}; {})\n",
        c.upload_bytes,
        c.dense_bytes as f64 / c.upload_bytes.max(1) as f64,
        gib(c.dense_bytes),
        match spec.indices {
            covenant_node::Indices::Packed => "12-bit packed indices",
            covenant_node::Indices::Rice => "Rice-coded indices, expected size",
        }
    ));
    for r in [&c.miner, &c.validator] {
        s.push_str(&format!("{}\n", r.role));
        for part in &r.memory {
            s.push_str(&format!("  {:<48} {:>10}\n", part.name, gib(part.bytes)));
        }
        s.push_str(&format!(
            "  {:<48} {:>10}\n",
            "memory in all",
            gib(r.memory_total())
        ));
        s.push_str(&format!(
            "  {:<48} {:>10} up, {} down\n",
            "per window",
            gib(r.bytes_up),
            gib(r.bytes_down)
        ));
        s.push_str(&format!(
            "  {:<48} {:>10.3e} flops\n",
            "compute per window", r.flops
        ));
    }
    s
}

/// The 72B figures beside the reference's published minimums, and the sharding that makes a
/// miner fit.
fn sharding_text(c: &covenant_node::cost::Costs) -> String {
    let shardable = [
        "parameters (the live model)",
        "gradients",
        "AdamW moments",
        "error feedback",
    ];
    let per_gpu: u64 = c
        .miner
        .memory
        .iter()
        .filter(|p| shardable.contains(&p.name))
        .map(|p| p.bytes)
        .sum::<u64>()
        / 8;
    let act = c
        .miner
        .memory
        .iter()
        .find(|p| p.name.starts_with("activations"))
        .map_or(0, |p| p.bytes);
    let host: u64 = c.miner.memory_total() - per_gpu * 8 - act;
    format!(
        "\nreference minimums: miner 8x B200 (180 GB = 168 GiB each), validator at least 141 GB (131 GiB) of GPU memory\n\
         miner, sharded over 8 GPUs (FSDP): parameters, gradients, AdamW moments and error feedback\n\
         \x20 {} / 8 = {} a GPU, plus the activations of its share of the batch ({} in all at this\n\
         \x20 batch, less with activation checkpointing); the canonical model, the model read back\n\
         \x20 to compress and the payloads ({}) live in host memory\n\
         validator: the model once ({} in fp32, {} in bf16 as the reference evaluates), evaluated in\n\
         \x20 place (no second copy); its canonical copy ({}) in host memory\n",
        gib(per_gpu * 8),
        gib(per_gpu),
        gib(act),
        gib(host),
        gib(c.dense_bytes),
        gib(c.dense_bytes / 2),
        gib(c.dense_bytes)
    )
}

/// The `model info` table for a config.
pub fn info_text(preset: &str, c: &ModelConfig) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<19}{v}\n"));
    line("preset", preset.to_string());
    line("vocab_size", c.vocab_size.to_string());
    line("hidden_size", c.hidden_size.to_string());
    line("n_layers", c.n_layers.to_string());
    line("n_heads", c.n_heads.to_string());
    line("n_kv_heads", c.n_kv_heads.to_string());
    line("head_dim", c.head_dim.to_string());
    line("intermediate_size", c.intermediate_size.to_string());
    line("rope_theta", c.rope_theta.to_string());
    line("max_seq_len", c.max_seq_len.to_string());
    line("norm_eps", format!("{:e}", c.norm_eps));
    line("tie_embeddings", c.tie_embeddings.to_string());
    line(
        "parameters",
        format!("{} ({} unique)", c.num_params(), human(c.num_params())),
    );
    line(
        "fp32 size",
        format!(
            "{:.2} GiB",
            c.num_params() as f64 * 4.0 / (1u64 << 30) as f64
        ),
    );
    s
}

/// 70_599_843_840 -> "70.6B".
fn human(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.1}B", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1}M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}K", f / 1e3)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use covenant_model::ModelConfig;

    #[test]
    fn human_rounds_like_the_paper() {
        assert_eq!(super::human(70_599_843_840), "70.6B");
        assert_eq!(super::human(31_990_272), "32.0M");
    }

    #[test]
    fn info_for_72b_reports_70_6b_unique_params() {
        let c = ModelConfig::preset("covenant-72b").unwrap();
        let t = super::info_text("covenant-72b", &c);
        assert!(
            t.contains("parameters         70599843840 (70.6B unique)"),
            "{t}"
        );
        assert!(t.contains("n_kv_heads         8"), "{t}");
        assert!(t.contains("tie_embeddings     true"), "{t}");
    }
}
