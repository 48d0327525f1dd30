//! The chain: identity registry (key → uid), the clock (block → window), commitments (where a
//! uid's bucket is and how to read it), stake, and validators' weights, from which consensus
//! weights, rewards and the next aggregation set follow (SPEC §1, §4).
//!
//! [`Chain`] is the interface the nodes use; [`ledger::Ledger`] is the embedded default (SQLite
//! in WAL mode, shared by the processes of one machine). A real blockchain implements the same
//! trait; docs/CHAIN.md maps it to Bittensor's subtensor.

pub mod ledger;
pub mod text;
pub mod tx;

use serde::{Deserialize, Serialize};

use crate::identity::PublicKey;
pub use covenant_core::consensus::{yuma_consensus, Consensus};
use covenant_core::window::Schedule;
pub use ledger::Ledger;
pub use tx::{Transaction, TxBody};

/// One token in the smallest unit balances and burns are counted in (as TAO is 10⁹ rao).
pub const TOKEN: u64 = 1_000_000_000;

/// Longest bucket URL and read credentials accepted in a commitment (bytes).
pub const MAX_URL: usize = 512;
pub const MAX_CREDENTIALS: usize = 1024;

/// The parameters a chain is created with; fixed for its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub run_id: String,
    /// Unix milliseconds of block 0.
    pub genesis_time_ms: u64,
    pub block_time_ms: u64,
    pub blocks_per_window: u64,
    pub max_uids: u32,
    /// Blocks after registration during which a uid cannot be replaced.
    pub immunity_blocks: u64,
    pub validators: Vec<ValidatorStake>,
    /// Yuma consensus threshold: the share of stake that must support a weight (default 0.5).
    pub kappa: f64,
    /// Burned from the signer's balance by every registration (0: registering is free), so
    /// that a flood of identities costs a flood of burns, as on Bittensor.
    #[serde(default)]
    pub registration_burn: u64,
    /// Balances at block 0 (the only way tokens come into being on the embedded ledger).
    #[serde(default)]
    pub balances: Vec<Balance>,
}

/// A key's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    pub key: PublicKey,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorStake {
    pub key: PublicKey,
    pub stake: u64,
}

impl Genesis {
    pub fn validate(&self) -> Result<(), ChainError> {
        let bad = |m: String| Err(ChainError::Genesis(m));
        if self.run_id.is_empty() || self.run_id.len() > crate::envelope::MAX_RUN_ID {
            return bad(format!(
                "run id must be 1..={} bytes",
                crate::envelope::MAX_RUN_ID
            ));
        }
        if self.block_time_ms == 0 || self.blocks_per_window == 0 {
            return bad("block time and blocks per window must be positive".into());
        }
        if self.max_uids == 0 || self.max_uids > 65_536 {
            return bad("max uids must be 1..=65536".into());
        }
        if !(self.kappa > 0.0 && self.kappa <= 1.0) {
            return bad(format!("kappa must be in (0, 1], got {}", self.kappa));
        }
        let mut keys: Vec<_> = self.validators.iter().map(|v| v.key).collect();
        keys.sort();
        keys.dedup();
        if keys.len() != self.validators.len() {
            return bad("a validator key is listed twice".into());
        }
        if self.validators.iter().any(|v| v.stake == 0) {
            return bad("validator stake must be positive".into());
        }
        let mut holders: Vec<_> = self.balances.iter().map(|b| b.key).collect();
        holders.sort();
        holders.dedup();
        if holders.len() != self.balances.len() {
            return bad("a key has two genesis balances".into());
        }
        if self.balances.iter().any(|b| b.amount > i64::MAX as u64) {
            return bad(format!("a genesis balance is above {}", i64::MAX));
        }
        Ok(())
    }
    /// The chain's clock (blocks, windows and their times).
    pub fn schedule(&self) -> Schedule {
        Schedule {
            genesis_ms: self.genesis_time_ms,
            block_time_ms: self.block_time_ms,
            blocks_per_window: self.blocks_per_window,
        }
    }
    /// The validators' keys.
    pub fn validator_keys(&self) -> std::collections::BTreeSet<PublicKey> {
        self.validators.iter().map(|v| v.key).collect()
    }

    pub fn stake_of(&self, key: &PublicKey) -> u64 {
        self.validators
            .iter()
            .find(|v| &v.key == key)
            .map(|v| v.stake)
            .unwrap_or(0)
    }
}

/// Where a uid's bucket is and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub bucket_url: String,
    pub read_credentials: String,
    pub block: u64,
}

/// One registered participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    pub uid: u32,
    pub key: PublicKey,
    pub registered_block: u64,
    pub immune: bool,
    pub commitment: Option<Commitment>,
    /// Share of the rewards (consensus weight after clipping; sums to 1 over uids, or all 0).
    pub consensus_weight: f64,
}

/// A validator's stake and the weights it last set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorState {
    pub key: PublicKey,
    pub stake: u64,
    pub uid: Option<u32>,
    pub last_weights_block: Option<u64>,
    /// (uid, raw weight) as submitted.
    pub weights: Vec<(u32, u16)>,
}

/// The whole chain state that nodes read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metagraph {
    pub run_id: String,
    pub block: u64,
    pub window: u64,
    pub max_uids: u32,
    pub neurons: Vec<Neuron>,
    pub validators: Vec<ValidatorState>,
}

impl Metagraph {
    pub fn neuron(&self, uid: u32) -> Option<&Neuron> {
        self.neurons.iter().find(|n| n.uid == uid)
    }
    pub fn uid_of(&self, key: &PublicKey) -> Option<u32> {
        self.neurons.iter().find(|n| &n.key == key).map(|n| n.uid)
    }
    /// The next aggregation set's primaries: the `g` uids with the highest consensus weight
    /// (> 0), ties by uid ([`covenant_core::aggregation_set`]).
    pub fn aggregation_set(&self, g: usize) -> Vec<u32> {
        let w = self
            .neurons
            .iter()
            .map(|n| (n.uid, n.consensus_weight))
            .collect();
        let all = self.neurons.iter().map(|n| n.uid).collect();
        covenant_core::aggregation_set(&w, &all, g, 0).primary
    }
    /// Rewards of the window: the consensus weights of all registered uids.
    pub fn rewards(&self) -> Vec<(u32, f64)> {
        self.neurons
            .iter()
            .map(|n| (n.uid, n.consensus_weight))
            .collect()
    }
}

/// Why the chain refused a transaction. Nothing changes on the chain when one is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("signature does not verify for signer {0}")]
    BadSignature(PublicKey),
    #[error("transaction is for run {found:?}, this chain runs {expected:?}")]
    WrongRun { expected: String, found: String },
    #[error("replayed or stale nonce {nonce} (last accepted nonce of this key is {last})")]
    Replay { nonce: u64, last: u64 },
    #[error("key already registered as uid {0}")]
    AlreadyRegistered(u32),
    #[error("all {0} uids are taken and still immune")]
    Full(u32),
    #[error("key is not registered")]
    NotRegistered,
    #[error("only validators (keys with stake) may set weights")]
    NotValidator,
    #[error("invalid weights: {0}")]
    InvalidWeights(String),
    #[error("balance {balance} is below the {needed} this needs")]
    InsufficientBalance { needed: u64, balance: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("transaction rejected: {0}")]
    Rejected(Rejection),
    #[error("invalid genesis: {0}")]
    Genesis(String),
    #[error("chain ledger at {path}: {reason}")]
    Storage { path: String, reason: String },
    #[error("chain ledger at {path} already exists")]
    Exists { path: String },
    #[error("no chain ledger at {path} (create one with `covenant chain init`)")]
    Missing { path: String },
    /// A remote chain's endpoint could not be reached or answered with an error (after the
    /// client's own retries).
    #[error("chain endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A snapshot was asked for a block the chain has not produced yet.
    #[error("block {block} is not on the chain yet (it is at block {head})")]
    NotYet { block: u64, head: u64 },
    /// What this chain client cannot do (a remote chain answers only for the node's own key).
    #[error("not supported by this chain: {0}")]
    Unsupported(&'static str),
}

impl From<Rejection> for ChainError {
    fn from(r: Rejection) -> Self {
        ChainError::Rejected(r)
    }
}

/// What the chain answered to an accepted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub block: u64,
    /// The signer's uid after the transaction (register / commit), if it has one.
    pub uid: Option<u32>,
    /// For a register that replaced a uid: the key it evicted.
    pub replaced: Option<PublicKey>,
}

/// The operations a node needs from a chain. Implementations: [`Ledger`] (embedded);
/// a real blockchain client (see docs/CHAIN.md for the subtensor mapping).
pub trait Chain: Send + Sync {
    /// The chain's fixed parameters.
    fn genesis(&self) -> &Genesis;
    /// Current block height (from the chain's clock).
    fn block(&self) -> u64;
    /// Current window.
    fn window(&self) -> u64 {
        self.genesis().schedule().window_of_block(self.block())
    }
    /// What this key holds (registrations burn from it: `Genesis::registration_burn`).
    fn balance(&self, key: &PublicKey) -> Result<u64, ChainError>;
    /// The next nonce this key must use.
    fn next_nonce(&self, key: &PublicKey) -> Result<u64, ChainError>;
    /// Applies a signed transaction, or rejects it with a reason and changes nothing.
    fn submit(&self, tx: &Transaction) -> Result<Receipt, ChainError>;
    /// The whole state: uids, keys, commitments, stakes, weights, consensus weights.
    fn metagraph(&self) -> Result<Metagraph, ChainError>;
    /// The uids registered before `block` with the consensus weights that follow from the
    /// weights set before `block` (commitments: current on the embedded ledger, as of the
    /// block on an EVM chain). Every node asking for the same block
    /// gets the same answer however late it asks, which is what makes every node derive the
    /// same aggregation set for a window (ask for the window's first block).
    fn snapshot(&self, block: u64) -> Result<Snapshot, ChainError>;
}

/// Chain state as of a block (see [`Chain::snapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub block: u64,
    pub neurons: Vec<Neuron>,
    /// The consensus share burned (given to `weights::BURN_UID`): the neurons' consensus
    /// weights and this sum to 1, or all are 0.
    #[serde(default)]
    pub burned: f64,
    /// The keys of the validators whose stake counts as of `block` (on the embedded ledger:
    /// the genesis validators; on an EVM chain: staked accounts' registered payload keys).
    #[serde(default)]
    pub validators: std::collections::BTreeSet<PublicKey>,
}
