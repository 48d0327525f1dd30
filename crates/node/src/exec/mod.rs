//! Carrying out a driver's actions against an [`Env`]: what both executors share.
//!
//! [`Shared`] holds what a node's threads share (the environment, its identity, the canonical
//! model, prepared uploads, fetched payloads, the chain views) and does the I/O actions
//! ([`io`]); [`Compute`] owns the model and does the model actions ([`compute`]). The real
//! executor runs compute on the driver's thread and I/O on a communication thread; the
//! simulator runs both inline, in virtual time.

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
    /// The signed bytes of those payloads, until a validator's record has mirrored them.
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

    /// Time on this node's clock.
    pub fn now(&self) -> u64 {
        self.env.clock.now_ms()
    }
}
