//! `covenant bench`: figures, not tests.

use std::time::Instant;

use anyhow::{ensure, Result};
use covenant_model::{DeviceChoice, ModelConfig, OptimConfig, Trainer};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Training throughput: full steps (forward, loss, backward, grad-norm clip, AdamW) on random
    /// tokens; prints tokens/s. Compare with `bench/torch_reference.py` (scripts/bench-train.sh).
    Train(TrainArgs),
    /// A validator's evaluation throughput: screens and full evaluations (the production action
    /// code) of synthetic uploads on a real model and the bundled corpus; prints evaluations/s
    /// and the peak resident memory (docs/SCALING.md).
    Eval(EvalArgs),
    /// Where a window's time goes, phase by phase, on the production action code: inner steps,
    /// compression, upload and gather (at --link-mbit), decoding, aggregation and outer step, a
    /// validator's evaluations (docs/PERFORMANCE.md).
    Window(WindowArgs),
}

#[derive(clap::Args, Debug)]
pub struct WindowArgs {
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Uploads gathered, decoded, aggregated and evaluated per window (G).
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Windows measured (averaged).
    #[arg(long, default_value_t = 2)]
    pub windows: u64,
    /// Inner steps per window (H; the demo's 30).
    #[arg(long, default_value_t = 30)]
    pub inner_steps: u32,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The node's link, Mbit/s each way: the upload and the gather take bytes ÷ this.
    #[arg(long, default_value_t = 100.0)]
    pub link_mbit: f64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Uploads screened and evaluated per window.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Windows measured.
    #[arg(long, default_value_t = 2)]
    pub windows: u64,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[arg(long, default_value = "small")]
    pub preset: String,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Sequence length (default: the preset's max_seq_len).
    #[arg(long)]
    pub seq: Option<usize>,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: BenchCommand) -> Result<()> {
    match c {
        BenchCommand::Train(a) => train(a),
        BenchCommand::Eval(a) => eval(a),
        BenchCommand::Window(a) => window(a),
    }
}

fn bundled_for(preset: &str) -> Result<std::sync::Arc<covenant_data::Dataset>> {
    let seq = ModelConfig::preset(preset)?.max_seq_len;
    eprintln!("preparing the bundled corpus at {seq} tokens a sequence");
    let dir = crate::cmd::demo::bundled_data_for(seq)?;
    Ok(std::sync::Arc::new(covenant_data::Dataset::open(&dir)?))
}

/// `--peers` and `--windows` within their ranges.
fn check_counts(peers: usize, max_peers: usize, windows: u64) -> Result<()> {
    ensure!(
        (1..=max_peers).contains(&peers),
        "--peers must be in 1..={max_peers}, got {peers}"
    );
    ensure!(
        (1..=100).contains(&windows),
        "--windows must be in 1..=100, got {windows}"
    );
    Ok(())
}

fn window(a: WindowArgs) -> Result<()> {
    check_counts(a.peers, 256, a.windows)?;
    ensure!(
        a.link_mbit.is_finite() && a.link_mbit > 0.0,
        "--link-mbit must be a positive number, got {}",
        a.link_mbit
    );
    covenant_model::set_num_threads(a.threads);
    let data = bundled_for(&a.preset)?;
    let cfg = covenant_node::bench::PhaseBench {
        preset: a.preset.clone(),
        peers: a.peers,
        windows: a.windows,
        inner_steps: Some(a.inner_steps),
    };
    ensure!(
        (1..=10_000).contains(&a.inner_steps),
        "--inner-steps must be in 1..=10000, got {}",
        a.inner_steps
    );
    eprintln!(
        "one window of {} with {} uploads gathered, {} times",
        a.preset, a.peers, a.windows
    );
    let r = covenant_node::bench::window_phases(&cfg, data)?;
    let link = |bytes: f64| bytes * 8.0 / (a.link_mbit * 1e6);
    let upload = link(r.upload_bytes as f64);
    let gather = link((r.upload_bytes * r.peers as u64) as f64);
    let phases = [
        ("inner steps", r.inner),
        ("compression", r.compress),
        ("upload", upload),
        ("gather", gather),
        ("decode", r.decode),
        ("aggregate and outer step", r.outer_step),
        ("evaluation (validator)", r.evaluate),
    ];
    if a.json {
        let mut m = serde_json::to_value(&r)?;
        m["threads"] = a.threads.into();
        m["link_mbit"] = a.link_mbit.into();
        m["upload"] = upload.into();
        m["gather"] = gather.into();
        println!("{m}");
        return Ok(());
    }
    println!(
        "{}: {} parameters, H = {}, G = {}, {} thread(s), upload {} at {} Mbit/s",
        r.preset,
        r.parameters,
        r.inner_steps,
        r.peers,
        a.threads,
        crate::report::human(r.upload_bytes as f64) + "B",
        a.link_mbit
    );
    for (name, secs) in phases {
        println!("  {name:<26} {secs:>9.3} s");
    }
    let hidden = upload + gather + r.decode + r.outer_step;
    println!(
        "  a miner's window: {:.3} s of inner steps and compression; {:.3} s of upload, gather, \
         decode and outer step that overlap hides behind the next window's inner steps",
        r.inner + r.compress,
        hidden
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    check_counts(a.peers, 1024, a.windows)?;
    covenant_model::set_num_threads(a.threads);
    let data = bundled_for(&a.preset)?;
    let cfg = covenant_node::bench::EvalBench {
        preset: a.preset.clone(),
        peers: a.peers,
        windows: a.windows,
    };
    eprintln!(
        "screening and evaluating {} uploads a window for {} windows on {}",
        a.peers, a.windows, a.preset
    );
    let r = covenant_node::bench::evaluations(&cfg, data)?;
    let rss_mib = r.peak_rss.map(|b| b as f64 / (1024.0 * 1024.0));
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "preset": r.preset,
                "parameters": r.parameters,
                "peers": r.peers,
                "threads": a.threads,
                "eval_sequences": r.eval_sequences,
                "screen_sequences": r.screen_sequences,
                "evaluations": r.evaluations,
                "evaluations_per_sec": r.evaluations_per_sec(),
                "screens_per_sec": r.screens_per_sec(),
                "peak_rss_mib": rss_mib,
            })
        );
    } else {
        println!(
            "{}: {} parameters, {} peers, {} threads: {:.2} evaluations/s ({} sequences a loss), {:.1} screens/s ({} sequences), peak RSS {}",
            r.preset,
            r.parameters,
            r.peers,
            a.threads,
            r.evaluations_per_sec(),
            r.eval_sequences,
            r.screens_per_sec(),
            r.screen_sequences,
            rss_mib.map_or("unknown".into(), |m| format!("{m:.0} MiB"))
        );
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
    ensure!(a.steps > 0, "--steps must be > 0");
    covenant_model::set_num_threads(a.threads);
    let cfg = ModelConfig::preset(&a.preset)?;
    let seq = a.seq.unwrap_or(cfg.max_seq_len);
    let max_seq = cfg.max_seq_len.max(seq);
    let cfg = cfg.with_max_seq_len(max_seq);
    let device = match a.device.as_str() {
        "auto" => DeviceChoice::Auto,
        "cpu" => DeviceChoice::Cpu,
        "cuda" => DeviceChoice::Cuda(0),
        s => match s.strip_prefix("cuda:").map(str::parse) {
            Some(Ok(i)) => DeviceChoice::Cuda(i),
            _ => anyhow::bail!("unknown device `{s}` (auto, cpu, cuda, cuda:N)"),
        },
    };
    let opt = OptimConfig {
        lr: 3e-4,
        weight_decay: 0.1,
        warmup_steps: 1,
        total_steps: 1_000_000,
        ..Default::default()
    };
    let mut t = Trainer::new(cfg.clone(), opt, a.seed, device)?;
    // Random tokens (xorshift): throughput does not depend on the data.
    let mut s = a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut batch = || -> Vec<u32> {
        (0..a.batch * seq)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % cfg.vocab_size as u64) as u32
            })
            .collect()
    };
    for _ in 0..a.warmup {
        t.step(&batch(), a.batch)?;
    }
    let mut times = Vec::with_capacity(a.steps);
    let mut loss = 0.0;
    let cpu0 = cpu_seconds();
    for _ in 0..a.steps {
        let b = batch();
        let t0 = Instant::now();
        loss = t.step(&b, a.batch)?.loss;
        times.push(t0.elapsed().as_secs_f64());
    }
    let cpu_per_step = match (cpu0, cpu_seconds()) {
        (Some(a0), Some(a1)) => Some((a1 - a0) / a.steps as f64),
        _ => None,
    };
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let tps = (a.batch * seq) as f64 / mean;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "covenant", "preset": a.preset, "params": cfg.num_params(), "batch": a.batch,
                "seq": seq, "threads": a.threads, "steps": a.steps, "step_s": mean, "tokens_per_s": tps,
                "device": t.device_description(), "last_loss": loss, "cpu_s_per_step": cpu_per_step,
                "peak_rss_mib": peak_rss_mib()})
        );
    } else {
        println!(
            "covenant bench train: preset {} ({} params), batch {} x seq {}, {}, {} timed steps after {} warm-up",
            a.preset,
            cfg.num_params(),
            a.batch,
            seq,
            t.device_description(),
            a.steps,
            a.warmup
        );
        println!("mean step {:.3} s, last loss {:.3}", mean, loss);
        if let Some(c) = cpu_per_step {
            println!("process CPU time per step {c:.3} s (all threads)");
        }
        println!("tokens/s {:.0}", tps);
    }
    Ok(())
}

/// User + system CPU time of this process from /proc/self/stat (Linux; clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after the closing ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of this process in MiB (VmHWM from /proc/self/status).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
