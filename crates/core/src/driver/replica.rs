//! What every node does to hold the canonical model (SPEC §4, §6): join from the newest
//! verified checkpoint, follow the windows on the chain's clock, fix each window's aggregation
//! set from the chain, list and fetch its uploads, apply its outer step, and catch up when
//! behind, window by window, from validators' records (hash checked) or by recomputing the
//! window exactly as a live node does.
//!
//! Window `n` is applied in order, once its grace period is over and the listing has settled
//! ([`NodeConfig::list_time`]):
//! ```text
//! live (until NodeConfig::live_deadline):  ReadChain(n+1) → List → [owner] → Fetch → [owner] → Apply
//! behind:  FetchRecords → Fetch(record's peers) → Apply(expect record's hash)
//!          else ReadChain(n+1) → List → Fetch → Apply            (recomputed)
//! ```
//! The aggregation set of `n` follows from the chain as of `n + 1`'s first block, which every
//! node reads the same however late it asks; the uploads counted are those whose store
//! timestamp lies in `n`'s acceptance interval. So live, recomputed and replayed steps agree.
//! A node that cannot fetch an upload of the set (a store outage) does not apply a different
//! set: it leaves the window and catches up once the store answers.
//!
//! The replica also holds the node's [`ComputeGate`]: every model action of the node goes
//! through it.

use std::collections::{BTreeMap, BTreeSet};

use super::events::{NodeEvent, RejectionNote, StepSource};
use super::{
    hex, Action, Applied, ChainView, ComputeGate, FetchDetail, Fetched, Hash, Input, Listing, Live,
    NodeConfig, Output, RecordInfo, Rejection, Timers,
};
use crate::selection::{aggregation_set, AggregationSet};
use crate::{Millis, Uid, Window};

/// What the replica tells its owner (the miner or validator driver).
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Window `w` has started (its first block is final) and its chain view is being read.
    WindowStarted(Window),
    /// The live window `window` is listed: the owner must call [`Replica::fetch`] with at
    /// least `gather`.
    Listed {
        window: Window,
        view: ChainView,
        set: AggregationSet,
        uploads: BTreeMap<Uid, Listing>,
        gather: Vec<Uid>,
    },
    /// The live window's uploads are fetched. If `complete`, the owner must call
    /// [`Replica::apply`] with `valid` (the gathered peers whose upload verified); otherwise an
    /// upload of the set could not be read and the window is caught up later.
    Gathered {
        window: Window,
        gather: Vec<Uid>,
        valid: Vec<Uid>,
        complete: bool,
        results: BTreeMap<Uid, Result<Fetched, Rejection>>,
    },
    /// The canonical model took window `window`'s outer step.
    Applied {
        window: Window,
        hash: Hash,
        peers: Vec<Uid>,
        lr: f64,
        source: StepSource,
        rejected: BTreeMap<Uid, RejectionNote>,
    },
    /// The node has caught up: it holds every window before the current one (or is gathering
    /// the last one live).
    Joined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Read the chain when window `w` starts.
    Window(Window),
    /// Try the next window's outer step.
    Pipeline,
    /// List the checkpoints again.
    Checkpoints,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Looking for a checkpoint.
    Searching,
    /// Trying checkpoints, newest first.
    Loading(Vec<(Window, Uid)>),
    Following,
}

/// How the step in progress was decided.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Live,
    Record {
        records: Vec<RecordInfo>,
        idx: usize,
    },
    Recompute,
}

impl Mode {
    fn source(&self) -> StepSource {
        match self {
            Mode::Live => StepSource::Live,
            Mode::Record { .. } => StepSource::Record,
            Mode::Recompute => StepSource::Recomputed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Job {
    Idle,
    Records,
    Listing {
        mode: Mode,
        until: Millis,
    },
    /// Waiting for the owner's [`Replica::fetch`].
    OwnerFetch {
        gather: Vec<Uid>,
        listed: BTreeMap<Uid, Millis>,
    },
    Fetching {
        mode: Mode,
        gather: Vec<Uid>,
    },
    /// Waiting for the owner's [`Replica::apply`].
    OwnerApply {
        rejected: BTreeMap<Uid, RejectionNote>,
    },
    Applying {
        mode: Mode,
        peers: Vec<Uid>,
        lr: f64,
        rejected: BTreeMap<Uid, RejectionNote>,
    },
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub cfg: NodeConfig,
    /// List every committed miner (validators evaluate them), not only the aggregation set.
    list_everyone: bool,
    applied: Option<Window>,
    phase: Phase,
    views: BTreeMap<Window, ChainView>,
    reading: BTreeSet<Window>,
    job: Job,
    /// Records were already tried for the next window.
    records_tried: bool,
    /// Checkpoints were searched for once since the node started.
    searched: bool,
    /// The node has followed the windows once (so a missing checkpoint means waiting for one,
    /// not starting from the initial model).
    followed: bool,
    retry_at: Option<Millis>,
    announced: Option<Window>,
    timers: Timers<Timer>,
    pub(crate) gate: ComputeGate,
    /// The owner is training mid-window: outer steps shift the live model ([`Live::Shift`]).
    training: bool,
    joined: bool,
    from_checkpoint: Option<Window>,
    replayed: u64,
    last_hash: Option<Hash>,
}

impl Replica {
    pub fn new(cfg: NodeConfig, list_everyone: bool) -> Self {
        Replica {
            cfg,
            list_everyone,
            applied: None,
            phase: Phase::Searching,
            views: BTreeMap::new(),
            reading: BTreeSet::new(),
            job: Job::Idle,
            records_tried: false,
            searched: false,
            followed: false,
            retry_at: None,
            announced: None,
            timers: Timers::default(),
            gate: ComputeGate::default(),
            training: false,
            joined: false,
            from_checkpoint: None,
            replayed: 0,
            last_hash: None,
        }
    }

    /// Last window whose outer step is in the canonical model (`None`: the initial model).
    pub fn applied(&self) -> Option<Window> {
        self.applied
    }

    /// The next window to apply.
    pub fn next(&self) -> Window {
        self.applied.map_or(0, |a| a + 1)
    }

    /// Whether the node can take part in window `w`: it holds every window before `w − 1` and
    /// gathers `w − 1` live.
    pub fn in_time_for(&self, w: Window) -> bool {
        self.phase == Phase::Following && self.next() + 1 >= w
    }

    /// The owner trains mid-window from now (`true`) or has rolled back (`false`).
    pub fn set_training(&mut self, on: bool) {
        self.training = on;
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// Whether the node has caught up with the network once (it follows it live since).
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// Queues a model action (they run one at a time).
    pub fn submit(&mut self, a: Action, out: &mut Vec<Output>) {
        self.gate.submit(a, out);
    }

    /// Handles an input (every input of the node goes through here first) and says what the
    /// owner must know.
    pub fn handle(&mut self, now: Millis, input: &Input, out: &mut Vec<Output>) -> Vec<Note> {
        let mut notes = Vec::new();
        if is_compute_result(input) {
            self.gate.finished(out);
        }
        let next = self.next();
        match input {
            Input::Start => self.search(now, out),
            Input::Tick => {
                for t in self.timers.due(now) {
                    match t {
                        Timer::Window(w) => self.window_started(w, out, &mut notes),
                        Timer::Checkpoints if self.phase == Phase::Searching => {
                            out.push(Output::Do(Action::ListCheckpoints))
                        }
                        _ => {}
                    }
                }
            }
            Input::Checkpoints { found: Ok(found) } => self.checkpoints(now, found, out),
            Input::Checkpoints { found: Err(e) } => {
                error(out, None, format!("listing checkpoints: {e}; trying again"));
                self.timers.set(now + self.retry_ms(), Timer::Checkpoints);
            }
            Input::CheckpointLoaded {
                window,
                validator,
                result,
            } => self.checkpoint_loaded(*window, *validator, result, out),
            Input::Chain { window, view } => {
                self.reading.remove(window);
                match view {
                    Ok(v) => {
                        self.views.insert(*window, v.clone());
                    }
                    Err(e) => {
                        error(out, Some(*window), format!("reading the chain: {e}"));
                        self.retry_later(now);
                    }
                }
            }
            Input::Records { window, records } if *window == next => {
                self.records(now, records.clone(), out);
            }
            Input::Listed { window, uploads } if *window == next => {
                self.listed(now, uploads, out, &mut notes);
            }
            Input::Fetched { window, results } if *window == next => {
                self.fetched(now, results, out, &mut notes);
            }
            Input::Applied { window, result } if *window == next => match result {
                Ok(a) => self.applied_step(now, a, out, &mut notes),
                Err(e) => {
                    error(out, Some(*window), format!("outer step: {e}"));
                    self.job = Job::Idle;
                    self.retry_later(now);
                }
            },
            _ => {}
        }
        self.advance(now, out, &mut notes);
        notes
    }

    /// The owner's fetch for the live window (after [`Note::Listed`]): `peers` must contain
    /// the gather set.
    pub fn fetch(
        &mut self,
        window: Window,
        peers: Vec<Uid>,
        detail: FetchDetail,
        out: &mut Vec<Output>,
    ) {
        let Job::OwnerFetch { gather, listed } = std::mem::replace(&mut self.job, Job::Idle) else {
            return;
        };
        out.push(Output::Do(Action::Fetch {
            window,
            peers,
            listed,
            deadline: self.cfg.live_deadline(window),
            detail,
        }));
        self.job = Job::Fetching {
            mode: Mode::Live,
            gather,
        };
    }

    /// The owner's outer step for the live window (after a complete [`Note::Gathered`]).
    pub fn apply(&mut self, window: Window, peers: Vec<Uid>, out: &mut Vec<Output>) {
        let Job::OwnerApply { rejected } = std::mem::replace(&mut self.job, Job::Idle) else {
            return;
        };
        let lr = self.cfg.params.outer_lr_at(window);
        self.start_apply(window, Mode::Live, peers, lr, None, rejected, out);
    }

    /// Window `w` started: read its chain view and tell the owner.
    fn window_started(&mut self, w: Window, out: &mut Vec<Output>, notes: &mut Vec<Note>) {
        if self.announced.is_some_and(|a| a >= w) {
            return;
        }
        self.announced = Some(w);
        self.read_chain(w, out);
        notes.push(Note::WindowStarted(w));
    }

    fn read_chain(&mut self, w: Window, out: &mut Vec<Output>) {
        if !self.views.contains_key(&w) && self.reading.insert(w) {
            out.push(Output::Do(Action::ReadChain { window: w }));
        }
    }

    fn checkpoints(&mut self, now: Millis, found: &[(Window, Uid)], out: &mut Vec<Output>) {
        if self.phase != Phase::Searching {
            return;
        }
        let held = self.applied;
        let mut c: Vec<(Window, Uid)> = found
            .iter()
            .copied()
            .filter(|(w, _)| held.is_none_or(|a| *w > a))
            .collect();
        if c.is_empty() && self.followed {
            // Behind the uploads' retention with no newer checkpoint yet: wait for one.
            self.timers.set(now + self.retry_ms(), Timer::Checkpoints);
            return;
        }
        c.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        c.dedup_by_key(|x| x.0);
        self.phase = Phase::Loading(c);
        self.load_next(out);
    }

    /// Tries the newest checkpoint left; with none left, follows from the model held (the
    /// initial one for a new node), which looks again later if it must.
    fn load_next(&mut self, out: &mut Vec<Output>) {
        let Phase::Loading(c) = &mut self.phase else {
            return;
        };
        if c.is_empty() {
            self.phase = Phase::Following;
            return;
        }
        let (window, validator) = c.remove(0);
        self.gate
            .submit(Action::LoadCheckpoint { window, validator }, out);
    }

    fn checkpoint_loaded(
        &mut self,
        window: Window,
        validator: Uid,
        result: &Result<Hash, super::Failure>,
        out: &mut Vec<Output>,
    ) {
        match result {
            Ok(h) => {
                self.last_hash = Some(*h);
                self.applied = Some(window);
                self.from_checkpoint = Some(window);
                self.records_tried = false;
                self.phase = Phase::Following;
            }
            Err(e) => {
                out.push(Output::Emit(NodeEvent::CheckpointRefused {
                    window,
                    validator,
                    reason: e.to_string(),
                }));
                self.load_next(out);
            }
        }
    }

    /// Moves the outer-step pipeline and the window clock forward.
    fn advance(&mut self, now: Millis, out: &mut Vec<Output>, notes: &mut Vec<Note>) {
        self.schedule_window(now);
        if self.phase != Phase::Following || self.job != Job::Idle {
            return;
        }
        self.followed = true;
        let n = self.next();
        self.note_joined(now, n, out, notes);
        if self.cfg.until_window.is_some_and(|u| n > u) {
            return;
        }
        let ready = self.cfg.list_time(n).max(self.retry_at.unwrap_or(0));
        if now < ready {
            self.timers.set(ready, Timer::Pipeline);
            return;
        }
        self.retry_at = None;
        if !self.views.contains_key(&(n + 1)) {
            self.read_chain(n + 1, out);
            return;
        }
        let live = now < self.cfg.live_deadline(n) && self.joined;
        if !live && !self.records_tried {
            self.records_tried = true;
            self.job = Job::Records;
            out.push(Output::Do(Action::FetchRecords { window: n }));
            return;
        }
        if !live && !self.recomputable(n, now) {
            // Peers have pruned the window's uploads: absent now is not absent then. Only a
            // newer checkpoint helps.
            self.search(now, out);
            return;
        }
        let mode = if live { Mode::Live } else { Mode::Recompute };
        self.list(now, n, mode, out);
    }

    /// Whether window `n`'s uploads are still kept by their owners (they prune a window
    /// `keep_windows` after it), with a margin of two windows.
    fn recomputable(&self, n: Window, now: Millis) -> bool {
        let cur = self.cfg.params.window_of_time(now);
        cur + 2 <= n + self.cfg.keep_windows
    }

    /// Looks for a checkpoint newer than the model held (again, after a pause, if the last
    /// search found none that loaded).
    fn search(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.phase = Phase::Searching;
        if self.searched {
            self.timers.set(now + self.retry_ms(), Timer::Checkpoints);
        } else {
            out.push(Output::Do(Action::ListCheckpoints));
        }
        self.searched = true;
    }

    /// Sets the timer of the next window start (the current window's at once when the node
    /// starts mid-window; windows a busy node missed are skipped).
    fn schedule_window(&mut self, now: Millis) {
        let cur = self.cfg.params.window_of_time(now);
        let next = self.announced.map_or(cur, |a| (a + 1).max(cur));
        self.timers
            .set(self.cfg.read_time(next), Timer::Window(next));
    }

    fn note_joined(
        &mut self,
        now: Millis,
        n: Window,
        out: &mut Vec<Output>,
        notes: &mut Vec<Note>,
    ) {
        let cur = self.cfg.params.window_of_time(now);
        if self.joined || n + 1 < cur {
            return;
        }
        self.joined = true;
        out.push(Output::Emit(NodeEvent::Joined {
            window: cur,
            applied: self.applied,
            from_checkpoint: self.from_checkpoint,
            replayed: self.replayed,
            hash: self.last_hash.as_ref().map(hex).unwrap_or_default(),
        }));
        notes.push(Note::Joined);
    }

    fn list(&mut self, now: Millis, n: Window, mode: Mode, out: &mut Vec<Output>) {
        let Some(view) = self.views.get(&(n + 1)) else {
            return;
        };
        let set = self.set_of(view);
        let peers: Vec<Uid> = if self.list_everyone && mode == Mode::Live {
            view.committed.iter().copied().collect()
        } else {
            let all: BTreeSet<Uid> = set.all().collect();
            all.into_iter().collect()
        };
        let until = match mode {
            Mode::Live => self.cfg.live_deadline(n),
            _ => now + self.retry_ms(),
        };
        self.job = Job::Listing { mode, until };
        out.push(Output::Do(Action::List { window: n, peers }));
    }

    fn set_of(&self, view: &ChainView) -> AggregationSet {
        let p = &self.cfg.params;
        aggregation_set(
            &view.consensus,
            &view.registered,
            p.aggregation_size,
            p.reserves,
        )
    }

    fn listed(
        &mut self,
        now: Millis,
        uploads: &BTreeMap<Uid, Listing>,
        out: &mut Vec<Output>,
        notes: &mut Vec<Note>,
    ) {
        let Job::Listing { mode, until } = std::mem::replace(&mut self.job, Job::Idle) else {
            return;
        };
        let n = self.next();
        let Some(view) = self.views.get(&(n + 1)).cloned() else {
            return;
        };
        let set = self.set_of(&view);
        let unknown: Vec<Uid> = set
            .all()
            .filter(|u| matches!(uploads.get(u), Some(Listing::Unavailable(_))))
            .collect();
        if !unknown.is_empty() {
            // The set's uploads must be known to every node alike: ask again in a block, or
            // catch the window up later.
            let again = now + self.cfg.params.block_time_ms;
            if again < until {
                self.retry_at = Some(again);
            } else {
                error(
                    out,
                    Some(n),
                    format!("the stores of uids {unknown:?} did not answer; window {n} is caught up later"),
                );
                self.retry_later(now);
            }
            return;
        }
        let found: BTreeMap<Uid, Millis> = uploads
            .iter()
            .filter_map(|(&u, l)| match l {
                Listing::Found(t) => Some((u, *t)),
                _ => None,
            })
            .collect();
        let p = &self.cfg.params;
        let accepted = p.accepted_uploads(n, &view.registered, &found);
        let gather = set.gather(&accepted);
        out.push(Output::Emit(NodeEvent::Listed {
            window: n,
            uploads: found.len(),
            gather: gather.clone(),
        }));
        if mode == Mode::Live {
            self.job = Job::OwnerFetch {
                gather: gather.clone(),
                listed: found,
            };
            notes.push(Note::Listed {
                window: n,
                view,
                set,
                uploads: uploads.clone(),
                gather,
            });
        } else {
            let listed = found
                .into_iter()
                .filter(|(u, _)| gather.contains(u))
                .collect();
            let detail = FetchDetail::default();
            self.fetch_for(now, n, mode, gather, listed, detail, out);
        }
    }

    /// Fetches the uploads of `gather` (a replayed or recomputed window's set).
    #[allow(clippy::too_many_arguments)]
    fn fetch_for(
        &mut self,
        now: Millis,
        n: Window,
        mode: Mode,
        gather: Vec<Uid>,
        listed: BTreeMap<Uid, Millis>,
        detail: FetchDetail,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Do(Action::Fetch {
            window: n,
            peers: gather.clone(),
            listed,
            deadline: now + self.retry_ms(),
            detail,
        }));
        self.job = Job::Fetching { mode, gather };
    }

    fn records(&mut self, now: Millis, records: Vec<RecordInfo>, out: &mut Vec<Output>) {
        if self.job != Job::Records {
            return;
        }
        self.job = Job::Idle;
        let records: Vec<RecordInfo> = records
            .into_iter()
            .filter(|r| r.lr.is_finite() && r.lr >= 0.0)
            .collect();
        if records.is_empty() {
            return; // `advance` recomputes
        }
        self.replay_record(now, records, 0, out);
    }

    fn replay_record(
        &mut self,
        now: Millis,
        records: Vec<RecordInfo>,
        idx: usize,
        out: &mut Vec<Output>,
    ) {
        let n = self.next();
        let Some(r) = records.get(idx) else {
            // Every record failed. Recomputing could leave out an upload that is gone now but
            // was aggregated then: only a newer checkpoint helps.
            error(
                out,
                Some(n),
                format!("no validator's record of window {n} could be replayed; looking for a newer checkpoint"),
            );
            self.search(now, out);
            return;
        };
        let mut peers = r.aggregated.clone();
        peers.sort_unstable();
        peers.dedup();
        let detail = FetchDetail {
            mirror: Some(r.validator),
            ..FetchDetail::default()
        };
        let mode = Mode::Record { records, idx };
        self.fetch_for(now, n, mode, peers, BTreeMap::new(), detail, out);
    }

    fn fetched(
        &mut self,
        now: Millis,
        results: &BTreeMap<Uid, Result<Fetched, Rejection>>,
        out: &mut Vec<Output>,
        notes: &mut Vec<Note>,
    ) {
        let Job::Fetching { mode, gather } = std::mem::replace(&mut self.job, Job::Idle) else {
            return;
        };
        let n = self.next();
        let missing = |u: &Uid| {
            results
                .get(u)
                .is_none_or(|r| r.as_ref().is_err_and(|e| e.is_transient()))
        };
        let unreadable: Vec<Uid> = gather.iter().copied().filter(missing).collect();
        // A zero update would dilute the mean and pull the median norm down: every node sees
        // the same bytes, so every node leaves it out alike.
        let valid: Vec<Uid> = gather
            .iter()
            .copied()
            .filter(|u| matches!(results.get(u), Some(Ok(f)) if !f.zero))
            .collect();
        let rejected: BTreeMap<Uid, RejectionNote> = gather
            .iter()
            .filter_map(|u| match results.get(u) {
                Some(Err(e)) => Some((*u, RejectionNote::from(e))),
                _ => None,
            })
            .collect();
        let complete = unreadable.is_empty();
        if !complete {
            error(
                out,
                Some(n),
                format!(
                    "the uploads of uids {unreadable:?} could not be read; window {n} is caught up later"
                ),
            );
            self.retry_later(now);
        }
        match mode {
            Mode::Live => {
                if complete {
                    self.job = Job::OwnerApply { rejected };
                }
                notes.push(Note::Gathered {
                    window: n,
                    gather,
                    valid,
                    complete,
                    results: results.clone(),
                });
            }
            Mode::Recompute if complete => {
                let lr = self.cfg.params.outer_lr_at(n);
                self.start_apply(n, Mode::Recompute, valid, lr, None, rejected, out);
            }
            Mode::Record { records, idx } if complete => {
                let r = &records[idx];
                if valid.len() == gather.len() {
                    let (peers, lr, hash) = (valid, r.lr, r.hash_after);
                    let mode = Mode::Record { records, idx };
                    self.start_apply(n, mode, peers, lr, Some(hash), rejected, out);
                } else {
                    // An upload the record names is gone or invalid here: another record.
                    self.replay_record(now, records, idx + 1, out);
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_apply(
        &mut self,
        window: Window,
        mode: Mode,
        peers: Vec<Uid>,
        lr: f64,
        expect: Option<Hash>,
        rejected: BTreeMap<Uid, RejectionNote>,
        out: &mut Vec<Output>,
    ) {
        let live = if self.training {
            Live::Shift
        } else {
            Live::Canon
        };
        self.gate.submit(
            Action::Apply {
                window,
                peers: peers.clone(),
                lr,
                expect,
                live,
            },
            out,
        );
        self.job = Job::Applying {
            mode,
            peers,
            lr,
            rejected,
        };
    }

    fn applied_step(
        &mut self,
        now: Millis,
        a: &Applied,
        out: &mut Vec<Output>,
        notes: &mut Vec<Note>,
    ) {
        let Job::Applying {
            mode,
            peers,
            lr,
            rejected,
        } = std::mem::replace(&mut self.job, Job::Idle)
        else {
            return;
        };
        let n = self.next();
        if !a.committed {
            if let Mode::Record { records, idx } = mode {
                error(
                    out,
                    Some(n),
                    format!(
                        "replaying window {n} from the record of validator uid {}: model hash {} differs from the record's",
                        records[idx].validator,
                        hex(&a.hash)
                    ),
                );
                self.replay_record(now, records, idx + 1, out);
            }
            return;
        }
        if mode != Mode::Live {
            self.replayed += 1;
        }
        self.applied = Some(n);
        self.last_hash = Some(a.hash);
        self.records_tried = false;
        let keep_from = n.saturating_sub(2);
        self.views.retain(|&w, _| w >= keep_from);
        notes.push(Note::Applied {
            window: n,
            hash: a.hash,
            peers,
            lr,
            source: mode.source(),
            rejected,
        });
    }

    fn retry_ms(&self) -> u64 {
        (self.cfg.params.window_ms() / 8).max(self.cfg.params.block_time_ms)
    }

    fn retry_later(&mut self, now: Millis) {
        self.retry_at = Some(now + self.retry_ms());
    }
}

fn error(out: &mut Vec<Output>, window: Option<Window>, message: String) {
    out.push(Output::Emit(NodeEvent::Error { window, message }));
}

/// Inputs that end a model action (each frees the compute gate).
fn is_compute_result(input: &Input) -> bool {
    matches!(
        input,
        Input::CheckpointLoaded { .. }
            | Input::Stepped { .. }
            | Input::Compressed { .. }
            | Input::Applied { .. }
            | Input::Fingerprinted { .. }
            | Input::Screened { .. }
            | Input::Evaluated { .. }
            | Input::Validated { .. }
            | Input::Done {
                chore: super::Chore::ResetTrainer,
                ..
            }
    )
}
