//! `covenant eval`: a checkpoint's held-out perplexity and bits per byte on the bundled corpus's
//! validation split, and its accuracy on the multiple-choice tasks of `data/eval`, scored as
//! lm-evaluation-harness scores a causal model (docs/EVAL.md). `covenant data eval-tasks`
//! writes those tasks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use covenant_data::eval_tasks::{self, McItem, TASKS};
use covenant_data::{Dataset, Split, Tokenizer};
use covenant_model::{ModelConfig, OptimConfig, Trainer};
use serde_json::{json, Value};

use super::checkpoint::tokenizer;
use super::train::parse_device;

/// lm-eval's `target_delimiter` of the tasks: a choice follows its context on a new line.
const TARGET_DELIMITER: &str = "\n";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (`config.json` + `model.safetensors`).
    #[arg(long, required_unless_present = "untrained")]
    pub checkpoint: Option<PathBuf>,
    /// Evaluate a freshly initialised model of this preset instead (the baseline a trained
    /// model is compared with; seeded by --seed).
    #[arg(long, conflicts_with = "checkpoint")]
    pub untrained: Option<String>,
    /// Seed of the --untrained model's initialisation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Directory of `<task>.jsonl` files. Default: the bundled tasks (data/eval).
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// Validation sequences for perplexity and bits per byte (evenly spread over the split; 0:
    /// skip).
    #[arg(long, default_value_t = 256)]
    pub val_sequences: u64,
    /// Items per task at most (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The tokenizer. Default: the checkpoint's `tokenizer.json` if it has one, else the bundled.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// auto (CUDA if present), cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (tok, mut model, what) = match (&a.checkpoint, &a.untrained) {
        (Some(dir), _) => {
            let (tok, model) =
                super::checkpoint::load(dir, a.tokenizer.as_deref(), &a.device, a.threads)?;
            (tok, model, dir.display().to_string())
        }
        (None, Some(preset)) => {
            super::checkpoint::set_threads(a.threads)?;
            let tok = tokenizer(a.tokenizer.as_deref(), None)?;
            let cfg = ModelConfig::preset(preset)?.with_vocab(tok.vocab_size() as usize);
            let t = Trainer::new(
                cfg,
                OptimConfig::default(),
                a.seed,
                parse_device(&a.device)?,
            )?;
            (tok, t, format!("untrained {preset} (seed {})", a.seed))
        }
        (None, None) => anyhow::bail!("give --checkpoint DIR or --untrained PRESET"),
    };
    let mut out = json!({ "model": what, "device": model.device_description() });
    if a.val_sequences > 0 {
        out["held_out"] = held_out(&mut model, &tok, a.val_sequences)?;
    }
    let dir = a
        .tasks
        .clone()
        .unwrap_or_else(|| covenant_data::bundled::data_dir().join("eval"));
    let mut tasks = serde_json::Map::new();
    for t in &TASKS {
        let path = dir.join(format!("{}.jsonl", t.name));
        let mut items = eval_tasks::read_task(&path)?;
        items.truncate(a.limit.unwrap_or(usize::MAX));
        tasks.insert(
            t.name.into(),
            multiple_choice(&mut model, &tok, t.name, &items)?,
        );
    }
    out["tasks"] = Value::Object(tasks);
    let mut so = std::io::stdout().lock();
    if a.json {
        let _ = writeln!(so, "{out}");
    } else {
        let _ = write!(so, "{}", text(&out));
    }
    Ok(())
}

/// Mean next-token loss, perplexity and bits per byte over `n` validation sequences of the
/// bundled corpus at the model's length. A token's bytes are those of the text it stands for
/// (its byte-level string); the end-of-text token has none.
fn held_out(model: &mut Trainer, tok: &Tokenizer, n: u64) -> Result<Value> {
    let seq = model.model_config().max_seq_len;
    let data = Dataset::open(&super::demo::bundled_data_for(seq)?)?;
    let total = data.num_samples(Split::Val);
    ensure!(
        total > 0,
        "the validation split has no sequences of {seq} tokens"
    );
    let n = n.min(total);
    let pb = crate::progress::items(n, "held-out perplexity");
    let (mut nats, mut tokens, mut bytes) = (0.0f64, 0u64, 0u64);
    for k in 0..n {
        let sample = data.sample(Split::Val, k * total / n)?;
        let losses = model.token_losses(&sample, 1)?;
        nats += losses.iter().map(|&l| f64::from(l)).sum::<f64>();
        tokens += losses.len() as u64;
        bytes += sample[1..]
            .iter()
            .map(|&t| tok.token_bytes(t) as u64)
            .sum::<u64>();
        pb.inc(1);
    }
    pb.finish_and_clear();
    let loss = nats / tokens.max(1) as f64;
    Ok(json!({
        "sequences": n,
        "tokens": tokens,
        "bytes": bytes,
        "loss": loss,
        "perplexity": loss.exp(),
        "bits_per_byte": nats / std::f64::consts::LN_2 / bytes.max(1) as f64,
    }))
}

/// lm-eval's `acc` (the likeliest choice) and `acc_norm` (the likeliest per character of the
/// choice) with their standard errors.
fn multiple_choice(
    model: &mut Trainer,
    tok: &Tokenizer,
    name: &str,
    items: &[McItem],
) -> Result<Value> {
    ensure!(!items.is_empty(), "task {name} has no items");
    let pb = crate::progress::items(items.len() as u64, name);
    let t0 = Instant::now();
    let (mut acc, mut acc_norm) = (0usize, 0usize);
    for it in items {
        let mut lls = Vec::with_capacity(it.choices.len());
        for c in &it.choices {
            let (ctx, cont) = encode_pair(tok, &it.context, &format!("{TARGET_DELIMITER}{c}"))?;
            lls.push(model.loglikelihood(&ctx, &cont)?.0);
        }
        let norm: Vec<f64> = lls
            .iter()
            .zip(&it.choices)
            .map(|(ll, c)| ll / c.chars().count() as f64)
            .collect();
        acc += usize::from(first_max(&lls) == it.answer);
        acc_norm += usize::from(first_max(&norm) == it.answer);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = items.len() as f64;
    let stderr = |k: usize| {
        let p = k as f64 / n;
        (p * (1.0 - p) / (n - 1.0).max(1.0)).sqrt()
    };
    Ok(json!({
        "items": items.len(),
        "acc": acc as f64 / n,
        "acc_stderr": stderr(acc),
        "acc_norm": acc_norm as f64 / n,
        "acc_norm_stderr": stderr(acc_norm),
        "secs": t0.elapsed().as_secs_f64(),
    }))
}

/// lm-eval's split of a (context, continuation) pair into tokens for a causal model: trailing
/// spaces of the context move to the continuation, the whole is encoded, and the continuation
/// is what follows the context's own encoding.
fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>)> {
    let trimmed = context.trim_end();
    let continuation = format!("{}{continuation}", &context[trimmed.len()..]);
    let whole = tok.encode(&format!("{trimmed}{continuation}"))?;
    let ctx = tok.encode(trimmed)?;
    ensure!(
        !ctx.is_empty() && ctx.len() < whole.len(),
        "a context or choice that encodes to no tokens"
    );
    let cont = whole[ctx.len()..].to_vec();
    Ok((ctx, cont))
}

/// The index of the first largest value (numpy's argmax).
fn first_max(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn text(v: &Value) -> String {
    let mut s = format!(
        "{} ({})\n",
        v["model"].as_str().unwrap_or(""),
        v["device"].as_str().unwrap_or("")
    );
    let h = &v["held_out"];
    if h.is_object() {
        s.push_str(&format!(
            "held-out ({} sequences, {} tokens): loss {:.4} nats/token, perplexity {:.2}, {:.4} bits per byte\n",
            h["sequences"], h["tokens"],
            h["loss"].as_f64().unwrap_or(f64::NAN),
            h["perplexity"].as_f64().unwrap_or(f64::NAN),
            h["bits_per_byte"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    s.push_str("| task | items | acc | acc_norm |\n|---|---|---|---|\n");
    for (name, t) in v["tasks"].as_object().into_iter().flatten() {
        let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
        s.push_str(&format!(
            "| {name} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} |\n",
            t["items"],
            f("acc"),
            f("acc_stderr"),
            f("acc_norm"),
            f("acc_norm_stderr"),
        ));
    }
    s
}

/// `covenant data eval-tasks`: the tasks and their lm-eval task files under `out`.
pub fn write_tasks(out: &Path) -> Result<()> {
    let built = eval_tasks::build_tasks(&covenant_data::bundled::corpus_dir())?;
    let lm = out.join("lm_eval");
    std::fs::create_dir_all(&lm).with_context(|| format!("creating {}", lm.display()))?;
    let data_dir = out.display().to_string();
    for (t, items) in &built {
        let path = out.join(format!("{}.jsonl", t.name));
        std::fs::write(&path, eval_tasks::to_jsonl(items))
            .with_context(|| format!("writing {}", path.display()))?;
        let yaml = lm.join(format!("{}.yaml", t.name));
        std::fs::write(&yaml, eval_tasks::lm_eval_yaml(t, &data_dir))
            .with_context(|| format!("writing {}", yaml.display()))?;
        println!(
            "{}: {} items ({})",
            path.display(),
            items.len(),
            t.description
        );
    }
    Ok(())
}
