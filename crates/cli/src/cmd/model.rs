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
            Ok(())
        }
    }
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
