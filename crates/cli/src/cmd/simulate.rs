//! `covenant simulate`: the protocol on a virtual clock.
//!
//! * `--network`: the whole network in one process (crate `covenant-node`'s simulator): real
//!   miner and validator drivers, codec and wire format, an in-memory chain and stores, the
//!   `tiny` model or a stand-in, seeded faults and adversaries, invariants checked every window.
//!   A failure names its seed; the same command with `--seed S` replays it.
//! * without it: the rules at scale with synthetic peers (honest, free-rider, copycat, late,
//!   offline): who is aggregated and paid, per behaviour.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use covenant_core::sim::{self, Mix, SimConfig};
use covenant_core::RunParams;
use covenant_node::sim::{self as netsim, SimModel};
use covenant_node::Behaviour;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Simulate the whole network (real nodes, codec, stores and chain in memory) instead of
    /// synthetic peers.
    #[arg(long)]
    pub network: bool,
    /// With --network: honest miners.
    #[arg(long, default_value_t = 4)]
    pub miners: usize,
    /// With --network: seeded faults (crashes and restarts, store outages and slow stores,
    /// late listings, clock skew, late transactions, one adversary).
    #[arg(long)]
    pub faults: bool,
    /// With --network: adversarial miners, comma-separated behaviours (noise, scaled,
    /// sign-flip, copycat, stale, free-rider, echo, wrong-data, late, early, malformed,
    /// truncated, oversized, bad-signature, wrong-shape, nan, bad-index, silent).
    #[arg(long, value_delimiter = ',')]
    pub adversaries: Vec<Behaviour>,
    /// With --network: `tiny` (the real model, tch) or `standin` (flat buffers, no tch).
    #[arg(long, default_value = "standin")]
    pub model: String,
    /// With --network: inner steps per window.
    #[arg(long, default_value_t = 8)]
    pub inner_steps: u32,
    /// With --network: virtual time one inner step takes (600 ms: 8 steps fill a quarter of
    /// a 20-s window; the demo's `tiny` steps take about 200 ms on 2 cores).
    #[arg(long, default_value_t = 600)]
    pub step_ms: u64,
    /// With --network: miners train the next window while the last one is gathered (the run
    /// spec's `overlap`, docs/NODES.md).
    #[arg(long)]
    pub overlap: bool,
    /// With --network: switch off the validators' own-data check (on in local runs, as in
    /// `covenant demo`).
    #[arg(long)]
    pub no_own_data_check: bool,
    /// With --network: sequences per loss measurement (`eval_sequences`; local runs use 32).
    #[arg(long, value_name = "N")]
    pub eval_sequences: Option<usize>,
    /// With --network: write every node's event log (JSON lines, as a real node writes
    /// `events.jsonl`) under DIR/<node>/events.jsonl.
    #[arg(long, value_name = "DIR")]
    pub events: Option<std::path::PathBuf>,
    /// With --network: also run the honest miners alone and compare the validation loss (and
    /// report per adversary, as `covenant scenario` does).
    #[arg(long)]
    pub baseline: bool,
    /// Synthetic peers (miners).
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,
    /// Windows to simulate.
    #[arg(long, default_value_t = 100)]
    pub windows: u64,
    /// Seed of everything random (behaviours, qualities, measurements, rotations).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validators (equal stake; the chain's Yuma consensus over their weights). Default: 1, or
    /// 2 with --network.
    #[arg(long)]
    pub validators: Option<usize>,
    /// Peers each validator evaluates per window.
    #[arg(long, default_value_t = 20)]
    pub uids_per_window: usize,
    /// Aggregation set size G (the top G by consensus weight).
    #[arg(long, default_value_t = 20)]
    pub aggregation_size: usize,
    /// Full evaluations per validator per window beyond --uids-per-window (a real validator
    /// goes on while its window's evaluation time lasts).
    #[arg(long, default_value_t = 0)]
    pub extra_evaluations: usize,
    /// Register one more honest peer, better than all others, at this window, and report how
    /// many windows it took to become a primary.
    #[arg(long, value_name = "WINDOW")]
    pub newcomer_at: Option<u64>,
    /// Fraction of free-riders (upload zero updates).
    #[arg(long, default_value_t = 0.1)]
    pub free_riders: f64,
    /// Fraction of noise miners (upload random updates).
    #[arg(long, default_value_t = 0.1)]
    pub noise: f64,
    /// Fraction of copycats (copy the best peer's upload late in the grace period).
    #[arg(long, default_value_t = 0.1)]
    pub copycats: f64,
    /// Fraction of honest trainers that mostly upload after the grace period.
    #[arg(long, default_value_t = 0.1)]
    pub late: f64,
    /// Fraction of honest trainers that leave for good at a random window.
    #[arg(long, default_value_t = 0.1)]
    pub offline: f64,
}

pub fn run(a: Args) -> Result<()> {
    if a.network {
        return network(a);
    }
    let bad = a.free_riders + a.copycats + a.late + a.noise + a.offline;
    for (name, v) in [
        ("free-riders", a.free_riders),
        ("copycats", a.copycats),
        ("late", a.late),
        ("noise", a.noise),
        ("offline", a.offline),
    ] {
        ensure!(
            (0.0..=1.0).contains(&v),
            "--{name} must be a fraction in [0, 1], got {v}"
        );
    }
    ensure!(bad <= 1.0, "behaviour fractions add up to {bad} > 1");
    let validators = a.validators.unwrap_or(1);
    ensure!(validators >= 1, "--validators must be at least 1");
    let params = RunParams {
        uids_per_window: a.uids_per_window,
        aggregation_size: a.aggregation_size,
        ..RunParams::reference()
    };
    let cfg = SimConfig {
        peers: a.peers,
        windows: a.windows,
        seed: a.seed,
        validators,
        mix: Mix {
            honest: 1.0 - bad,
            free_rider: a.free_riders,
            copycat: a.copycats,
            late: a.late,
            noise: a.noise,
            offline: a.offline,
        },
        params,
        extra_evaluations: a.extra_evaluations,
        newcomer_at: a.newcomer_at,
        ..SimConfig::default()
    };
    let t = Instant::now();
    let report = sim::run(&cfg)?;
    println!("{report}");
    println!("simulated in {:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn network(a: Args) -> Result<()> {
    let model = match a.model.as_str() {
        "tiny" => SimModel::Tiny,
        "standin" => SimModel::Standin,
        m => bail!("--model must be tiny or standin, not {m:?}"),
    };
    let validators = a.validators.unwrap_or(2);
    ensure!(
        (1..=16).contains(&validators),
        "--validators must be in 1..=16"
    );
    ensure!(
        a.miners + a.adversaries.len() >= 1 && a.miners <= 64,
        "--miners must be in 0..=64 with at least one miner"
    );
    ensure!(
        a.windows >= 2 && a.windows <= 1000,
        "--windows must be in 2..=1000"
    );
    ensure!(
        !a.adversaries.contains(&Behaviour::Honest),
        "`honest` is not an adversarial behaviour"
    );
    let mut cfg = netsim::SimConfig::new(a.miners, validators, a.windows, a.seed);
    cfg.model = model;
    cfg.faults = a.faults;
    cfg.adversaries = a.adversaries.clone();
    cfg.inner_steps = a.inner_steps;
    cfg.step_ms = a.step_ms;
    cfg.own_data_check = !a.no_own_data_check;
    cfg.overlap = a.overlap;
    if let Some(n) = a.eval_sequences {
        ensure!(
            (2..=1024).contains(&n),
            "--eval-sequences must be in 2..=1024, got {n}"
        );
    }
    cfg.eval_sequences = a.eval_sequences;
    ensure!(
        (1..=60_000).contains(&a.step_ms),
        "--step-ms must be in 1..=60000"
    );
    if model == SimModel::Tiny {
        let dir = super::demo::bundled_data_for(
            covenant_model::ModelConfig::preset("tiny")?.max_seq_len,
        )?;
        cfg.data = Some(Arc::new(
            covenant_data::Dataset::open(&dir)
                .with_context(|| format!("opening {}", dir.display()))?,
        ));
        covenant_model::set_num_threads(2);
    }
    let t = Instant::now();
    let (summary, world) = netsim::run(cfg.clone())?;
    let wall = t.elapsed().as_secs_f64();
    if let Some(dir) = &a.events {
        world.write_events(dir)?;
    }
    for v in &summary.violations {
        println!(
            "VIOLATION (seed {}) window {:?}: {}",
            summary.seed, v.window, v.what
        );
    }
    if !summary.adversaries.is_empty() {
        println!("adversaries: {}", summary.adversaries.join(", "));
    }
    if a.baseline {
        let mut base = cfg.clone();
        base.adversaries.clear();
        base.faults = false;
        let (b, _) = netsim::run(base)?;
        let report = netsim::scenario_report(&world, b.final_val_loss);
        println!("{}", covenant_node::analysis::markdown(&report));
    }
    println!(
        "{} windows of {} s simulated in {wall:.1} s ({} crashes); validation loss {} -> {}",
        summary.windows,
        cfg.window_secs,
        summary.crashes,
        summary
            .first_val_loss
            .map_or("—".into(), |l| format!("{l:.4}")),
        summary
            .final_val_loss
            .map_or("—".into(), |l| format!("{l:.4}")),
    );
    println!("{}", summary.line());
    if !summary.ok() {
        bail!(
            "{} invariant(s) broken; replay with: covenant simulate --network --seed {} (same flags)",
            summary.violations.len(),
            summary.seed
        );
    }
    Ok(())
}
