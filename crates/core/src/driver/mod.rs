//! The node drivers: the whole logic of a miner and of a validator as sans-I/O state machines
//! (the shape of `quinn-proto`).
//!
//! An executor owns the clock, the chain, the stores, the model and the data. It calls
//! [`Driver::handle`] with the time and what happened ([`Input`]); the driver answers with what
//! to do ([`Action`]), typed events to log ([`NodeEvent`]) or [`Output::Stop`]. The executor
//! carries the actions out and feeds their results back as inputs, and calls `handle(now,
//! Input::Tick)` once the time reaches [`Driver::poll_timeout`]. Drivers never read a clock,
//! sleep, touch a tensor or do I/O: the same driver runs under the real executor (threads, the
//! OS clock, the chain ledger, S3) and under the simulator (a virtual clock, in-memory stores).
//!
//! ```text
//!              Input (Tick, Chain, Listed, Fetched, Stepped, Applied, Evaluated, …)
//!   executor ─────────────────────────────────────────────────────────────▶ driver
//!            ◀─────────────────────────────────────────────────────────────
//!              Output::Do(Action) (ReadChain, List, Fetch, TrainStep, Compress,
//!              Upload, Apply, Evaluate, SetWeights, PublishRecord, …) · Emit(NodeEvent) · Stop
//! ```
//!
//! [`replica::Replica`] is what every node does to hold the canonical model: join from a
//! checkpoint, follow the windows, fix each window's aggregation set from the chain, list,
//! fetch and apply the outer step, and catch up when behind. [`miner::Miner`] adds training,
//! compression and uploads; [`validator::Validator`] adds the Gauntlet, weights, records and
//! checkpoints.

pub mod events;
pub mod miner;
pub mod replica;
#[cfg(test)]
mod tests;
pub mod validator;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use covenant_codec::WireError;
use serde::{Deserialize, Serialize};

use crate::gauntlet::Gauntlet;
use crate::params::RunParams;
use crate::scoring::{Evaluation, Fingerprint};
use crate::{Millis, Uid, Window};

pub use events::{NodeEvent, NodeStats, RejectionNote};

/// BLAKE3 of the canonical parameters (what replicas compare and validators publish).
pub type Hash = [u8; 32];

/// A node's protocol logic.
pub trait Driver {
    /// Handles one input at time `now` (ms on the chain's clock).
    fn handle(&mut self, now: Millis, input: Input) -> Vec<Output>;
    /// When the driver next wants `handle(now, Input::Tick)` (`None`: only on inputs).
    fn poll_timeout(&self) -> Option<Millis>;
}

/// What a driver asks of its executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Do(Action),
    Emit(NodeEvent),
    /// The node is done (`--until-window` reached).
    Stop,
}

/// Everything a node is configured with, from the run spec and the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The protocol parameters with the chain's timing.
    pub params: RunParams,
    /// This node's uid.
    pub uid: Uid,
    /// The run seed (data pools, fingerprint positions, evaluation seeds).
    pub seed: u64,
    /// Stop once this window is applied (`None`: run until stopped).
    pub until_window: Option<Window>,
    /// Own uploads, fingerprints and records are kept this many windows.
    pub keep_windows: u64,
    /// Validators publish a checkpoint every this many windows.
    pub checkpoint_every: u64,
    /// Miners train window w + 1 while window w is gathered (docs/NODES.md).
    pub overlap: bool,
}

impl NodeConfig {
    /// A listing is taken this long after a window's grace period ends, so that every object put
    /// in time is visible to every node (stores that list late are bounded by this).
    pub fn settle_ms(&self) -> u64 {
        self.params.block_time_ms / 2
    }

    /// When window `w` is listed for its outer step.
    pub fn list_time(&self, w: Window) -> Millis {
        self.params.gather_time(w) + self.settle_ms()
    }

    /// The latest time window `w`'s outer step is done live; after it a node that has not
    /// applied `w` catches up instead (validators' records or recomputation).
    pub fn live_deadline(&self, w: Window) -> Millis {
        self.params.gather_time(w) + self.params.window_ms() / 2
    }

    /// Until when a validator goes on evaluating window `w` (during `w + 1`) beyond its
    /// `uids_per_window`: a tenth of a window and two blocks before `w + 2` starts, so that
    /// its weights reach the chain in time to count for `w + 1`'s aggregation set.
    pub fn eval_deadline(&self, w: Window) -> Millis {
        let p = &self.params;
        p.window_start_ms(w + 2)
            .saturating_sub(2 * p.block_time_ms + p.window_ms() / 10)
    }

    /// When a node reads the chain for window `w`: half a block into it, once its first block
    /// is final.
    pub fn read_time(&self, w: Window) -> Millis {
        self.params.window_start_ms(w) + self.params.block_time_ms / 2
    }
}

/// The chain as of a window's first block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainView {
    pub window: Window,
    /// Miners (uids that are not validators) registered before the block.
    pub registered: BTreeSet<Uid>,
    /// Consensus weights from the weights set before the block (only the order matters here).
    pub consensus: BTreeMap<Uid, f64>,
    /// Miners whose commitment names a store this node can open.
    pub committed: BTreeSet<Uid>,
    /// Validators' uids with a commitment (their records and checkpoints can be read).
    pub validators: BTreeSet<Uid>,
    /// The registered miners' keys: a uid whose key changes is a new participant.
    pub keys: BTreeMap<Uid, [u8; 32]>,
}

/// Why an executor could not do something: the kind (for decisions) and a message for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// Kinds of executor failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// An object store refused or could not be reached.
    Store,
    /// The chain refused or could not be reached.
    Chain,
    /// The model or its data failed (libtorch, a token file).
    Trainer,
    /// The codec refused (a non-finite update, shapes).
    Codec,
    /// A checkpoint or record did not verify.
    Verification,
    /// The node's own disk (state file, event log).
    Disk,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl std::fmt::Display) -> Self {
        Failure {
            kind,
            message: message.to_string(),
        }
    }
}

/// Why a store operation failed, as far as the protocol cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreFault {
    /// The store did not answer in time or the connection failed.
    Unreachable,
    /// The store answered with a server error.
    Server,
    /// Access denied.
    Denied,
    /// Anything else (a configuration error, a local I/O error).
    Other,
}

/// What HEAD found for one peer's upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Listing {
    /// The object's store timestamp.
    Found(Millis),
    /// No object (or no readable commitment).
    Absent,
    /// The store failed (after the executor's retries).
    Unavailable(StoreFault),
}

/// Why one peer's upload was not used. `Unavailable` (a store error) is not `Invalid` (a
/// payload that fails validation): the first says nothing about the peer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("store unavailable after {attempts} attempts ({fault:?})")]
    Unavailable { attempts: u32, fault: StoreFault },
    #[error("no upload (deleted after it was listed, or never there)")]
    NotFound,
    #[error("the object changed after it was listed (store time {listed} then {found})")]
    Replaced { listed: Millis, found: Millis },
    #[error("stored too early or too late for its window (store time {found})")]
    OutOfTime { found: Millis },
    #[error("too large: {size} bytes, the limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("invalid payload: {0}")]
    Invalid(WireError),
    #[error("no commitment on chain")]
    NoCommitment,
}

impl Rejection {
    /// Store trouble that may pass: try again later; says nothing about the peer.
    pub fn is_transient(&self) -> bool {
        matches!(self, Rejection::Unavailable { .. })
    }

    /// The upload is not (or no longer) there as it was in its window: deleted, replaced or
    /// stored out of time.
    pub fn gone(&self) -> bool {
        matches!(
            self,
            Rejection::NotFound | Rejection::Replaced { .. } | Rejection::OutOfTime { .. }
        )
    }
}

/// What the executor should bring back with each fetched upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchDetail {
    /// The keys of the selected coordinates, for the copy check.
    pub copy_keys: bool,
    /// The peer's signed fingerprint of the model it trained from.
    pub fingerprint: bool,
    /// Replaying a validator's record: where the peer's own copy is gone, out of time or
    /// replaced, take the copy this validator (uid) kept of what it aggregated. It is still
    /// the peer's signed upload, and the record's hash checks the result.
    pub mirror: Option<Uid>,
}

/// One fetched, verified and decoded upload (the payload itself stays with the executor).
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub bytes: u64,
    pub store_time: Millis,
    /// Every value decodes to zero (a null window's upload, a free-rider's).
    pub zero: bool,
    /// [`crate::selection::copy_keys`] of the payload, when asked for.
    pub copy_keys: Vec<u64>,
    /// The peer's fingerprint for the window, when asked for.
    pub fingerprint: Option<FingerprintSeen>,
}

/// What reading a peer's fingerprint found.
#[derive(Debug, Clone, PartialEq)]
pub enum FingerprintSeen {
    Found(Fingerprint),
    /// Not published (or not valid): the peer's doing, measured as out of sync.
    Absent,
    /// The store failed: nothing is known.
    Unreadable,
}

/// A validator's signed record of one window's outer step, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordInfo {
    pub validator: Uid,
    pub aggregated: Vec<Uid>,
    pub lr: f64,
    pub hash_after: Hash,
}

/// How the live (trained) model follows an outer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// The live model becomes the canonical one (nothing trained since it was last set).
    Canon,
    /// Mid-window: the live model keeps what it trained since its window's starting point on
    /// top of the new canonical model. When that starting point was carried over from the last
    /// window (overlap), every step of the window stays in its pseudo-gradient (now measured
    /// from the canonical model); when it was the canonical model before the step, the
    /// pseudo-gradient restarts there (docs/NODES.md, "Overlap").
    Shift,
}

/// What a driver asks its executor to do. Compute actions (`TrainStep`, `Compress`, `Apply`,
/// `Evaluate`, `MeasureValLoss`, `LoadCheckpoint`, `ResetTrainer`) are issued one at a time;
/// the others may run concurrently.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Read the chain as of window `window`'s first block. → [`Input::Chain`]
    ReadChain { window: Window },
    /// HEAD the window-`window` uploads of `peers` (stores from the chain at `window + 1`).
    /// → [`Input::Listed`]
    List { window: Window, peers: Vec<Uid> },
    /// GET, time-check, verify and decode these uploads; store errors are retried until
    /// `deadline`. A GET whose store time differs from `listed` is rejected as replaced.
    /// → [`Input::Fetched`]
    Fetch {
        window: Window,
        peers: Vec<Uid>,
        listed: BTreeMap<Uid, Millis>,
        deadline: Millis,
        detail: FetchDetail,
    },
    /// Read every validator's signed record of window `window`. → [`Input::Records`]
    FetchRecords { window: Window },
    /// List the checkpoints validators have published. → [`Input::Checkpoints`]
    ListCheckpoints,
    /// Verify and load a validator's checkpoint as the canonical model (and the live model).
    /// → [`Input::CheckpointLoaded`]
    LoadCheckpoint { window: Window, validator: Uid },
    /// Fresh optimizer state and the live model set to the canonical one (a (re)join).
    /// → [`Input::Done`]
    ResetTrainer,
    /// One inner step of window `window`: batch `step` of this node's assigned pool.
    /// → [`Input::Stepped`]
    TrainStep { window: Window, step: u32 },
    /// The window's pseudo-gradient (`zero`: a zero update, error feedback reset) compressed
    /// with error feedback, signed, and kept for upload. The live model rolls back to the
    /// canonical one, or with `carry` (overlap) goes on from where it is: the next window
    /// trains on from it and measures its pseudo-gradient from it. → [`Input::Compressed`]
    Compress {
        window: Window,
        zero: bool,
        carry: bool,
    },
    /// Put the compressed window-`window` update and a fingerprint of the canonical model,
    /// retrying store errors until `deadline`. → [`Input::Uploaded`]
    Upload { window: Window, deadline: Millis },
    /// Delete own objects of window `window` (retention). → [`Input::Done`]
    Prune { window: Window },
    /// Aggregate these fetched uploads of `window` (in this order) and step the canonical model
    /// θ ← θ − lr·update; with `expect`, only if the result has that hash (else nothing
    /// changes). → [`Input::Applied`]
    Apply {
        window: Window,
        peers: Vec<Uid>,
        lr: f64,
        expect: Option<Hash>,
        live: Live,
    },
    /// The canonical model's fingerprint at the run's positions, and at the positions of each
    /// of `peers`' window-`window` fingerprints. → [`Input::Fingerprinted`]
    Fingerprint { window: Window, peers: Vec<Uid> },
    /// Screens of these peers' window-`window` updates: each applied alone at `lr` to the
    /// canonical model (restored after), clipped as for [`Action::Evaluate`], and its loss
    /// score on the first `screen_sequences` of the random pool. → [`Input::Screened`]
    Screen {
        window: Window,
        peers: Vec<Uid>,
        lr: f64,
        clip_to: Vec<Uid>,
    },
    /// The four Gauntlet losses of `uid`'s window-`window` update applied alone at `lr` to the
    /// canonical model (restored after), every tensor clipped to the lower-median norm of the
    /// uploads of `clip_to` (SPEC §5). → [`Input::Evaluated`]
    Evaluate {
        window: Window,
        uid: Uid,
        lr: f64,
        clip_to: Vec<Uid>,
    },
    /// Validation loss of the canonical model. → [`Input::Validated`]
    MeasureValLoss { window: Window },
    /// Submit these (quantised) weights to the chain. → [`Input::Done`]
    SetWeights {
        window: Window,
        weights: Vec<(Uid, u16)>,
    },
    /// Publish the signed record of window `window`'s outer step. → [`Input::Done`]
    PublishRecord {
        window: Window,
        aggregated: Vec<Uid>,
        lr: f64,
        hash: Hash,
    },
    /// Publish the canonical model (after `window`) as a checkpoint. → [`Input::Done`]
    PublishCheckpoint { window: Window },
    /// Save the validator's state (after window `window`) so that a restart resumes its
    /// ratings. → [`Input::Done`]
    Persist {
        window: Window,
        gauntlet: Box<Gauntlet>,
    },
}

impl Action {
    /// Whether the action uses the model (and so runs one at a time, in order).
    pub fn is_compute(&self) -> bool {
        matches!(
            self,
            Action::LoadCheckpoint { .. }
                | Action::ResetTrainer
                | Action::TrainStep { .. }
                | Action::Compress { .. }
                | Action::Apply { .. }
                | Action::Fingerprint { .. }
                | Action::Screen { .. }
                | Action::Evaluate { .. }
                | Action::MeasureValLoss { .. }
        )
    }
}

/// Which chore a [`Input::Done`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chore {
    ResetTrainer,
    Prune,
    SetWeights,
    PublishRecord,
    PublishCheckpoint,
    Persist,
}

/// What an executor reports: the time has come, or an action's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The first input, once the executor is ready.
    Start,
    /// The time from [`Driver::poll_timeout`] has come.
    Tick,
    Chain {
        window: Window,
        view: Result<ChainView, Failure>,
    },
    Listed {
        window: Window,
        uploads: BTreeMap<Uid, Listing>,
    },
    Fetched {
        window: Window,
        results: BTreeMap<Uid, Result<Fetched, Rejection>>,
    },
    Records {
        window: Window,
        records: Vec<RecordInfo>,
    },
    /// The checkpoints found (window, validator); an error when no validator's store could be
    /// listed (not the same as none found).
    Checkpoints {
        found: Result<Vec<(Window, Uid)>, Failure>,
    },
    CheckpointLoaded {
        window: Window,
        validator: Uid,
        result: Result<Hash, Failure>,
    },
    Stepped {
        window: Window,
        step: u32,
        result: Result<StepInfo, Failure>,
    },
    Compressed {
        window: Window,
        result: Result<Compressed, Failure>,
    },
    Uploaded {
        window: Window,
        result: Result<u64, Failure>,
    },
    Applied {
        window: Window,
        result: Result<Applied, Failure>,
    },
    Fingerprinted {
        window: Window,
        fingerprint: Fingerprint,
        /// At the positions of each peer's fingerprint (`scoring::fingerprint_seed`).
        peers: BTreeMap<Uid, Fingerprint>,
    },
    /// What the screens found, per peer.
    Screened {
        window: Window,
        result: Result<BTreeMap<Uid, crate::gauntlet::Screen>, Failure>,
    },
    Evaluated {
        window: Window,
        uid: Uid,
        result: Result<Evaluation, Failure>,
    },
    Validated {
        window: Window,
        result: Result<f64, Failure>,
    },
    Done {
        chore: Chore,
        window: Option<Window>,
        result: Result<(), Failure>,
    },
}

/// One inner step's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    pub loss: f32,
    /// The inner learning rate the step used (`NaN` when nothing was stepped).
    pub lr: f64,
    /// Time the step took (executor's clock).
    pub elapsed_ms: u64,
    /// False when the pool had no batch left for this step (nothing was trained).
    pub trained: bool,
}

/// A compressed, signed upload ready to be put.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compressed {
    pub bytes: u64,
    pub elapsed_ms: u64,
    /// The pseudo-gradient was not finite: a zero update was prepared instead.
    pub fell_back_to_zero: bool,
}

/// An outer step's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    pub hash: Hash,
    /// False when `expect` was given and the result differed (nothing changed).
    pub committed: bool,
    pub elapsed_ms: u64,
}

/// Model actions run one at a time: a queue in front of the executor's model.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ComputeGate {
    busy: bool,
    queue: VecDeque<Action>,
}

impl ComputeGate {
    /// Queues a compute action; returns it at once if the model is free.
    pub fn submit(&mut self, a: Action, out: &mut Vec<Output>) {
        self.queue.push_back(a);
        self.pump(out);
    }

    /// A compute action finished: the next one (if any) goes out.
    pub fn finished(&mut self, out: &mut Vec<Output>) {
        self.busy = false;
        self.pump(out);
    }

    fn pump(&mut self, out: &mut Vec<Output>) {
        if !self.busy {
            if let Some(a) = self.queue.pop_front() {
                self.busy = true;
                out.push(Output::Do(a));
            }
        }
    }
}

/// How a driver starts and stops: at `until_window`, once it is applied (and the role's own
/// work for it is done), or three windows after it at the latest; then `Finished` with the
/// node's figures, and `Stop`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Life {
    started: Option<Millis>,
    give_up: Option<Millis>,
    pub stopped: bool,
    pub stats: NodeStats,
    pub last_hash: Option<Hash>,
}

impl Life {
    pub fn start(&mut self, now: Millis, cfg: &NodeConfig) {
        self.started = Some(now);
        self.give_up = cfg.until_window.map(|u| cfg.read_time(u + 3));
    }

    /// The running totals, with the wall time from the start to `now`.
    pub fn stats_at(&self, now: Millis) -> NodeStats {
        NodeStats {
            wall_ms: now.saturating_sub(self.started.unwrap_or(now)),
            ..self.stats
        }
    }

    /// Stops if the run is done (`done`: the last window applied and handled) or out of time.
    pub fn stop_if(
        &mut self,
        now: Millis,
        done: bool,
        applied: Option<Window>,
        out: &mut Vec<Output>,
    ) {
        let Some(give_up) = self.give_up else { return };
        if self.stopped || !(done || now >= give_up) {
            return;
        }
        self.stopped = true;
        out.push(Output::Emit(NodeEvent::Finished {
            applied,
            hash: self.last_hash.as_ref().map(hex).unwrap_or_default(),
            stats: self.stats_at(now),
        }));
        out.push(Output::Stop);
    }

    /// The earliest of the driver's deadlines (none once stopped).
    pub fn poll(&self, deadlines: &[Option<Millis>]) -> Option<Millis> {
        if self.stopped {
            return None;
        }
        deadlines
            .iter()
            .copied()
            .chain([self.give_up])
            .flatten()
            .min()
    }
}

/// Named timers of a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timers<K: Ord + Copy> {
    set: BTreeSet<(Millis, K)>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            set: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    pub fn set(&mut self, at: Millis, k: K) {
        self.set.retain(|(_, x)| *x != k);
        self.set.insert((at, k));
    }

    /// Removes and returns the timers due at `now`, earliest first.
    pub fn due(&mut self, now: Millis) -> Vec<K> {
        let due: Vec<(Millis, K)> = self
            .set
            .iter()
            .take_while(|(t, _)| *t <= now)
            .copied()
            .collect();
        for d in &due {
            self.set.remove(d);
        }
        due.into_iter().map(|(_, k)| k).collect()
    }

    pub fn next(&self) -> Option<Millis> {
        self.set.iter().next().map(|(t, _)| *t)
    }
}

/// Lower-case hex of a hash (as events and records carry it).
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`hex`] back (`None` if it is not 64 hex digits).
pub fn parse_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn timers_fire_in_order_and_replace_by_name() {
        let mut t: Timers<u8> = Timers::default();
        t.set(30, 1);
        t.set(10, 2);
        t.set(20, 1);
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.due(25), vec![2, 1]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn gate_issues_one_compute_action_at_a_time() {
        let mut g = ComputeGate::default();
        let mut out = Vec::new();
        g.submit(Action::ResetTrainer, &mut out);
        let fp = Action::Fingerprint {
            window: 1,
            peers: vec![],
        };
        g.submit(fp.clone(), &mut out);
        assert_eq!(out, vec![Output::Do(Action::ResetTrainer)]);
        out.clear();
        g.finished(&mut out);
        assert_eq!(out, vec![Output::Do(fp)]);
        out.clear();
        g.finished(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn hex_roundtrips() {
        let h = [0xAB; 32];
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex("zz"), None);
    }
}
