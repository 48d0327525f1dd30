//! A virtual-clock simulator: the core's rules at scale with synthetic peers (no model).
//!
//! Every peer has a hidden quality and a behaviour; the simulator draws what a validator would
//! measure from them and runs the real Gauntlets of the validators through virtual windows, with
//! the chain's own consensus ([`yuma_consensus`] over the weights as validators submit them) and
//! the real aggregation set. Times are computed from the run parameters, never waited for, so
//! 1,000 peers × 100 windows take a fraction of a second. (The whole network with real nodes,
//! codec and model runs in `covenant-node`'s simulator.)
//!
//! The synthetic world, per window (losses relative to the current global loss `L`):
//! - honest: true improvement `s = 0.01 × quality` on random data (quality ~ U(0.5, 1.5)), and
//!   50% more on its own assigned data; uploads early in the grace period; 20% join late (after
//!   null windows).
//! - free-rider: uploads a zero update (nothing to measure; not rated, never paid).
//! - noise: uploads random values, clipped to the window's median norm: `s = −0.002`, no
//!   extra gain on its own data.
//! - copycat: waits, copies the best-weighted peer's upload (70% of its indices), uploads late in
//!   the grace period: same `s` as its victim, no extra gain on its own data.
//! - late: an honest trainer whose upload lands after the grace period 80% of the time.
//! - offline: honest until it leaves for good at a random window.
//!
//! - newcomer (`SimConfig::newcomer_at`): one honest peer registers at that window with a
//!   quality above everybody else's; the report says how many windows it took to be a primary.
//!
//! Own-data evidence: a z drawn about N(0.75·√n, 1) (n = `eval_sequences`) for an update
//! trained on the peer's own data, N(0, 1) otherwise, as the nodes' per-sequence measurement
//! gives it (`scoring::own_data_z`; `tiny` at 32 sequences: +3…+6).
//!
//! Every full evaluation adds Gaussian noise (σ = 0.0002 + 10% of the true change) as if from
//! `eval_sequences` (8) sequences; a screen on `screen_sequences` (4) sequences, √(8/4) times
//! more. Each validator evaluates `uids_per_window` peers fully, plus `extra_evaluations` more
//! (what time allows a real one).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::consensus::yuma_consensus;
use crate::error::Result;
use crate::gauntlet::{EvalOutcome, Gauntlet, Observations, WindowPlan};
use crate::params::RunParams;
use crate::rng::{derive_seed, SplitMix64};
use crate::scoring::{Fingerprint, LossProbe};
use crate::selection::{aggregation_set, UploadIndices};
use crate::weights::Weights;
use crate::{Millis, Uid, Window};

/// How a synthetic peer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Behaviour {
    Honest,
    FreeRider,
    Copycat,
    Late,
    Noise,
    Offline,
}

impl Behaviour {
    pub const ALL: [Behaviour; 6] = [
        Behaviour::Honest,
        Behaviour::FreeRider,
        Behaviour::Copycat,
        Behaviour::Late,
        Behaviour::Noise,
        Behaviour::Offline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::FreeRider => "free-rider",
            Behaviour::Copycat => "copycat",
            Behaviour::Late => "late",
            Behaviour::Noise => "noise",
            Behaviour::Offline => "offline",
        }
    }

    /// The adversaries: every behaviour but honest work (peers that leave worked honestly
    /// while they were online).
    pub fn adversarial(self) -> bool {
        !matches!(self, Behaviour::Honest | Behaviour::Offline)
    }
}

/// Fractions of each behaviour (normalised; the rest of rounding goes to honest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    pub honest: f64,
    pub free_rider: f64,
    pub copycat: f64,
    pub late: f64,
    #[serde(default)]
    pub noise: f64,
    pub offline: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            honest: 0.5,
            free_rider: 0.1,
            copycat: 0.1,
            late: 0.1,
            noise: 0.1,
            offline: 0.1,
        }
    }
}

impl Mix {
    /// Only honest peers.
    pub fn honest() -> Self {
        Mix {
            honest: 1.0,
            free_rider: 0.0,
            copycat: 0.0,
            late: 0.0,
            noise: 0.0,
            offline: 0.0,
        }
    }
}

/// Simulation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub peers: usize,
    pub windows: u64,
    pub seed: u64,
    /// Validators, equal stake, each with its own evaluation rotation.
    pub validators: usize,
    pub mix: Mix,
    pub params: RunParams,
    /// Yuma consensus threshold (the chain's `kappa`).
    pub kappa: f64,
    /// Full evaluations per validator per window beyond `uids_per_window` (a real validator
    /// goes on while its window's evaluation time lasts).
    #[serde(default)]
    pub extra_evaluations: usize,
    /// One more honest peer, better than all others, registers at this window.
    #[serde(default)]
    pub newcomer_at: Option<Window>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            peers: 1000,
            windows: 100,
            seed: 0,
            validators: 1,
            mix: Mix::default(),
            params: RunParams::reference(),
            kappa: 0.5,
            extra_evaluations: 0,
            newcomer_at: None,
        }
    }
}

/// Per-behaviour results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehaviourRow {
    pub behaviour: Behaviour,
    pub peers: usize,
    /// Evaluations by validator 0, per peer.
    pub evaluations_per_peer: f64,
    /// Share of all aggregation slots (validator 0's aggregated peers, all windows).
    pub aggregated_share: f64,
    /// Share of all consensus weight paid out over all windows.
    pub paid_share: f64,
    /// Share of the consensus weight in the last window.
    pub final_weight_share: f64,
    /// Peers of this behaviour in the last window's top G / reserves.
    pub final_top: usize,
    pub final_reserves: usize,
    /// Times a peer of this behaviour was blamed for copying (validator 0).
    pub blamed_copies: u64,
}

/// The outcome of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub config: SimConfig,
    pub rows: Vec<BehaviourRow>,
    /// Synthetic global loss at the start and end.
    pub loss_start: f64,
    pub loss_end: f64,
    /// Windows in which nothing was aggregated.
    pub empty_windows: u64,
    /// The first window whose aggregation set (on chain) had G primaries, all honest.
    pub full_honest_from: Option<Window>,
    /// Honest primaries in the aggregation set of window 20 (or the last, if earlier).
    pub honest_primaries_at_20: usize,
    /// Share of all aggregation slots taken by adversaries (free-riders, copycats, late, noise).
    pub adversary_slot_share: f64,
    /// Windows from the newcomer's registration until it was in the aggregation set (as a
    /// primary or a reserve; `None`: never, or no newcomer).
    pub newcomer_in_set_after: Option<u64>,
    /// Windows from the newcomer's registration until it was a primary.
    pub newcomer_primary_after: Option<u64>,
}

impl SimReport {
    pub fn row(&self, b: Behaviour) -> Option<&BehaviourRow> {
        self.rows.iter().find(|r| r.behaviour == b)
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "{} peers, {} windows, {} validator(s), seed {}; G = {}, reserves = {}, {} evaluations per validator per window",
            c.peers, c.windows, c.validators, c.seed, c.params.aggregation_size, c.params.reserves, c.params.uids_per_window
        )?;
        writeln!(
            f,
            "{:<11} {:>6} {:>10} {:>11} {:>9} {:>10} {:>6} {:>8} {:>7}",
            "behaviour",
            "peers",
            "evals/peer",
            "aggregated",
            "paid",
            "final wt",
            "top G",
            "reserve",
            "copies"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<11} {:>6} {:>10.2} {:>10.1}% {:>8.1}% {:>9.1}% {:>6} {:>8} {:>7}",
                r.behaviour.name(),
                r.peers,
                r.evaluations_per_peer,
                100.0 * r.aggregated_share,
                100.0 * r.paid_share,
                100.0 * r.final_weight_share,
                r.final_top,
                r.final_reserves,
                r.blamed_copies
            )?;
        }
        writeln!(
            f,
            "synthetic loss {:.3} -> {:.3}; windows with nothing aggregated: {}",
            self.loss_start, self.loss_end, self.empty_windows
        )?;
        let from = self
            .full_honest_from
            .map_or("never".to_string(), |w| format!("window {w}"));
        write!(
            f,
            "aggregation set all honest and full (G = {}) from {from}; honest primaries at window 20: {}; adversaries' share of the aggregation slots {:.2}%",
            c.params.aggregation_size,
            self.honest_primaries_at_20,
            100.0 * self.adversary_slot_share
        )?;
        if let Some(at) = c.newcomer_at {
            let took =
                |x: Option<u64>| x.map_or("never".to_string(), |n| format!("{n} windows later"));
            write!(
                f,
                "\na better newcomer registered at window {at}: in the aggregation set {}, a primary {}",
                took(self.newcomer_in_set_after),
                took(self.newcomer_primary_after)
            )?;
        }
        Ok(())
    }
}

struct Peer {
    uid: Uid,
    behaviour: Behaviour,
    quality: f64,
    /// First window it is registered and trains in.
    joined: Window,
    /// First window it is gone (no more training or uploads).
    leaves: Window,
}

impl Peer {
    fn online(&self, w: Window) -> bool {
        w >= self.joined && w < self.leaves
    }
}

/// Measurement noise of a relative loss change: a floor plus 10% of the change (a bigger update
/// moves the loss of 8 sequences more unevenly).
fn noise(truth: f64) -> f64 {
    0.0002 + 0.1 * truth.abs()
}
const FP_TENSORS: usize = 8;
const FP_VALUES: usize = 8;
const INDEX_SPACE: u64 = 1 << 20;
const INDICES: usize = 64;

fn assign(cfg: &SimConfig, rng: &mut SplitMix64) -> Vec<Peer> {
    let m = cfg.mix;
    let total = m.honest + m.free_rider + m.copycat + m.late + m.noise + m.offline;
    let fracs = [
        m.honest,
        m.free_rider,
        m.copycat,
        m.late,
        m.noise,
        m.offline,
    ]
    .map(|x| if total > 0.0 { x / total } else { 0.0 });
    let mut counts: Vec<usize> = fracs
        .iter()
        .map(|f| (f * cfg.peers as f64).floor() as usize)
        .collect();
    counts[0] += cfg.peers - counts.iter().sum::<usize>();
    let mut kinds: Vec<Behaviour> = Vec::with_capacity(cfg.peers);
    for (b, &n) in Behaviour::ALL.iter().zip(&counts) {
        kinds.extend(std::iter::repeat_n(*b, n));
    }
    // Shuffle so uids say nothing about behaviour.
    for i in (1..kinds.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    let w = cfg.windows.max(1);
    let mut peers: Vec<Peer> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, behaviour)| {
            let quality = 0.5 + rng.next_f64();
            let joined = if behaviour == Behaviour::Honest && rng.chance(0.2) {
                1 + rng.below(w / 2 + 1)
            } else {
                0
            };
            let leaves = if behaviour == Behaviour::Offline {
                5 + rng.below(w * 6 / 10 + 1)
            } else {
                u64::MAX
            };
            Peer {
                uid: i as Uid,
                behaviour,
                quality,
                joined,
                leaves,
            }
        })
        .collect();
    if let Some(at) = cfg.newcomer_at {
        peers.push(Peer {
            uid: peers.len() as Uid,
            behaviour: Behaviour::Honest,
            quality: NEWCOMER_QUALITY,
            joined: at,
            leaves: u64::MAX,
        });
    }
    peers
}

/// The newcomer's quality: a third above the best other peer's (they draw from [0.5, 1.5)).
const NEWCOMER_QUALITY: f64 = 2.0;

fn random_indices(seed: u64) -> Vec<u64> {
    let mut r = SplitMix64::new(seed);
    let mut v: Vec<u64> = (0..INDICES).map(|_| r.below(INDEX_SPACE)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The consensus the chain computes from the validators' weights as they submit them
/// (quantised), equal stake; only uids with positive weight.
fn chain_consensus(
    registered: &BTreeSet<Uid>,
    vweights: &[Weights],
    kappa: f64,
) -> BTreeMap<Uid, f64> {
    let uids: Vec<Uid> = registered.iter().copied().collect();
    let votes: Vec<(u64, Vec<(Uid, u16)>)> = vweights.iter().map(|w| (1, w.quantize())).collect();
    let c = yuma_consensus(&uids, &votes, kappa);
    c.uids
        .into_iter()
        .zip(c.weights)
        .filter(|(_, x)| *x > 0.0)
        .collect()
}

/// What validator `vi` measures for the evaluated peers of window `lw`.
#[allow(clippy::too_many_arguments)]
fn observe(
    cfg: &SimConfig,
    by_uid: &BTreeMap<Uid, &Peer>,
    lw: Window,
    vi: usize,
    plan: &WindowPlan,
    uploads: &BTreeMap<Uid, Millis>,
    prev_truth: &BTreeMap<Uid, f64>,
    prev_copy_of: &BTreeMap<Uid, Uid>,
    vfp: &Fingerprint,
    loss: f64,
    step: f32,
) -> Observations {
    let mut mr = SplitMix64::new(derive_seed(cfg.seed, &[0xE7, lw, vi as u64]));
    let mut obs = Observations {
        own_fingerprint: Some(vfp.clone()),
        ..Default::default()
    };
    for u in plan.downloads() {
        let idx_seed = derive_seed(cfg.seed, &[0x1D, lw, u as u64]);
        let indices = match prev_copy_of.get(&u) {
            Some(&victim) => {
                let mut a = random_indices(derive_seed(cfg.seed, &[0x1D, lw, victim as u64]));
                let r = random_indices(idx_seed);
                let keep = a.len() * 7 / 10;
                a.truncate(keep);
                a.extend_from_slice(&r[..r.len() - keep.min(r.len())]);
                a
            }
            None => random_indices(idx_seed),
        };
        obs.indices.push(UploadIndices {
            uid: u,
            store_time: uploads[&u],
            indices,
        });
    }
    for u in plan.downloads() {
        if by_uid[&u].behaviour == Behaviour::FreeRider || prev_truth.get(&u) == Some(&0.0) {
            obs.zero.insert(u);
        }
    }
    let p = &cfg.params;
    if p.screen_sequences > 0 {
        let wider = (p.eval_sequences as f64 / p.screen_sequences as f64).sqrt();
        for u in plan.scorable(p, &obs) {
            let truth = prev_truth.get(&u).copied().unwrap_or(0.0);
            let screen = truth + wider * noise(truth) * mr.normal();
            obs.screens.insert(u, screen);
        }
    }
    let queue = plan.queue(p, &obs);
    let n = (queue.required + cfg.extra_evaluations).min(queue.order.len());
    for &u in &queue.order[..n] {
        let x = by_uid[&u];
        let truth = prev_truth.get(&u).copied().unwrap_or(0.0);
        let trained_own = matches!(
            x.behaviour,
            Behaviour::Honest | Behaviour::Late | Behaviour::Offline
        );
        let s = truth + noise(truth) * mr.normal();
        let own = truth * if trained_own { 1.5 } else { 1.0 } + noise(truth) * mr.normal();
        // Nodes measure losses per sequence, so the own-data evidence is a z (see
        // `scoring::own_data_z`): about N(0.75·√n, 1) for an update trained on its own data
        // (`tiny` at 32 sequences: +3…+6), N(0, 1) for one that was not.
        let z_mean = if trained_own && truth != 0.0 {
            0.75 * (p.eval_sequences as f64).sqrt()
        } else {
            0.0
        };
        let probe = LossProbe {
            rand_before: loss,
            rand_after: loss * (1.0 - s),
            own_before: loss * 1.02,
            own_after: loss * 1.02 * (1.0 - own),
            own_z: Some(z_mean + mr.normal()),
        };
        let mut mfp = vfp.clone();
        for t in mfp.tensors.iter_mut() {
            for v in t.iter_mut() {
                *v += 0.2 * step * mr.normal() as f32;
            }
        }
        obs.outcomes.insert(
            u,
            EvalOutcome::Measured {
                probe,
                fingerprint: Some(mfp),
            },
        );
    }
    obs
}

/// Runs a simulation.
pub fn run(cfg: &SimConfig) -> Result<SimReport> {
    let p = &cfg.params;
    p.validate()?;
    let mut rng = SplitMix64::new(derive_seed(cfg.seed, &[0x5111]));
    let peers = assign(cfg, &mut rng);
    let by_uid: BTreeMap<Uid, &Peer> = peers.iter().map(|x| (x.uid, x)).collect();

    // Every validator looks at challengers in the run's order (as nodes do).
    let mut validators: Vec<Gauntlet> = (0..cfg.validators.max(1))
        .map(|_| Gauntlet::new(derive_seed(cfg.seed, &[0x7A11])))
        .collect();
    let mut full_honest_from = None;
    let mut honest_primaries_at_20 = 0;
    let mut newcomer_primary = None;
    let mut newcomer_in_set = None;
    let mut vweights: Vec<Weights> = vec![Weights::default(); validators.len()];

    // Validator fingerprint random walk.
    let mut vfp = Fingerprint {
        tensors: vec![vec![0.0f32; FP_VALUES]; FP_TENSORS],
    };
    let mut loss = 10.0f64;
    let loss_start = loss;
    let mut empty_windows = 0;

    let mut aggregated_slots: BTreeMap<Behaviour, u64> = BTreeMap::new();
    let mut total_slots = 0u64;
    let mut paid: BTreeMap<Behaviour, f64> = BTreeMap::new();
    let mut paid_total = 0.0;
    let mut evals: BTreeMap<Behaviour, u64> = BTreeMap::new();
    let mut blamed: BTreeMap<Behaviour, u64> = BTreeMap::new();
    let mut consensus = BTreeMap::new();
    // True relative improvement of each peer's window-w upload.
    let mut prev_truth: BTreeMap<Uid, f64> = BTreeMap::new();
    let mut prev_copy_of: BTreeMap<Uid, Uid> = BTreeMap::new();

    for w in 0..=cfg.windows {
        let registered: BTreeSet<Uid> = peers
            .iter()
            .filter(|x| x.joined <= w)
            .map(|x| x.uid)
            .collect();
        // The chain at window w's first block: it fixes window w − 1's aggregation set.
        consensus = chain_consensus(&registered, &vweights, cfg.kappa);
        if w > 0 {
            for (b, share) in consensus.iter().map(|(u, x)| (by_uid[u].behaviour, *x)) {
                *paid.entry(b).or_default() += share;
                paid_total += share;
            }
        }

        // The window-(w−1) uploads, with the truths drawn when they were trained.
        if let Some(lw) = w.checked_sub(1) {
            let set = aggregation_set(&consensus, &registered, p.aggregation_size, p.reserves);
            let honest = set
                .primary
                .iter()
                .filter(|u| !by_uid[u].behaviour.adversarial())
                .count();
            if honest == p.aggregation_size && full_honest_from.is_none() {
                full_honest_from = Some(lw);
            }
            if lw <= 20 {
                honest_primaries_at_20 = honest;
            }
            let newcomer = cfg.newcomer_at.map(|_| (peers.len() - 1) as Uid);
            if newcomer.is_some_and(|n| set.all().any(|u| u == n)) && newcomer_in_set.is_none() {
                newcomer_in_set = Some(lw);
            }
            if newcomer.is_some_and(|n| set.primary.contains(&n)) && newcomer_primary.is_none() {
                newcomer_primary = Some(lw);
            }
            let (open, _close) = p.upload_interval(lw);
            let grace = p.grace_ms;
            let mut wr = SplitMix64::new(derive_seed(cfg.seed, &[0x0B5, lw]));
            let mut uploads: BTreeMap<Uid, Millis> = BTreeMap::new();
            for &u in prev_truth.keys() {
                let x = by_uid[&u];
                if !x.online(w) {
                    continue; // left before uploading
                }
                let t = match x.behaviour {
                    Behaviour::Copycat => open + grace / 2 + wr.below(grace / 2 + 1),
                    Behaviour::Late if wr.chance(0.8) => open + grace + 1 + wr.below(30_000),
                    _ => open + wr.below(grace * 3 / 10 + 1),
                };
                uploads.insert(u, t);
            }
            // Fingerprint of the validators' model after the previous outer step.
            let mut fr = SplitMix64::new(derive_seed(cfg.seed, &[0xF1, lw]));
            let step = 0.01f32;
            for t in vfp.tensors.iter_mut() {
                for x in t.iter_mut() {
                    *x += step * fr.normal() as f32;
                }
            }
            for (vi, v) in validators.iter_mut().enumerate() {
                let plan = v.plan(p, lw, &registered, set.clone(), &uploads)?;
                let obs = observe(
                    cfg,
                    &by_uid,
                    lw,
                    vi,
                    &plan,
                    &uploads,
                    &prev_truth,
                    &prev_copy_of,
                    &vfp,
                    loss,
                    step,
                );
                if vi == 0 {
                    for u in obs.outcomes.keys() {
                        *evals.entry(by_uid[u].behaviour).or_default() += 1;
                    }
                }
                let rep = v.finish(p, &plan, obs)?;
                vweights[vi] = rep.weights;
                if vi != 0 {
                    continue;
                }
                // Every gathered upload is valid in this world: the outer step takes them all.
                if plan.gather.is_empty() {
                    empty_windows += 1;
                }
                let mut step_gain = 0.0;
                for u in &plan.gather {
                    *aggregated_slots.entry(by_uid[u].behaviour).or_default() += 1;
                    total_slots += 1;
                    step_gain += prev_truth.get(u).copied().unwrap_or(0.0);
                }
                if !plan.gather.is_empty() {
                    loss *= 1.0 - (step_gain / plan.gather.len() as f64).clamp(-0.5, 0.5);
                }
                let mut seen = BTreeSet::new();
                for c in &rep.copies {
                    if seen.insert(c.copier) {
                        *blamed.entry(by_uid[&c.copier].behaviour).or_default() += 1;
                    }
                }
            }
        }

        if w == cfg.windows {
            break;
        }
        // Train window w: draw each online peer's true improvement.
        // (The copycat picks its victim among the best-weighted peers on chain now.)
        let set_w = aggregation_set(&consensus, &registered, p.aggregation_size, p.reserves);
        let mut truth = BTreeMap::new();
        let mut copy_of = BTreeMap::new();
        let mut tr = SplitMix64::new(derive_seed(cfg.seed, &[0x7A, w]));
        let honest_like: Vec<Uid> = peers
            .iter()
            .filter(|x| {
                x.online(w)
                    && matches!(x.behaviour, Behaviour::Honest | Behaviour::Offline)
                    && !p.is_null_window(x.joined, w)
            })
            .map(|x| x.uid)
            .collect();
        for x in peers.iter().filter(|x| x.online(w)) {
            let null = p.is_null_window(x.joined, w) && x.joined > 0;
            let s = match x.behaviour {
                _ if null => 0.0,
                Behaviour::Honest | Behaviour::Late | Behaviour::Offline => 0.01 * x.quality,
                Behaviour::FreeRider => 0.0,
                Behaviour::Noise => -0.002,
                Behaviour::Copycat => {
                    // Copy the best-weighted honest-looking primary, else a random honest peer.
                    let victim = set_w
                        .primary
                        .iter()
                        .copied()
                        .find(|v| *v != x.uid && honest_like.binary_search(v).is_ok())
                        .or_else(|| {
                            (!honest_like.is_empty())
                                .then(|| honest_like[tr.below(honest_like.len() as u64) as usize])
                        });
                    match victim {
                        Some(v) => {
                            copy_of.insert(x.uid, v);
                            0.01 * by_uid[&v].quality
                        }
                        None => 0.0,
                    }
                }
            };
            truth.insert(x.uid, s);
        }
        prev_truth = truth;
        prev_copy_of = copy_of;
    }

    // Final tallies from the last consensus.
    let last = consensus;
    let mut ranked: Vec<(Uid, f64)> = last.iter().map(|(&u, &x)| (u, x)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let g = p.aggregation_size;
    let rows = Behaviour::ALL
        .iter()
        .map(|&b| {
            let n = peers.iter().filter(|x| x.behaviour == b).count();
            BehaviourRow {
                behaviour: b,
                peers: n,
                evaluations_per_peer: if n == 0 {
                    0.0
                } else {
                    evals.get(&b).copied().unwrap_or(0) as f64 / n as f64
                },
                aggregated_share: if total_slots == 0 {
                    0.0
                } else {
                    aggregated_slots.get(&b).copied().unwrap_or(0) as f64 / total_slots as f64
                },
                paid_share: if paid_total == 0.0 {
                    0.0
                } else {
                    paid.get(&b).copied().unwrap_or(0.0) / paid_total
                },
                final_weight_share: 0.0
                    + last
                        .iter()
                        .filter(|(u, _)| by_uid[u].behaviour == b)
                        .map(|(_, x)| x)
                        .sum::<f64>(),
                final_top: ranked
                    .iter()
                    .take(g)
                    .filter(|(u, _)| by_uid[u].behaviour == b)
                    .count(),
                final_reserves: ranked
                    .iter()
                    .skip(g)
                    .take(p.reserves)
                    .filter(|(u, _)| by_uid[u].behaviour == b)
                    .count(),
                blamed_copies: blamed.get(&b).copied().unwrap_or(0),
            }
        })
        .collect();
    let adversary_slots: u64 = aggregated_slots
        .iter()
        .filter(|(b, _)| b.adversarial())
        .map(|(_, n)| n)
        .sum();
    Ok(SimReport {
        config: cfg.clone(),
        rows,
        loss_start,
        loss_end: loss,
        empty_windows,
        full_honest_from,
        honest_primaries_at_20,
        adversary_slot_share: if total_slots == 0 {
            0.0
        } else {
            adversary_slots as f64 / total_slots as f64
        },
        newcomer_in_set_after: cfg
            .newcomer_at
            .and_then(|at| newcomer_in_set.map(|w: Window| w.saturating_sub(at))),
        newcomer_primary_after: cfg
            .newcomer_at
            .and_then(|at| newcomer_primary.map(|w: Window| w.saturating_sub(at))),
    })
}
