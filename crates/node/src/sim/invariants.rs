//! What must hold in every simulated run, checked as it goes and after every window:
//!
//! 1. every node that applied window w holds bit-identical parameters (checked on every
//!    outer step);
//! 2. no node panics (its driver or its executor) or stalls: half-way into window w, a node up
//!    since window w − 3 has applied window w − 3 (a step is never more than two and a half
//!    windows late);
//! 3. so every restarted node rejoins within 2 windows, and an honest miner up for three
//!    windows uploads;
//! 4. no adversary holds weight on the chain after the evaluation warm-up;
//! 5. no honest miner is penalised (missing, invalid, copying, or unreadable beyond the grace)
//!    for a window whose upload landed in its store on time, nor measured without the
//!    fingerprint it stored on time: what goes wrong in the stores is not its doing;
//! 6. every outer step a validator takes once it has joined reports the validation loss (the
//!    run's loss curve has no holes, caught-up windows included).

use std::collections::{BTreeMap, BTreeSet};

use covenant_core::driver::{Hash, NodeEvent};
use covenant_core::gauntlet::Verdict;
use covenant_core::{Millis, RunParams, Uid, Window};
use serde::Serialize;

use super::world::World;
use super::SimConfig;
use crate::adversary::Behaviour;
use crate::objects;
use crate::setup::Role;

/// Most violations kept (the first ones matter).
const MAX_VIOLATIONS: usize = 50;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// World time.
    pub at: Millis,
    pub window: Option<Window>,
    pub what: String,
}

/// The invariants' bookkeeping.
#[derive(Debug, Default)]
pub struct Checker {
    params: RunParams,
    warmup: Window,
    /// The first hash applied for each window, and by whom.
    first: BTreeMap<Window, (String, Hash)>,
    /// Last window each node applied.
    last_applied: BTreeMap<String, Window>,
    disagreements: u64,
    /// (validator, window) reports already checked for penalties.
    checked: BTreeSet<(usize, Window)>,
    /// Nodes that joined the network since they last started.
    joined: BTreeSet<String>,
    pub violations: Vec<Violation>,
}

impl Checker {
    pub fn new(cfg: &SimConfig, params: &RunParams) -> Self {
        Checker {
            params: params.clone(),
            warmup: cfg.warmup_windows,
            ..Default::default()
        }
    }

    pub fn violation(&mut self, at: Millis, window: Option<Window>, what: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation { at, window, what });
        }
    }

    /// Node `node` applied window `window` and holds `hash`.
    pub fn applied(&mut self, at: Millis, node: &str, window: Window, hash: Hash) {
        let last = self.last_applied.entry(node.to_string()).or_insert(window);
        *last = (*last).max(window);
        match self.first.get(&window) {
            None => {
                self.first.insert(window, (node.to_string(), hash));
            }
            Some((who, h)) if *h != hash => {
                let what = format!(
                    "replicas differ after window {window}: {node} holds {} but {who} holds {}",
                    covenant_core::driver::hex(&hash),
                    covenant_core::driver::hex(h)
                );
                self.disagreements += 1;
                self.violation(at, Some(window), what);
            }
            Some(_) => {}
        }
    }

    /// Node `node` (re)started: it has to join again.
    pub fn started(&mut self, node: &str) {
        self.joined.remove(node);
    }

    /// Node `node`, a `role`, emitted `ev`.
    pub fn emitted(&mut self, at: Millis, node: &str, role: Role, ev: &NodeEvent) {
        match ev {
            NodeEvent::Joined { .. } => {
                self.joined.insert(node.to_string());
            }
            NodeEvent::OuterStep {
                window,
                val_loss: None,
                source,
                ..
            } if role == Role::Validator && self.joined.contains(node) => {
                let what = format!(
                    "{node} stepped window {window} ({source:?}) without its validation loss"
                );
                self.violation(at, Some(*window), what);
            }
            _ => {}
        }
    }

    pub fn replicas_agree(&self) -> bool {
        self.disagreements == 0
    }

    /// Windows some node applied.
    pub fn windows_applied(&self) -> u64 {
        self.first.len() as u64
    }

    /// The checks after window `w − 1` (run half-way into window `w`).
    pub fn check_window(&mut self, world: &World, w: Window, now: Millis) {
        self.check_progress(world, w, now);
        if w >= self.warmup {
            self.check_adversary_weights(world, w, now);
        }
        self.check_penalties(world, now);
    }

    /// The last checks, at the end of the run.
    pub fn finish(&mut self, world: &World, now: Millis) {
        self.check_penalties(world, now);
        for n in &world.nodes {
            if n.up_since.is_some() && !n.stopped {
                self.violation(now, None, format!("{} did not finish the run", n.name));
            }
        }
    }

    fn check_progress(&mut self, world: &World, w: Window, now: Millis) {
        let p = self.params.clone();
        for (i, n) in world.nodes.iter().enumerate() {
            let Some(up) = n.up_since else { continue };
            if n.stopped {
                continue;
            }
            let settled = w >= 3 && up <= p.window_start_ms(w - 3);
            let applied = self.last_applied.get(&n.name).copied();
            if settled && applied.is_none_or(|a| a + 3 < w) {
                let what = format!(
                    "{} stalls: half-way into window {w} it has applied {} (up since window {})",
                    n.name,
                    applied.map_or("nothing".to_string(), |a| format!("up to window {a}")),
                    p.window_of_time(up)
                );
                self.violation(now, Some(w), what);
            }
            let honest_miner = n.role == Role::Miner && n.behaviour == Behaviour::Honest;
            if honest_miner
                && w >= 3
                && up <= p.window_start_ms(w - 3)
                && !uploaded(world, i, w - 2)
            {
                let what = format!(
                    "{} has not rejoined: no upload of window {} (up since window {})",
                    n.name,
                    w - 2,
                    p.window_of_time(up)
                );
                self.violation(now, Some(w), what);
            }
        }
    }

    fn check_adversary_weights(&mut self, world: &World, w: Window, now: Millis) {
        let consensus = world.consensus();
        for n in world
            .nodes
            .iter()
            .filter(|n| !n.behaviour.trains_honestly())
        {
            let weight = consensus.get(&n.uid).copied().unwrap_or(0.0);
            if weight > 0.0 {
                let what = format!(
                    "adversary {} ({}, uid {}) holds weight {weight:.4} in window {w}, after the warm-up",
                    n.name,
                    n.behaviour.name(),
                    n.uid
                );
                self.violation(now, Some(w), what);
            }
        }
    }

    fn check_penalties(&mut self, world: &World, now: Millis) {
        let honest: BTreeMap<Uid, &str> = world
            .nodes
            .iter()
            .filter(|n| n.role == Role::Miner && n.behaviour == Behaviour::Honest)
            .map(|n| (n.uid, n.name.as_str()))
            .collect();
        let grace = self.params.penalties.unavailable_grace;
        for (vi, v) in world
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role == Role::Validator)
        {
            for ev in world.events(vi) {
                let NodeEvent::Report {
                    window,
                    peers,
                    eval,
                    ..
                } = ev
                else {
                    continue;
                };
                if !self.checked.insert((vi, window)) {
                    continue;
                }
                for (uid, line) in &peers {
                    let Some(name) = honest.get(uid) else {
                        continue;
                    };
                    let penalised = match line.verdict {
                        Verdict::Missing { .. } | Verdict::Invalid | Verdict::Copied { .. } => true,
                        Verdict::Unavailable { streak } => streak > grace,
                        _ => false,
                    };
                    if penalised
                        && self.landed_on_time(world, name, &objects::grad_key(window), window)
                    {
                        let what = format!(
                            "{} penalised honest {name} (uid {uid}) with {:?} for window {window}, whose upload landed on time",
                            v.name, line.verdict
                        );
                        self.violation(now, Some(window), what);
                    }
                    let blind = eval.get(uid).is_some_and(|p| !p.fingerprint);
                    if blind && self.landed_on_time(world, name, &objects::fp_key(window), window) {
                        let what = format!(
                            "{} measured honest {name} (uid {uid}) in window {window} without the fingerprint it stored on time",
                            v.name
                        );
                        self.violation(now, Some(window), what);
                    }
                }
            }
        }
    }

    /// Whether `key` of window `w` is in `miner`'s bucket with an on-time store timestamp.
    fn landed_on_time(&self, world: &World, miner: &str, key: &str, w: Window) -> bool {
        world
            .stores
            .stored_at(miner, key)
            .is_some_and(|t| self.params.classify_upload(w, Some(t)).accepted())
    }
}

/// Whether node `i` reported an upload of window `w`.
fn uploaded(world: &World, i: usize, w: Window) -> bool {
    world
        .events(i)
        .iter()
        .any(|e| matches!(e, NodeEvent::Uploaded { window, .. } if *window == w))
}
