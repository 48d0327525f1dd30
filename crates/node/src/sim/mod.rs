//! The whole network in one process, on a virtual clock: N miners and V validators running the
//! real drivers, the real codec and wire format and the real action code ([`crate::exec`]),
//! with an in-memory chain (the ledger's own rules, in SQLite in memory) and in-memory stores,
//! and either the real `tiny` model or a deterministic stand-in ([`standin`]).
//!
//! A seed decides everything: the nodes' keys, latencies, and with `faults` the crashes,
//! outages, slow stores, late listings, clock skews, late transactions and an adversary
//! ([`faults`]). The invariants ([`invariants`]) are checked after every window; a failure
//! names its seed, and `covenant simulate --network --seed S` replays it exactly. In the spirit
//! of FoundationDB's simulator and TigerBeetle's VOPR.

pub mod faults;
pub mod invariants;
pub mod mem;
pub mod standin;
mod world;

use std::sync::Arc;

use covenant_core::{Millis, Window};
use covenant_data::Dataset;
use serde::Serialize;

use crate::adversary::Behaviour;
pub use invariants::Violation;
pub use world::World;

/// Which model the nodes train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SimModel {
    /// The real `tiny` LLaMA on the bundled corpus (tch).
    Tiny,
    /// The stand-in: flat buffers, no tch; loss does not matter.
    Standin,
}

/// Something a test makes happen to a node (by node name, e.g. `miner-3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// The node starts only at this window (a joiner), half-way into it.
    StartAt { node: String, window: Window },
    /// The node is killed half-way into this window and does not come back.
    KillAt { node: String, window: Window },
    /// The node is killed half-way into this window and restarted at once.
    RestartAt { node: String, window: Window },
}

/// A deliberate defect, to show that a broken invariant is caught and named with its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// After node `node` applies window `window`, one of its parameters is changed.
    Diverge { node: usize, window: Window },
}

/// A simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub miners: usize,
    pub validators: usize,
    /// Windows trained (the run stops after window `windows − 1`).
    pub windows: u64,
    pub seed: u64,
    pub model: SimModel,
    /// Seeded faults (crashes, outages, slow stores, late listings, skew, late transactions,
    /// one adversary).
    pub faults: bool,
    /// Miners after the honest ones, by behaviour.
    pub adversaries: Vec<Behaviour>,
    pub window_secs: u64,
    pub grace_secs: u64,
    pub inner_steps: u32,
    /// Validators zero peers whose updates do not favour their own data (`own_data_check`,
    /// on as in local runs).
    pub own_data_check: bool,
    /// Sequences per loss measurement (`eval_sequences`); `None`: the local network's.
    pub eval_sequences: Option<usize>,
    /// The prepared bundled corpus (the `tiny` model needs it).
    pub data: Option<Arc<Dataset>>,
    /// Virtual time one inner step takes.
    pub step_ms: u64,
    /// Nodes on slower machines: `(node, factor)` makes each inner step of that node (by name,
    /// e.g. `miner-3`) take `factor × step_ms`.
    pub slow_steps: Vec<(String, u64)>,
    pub sabotage: Option<Sabotage>,
    /// Windows after which no adversary may hold weight.
    pub warmup_windows: u64,
    /// Joins, kills and restarts at given windows.
    pub script: Vec<Scripted>,
    /// Miners train the next window while the last one is gathered (the run spec's `overlap`).
    pub overlap: bool,
}

impl SimConfig {
    /// A run of `miners` honest miners and `validators` validators on the stand-in, with the
    /// local network's timing (20-s windows, 5-s grace, 8 inner steps).
    pub fn new(miners: usize, validators: usize, windows: u64, seed: u64) -> Self {
        SimConfig {
            miners,
            validators,
            windows,
            seed,
            model: SimModel::Standin,
            faults: false,
            adversaries: Vec::new(),
            window_secs: 20,
            grace_secs: 5,
            inner_steps: 8,
            own_data_check: true,
            eval_sequences: None,
            data: None,
            step_ms: 600,
            slow_steps: Vec::new(),
            sabotage: None,
            warmup_windows: 10,
            script: Vec::new(),
            overlap: false,
        }
    }
}

/// What a run showed.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    pub seed: u64,
    pub windows: u64,
    /// Windows every live node applied.
    pub windows_applied: u64,
    pub replicas_agree: bool,
    pub first_val_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    /// Crashes and restarts that happened.
    pub crashes: usize,
    pub violations: Vec<Violation>,
    /// Virtual time the run covered.
    pub virtual_ms: Millis,
    pub adversaries: Vec<String>,
}

impl SimSummary {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The summary line `covenant simulate --network` ends with.
    pub fn line(&self) -> String {
        let loss = match self.final_val_loss {
            Some(l) => format!("{l:.4}"),
            None => "—".into(),
        };
        format!(
            "seed {} · windows {} · replicas agree {} · final validation loss {} · invariants {}",
            self.seed,
            self.windows,
            if self.replicas_agree { "yes" } else { "no" },
            loss,
            if self.ok() {
                "hold".to_string()
            } else {
                format!("BROKEN ({} violations)", self.violations.len())
            }
        )
    }
}

/// Why a simulation could not run (not a broken invariant: those are in the summary).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation: {0}")]
    Config(String),
    #[error("setting up node {node}: {source}")]
    Setup {
        node: String,
        #[source]
        source: crate::setup::SetupError,
    },
    #[error(transparent)]
    Chain(#[from] covenant_net::ChainError),
    #[error(transparent)]
    Model(#[from] covenant_model::ModelError),
}

/// Runs a simulation to its end and reports; the world is returned for inspection.
pub fn run(cfg: SimConfig) -> Result<(SimSummary, World), SimError> {
    let mut w = World::new(cfg)?;
    w.run();
    Ok((w.summary(), w))
}

/// Per-adversary outcome of a simulated run (as `covenant scenario` reports a real one), from
/// validator-1's events; `baseline_val`: the final validation loss of the honest miners alone.
pub fn scenario_report(
    world: &World,
    baseline_val: Option<f64>,
) -> crate::analysis::ScenarioReport {
    let miners: Vec<crate::analysis::Participant> = world
        .nodes
        .iter()
        .filter(|n| n.role == crate::setup::Role::Miner)
        .map(|n| crate::analysis::Participant {
            name: n.name.clone(),
            uid: Some(n.uid),
            behaviour: n.behaviour,
        })
        .collect();
    crate::analysis::analyse(&world.events(0), &miners, baseline_val)
}
