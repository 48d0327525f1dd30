//! `covenant train`: the single-process baseline trainer.
//!
//! Trains a preset with AdamW on a prepared corpus, showing loss, tokens/s and ETA; evaluates
//! validation loss periodically; writes `metrics.csv`, `loss.png` and checkpoints under `--out`;
//! `--resume` continues from the newest checkpoint and reproduces an uninterrupted run exactly
//! (the batch for step s is a pure function of the seed and s).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use covenant_data::{Dataset, Split};
use covenant_model::{DeviceChoice, ModelConfig, OptimConfig, Trainer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::report::{self, LinePlot, Series};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Model preset (see `covenant model list`).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Prepared data directory (from `covenant data prepare`). Default: the bundled corpus,
    /// prepared on first use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory for metrics.csv, loss.png, summary.json and checkpoints/.
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Optimizer steps in total (the cosine schedule spans them).
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Linear warm-up steps (default: 5% of --steps).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// AdamW weight decay (not applied to norms and embeddings).
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Evaluate validation loss every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    pub eval_every: u64,
    /// Validation batches per evaluation (fixed, evenly spread over the validation split).
    #[arg(long, default_value_t = 8)]
    pub eval_batches: usize,
    /// Save a checkpoint every N steps (and at the end); the two newest are kept.
    #[arg(long, default_value_t = 100)]
    pub ckpt_every: u64,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps of this invocation, saving a checkpoint (continue later with
    /// --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Seed of the initialisation and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads for libtorch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// auto (CUDA if present), cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Optimizer across replicas: single (one model, the default), or a comma-separated list of
    /// ddp, diloco, sparseloco to run each with --replicas and compare them (writes
    /// compare.csv / compare.png / compare.md under --out).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "single")]
    pub algo: Vec<super::replicas::Algo>,
    /// Replicas trained in this process on disjoint data (ddp, diloco, sparseloco).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Inner steps H between outer steps (diloco, sparseloco).
    #[arg(long, default_value_t = 30)]
    pub inner_steps: u64,
    /// Outer learning rate (default: 0.7 for diloco, 1.0 for sparseloco).
    #[arg(long)]
    pub outer_lr: Option<f32>,
    /// DiLoCo's outer Nesterov momentum.
    #[arg(long, default_value_t = 0.9)]
    pub outer_momentum: f32,
    /// SparseLoCo: values kept per chunk of 4096 (64 = 1.56 % density, the reference's).
    #[arg(long, default_value_t = 64)]
    pub topk: usize,
    /// SparseLoCo: error-feedback decay β in e ← β·e + Δ (the reference's 0.95).
    #[arg(long, default_value_t = 0.95)]
    pub ef_decay: f32,
    /// Compare the results already in <out>/<algo>/result.json instead of training (e.g. runs
    /// made separately, one algorithm per process).
    #[arg(long)]
    pub reuse_results: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub preset: String,
    pub params: u64,
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub first_train_loss: f32,
    pub final_train_loss: f32,
    pub first_val_loss: f32,
    pub final_val_loss: f32,
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    use super::replicas::Algo;
    if args.algo.iter().any(|a| *a != Algo::Single) {
        ensure!(
            !args.algo.contains(&Algo::Single),
            "--algo single cannot be combined with replica algorithms"
        );
        ensure!(
            !args.resume && args.stop_after.is_none(),
            "--resume/--stop-after apply to --algo single only"
        );
        super::replicas::run_all(&args, &args.algo)?;
        return Ok(());
    }
    let s = train(&args)?;
    println!(
        "trained {} ({:.1}M params) for {} steps / {} tokens in {:.0}s ({:.0} tokens/s)",
        s.preset,
        s.params as f64 / 1e6,
        s.steps,
        report::human(s.tokens as f64),
        s.seconds,
        s.tokens_per_second
    );
    println!(
        "train loss {:.3} -> {:.3}, validation loss {:.3} -> {:.3}",
        s.first_train_loss, s.final_train_loss, s.first_val_loss, s.final_val_loss
    );
    println!(
        "metrics: {}  plot: {}  checkpoint: {}",
        s.out.join("metrics.csv").display(),
        s.out.join("loss.png").display(),
        s.out.join("checkpoints").display()
    );
    Ok(())
}

pub fn parse_device(s: &str) -> Result<DeviceChoice> {
    Ok(match s {
        "auto" => DeviceChoice::Auto,
        "cpu" => DeviceChoice::Cpu,
        "cuda" => DeviceChoice::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => DeviceChoice::Cuda(i),
            _ => bail!("--device must be auto, cpu, cuda or cuda:N, got {other:?}"),
        },
    })
}

/// One row of metrics.csv.
#[derive(Debug, Clone)]
struct Row {
    step: u64,
    tokens: u64,
    train_loss: f32,
    val_loss: Option<f32>,
    lr: f64,
    grad_norm: f32,
    elapsed: f64,
}

const CSV_HEADER: [&str; 7] = [
    "step",
    "tokens",
    "train_loss",
    "val_loss",
    "lr",
    "grad_norm",
    "elapsed_s",
];

impl Row {
    fn to_csv(&self) -> Vec<String> {
        vec![
            self.step.to_string(),
            self.tokens.to_string(),
            format!("{:.5}", self.train_loss),
            self.val_loss.map(|v| format!("{v:.5}")).unwrap_or_default(),
            format!("{:.6e}", self.lr),
            format!("{:.4}", self.grad_norm),
            format!("{:.2}", self.elapsed),
        ]
    }

    fn from_csv(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != CSV_HEADER.len() {
            return None;
        }
        Some(Row {
            step: f[0].parse().ok()?,
            tokens: f[1].parse().ok()?,
            train_loss: f[2].parse().ok()?,
            val_loss: if f[3].is_empty() {
                None
            } else {
                Some(f[3].parse().ok()?)
            },
            lr: f[4].parse().ok()?,
            grad_norm: f[5].parse().ok()?,
            elapsed: f[6].parse().ok()?,
        })
    }
}

/// Runs the trainer described by `args`; used by `covenant train` and `covenant demo`.
pub fn train(args: &Args) -> Result<Summary> {
    ensure!(args.steps > 0, "--steps must be at least 1");
    ensure!(args.batch > 0, "--batch must be at least 1");
    ensure!(
        args.eval_every > 0 && args.ckpt_every > 0,
        "--eval-every and --ckpt-every must be at least 1"
    );
    ensure!(args.threads > 0, "--threads must be at least 1");
    ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be a positive number"
    );
    let device = parse_device(&args.device)?;
    covenant_model::set_num_threads(args.threads);

    let (ds, data_dir) = open_data(args)?;
    let seq = ds.seq_len() as usize;
    let vocab = ds.vocab_size() as usize;
    let n_train = ds.num_samples(Split::Train);
    let n_val = ds.num_samples(Split::Val);
    ensure!(
        n_train >= args.batch as u64,
        "{} holds {n_train} training sequences of {seq} tokens, fewer than one batch of {}",
        data_dir.display(),
        args.batch
    );
    ensure!(
        n_val > 0,
        "{} has no validation sequences",
        data_dir.display()
    );

    let ckpt_root = args.out.join("checkpoints");
    std::fs::create_dir_all(&ckpt_root)
        .with_context(|| format!("creating {}", ckpt_root.display()))?;

    let (mut trainer, mut rows) = if args.resume {
        let latest = latest_checkpoint(&ckpt_root)?.with_context(|| {
            format!(
                "--resume: no checkpoint in {} (run without --resume first)",
                ckpt_root.display()
            )
        })?;
        let t = Trainer::load(&latest, device)
            .with_context(|| format!("loading checkpoint {}", latest.display()))?;
        let done = t.steps_done();
        let rows: Vec<Row> = read_rows(&args.out.join("metrics.csv"))?
            .into_iter()
            .filter(|r| r.step <= done)
            .collect();
        eprintln!("resuming from {} at step {done}", latest.display());
        if t.optim_config().total_steps != args.steps {
            eprintln!(
                "note: the checkpoint's schedule spans {} steps; --steps {} is ignored when resuming",
                t.optim_config().total_steps,
                args.steps
            );
        }
        (t, rows)
    } else {
        let (cfg, opt) = configs(args, &ds)?;
        (Trainer::new(cfg, opt, args.seed, device)?, Vec::new())
    };
    ensure!(
        trainer.model_config().vocab_size == vocab,
        "model vocabulary {} differs from the data's tokenizer vocabulary {vocab}",
        trainer.model_config().vocab_size
    );
    let total_steps = trainer.optim_config().total_steps;
    let start = trainer.steps_done();
    ensure!(
        start <= total_steps,
        "checkpoint is at step {start}, past the run's {total_steps} steps"
    );

    let params = trainer.model_config().num_params();
    let tokens_per_step = args.batch as u64 * seq as u64;
    let val_ids = spread_ids(n_val, args.eval_batches * args.batch);
    eprintln!(
        "training {} ({:.2}M params) on {} | {} train / {} val sequences of {seq} tokens | batch {} | {} steps | device {}",
        args.preset,
        params as f64 / 1e6,
        data_dir.display(),
        n_train,
        n_val,
        args.batch,
        total_steps,
        trainer.device_description()
    );

    let pb = ProgressBar::new(total_steps);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .expect("static template"),
    );
    pb.set_position(start);
    let mut order = DataOrder::new(args.seed, n_train);
    let prior_elapsed = rows.last().map(|r| r.elapsed).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut last_val = rows.iter().rev().find_map(|r| r.val_loss);
    let mut ema: Option<f32> = None;
    let mut tokens_buf = Vec::with_capacity(tokens_per_step as usize);

    if start == 0 {
        // Validation loss of the initial model, so the curve starts where training starts.
        let v = eval(&mut trainer, &ds, &val_ids, args.batch)?;
        last_val = Some(v);
        rows.push(Row {
            step: 0,
            tokens: 0,
            train_loss: f32::NAN,
            val_loss: Some(v),
            lr: 0.0,
            grad_norm: f32::NAN,
            elapsed: 0.0,
        });
    }
    let end = match args.stop_after {
        Some(n) => (start + n).min(total_steps),
        None => total_steps,
    };
    for step in start..end {
        tokens_buf.clear();
        for i in 0..args.batch as u64 {
            let id = order.id(step * args.batch as u64 + i);
            let s = ds.sample(Split::Train, id)?;
            tokens_buf.extend_from_slice(&s);
        }
        let stats = trainer.step(&tokens_buf, args.batch)?;
        if !stats.loss.is_finite() {
            bail!(
                "training diverged at step {} (loss {}); the newest good checkpoint is in {}; try a lower --lr",
                step + 1,
                stats.loss,
                ckpt_root.display()
            );
        }
        let done = step + 1;
        let is_last = done == total_steps;
        let stopping = done == end;
        let val = if done % args.eval_every == 0 || is_last {
            let v = eval(&mut trainer, &ds, &val_ids, args.batch)?;
            last_val = Some(v);
            Some(v)
        } else {
            None
        };
        let elapsed = prior_elapsed + t0.elapsed().as_secs_f64();
        rows.push(Row {
            step: done,
            tokens: done * tokens_per_step,
            train_loss: stats.loss,
            val_loss: val,
            lr: stats.lr,
            grad_norm: stats.grad_norm,
            elapsed,
        });
        let e = ema.map_or(stats.loss, |e| 0.9 * e + 0.1 * stats.loss);
        ema = Some(e);
        let tps = (done - start) as f64 * tokens_per_step as f64 / t0.elapsed().as_secs_f64();
        pb.set_message(format!(
            "loss {e:.3}  val {}  {tps:.0} tok/s",
            last_val
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into())
        ));
        pb.set_position(done);
        if let Some(v) = val {
            if pb.is_hidden() {
                eprintln!(
                    "step {done}/{total_steps}  tokens {}  train loss {e:.4}  val loss {v:.4}  {tps:.0} tok/s",
                    report::human((done * tokens_per_step) as f64)
                );
            }
        }
        if done % args.ckpt_every == 0 || is_last || stopping {
            save_checkpoint(&trainer, &ckpt_root, done)?;
            write_reports(&args.out, &rows, &args.preset)?;
        }
    }
    // Every way out of the loop (last step, --stop-after) saved a checkpoint and wrote the reports.
    pb.finish_and_clear();

    if end < total_steps {
        eprintln!("stopped after step {end} of {total_steps}; continue with --resume");
    }
    let seconds = rows.last().map(|r| r.elapsed).unwrap_or(0.0);
    let tokens = rows.last().map(|r| r.tokens).unwrap_or(0);
    let first_val = first_val_loss(&rows, last_val);
    let summary = Summary {
        preset: args.preset.clone(),
        params,
        steps: total_steps,
        tokens,
        seconds,
        tokens_per_second: if seconds > 0.0 {
            tokens as f64 / seconds
        } else {
            0.0
        },
        first_train_loss: rows
            .iter()
            .map(|r| r.train_loss)
            .find(|l| l.is_finite())
            .unwrap_or(f32::NAN),
        final_train_loss: tail_mean(&rows, 10),
        first_val_loss: first_val,
        final_val_loss: last_val.unwrap_or(f32::NAN),
        out: args.out.clone(),
    };
    report::write_atomic(
        &args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// The preset sized to the data's tokenizer, and the inner AdamW from the arguments.
pub fn configs(args: &Args, ds: &Dataset) -> Result<(ModelConfig, OptimConfig)> {
    let cfg = ModelConfig::preset(&args.preset)?.with_vocab(ds.vocab_size() as usize);
    let seq = ds.seq_len() as usize;
    ensure!(
        seq <= cfg.max_seq_len,
        "the data's sequence length {seq} exceeds preset {}'s maximum {}",
        args.preset,
        cfg.max_seq_len
    );
    let opt = OptimConfig {
        lr: args.lr,
        weight_decay: args.weight_decay,
        warmup_steps: args.warmup.unwrap_or(args.steps / 20),
        total_steps: args.steps,
        ..OptimConfig::default()
    };
    Ok((cfg, opt))
}

/// Opens `--data`, or the bundled corpus prepared at the preset's sequence length.
pub fn open_data(args: &Args) -> Result<(Dataset, PathBuf)> {
    let data_dir = match &args.data {
        Some(d) => d.clone(),
        None => crate::cmd::demo::bundled_data_for(ModelConfig::preset(&args.preset)?.max_seq_len)?,
    };
    let ds = Dataset::open(&data_dir)
        .with_context(|| format!("opening prepared data in {}", data_dir.display()))?;
    Ok((ds, data_dir))
}

/// The initial validation loss is stored as a row at step 0.
fn first_val_loss(rows: &[Row], fallback: Option<f32>) -> f32 {
    rows.iter()
        .find_map(|r| r.val_loss)
        .or(fallback)
        .unwrap_or(f32::NAN)
}

fn tail_mean(rows: &[Row], n: usize) -> f32 {
    let tail: Vec<f32> = rows
        .iter()
        .rev()
        .map(|r| r.train_loss)
        .filter(|l| l.is_finite())
        .take(n)
        .collect();
    if tail.is_empty() {
        return f32::NAN;
    }
    tail.iter().sum::<f32>() / tail.len() as f32
}

pub fn eval(trainer: &mut Trainer, ds: &Dataset, ids: &[u64], batch: usize) -> Result<f32> {
    let mut total = 0.0f64;
    let mut n = 0usize;
    let mut buf = Vec::new();
    for chunk in ids.chunks(batch) {
        buf.clear();
        for &id in chunk {
            buf.extend_from_slice(&ds.sample(Split::Val, id)?);
        }
        total += trainer.eval_loss(&buf, chunk.len())? as f64 * chunk.len() as f64;
        n += chunk.len();
    }
    Ok((total / n.max(1) as f64) as f32)
}

/// `want` ids spread evenly over `0..n` (all of them when n ≤ want).
pub fn spread_ids(n: u64, want: usize) -> Vec<u64> {
    let want = want.max(1) as u64;
    if n <= want {
        return (0..n).collect();
    }
    (0..want).map(|j| j * n / want).collect()
}

/// The training order: epoch e visits every training sequence once, in a permutation that is a
/// pure function of (seed, e) (the data crate's documented shuffle).
pub struct DataOrder {
    seed: u64,
    n: u64,
    epoch: u64,
    perm: Vec<u64>,
}

impl DataOrder {
    pub fn new(seed: u64, n: u64) -> Self {
        DataOrder {
            seed,
            n,
            epoch: u64::MAX,
            perm: Vec::new(),
        }
    }

    pub fn id(&mut self, global: u64) -> u64 {
        let epoch = global / self.n;
        if epoch != self.epoch {
            self.perm = covenant_data::sampler::epoch_order(self.seed, epoch, self.n);
            self.epoch = epoch;
        }
        self.perm[(global % self.n) as usize]
    }
}

fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

/// The newest complete checkpoint (named by the `latest` file, written after the checkpoint).
pub fn latest_checkpoint(root: &Path) -> Result<Option<PathBuf>> {
    let latest = root.join("latest");
    match std::fs::read_to_string(&latest) {
        Ok(name) => {
            let name = name.trim();
            ensure!(
                !name.is_empty() && !name.contains('/') && !name.contains(".."),
                "{} names an invalid checkpoint {name:?}",
                latest.display()
            );
            let p = root.join(name);
            ensure!(
                p.is_dir(),
                "{} names {}, which is missing",
                latest.display(),
                p.display()
            );
            Ok(Some(p))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", latest.display())),
    }
}

fn save_checkpoint(trainer: &Trainer, root: &Path, step: u64) -> Result<()> {
    let dir = step_dir(root, step);
    trainer
        .save(&dir)
        .with_context(|| format!("saving checkpoint {}", dir.display()))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    report::write_atomic(&root.join("latest"), name.as_bytes())?;
    // Keep the two newest step checkpoints.
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    steps.sort();
    for old in steps.iter().rev().skip(2) {
        if let Err(e) = std::fs::remove_dir_all(old) {
            eprintln!(
                "warning: could not remove old checkpoint {}: {e}",
                old.display()
            );
        }
    }
    Ok(())
}

fn read_rows(path: &Path) -> Result<Vec<Row>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().skip(1).filter_map(Row::from_csv).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_reports(out: &Path, rows: &[Row], preset: &str) -> Result<()> {
    let csv: Vec<Vec<String>> = rows.iter().map(Row::to_csv).collect();
    report::write_csv(&out.join("metrics.csv"), &CSV_HEADER, &csv)?;
    if rows.is_empty() {
        return Ok(());
    }
    // Train loss smoothed over a window so the plot is readable; validation loss as measured.
    let mut smooth = Vec::with_capacity(rows.len());
    let mut e: Option<f64> = None;
    for r in rows.iter().filter(|r| r.train_loss.is_finite()) {
        let v = e.map_or(r.train_loss as f64, |e| 0.9 * e + 0.1 * r.train_loss as f64);
        e = Some(v);
        smooth.push((r.tokens as f64, v));
    }
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (r.tokens as f64, v as f64)))
        .collect();
    LinePlot {
        title: &format!("covenant train --preset {preset}"),
        x_label: "tokens",
        y_label: "cross-entropy loss (nats)",
        series: vec![
            Series {
                label: "train (EMA 0.9)".into(),
                points: smooth,
            },
            Series {
                label: "validation".into(),
                points: val,
            },
        ],
    }
    .write_png(&out.join("loss.png"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings() {
        assert!(matches!(parse_device("auto").unwrap(), DeviceChoice::Auto));
        assert!(matches!(
            parse_device("cuda:1").unwrap(),
            DeviceChoice::Cuda(1)
        ));
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn spread_ids_cover_and_stay_in_range() {
        assert_eq!(spread_ids(3, 8), vec![0, 1, 2]);
        let ids = spread_ids(100, 4);
        assert_eq!(ids, vec![0, 25, 50, 75]);
    }

    #[test]
    fn csv_rows_round_trip() {
        let r = Row {
            step: 3,
            tokens: 99,
            train_loss: 2.5,
            val_loss: None,
            lr: 1e-3,
            grad_norm: 0.5,
            elapsed: 1.25,
        };
        let line = r.to_csv().join(",");
        let back = Row::from_csv(&line).unwrap();
        assert_eq!((back.step, back.tokens, back.val_loss), (3, 99, None));
        assert!(Row::from_csv("garbage").is_none());
    }
}
