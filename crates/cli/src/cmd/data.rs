//! `covenant data`: corpus preparation, tokenizers, dataset inspection, sample assignment.

use std::path::PathBuf;

use anyhow::{Context, Result};
use covenant_data::prepare::{
    PrepareOptions, TokenizerSource, DEFAULT_SEQ_LEN, DEFAULT_SHARD_TOKENS, DEFAULT_TRAIN_BYTES,
    DEFAULT_VAL_FRACTION,
};
use covenant_data::tokenizer::DEFAULT_VOCAB_SIZE;
use covenant_data::{Dataset, OpenOptions, Split};

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Tokenize a corpus (text, JSONL `text` field, Parquet `text` column; `.zst` text/JSONL too)
    /// into u32 token shards with a manifest and a train/validation split by document.
    Prepare {
        /// A corpus file, or a directory searched recursively for .txt, .jsonl, .parquet (+ .zst).
        #[arg(long)]
        input: PathBuf,
        /// Output directory (shards, tokenizer.json, manifest.json).
        #[arg(long)]
        out: PathBuf,
        /// Use this tokenizer.json instead of training one (e.g. data/tokenizer-8192.json).
        #[arg(long, conflicts_with = "vocab_size")]
        tokenizer: Option<PathBuf>,
        /// Train a byte-level BPE tokenizer of this vocabulary size on the input first.
        #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
        vocab_size: u32,
        /// Tokens per sample.
        #[arg(long, default_value_t = DEFAULT_SEQ_LEN)]
        seq_len: u32,
        /// Fraction of documents kept apart for validation.
        #[arg(long, default_value_t = DEFAULT_VAL_FRACTION)]
        val_fraction: f64,
        /// Maximum tokens per shard file.
        #[arg(long, default_value_t = DEFAULT_SHARD_TOKENS)]
        shard_tokens: u64,
    },
    /// Train a byte-level BPE tokenizer and save it as tokenizer.json.
    /// The bundled one: `covenant data train-tokenizer --input data/corpus --out data/tokenizer-8192.json`.
    TrainTokenizer {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
        vocab_size: u32,
        /// Use at most this many bytes of text.
        #[arg(long, default_value_t = DEFAULT_TRAIN_BYTES)]
        max_bytes: u64,
    },
    /// Prepare the bundled public-domain corpus with the bundled tokenizer (idempotent).
    Bundled {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_SEQ_LEN)]
        seq_len: u32,
    },
    /// Print a prepared dataset's manifest summary; `--verify` hashes every shard and checks ids.
    Inspect {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        verify: bool,
        /// Decode the first N tokens of train sample 0 with the dataset's tokenizer.json.
        #[arg(long, default_value_t = 0)]
        show: usize,
    },
    /// Build the multiple-choice evaluation tasks from the bundled corpus's validation
    /// documents: `<task>.jsonl` and lm-evaluation-harness task files under --out
    /// (data/eval is what this writes; docs/EVAL.md).
    EvalTasks {
        #[arg(long, default_value = "data/eval")]
        out: PathBuf,
    },
    /// Print the sample ids assigned to a peer in a window (the sampler of docs/DATA.md).
    Pool {
        #[arg(long)]
        run_seed: u64,
        #[arg(long)]
        uid: u32,
        #[arg(long)]
        window: u64,
        #[arg(long, default_value_t = 64)]
        pool_size: usize,
        /// Number of samples to choose from (or give --data).
        #[arg(long, required_unless_present = "data")]
        num_samples: Option<u64>,
        /// Take the number of train samples from this dataset.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

pub fn run(c: DataCommand) -> Result<()> {
    match c {
        DataCommand::Prepare {
            input,
            out,
            tokenizer,
            vocab_size,
            seq_len,
            val_fraction,
            shard_tokens,
        } => {
            let opts = PrepareOptions {
                tokenizer: match tokenizer {
                    Some(p) => TokenizerSource::File(p),
                    None => TokenizerSource::Train {
                        vocab_size,
                        max_bytes: DEFAULT_TRAIN_BYTES,
                    },
                },
                seq_len,
                val_fraction,
                shard_tokens,
                progress: true,
                source: Some(format!("covenant data prepare --input {}", input.display())),
            };
            let m = covenant_data::prepare(&input, &out, &opts)
                .with_context(|| format!("preparing {} into {}", input.display(), out.display()))?;
            print_summary(&out, &m);
            Ok(())
        }
        DataCommand::TrainTokenizer {
            input,
            out,
            vocab_size,
            max_bytes,
        } => {
            let t = covenant_data::train_tokenizer(&input, vocab_size, max_bytes, true)?;
            t.save(&out)?;
            println!(
                "{}: vocab {} blake3 {}",
                out.display(),
                t.vocab_size(),
                t.hash_hex()
            );
            Ok(())
        }
        DataCommand::EvalTasks { out } => super::eval::write_tasks(&out),
        DataCommand::Bundled { out, seq_len } => {
            let dir = covenant_data::prepare_bundled(&out, seq_len)?;
            let ds = Dataset::open(&dir)?;
            print_summary(&dir, ds.manifest());
            Ok(())
        }
        DataCommand::Inspect { data, verify, show } => {
            let ds = Dataset::open_with(
                &data,
                &OpenOptions {
                    verify,
                    ..Default::default()
                },
            )?;
            print_summary(&data, ds.manifest());
            println!(
                "samples: train {} val {}",
                ds.num_samples(Split::Train),
                ds.num_samples(Split::Val)
            );
            if verify {
                println!(
                    "verified: every shard hash matches and every id < {}",
                    ds.vocab_size()
                );
            }
            if show > 0 && ds.num_samples(Split::Train) > 0 {
                let tok = covenant_data::Tokenizer::load(&data.join("tokenizer.json"))?;
                let s = ds.sample(Split::Train, 0)?;
                println!("{}", tok.decode(&s[..show.min(s.len())])?);
            }
            Ok(())
        }
        DataCommand::Pool {
            run_seed,
            uid,
            window,
            pool_size,
            num_samples,
            data,
        } => {
            let n = match (num_samples, data) {
                (Some(n), _) => n,
                (None, Some(d)) => Dataset::open(&d)?.num_samples(Split::Train),
                (None, None) => anyhow::bail!("give --num-samples or --data"),
            };
            let ids = covenant_data::pool(run_seed, uid, window, pool_size, n);
            println!(
                "{}",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            Ok(())
        }
    }
}

fn print_summary(dir: &std::path::Path, m: &covenant_data::Manifest) {
    println!(
        "{}: {} tokens (train {} in {} docs / {} shards, val {} in {} docs / {} shards), seq_len {}, vocab {}, tokenizer {}",
        dir.display(),
        m.total_tokens,
        m.train.tokens,
        m.train.documents,
        m.train.shards.len(),
        m.val.tokens,
        m.val.documents,
        m.val.shards.len(),
        m.seq_len,
        m.tokenizer.vocab_size,
        &m.tokenizer.blake3[..16],
    );
}
