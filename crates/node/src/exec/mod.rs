//! Carrying out a driver's actions against an [`Env`]: what both executors share.
//!
//! [`Shared`] holds what a node's threads share (the environment, its identity, the canonical
//! model, prepared uploads, fetched payloads, the chain views) and does the I/O actions
//! ([`io`]); [`Compute`] owns the model and does the model actions ([`compute`]). The real
//! executor runs compute on the driver's thread and I/O on a communication thread; the
//! simulator runs both inline, in virtual time.

pub mod carry;
pub mod compute;
pub mod io;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use covenant_codec::{ModelLayout, TensorPayload};
use covenant_core::{RunParams, Uid, Window};
use covenant_net::{Keypair, PublicKey};

use crate::canon::Canon;
use crate::env::{Env, ObjectStore, Trainer};
pub use compute::Compute;

/// Who this node is.
pub struct Identity {
    pub key: Keypair,
    pub uid: Uid,
    /// The chain's run id (signed documents are bound to it).
    pub run_id: String,
    /// The run spec's hash (codec payloads are bound to it).
    pub run_hash: [u8; 32],
}

impl Identity {
    /// The "random data" pool of this validator's window-`window` evaluations: seeded with a
    /// secret only its key gives (never published), so no miner can know it, before its upload
    /// deadline or after, and train on it.
    pub fn eval_pool(&self, run_seed: u64, window: Window, size: usize, n: u64) -> Vec<u64> {
        covenant_data::sampler::random_pool(run_seed, window, self.salt(), size, n)
    }

    /// Which `size` of `uid`'s window-`window` pool this validator checks the own-data
    /// evidence on: drawn from the whole pool with the same secret, so a miner cannot train
    /// only the part that is looked at.
    pub fn own_sample(&self, window: Window, uid: Uid, pool: &[u64], size: usize) -> Vec<u64> {
        let seed = covenant_core::rng::derive_seed(self.salt(), &[0x0DA7A, window, u64::from(uid)]);
        let mut rng = covenant_core::rng::SplitMix64::new(seed);
        let mut left = pool.to_vec();
        let mut out = Vec::with_capacity(size.min(left.len()));
        while out.len() < size && !left.is_empty() {
            let i = rng.below(left.len() as u64) as usize;
            out.push(left.swap_remove(i));
        }
        out
    }

    fn salt(&self) -> u64 {
        let mut h = blake3::Hasher::new();
        h.update(b"covenant/eval-pool-salt/v1");
        h.update(&self.key.signing_key().to_bytes());
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&h.finalize().as_bytes()[..8]);
        u64::from_le_bytes(salt)
    }
}

/// What the run spec fixes for the executor.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub params: RunParams,
    pub seed: u64,
    /// Sequences per inner step.
    pub batch: usize,
    /// Validation samples of the loss reported after each outer step.
    pub val_ids: Vec<u64>,
    pub fingerprint_values: usize,
    pub checkpoint_every: u64,
    pub index_coding: covenant_codec::IndexCoding,
}

/// A peer's key and bucket, from a chain view.
#[derive(Clone)]
pub struct Peer {
    pub key: PublicKey,
    pub store: Arc<dyn ObjectStore>,
}

/// The peers of one chain view: miners and validators with a readable commitment.
#[derive(Clone, Default)]
pub struct PeerBook {
    pub miners: BTreeMap<Uid, Peer>,
    pub validators: BTreeMap<Uid, Peer>,
}

/// Fetched, decoded payloads by (window, uid).
pub type Payloads = BTreeMap<(Window, Uid), Arc<Vec<TensorPayload>>>;

/// What a node's threads share.
pub struct Shared {
    pub env: Env,
    pub id: Identity,
    pub run: RunFacts,
    pub layout: ModelLayout,
    /// The model's `config.json` (checkpoints carry it).
    pub hf_config: serde_json::Value,
    /// Validators' keys (from the chain's genesis).
    pub validator_keys: BTreeSet<PublicKey>,
    pub canon: RwLock<Canon>,
    /// Signed uploads ready to put, by window.
    pub prepared: Mutex<BTreeMap<Window, Vec<u8>>>,
    /// Fetched, decoded payloads by (window, uid).
    pub gathered: Mutex<Payloads>,
    /// The signed bytes of those payloads, on a validator (see [`Shared::keeps_copies`]), until
    /// its record has copied them.
    pub fetched_bytes: Mutex<BTreeMap<(Window, Uid), bytes::Bytes>>,
    /// Peers by the window whose first block the chain view is of.
    pub books: Mutex<BTreeMap<Window, Arc<PeerBook>>>,
    /// Fetch uploads of several peers at once (threads); the simulator fetches in order.
    pub parallel_io: bool,
}

impl Shared {
    /// A node whose canonical model starts as `trainer`'s parameters (the run's seeded initial
    /// model).
    pub fn new(
        env: Env,
        id: Identity,
        run: RunFacts,
        layout: ModelLayout,
        trainer: &dyn Trainer,
        parallel_io: bool,
    ) -> Result<Shared, crate::setup::SetupError> {
        let theta = trainer.params()?;
        let canon = Canon::new(layout.clone(), theta)?;
        let validator_keys = env.chain.genesis().validator_keys();
        Ok(Shared {
            hf_config: trainer.hf_config(),
            env,
            id,
            run,
            layout,
            validator_keys,
            canon: RwLock::new(canon),
            prepared: Mutex::new(BTreeMap::new()),
            gathered: Mutex::new(BTreeMap::new()),
            fetched_bytes: Mutex::new(BTreeMap::new()),
            books: Mutex::new(BTreeMap::new()),
            parallel_io,
        })
    }

    /// A validator keeps a copy of every upload it aggregates (`agg/` in its bucket).
    pub fn keeps_copies(&self) -> bool {
        self.validator_keys.contains(&self.id.key.public())
    }

    /// Time on this node's clock.
    pub fn now(&self) -> u64 {
        self.env.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8, uid: Uid) -> Identity {
        Identity {
            key: Keypair::from_seed([seed; 32]),
            uid,
            run_id: "r".into(),
            run_hash: [0; 32],
        }
    }

    /// Issue 14 item 8: the pool was `random_pool(run seed, window, uid)`, all public.
    #[test]
    fn the_evaluation_pool_cannot_be_computed_from_public_data() {
        let (a, b) = (id(1, 3), id(2, 3));
        let public = covenant_data::sampler::random_pool(7, 10, 3, 8, 100_000);
        let pa = a.eval_pool(7, 10, 8, 100_000);
        assert_eq!(pa.len(), 8);
        assert_ne!(
            pa, public,
            "the pool follows from the run seed, window and uid"
        );
        assert_ne!(pa, b.eval_pool(7, 10, 8, 100_000), "another key, same uid");
        assert_eq!(
            pa,
            a.eval_pool(7, 10, 8, 100_000),
            "a restart evaluates alike"
        );
        assert_ne!(pa, a.eval_pool(7, 11, 8, 100_000));
    }

    /// The own-data evidence is measured on a secret sample of the whole pool, so a miner
    /// cannot train only the part that is looked at.
    #[test]
    fn the_own_sample_is_a_secret_sample_of_the_whole_pool() {
        let (a, b) = (id(1, 3), id(2, 3));
        let pool: Vec<u64> = (1000..1120).collect();
        let s = a.own_sample(10, 5, &pool, 16);
        assert_eq!(s.len(), 16);
        let mut distinct = s.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 16, "without replacement");
        assert!(s.iter().all(|x| pool.contains(x)));
        assert!(
            s.iter().any(|&x| x < 1060) && s.iter().any(|&x| x >= 1060),
            "{s:?}"
        );
        assert_eq!(s, a.own_sample(10, 5, &pool, 16), "a restart looks alike");
        assert_ne!(
            s,
            b.own_sample(10, 5, &pool, 16),
            "another validator's secret"
        );
        assert_ne!(s, a.own_sample(10, 6, &pool, 16), "another peer");
        assert_eq!(
            a.own_sample(10, 5, &pool[..4], 16).len(),
            4,
            "a short pool whole"
        );
    }
}
