//! `covenant simulate`: the protocol core at scale with synthetic peers and a virtual clock.
//!
//! No model and no network: every peer has a hidden quality and a behaviour (honest,
//! free-rider, copycat, late, offline); the simulator draws the losses a validator would measure
//! and drives the real validator and miner state machines of `covenant-core` through the windows.
//! Prints who was aggregated and who was paid, per behaviour.

use std::time::Instant;

use anyhow::{ensure, Result};
use covenant_core::sim::{self, Mix, SimConfig};
use covenant_core::RunParams;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Synthetic peers (miners).
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,
    /// Windows to simulate.
    #[arg(long, default_value_t = 100)]
    pub windows: u64,
    /// Seed of everything random (behaviours, qualities, measurements, rotations).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validators (equal stake; consensus is the stake-weighted median of their weights).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Peers each validator evaluates per window.
    #[arg(long, default_value_t = 20)]
    pub uids_per_window: usize,
    /// Aggregation set size G (the top G by consensus weight).
    #[arg(long, default_value_t = 20)]
    pub aggregation_size: usize,
    /// All validators seed their evaluation rotation alike, so they mostly evaluate the same
    /// peers (helps the median consensus agree when peers far outnumber evaluations).
    #[arg(long)]
    pub shared_rotation: bool,
    /// Fraction of free-riders (upload noise).
    #[arg(long, default_value_t = 0.1)]
    pub free_riders: f64,
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
    let bad = a.free_riders + a.copycats + a.late + a.offline;
    for (name, v) in [
        ("free-riders", a.free_riders),
        ("copycats", a.copycats),
        ("late", a.late),
        ("offline", a.offline),
    ] {
        ensure!(
            (0.0..=1.0).contains(&v),
            "--{name} must be a fraction in [0, 1], got {v}"
        );
    }
    ensure!(bad <= 1.0, "behaviour fractions add up to {bad} > 1");
    ensure!(a.validators >= 1, "--validators must be at least 1");
    let params = RunParams {
        uids_per_window: a.uids_per_window,
        aggregation_size: a.aggregation_size,
        ..RunParams::reference()
    };
    let cfg = SimConfig {
        peers: a.peers,
        windows: a.windows,
        seed: a.seed,
        validators: a.validators,
        mix: Mix {
            honest: 1.0 - bad,
            free_rider: a.free_riders,
            copycat: a.copycats,
            late: a.late,
            offline: a.offline,
        },
        params,
        shared_rotation: a.shared_rotation,
        ..SimConfig::default()
    };
    let t = Instant::now();
    let report = sim::run(&cfg)?;
    println!("{report}");
    println!("simulated in {:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}
