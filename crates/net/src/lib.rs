//! The network's shells (SPEC §1, §4, §8): participant identities and signed envelopes,
//! object storage (local directory | S3-compatible), clocks (system | virtual) and the chain
//! (embedded SQLite ledger behind the [`chain::Chain`] trait that a real blockchain can implement).
//!
//! Everything here treats what comes from peers, stores and the chain as untrusted: reads are
//! bounded, errors are typed values that say what was wrong, nothing panics on bad input.

pub mod chain;
pub mod clock;
pub mod envelope;
pub mod gather;
pub mod hex;
pub mod identity;
pub mod store;

pub use chain::{
    Balance, Chain, ChainError, Genesis, Ledger, Metagraph, Rejection, Snapshot, Transaction,
    TxBody,
};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use envelope::{open, seal, Envelope, EnvelopeError, Expected};
pub use identity::{KeyError, Keypair, PublicKey};
pub use store::{ObjectInfo, RetryPolicy, S3Config, Store, StoreError};
