//! Seeded faults: what goes wrong in a simulated run, drawn from its seed so that the seed
//! replays it exactly.
//!
//! * crashes: a node stops at a random time (losing everything but its keys, its bucket and
//!   its local disk) and restarts a while later;
//! * store outages (every call fails) and slow periods (every call takes longer), bounded so
//!   that a retrying upload still lands inside the grace period;
//! * objects that become visible late (bounded by the listing's settle time);
//! * bounded clock skew of every node;
//! * chain transactions that land some blocks late;
//! * one adversary from a pool of misbehaviours the protocol must keep at zero weight.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use covenant_core::rng::{derive_seed, SplitMix64};
use covenant_core::{Millis, RunParams};
use covenant_net::chain::{Receipt, Snapshot};
use covenant_net::{Chain, ChainError, Genesis, Metagraph, PublicKey, Transaction};

use super::mem::{StoreFaults, StoreTrouble};
use crate::adversary::Behaviour;

/// Adversaries a faulty run may add: each must end with no weight.
pub const FAULT_ADVERSARIES: [Behaviour; 9] = [
    Behaviour::Late,
    Behaviour::Early,
    Behaviour::Silent,
    Behaviour::FreeRider,
    Behaviour::Malformed,
    Behaviour::BadSignature,
    Behaviour::Nan,
    Behaviour::BadIndex,
    Behaviour::Copycat,
];

/// A node's crash and restart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crash {
    pub node: usize,
    pub at: Millis,
    pub restart_at: Millis,
}

/// Everything that goes wrong in one run.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub crashes: Vec<Crash>,
    pub stores: StoreFaults,
    /// Clock skew of each node (ms).
    pub skew: Vec<i64>,
    /// Chance that a transaction lands late, and by how many blocks at most.
    pub tx_delay_chance: f64,
    pub tx_delay_blocks: u64,
    pub adversary: Option<Behaviour>,
}

impl FaultPlan {
    /// No faults.
    pub fn none(nodes: usize) -> Self {
        FaultPlan {
            skew: vec![0; nodes],
            ..Default::default()
        }
    }

    /// The faults of seed `seed` for `nodes` nodes (the first `validators` are validators).
    pub fn draw(seed: u64, p: &RunParams, nodes: usize, validators: usize, windows: u64) -> Self {
        let mut r = SplitMix64::new(derive_seed(seed, &[0xFA17]));
        let w = p.window_ms();
        let start = p.window_start_ms(1);
        let end = p.window_start_ms(windows.saturating_sub(2).max(2));
        let span = end.saturating_sub(start).max(1);
        let mut crashes = Vec::new();
        // One to three crashes; never two validators down at once.
        for _ in 0..1 + r.below(3) {
            let node = r.below(nodes as u64) as usize;
            let at = start + r.below(span);
            let restart_at = at + w / 4 + r.below(w);
            let clash = crashes.iter().any(|c: &Crash| {
                (c.node == node || (c.node < validators && node < validators))
                    && at < c.restart_at + w
                    && c.at < restart_at + w
            });
            if !clash {
                crashes.push(Crash {
                    node,
                    at,
                    restart_at,
                });
            }
        }
        let mut trouble = Vec::new();
        // Short outages anywhere: a retrying upload still lands inside the grace period.
        for _ in 0..r.below(3) {
            let from = start + r.below(span);
            trouble.push(StoreTrouble::Outage {
                from,
                to: from + 500 + r.below(p.grace_ms / 3),
            });
        }
        // Long outages over a window's gather, ending before the next uploads: nodes cannot
        // take the step live and must catch it up.
        for _ in 0..r.below(3) {
            let win = 1 + r.below(windows.saturating_sub(3).max(1));
            let from = p.gather_time(win) + r.below(p.block_time_ms);
            let last = p.window_start_ms(win + 2).saturating_sub(p.block_time_ms);
            trouble.push(StoreTrouble::Outage {
                from,
                to: (from + p.window_ms() / 2 + r.below(p.window_ms() / 2)).min(last),
            });
        }
        for _ in 0..r.below(3) {
            let from = start + r.below(span);
            trouble.push(StoreTrouble::Slow {
                from,
                to: from + w / 2 + r.below(w),
                extra_ms: 100 + r.below(p.grace_ms / 5),
            });
        }
        let bound = p.block_time_ms / 4;
        let skew = (0..nodes)
            .map(|_| r.below(2 * bound + 1) as i64 - bound as i64)
            .collect();
        let adversary = Some(FAULT_ADVERSARIES[r.below(FAULT_ADVERSARIES.len() as u64) as usize]);
        FaultPlan {
            crashes,
            stores: StoreFaults {
                trouble,
                late_listing: 0.3,
                max_lag_ms: p.block_time_ms / 3,
            },
            skew,
            tx_delay_chance: 0.3,
            tx_delay_blocks: 3,
            adversary,
        }
    }
}

/// A transaction waiting to land.
struct Pending {
    due: Millis,
    tx: Transaction,
}

/// The chain as the simulated nodes reach it: the in-memory ledger, with some transactions
/// landing late. `next_nonce` counts the waiting ones, as a real node's mempool would.
pub struct DelayedChain {
    inner: Arc<dyn Chain>,
    pending: Mutex<VecDeque<Pending>>,
    rng: Mutex<SplitMix64>,
    chance: f64,
    max_blocks: u64,
}

impl DelayedChain {
    pub fn new(inner: Arc<dyn Chain>, seed: u64, chance: f64, max_blocks: u64) -> Self {
        DelayedChain {
            inner,
            pending: Mutex::new(VecDeque::new()),
            rng: Mutex::new(SplitMix64::new(derive_seed(seed, &[0xC4A1]))),
            chance,
            max_blocks,
        }
    }

    /// Lands the transactions due by `now` (errors are the chain's verdicts: dropped).
    pub fn flush(&self, now: Millis) {
        let due: Vec<Transaction> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let (ready, wait): (Vec<Pending>, Vec<Pending>) =
                p.drain(..).partition(|x| x.due <= now);
            p.extend(wait);
            ready.into_iter().map(|x| x.tx).collect()
        };
        for tx in due {
            let _ = self.inner.submit(&tx);
        }
    }

    /// When the next waiting transaction is due.
    pub fn next_due(&self) -> Option<Millis> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.iter().map(|x| x.due).min()
    }
}

impl Chain for DelayedChain {
    fn genesis(&self) -> &Genesis {
        self.inner.genesis()
    }
    fn block(&self) -> u64 {
        self.inner.block()
    }
    fn balance(&self, key: &PublicKey) -> Result<u64, ChainError> {
        self.inner.balance(key)
    }
    fn next_nonce(&self, key: &PublicKey) -> Result<u64, ChainError> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = p.iter().filter(|x| &x.tx.signer == key).count() as u64;
        Ok(self.inner.next_nonce(key)? + waiting)
    }
    fn submit(&self, tx: &Transaction) -> Result<Receipt, ChainError> {
        let delay = {
            let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            r.chance(self.chance)
                .then(|| 1 + r.below(self.max_blocks.max(1)))
        };
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let behind = p
            .iter()
            .filter(|x| x.tx.signer == tx.signer)
            .map(|x| x.due)
            .max();
        if delay.is_none() && behind.is_none() {
            drop(p);
            return self.inner.submit(tx);
        }
        // Keep a key's transactions in order: behind one that waits, all wait.
        let block = self.inner.block() + delay.unwrap_or(1);
        let due = self
            .inner
            .genesis()
            .schedule()
            .block_start_ms(block)
            .max(behind.unwrap_or(0));
        p.push_back(Pending {
            due,
            tx: tx.clone(),
        });
        Ok(Receipt {
            block,
            uid: None,
            replaced: None,
        })
    }
    fn metagraph(&self) -> Result<Metagraph, ChainError> {
        self.inner.metagraph()
    }
    fn snapshot(&self, block: u64) -> Result<Snapshot, ChainError> {
        self.inner.snapshot(block)
    }
}
