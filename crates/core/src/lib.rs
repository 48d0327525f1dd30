//! covenant-core: the protocol without I/O.
//!
//! Window arithmetic, aggregation and evaluation sets, consensus, the Gauntlet's scoring rules,
//! OpenSkill ratings, penalties, weights, and the whole logic of miners and validators as
//! sans-I/O drivers ([`driver`]). Time, randomness (as seeds) and the results of I/O (store
//! timestamps, losses, fingerprints, chain state) are passed in; decisions come out. No tensors,
//! no I/O, no clock. [`sim`] drives the rules at scale with synthetic peers. The rules and
//! defaults are summarised in `docs/PROTOCOL.md`.

pub mod consensus;
pub mod driver;
pub mod error;
pub mod gauntlet;
pub mod openskill;
pub mod params;
pub mod rng;
pub mod scoring;
pub mod selection;
pub mod sim;
pub mod weights;
pub mod window;

/// A participant's slot on the chain.
pub type Uid = u32;
/// Window index: `floor(block / blocks_per_window)`.
pub type Window = u64;
/// Block height.
pub type Block = u64;
/// Milliseconds since the Unix epoch (the chain's and the store's clock).
pub type Millis = u64;

pub use consensus::yuma_consensus;
pub use error::{CoreError, Result};
pub use gauntlet::{
    EvalOutcome, Gauntlet, Observations, PeerRecord, PeerReport, Verdict, WindowPlan, WindowReport,
};
pub use openskill::Rating;
pub use params::RunParams;
pub use scoring::{Fingerprint, LossProbe};
pub use selection::{aggregation_set, copy_keys, AggregationSet, SelectedIndices, UploadIndices};
pub use weights::{compute_weights, Weights};
pub use window::UploadTiming;
