//! The Gauntlet (SPEC §5): the validator's per-peer records, one window's evaluation plan, and
//! the rules that turn a window's observations into ratings, scores, penalties and weights.
//!
//! [`Gauntlet`] is plain data (serde), so a validator that is killed and restarted resumes
//! its ratings by serialising it after every window.
//!
//! One window `w`, evaluated during `w + 1`:
//! 1. [`Gauntlet::plan`]: with the registered uids, the window's aggregation set and the store
//!    timestamps of the uploads, classify every upload (on time / early / late / missing), decide
//!    who is aggregated (primaries with accepted uploads, reserves replacing missing ones) and who
//!    is evaluated (rotation over peers with accepted uploads).
//! 2. The runtime downloads, validates and measures ([`Observations`]).
//! 3. [`Gauntlet::finish`]: copy check, one OpenSkill match, BMA, sync, penalties, final
//!    scores and weights ([`WindowReport`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::openskill::{rate, Rating};
use crate::params::{Penalties, RunParams};
use crate::scoring::{
    sync_distance, sync_score, Bma, Fingerprint, FingerprintHistory, LossProbe, OwnDataEvidence,
};
use crate::selection::{
    detect_copies, look_at_order, AggregationSet, Copy, EvalCandidate, UploadIndices,
};
use crate::weights::{compute_weights, Weights};
use crate::window::UploadTiming;
use crate::{Millis, Uid, Window};

/// Everything a validator remembers about one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub rating: Rating,
    pub bma: Bma,
    /// Evidence that it trains on other data than assigned (the own-data check).
    #[serde(default)]
    pub own_data: OwnDataEvidence,
    /// Moving average of its loss scores relative to each window's best, in [−1, 1]; it
    /// earns nothing while this is below `penalties.weak_update`.
    #[serde(default)]
    pub strength: f64,
    /// Current final score after penalties (what weights are computed from).
    pub score: f64,
    /// Window the uid was first seen registered (or re-registered).
    pub first_seen: Window,
    /// Last window it was evaluated fully.
    pub last_evaluated: Option<Window>,
    /// Last window this validator looked at (downloaded and screened) its upload.
    #[serde(default)]
    pub last_looked_at: Option<Window>,
    /// The loss score this validator last measured for it: its full evaluation's, else its
    /// screen's (see [`crate::selection::look_at_order`]).
    #[serde(default)]
    pub promise: Option<f64>,
    pub evaluations: u32,
    /// Consecutive windows in which an expected upload was missing or late.
    pub missing_streak: u32,
    /// Consecutive negative evaluations.
    pub negative_streak: u32,
    /// The last `penalties.negative_history` (≤ 32) judged windows, newest in bit 0: 1 where
    /// the outcome was negative.
    #[serde(default)]
    pub recent_negative: u32,
    /// Consecutive windows with no upload while nobody expected one.
    #[serde(default)]
    pub inactive_streak: u32,
    /// Excluded from aggregation (zero weight) after `negative_streak` negatives in a row.
    pub excluded: bool,
    /// Last measured values, for reports.
    pub last_loss_score: Option<f64>,
    pub last_sync: Option<f64>,
    /// Accepted uploads seen so far (the first one is its join's null window: not rated).
    #[serde(default)]
    pub uploads: u64,
    /// Consecutive windows its upload could not be read (store failures).
    #[serde(default)]
    pub unavailable_streak: u32,
    /// The key registered on the uid when the record was made (`None`: not known yet).
    #[serde(default)]
    pub key: Option<[u8; 32]>,
}

impl PeerRecord {
    pub fn new(params: &RunParams, first_seen: Window) -> Self {
        Self {
            rating: Rating::new(&params.openskill),
            bma: Bma::default(),
            own_data: OwnDataEvidence::default(),
            strength: 0.0,
            score: 0.0,
            first_seen,
            last_evaluated: None,
            last_looked_at: None,
            promise: None,
            evaluations: 0,
            missing_streak: 0,
            negative_streak: 0,
            recent_negative: 0,
            inactive_streak: 0,
            excluded: false,
            last_loss_score: None,
            last_sync: None,
            uploads: 0,
            unavailable_streak: 0,
            key: None,
        }
    }
}

/// Where a peer stood in the window its verdict is applied for.
struct VerdictContext {
    window: Window,
    /// Its upload was looked at (downloaded and screened) for evaluation.
    looked_at: bool,
    /// It was one of the aggregation set's primaries.
    primary: bool,
    /// Fewer than `penalties.gather_success` of the primaries delivered.
    gather_failed: bool,
    accepted: bool,
    /// The best loss score the validator measured in the window (0 when none was positive).
    best: f64,
    /// Its screen's loss score, if it was screened.
    screen: Option<f64>,
}

impl PeerRecord {
    /// What one window's verdict does to the record: rating inputs, score, penalties,
    /// streaks and exclusion (the penalties as in the reference: docs/PROTOCOL.md).
    fn apply(&mut self, params: &RunParams, v: &Verdict, ctx: &VerdictContext) {
        let pen = &params.penalties;
        let mut negative = false;
        if !matches!(v, Verdict::Inactive) {
            self.inactive_streak = 0;
        }
        match *v {
            Verdict::Evaluated { .. } => {
                negative = self.evaluated(params, v, ctx);
                self.looked_at(ctx);
            }
            Verdict::Idle => {
                self.missing_streak = 0;
                self.looked_at(ctx);
            }
            Verdict::First | Verdict::Zero => {
                self.missing_streak = 0;
                self.looked_at(ctx);
                if matches!(v, Verdict::Zero) {
                    self.score *= 1.0 - pen.inactive;
                }
            }
            Verdict::Missing { streak } => {
                self.missing_streak = streak;
                let keep = if ctx.primary && ctx.gather_failed {
                    0.0
                } else if ctx.primary {
                    // A primary not delivered: × 0.75, then × 0.5, then × 0 on repeats.
                    1.0 - pen.primary_missing[(streak.clamp(1, 3) - 1) as usize]
                } else {
                    1.0 - pen.missing
                };
                self.score *= keep;
                self.bma.value *= 1.0 - pen.missing;
                negative = true;
                self.looked_at(ctx);
            }
            Verdict::Unavailable { streak } => {
                self.unavailable_streak = streak;
                if streak > pen.unavailable_grace {
                    self.score *= 1.0 - pen.inactive;
                }
                self.looked_at(ctx);
            }
            Verdict::Invalid => {
                self.score *= 1.0 - pen.invalid;
                negative = true;
                self.looked_at(ctx);
            }
            Verdict::Copied { .. } => {
                self.score *= 1.0 - pen.copy;
                negative = true;
                self.looked_at(ctx);
            }
            Verdict::Inactive => {
                self.score *= 1.0 - pen.inactive;
                self.inactive_streak += 1;
                if self.inactive_streak > pen.inactive_reset {
                    // The reference's `reset_peer`: a peer gone this long starts afresh.
                    *self = PeerRecord {
                        key: self.key,
                        ..PeerRecord::new(params, self.first_seen)
                    };
                }
            }
        }
        if !matches!(v, Verdict::Unavailable { .. }) {
            self.unavailable_streak = 0;
        }
        self.promise = match *v {
            Verdict::Evaluated { loss_score, .. } => Some(loss_score),
            Verdict::Idle => ctx.screen.or(self.promise),
            Verdict::Unavailable { .. } => self.promise,
            _ => None,
        };
        if ctx.accepted {
            self.uploads += 1;
        }
        if v.judges() {
            self.judged(pen, negative);
        }
        if !self.score.is_finite() {
            self.score = 0.0;
        }
    }

    /// An evaluation's measurements into the record; whether the outcome was negative.
    fn evaluated(&mut self, params: &RunParams, v: &Verdict, ctx: &VerdictContext) -> bool {
        let &Verdict::Evaluated {
            loss_score,
            indicator,
            own_z,
            sync,
            sync_steps,
        } = v
        else {
            return false;
        };
        let pen = &params.penalties;
        self.bma.update(indicator, params.bma_decay);
        let judged_own = ctx.window >= params.own_data_from_window;
        if let (Some(z), true) = (own_z, judged_own) {
            self.own_data.update(z, params.own_data_effect);
        }
        self.evaluations += 1;
        self.last_evaluated = Some(ctx.window);
        self.last_loss_score = Some(loss_score);
        self.last_sync = Some(sync);
        self.missing_streak = 0;
        let oos = sync_steps.is_some_and(|x| x > pen.out_of_sync_steps);
        let oos_factor = if oos { 1.0 - pen.out_of_sync } else { 1.0 };
        if oos {
            self.bma.value *= 1.0 - pen.out_of_sync;
        }
        let own_data = match (params.own_data_check, own_z) {
            (false, _) => 1.0,
            (true, Some(_)) if !judged_own => 1.0,
            (true, Some(_)) if self.own_data.favours_own(params.own_data_margin) => 1.0,
            (true, Some(_)) => 0.0,
            // Not measured per sequence: the reference's BMA factor.
            (true, None) => self.bma.effective(params.bma_warmup, params.bma_threshold),
        };
        if ctx.best > 0.0 {
            let relative = (loss_score / ctx.best).clamp(-1.0, 1.0);
            let d = pen.weak_update_decay;
            self.strength = d * self.strength + (1.0 - d) * relative;
        }
        self.score = if self.strength < pen.weak_update {
            0.0
        } else {
            self.rating.ordinal() * own_data * sync * oos_factor
        };
        loss_score <= 0.0
    }

    fn looked_at(&mut self, ctx: &VerdictContext) {
        if ctx.looked_at {
            self.last_looked_at = Some(ctx.window);
        }
    }

    /// A judged window's outcome: excluded after `negative_streak` negatives in a row, or
    /// while more than half of the last `negative_history` were negative.
    fn judged(&mut self, pen: &Penalties, negative: bool) {
        if negative {
            self.negative_streak += 1;
        } else {
            self.negative_streak = 0;
        }
        let n = pen.negative_history.clamp(1, 32);
        let mask = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
        self.recent_negative = ((self.recent_negative << 1) | u32::from(negative)) & mask;
        let mostly_negative = 2 * self.recent_negative.count_ones() > n;
        self.excluded = self.negative_streak >= pen.negative_streak || mostly_negative;
    }
}

impl Verdict {
    /// Whether the window judged the peer (its negative streak and history move).
    fn judges(&self) -> bool {
        !matches!(
            self,
            Verdict::Idle
                | Verdict::Inactive
                | Verdict::Zero
                | Verdict::First
                | Verdict::Unavailable { .. }
        )
    }
}

/// The plan of one window: who is aggregated and whose uploads are looked at (downloaded,
/// screened, and evaluated in the order [`WindowPlan::queue`] gives once the screens are in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowPlan {
    pub window: Window,
    pub aggregation: AggregationSet,
    /// Timing class of every registered peer's upload.
    pub timing: BTreeMap<Uid, UploadTiming>,
    /// Peers whose upload was accepted (on time).
    pub accepted: BTreeSet<Uid>,
    /// Peers to aggregate (sorted): accepted primaries, topped up by accepted reserves.
    pub gather: Vec<Uid>,
    /// The bar: the top `eval_incumbents` primaries with an accepted upload, highest weight
    /// first; evaluated every window.
    #[serde(default)]
    pub bar: Vec<Uid>,
    /// The other members of the aggregation set (primaries, then reserves) with an accepted
    /// upload, the least evaluated first, then the longest unevaluated, then by weight:
    /// checked in turn, suspects (a screen at or below 0, or none) first. Ratings grow with
    /// the windows a peer is measured in, so incumbents are measured about equally often and
    /// a new one catches up.
    #[serde(default)]
    pub incumbents: Vec<Uid>,
    /// Challengers looked at, in look-at order ([`crate::selection::look_at_order`]):
    /// evaluated best screened first.
    #[serde(default)]
    pub challengers: Vec<Uid>,
    /// Challengers whose own-data evidence favours other data (the check found them training
    /// on data they were not assigned): evaluated last.
    #[serde(default)]
    pub other_data: BTreeSet<Uid>,
}

/// The order of a window's full evaluations: the first `required` are due; a validator goes
/// on down the rest while its evaluation time lasts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalQueue {
    pub order: Vec<Uid>,
    pub required: usize,
}

impl WindowPlan {
    /// Uids whose uploads must be downloaded: gathered ∪ looked at (sorted).
    pub fn downloads(&self) -> Vec<Uid> {
        let s: BTreeSet<Uid> = self
            .gather
            .iter()
            .copied()
            .chain(self.looked_at())
            .collect();
        s.into_iter().collect()
    }

    /// Whose upload this validator looks at: the bar, the incumbents and the challengers.
    pub fn looked_at(&self) -> BTreeSet<Uid> {
        self.bar
            .iter()
            .chain(&self.incumbents)
            .chain(&self.challengers)
            .copied()
            .collect()
    }

    /// The peers due for evaluation before anything is downloaded or screened (sorted): what
    /// [`WindowPlan::queue`] requires when every upload can be scored.
    pub fn evaluate(&self, params: &RunParams) -> Vec<Uid> {
        let obs = Observations::default();
        let q = self.queue(params, &obs);
        let mut due = q.order[..q.required].to_vec();
        due.sort_unstable();
        due
    }

    /// Looked-at peers whose upload can be scored on its merits: not zero, invalid, gone,
    /// unreadable or a copy (by the copy check over everything downloaded), and not judged
    /// already (by its screen). These are screened and queued.
    pub fn scorable(&self, params: &RunParams, obs: &Observations) -> Vec<Uid> {
        let (_, copied) = copies_in(obs, params.penalties.copy_overlap);
        let fit = |u: &Uid| {
            !(obs.zero.contains(u)
                || obs.invalid.contains(u)
                || obs.missing.contains(u)
                || obs.unavailable.contains(u)
                || copied.contains_key(u))
        };
        self.looked_at()
            .into_iter()
            .filter(|u| fit(u) && !obs.outcomes.contains_key(u))
            .collect()
    }

    /// The full evaluations of the window, once the downloads (and the screens, when there
    /// are any) are in `obs`. Due first: the bar; then challengers, best screened first
    /// (those found training on other data last), at least `eval_challengers` of them; then incumbents, suspects first (worst screen first),
    /// then the least evaluated, up to `uids_per_window` in all, challengers taking what
    /// incumbents leave. Then, as time allows, the other challengers and incumbents in the
    /// same orders. Without screens, challengers go in look-at order.
    pub fn queue(&self, params: &RunParams, obs: &Observations) -> EvalQueue {
        let fit: BTreeSet<Uid> = self.scorable(params, obs).into_iter().collect();
        let screened = |u: &Uid| obs.screens.get(u).copied();
        let bar: Vec<Uid> = self
            .bar
            .iter()
            .copied()
            .filter(|u| fit.contains(u))
            .collect();
        let mut inc: Vec<Uid> = self
            .incumbents
            .iter()
            .copied()
            .filter(|u| fit.contains(u))
            .collect();
        let mut ch: Vec<Uid> = self
            .challengers
            .iter()
            .copied()
            .filter(|u| fit.contains(u))
            .collect();
        if !obs.screens.is_empty() {
            // Stable sorts: equal or missing screens keep the plan's order.
            let suspect = |u: &Uid| screened(u).filter(|x| *x > 0.0).is_none();
            inc.sort_by(|a, b| match (suspect(a), suspect(b)) {
                (true, true) => {
                    let key = |u: &Uid| screened(u).unwrap_or(f64::NEG_INFINITY);
                    key(a).total_cmp(&key(b))
                }
                (x, y) => y.cmp(&x),
            });
            ch.sort_by(|a, b| {
                let key = |u: &Uid| screened(u).unwrap_or(f64::NEG_INFINITY);
                key(b).total_cmp(&key(a))
            });
        }
        if !self.other_data.is_empty() {
            ch.sort_by_key(|u| self.other_data.contains(u));
        }
        let room = params.uids_per_window.saturating_sub(bar.len());
        let n_inc = inc
            .len()
            .min(room.saturating_sub(ch.len().min(params.eval_challengers)));
        let n_ch = ch.len().min(room - n_inc);
        let mut order = bar;
        order.extend_from_slice(&ch[..n_ch]);
        order.extend_from_slice(&inc[..n_inc]);
        let required = order.len();
        order.extend_from_slice(&ch[n_ch..]);
        order.extend_from_slice(&inc[n_inc..]);
        EvalQueue { order, required }
    }
}

/// The copy check over every downloaded upload (only accepted ones have timestamps in range):
/// the copies found, and each copier's original and overlap. Zero updates all select the same
/// indices and carry nothing to copy: left out.
fn copies_in(obs: &Observations, overlap: f64) -> (Vec<Copy>, BTreeMap<Uid, (Uid, f64)>) {
    let nonzero: Vec<UploadIndices> = obs
        .indices
        .iter()
        .filter(|x| !obs.zero.contains(&x.uid))
        .cloned()
        .collect();
    let copies = detect_copies(&nonzero, overlap);
    let mut copied: BTreeMap<Uid, (Uid, f64)> = BTreeMap::new();
    for c in &copies {
        copied.entry(c.copier).or_insert((c.original, c.overlap));
    }
    (copies, copied)
}

/// What the validator measured for one evaluated peer whose upload verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvalOutcome {
    /// Losses measured as in SPEC §5.
    Measured {
        probe: LossProbe,
        /// The peer's published fingerprint for this window (`None`: not published).
        fingerprint: Option<Fingerprint>,
    },
    /// Applied alone, the update makes the model non-finite.
    NonFinite,
    /// Its norm is `ratio` times the window's clip norm (the median over tensors), more than
    /// `penalties.outlier_norm`: an update scaled up to dominate the mean. Clipping already
    /// makes it harmless; it is judged invalid so that scaling never pays.
    Outlier { ratio: f64 },
}

impl EvalOutcome {
    /// The outcome of a measured evaluation (see [`EvalOutcome::Outlier`]).
    pub fn measured(
        pen: &Penalties,
        probe: LossProbe,
        fingerprint: Option<Fingerprint>,
        norm_ratio: f64,
    ) -> Self {
        if norm_ratio > pen.outlier_norm {
            return EvalOutcome::Outlier { ratio: norm_ratio };
        }
        EvalOutcome::Measured { probe, fingerprint }
    }
}

/// What a screen found for one peer ([`crate::driver::Action::Screen`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Screen {
    /// The loss score of the update applied alone, on the screen's sequences.
    Score(f64),
    /// Applied alone, the update makes the model (or its loss) non-finite.
    NonFinite,
    /// A norm outlier (see [`EvalOutcome::Outlier`]), with the loss score of its update
    /// clipped.
    Outlier { ratio: f64, score: f64 },
}

impl Screen {
    /// The outcome of a screen that already judges the peer (no full evaluation needed).
    pub fn outcome(self) -> Option<EvalOutcome> {
        match self {
            Screen::Score(_) => None,
            Screen::NonFinite => Some(EvalOutcome::NonFinite),
            Screen::Outlier { ratio, .. } => Some(EvalOutcome::Outlier { ratio }),
        }
    }

    /// The loss score it measured, if any.
    pub fn score(self) -> Option<f64> {
        match self {
            Screen::Score(s) | Screen::Outlier { score: s, .. } => Some(s),
            Screen::NonFinite => None,
        }
    }
}

/// The validator's observations of one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// Outcomes of the evaluated peers whose upload verified. An evaluated peer in none of
    /// `outcomes`, `invalid`, `unavailable` and `zero` counts as missing.
    pub outcomes: BTreeMap<Uid, EvalOutcome>,
    /// Downloaded peers whose upload failed validation (signature, shapes, ranges,
    /// finiteness, size).
    pub invalid: BTreeSet<Uid>,
    /// Peers whose upload could not be read because a store failed: nothing is known about
    /// them, so they are neither rated nor penalised (for `penalties.unavailable_grace`
    /// windows in a row).
    #[serde(default)]
    pub unavailable: BTreeSet<Uid>,
    /// Peers listed on time whose upload was gone, replaced or out of time when read.
    #[serde(default)]
    pub missing: BTreeSet<Uid>,
    /// Selected indices of every downloaded upload, for the copy check.
    pub indices: Vec<UploadIndices>,
    /// Screens of looked-at uploads: the loss score of each update applied alone on the
    /// first `screen_sequences` of the random pool (only the order of evaluations follows
    /// from them). A screen that judged its peer ([`Screen::outcome`]) is in `outcomes`.
    #[serde(default)]
    pub screens: BTreeMap<Uid, f64>,
    /// Downloaded, valid uploads whose values are all zero (a null window's, a free-rider's):
    /// not rated, not part of the copy check.
    #[serde(default)]
    pub zero: BTreeSet<Uid>,
    /// The validator's own fingerprint at the same point as the peers' fingerprints, at the
    /// run's positions (its history gives the per-step change).
    pub own_fingerprint: Option<Fingerprint>,
    /// The same model at the positions of each evaluated peer's fingerprint
    /// ([`crate::scoring::fingerprint_seed`]): what the peer's fingerprint is compared with.
    /// A peer missing here is compared at the run's positions.
    #[serde(default)]
    pub references: BTreeMap<Uid, Fingerprint>,
}

/// Why a peer's score changed this window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Evaluated: loss score, indicator, sync distance (if measurable).
    Evaluated {
        loss_score: f64,
        indicator: i8,
        /// The own-data evidence of this evaluation (`None`: not measured per sequence).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        own_z: Option<f64>,
        sync: f64,
        sync_steps: Option<f64>,
    },
    /// Uploaded on time, not evaluated this window: score kept.
    Idle,
    /// Uploaded a zero update (a null window's, a free-rider's): nothing to rate; decays like
    /// an inactive peer, neither penalised as missing nor checked for copying.
    Zero,
    /// Its first accepted upload, which the protocol makes a zero update (the null window of a
    /// join) but was not: not rated, score kept. In a new network everybody's first upload is
    /// null, so a peer that uploads something else there cannot be the only one rated and
    /// take all the weight (and be aggregated alone) in the next window.
    First,
    /// Expected (aggregation primary or selected) but missing, late or early.
    Missing { streak: u32 },
    /// Its upload could not be read because a store failed (the `streak`-th window in a row):
    /// not rated; the score is kept for `penalties.unavailable_grace` windows, then decays
    /// like an inactive peer's.
    Unavailable { streak: u32 },
    /// Upload failed validation.
    Invalid,
    /// Blamed for copying `original`.
    Copied { original: Uid, overlap: f64 },
    /// No accepted upload and nobody asked for one.
    Inactive,
}

/// Per-peer outcome of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub verdict: Verdict,
    pub score: f64,
    pub ordinal: f64,
    pub excluded: bool,
}

/// The outcome of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub window: Window,
    pub peers: BTreeMap<Uid, PeerReport>,
    pub copies: Vec<Copy>,
    pub weights: Weights,
}

/// The validator's whole scoring state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauntlet {
    /// Seeds the order in which challengers are looked at (ties in
    /// [`crate::selection::look_at_order`]): the same for every validator of a run.
    pub seed: u64,
    /// Last window finished (`None`: none yet).
    pub last_window: Option<Window>,
    pub peers: BTreeMap<Uid, PeerRecord>,
    pub history: FingerprintHistory,
}

impl Gauntlet {
    /// A fresh validator. `seed` orders the challengers it looks at; every validator of a run
    /// should use the same one (the run's), so that they measure the same peers.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            last_window: None,
            peers: BTreeMap::new(),
            history: FingerprintHistory::default(),
        }
    }

    /// Forgets a uid (deregistered, or its slot taken by a new key).
    pub fn reset_peer(&mut self, uid: Uid) {
        self.peers.remove(&uid);
    }

    /// Forgets every uid whose registered key is no longer the one its record was made for
    /// (its slot was taken by a new participant, who must not inherit the old owner's rating,
    /// score or exclusion), and notes the keys of the others. Call before [`Gauntlet::plan`].
    pub fn track_keys(&mut self, keys: &BTreeMap<Uid, [u8; 32]>) {
        self.peers.retain(|u, r| match (r.key, keys.get(u)) {
            (Some(old), Some(new)) => old == *new,
            _ => true,
        });
        for (u, r) in self.peers.iter_mut() {
            if let Some(&k) = keys.get(u) {
                r.key = Some(k);
            }
        }
    }

    /// Some peer now registered has been evaluated.
    pub fn has_measured(&self) -> bool {
        self.peers.values().any(|r| r.evaluations > 0)
    }

    /// Current final scores of non-excluded peers.
    pub fn scores(&self) -> BTreeMap<Uid, f64> {
        self.peers
            .iter()
            .filter(|(_, r)| !r.excluded)
            .map(|(&u, r)| (u, r.score))
            .collect()
    }

    /// Current weights from the stored scores.
    pub fn weights(&self, params: &RunParams) -> Weights {
        compute_weights(
            &self.scores(),
            params.aggregation_size,
            params.reserves,
            &params.weights,
        )
    }

    /// Step 1: plans window `w`. `registered`: uids registered at the window's start;
    /// `aggregation`: the window's aggregation set (from consensus weights at its start, see
    /// [`crate::selection::aggregation_set`]); `uploads`: store timestamps of the window-`w`
    /// uploads found. New uids get fresh records; uids no longer registered are dropped.
    pub fn plan(
        &mut self,
        params: &RunParams,
        w: Window,
        registered: &BTreeSet<Uid>,
        aggregation: AggregationSet,
        uploads: &BTreeMap<Uid, Millis>,
    ) -> Result<WindowPlan> {
        if let Some(last) = self.last_window {
            if w <= last {
                return Err(CoreError::WindowNotAdvancing {
                    current: last,
                    got: w,
                });
            }
        }
        self.peers.retain(|u, _| registered.contains(u));
        for &u in registered {
            self.peers
                .entry(u)
                .or_insert_with(|| PeerRecord::new(params, w));
        }
        let timing: BTreeMap<Uid, UploadTiming> = registered
            .iter()
            .map(|&u| (u, params.classify_upload(w, uploads.get(&u).copied())))
            .collect();
        let accepted: BTreeSet<Uid> = timing
            .iter()
            .filter(|(_, t)| t.accepted())
            .map(|(&u, _)| u)
            .collect();
        let aggregation = AggregationSet {
            primary: aggregation
                .primary
                .into_iter()
                .filter(|u| registered.contains(u))
                .collect(),
            reserves: aggregation
                .reserves
                .into_iter()
                .filter(|u| registered.contains(u))
                .collect(),
        };
        let gather = aggregation.gather(&accepted);
        // A first upload is never scored (`Verdict::First`): nobody looks at it.
        let scorable = |u: &Uid| accepted.contains(u) && self.peers[u].uploads > 0;
        let other = |u: &Uid| {
            params.own_data_check && self.peers[u].own_data.favours_other(params.own_data_margin)
        };
        let members: Vec<Uid> = aggregation.all().filter(|u| scorable(u)).collect();
        let n_bar = params.eval_incumbents.min(params.uids_per_window);
        let bar: Vec<Uid> = aggregation
            .primary
            .iter()
            .copied()
            .filter(|u| scorable(u))
            .take(n_bar)
            .collect();
        // The least evaluated first, then the longest unevaluated (a stable sort: then by
        // weight).
        let mut incumbents: Vec<Uid> = members
            .iter()
            .copied()
            .filter(|u| !bar.contains(u))
            .collect();
        incumbents.sort_by_key(|u| (self.peers[u].evaluations, self.peers[u].last_evaluated));
        let candidates: Vec<EvalCandidate> = accepted
            .iter()
            .filter(|u| scorable(u) && !members.contains(u))
            .map(|&u| EvalCandidate {
                uid: u,
                first_seen: self.peers[&u].first_seen,
                last_looked_at: self.peers[&u].last_looked_at,
                promise: self.peers[&u].promise.filter(|_| !other(&u)),
            })
            .collect();
        let looks = (params.uids_per_window + params.eval_spares)
            .saturating_sub(bar.len() + incumbents.len());
        let challengers = look_at_order(&candidates, w, self.seed, looks);
        let other_data = challengers.iter().copied().filter(|u| other(u)).collect();

        Ok(WindowPlan {
            window: w,
            aggregation,
            timing,
            accepted,
            gather,
            bar,
            incumbents,
            challengers,
            other_data,
        })
    }

    /// Step 3: applies the window's observations. Errors (nothing changed) if the plan is not for
    /// the next window or an outcome names a uid that was not selected.
    pub fn finish(
        &mut self,
        params: &RunParams,
        plan: &WindowPlan,
        obs: Observations,
    ) -> Result<WindowReport> {
        let w = plan.window;
        if let Some(last) = self.last_window {
            if w <= last {
                return Err(CoreError::WindowNotAdvancing {
                    current: last,
                    got: w,
                });
            }
        }
        let selected = plan.looked_at();
        if let Some(&uid) = obs.outcomes.keys().find(|u| !selected.contains(u)) {
            return Err(CoreError::NotSelected { uid, window: w });
        }
        let pen = params.penalties;

        // Sync reference: the validator's own fingerprint history.
        let mut history = self.history.clone();
        if let Some(fp) = &obs.own_fingerprint {
            history.push(fp.clone(), params.sync_history)?;
        }
        let step_change = history.step_change();

        let (copies, copied) = copies_in(&obs, pen.copy_overlap);
        let screens = &obs.screens;

        // Verdicts.
        let expected: BTreeSet<Uid> = plan
            .aggregation
            .primary
            .iter()
            .copied()
            .chain(selected.iter().copied())
            .collect();
        let mut verdicts: BTreeMap<Uid, Verdict> = BTreeMap::new();
        let mut match_players: Vec<Uid> = Vec::new();
        let mut match_scores: Vec<f64> = Vec::new();
        for (&u, rec) in &self.peers {
            let v = self.verdict(
                params,
                u,
                rec,
                plan,
                &obs,
                &copied,
                &expected,
                &history,
                &step_change,
            );
            match v {
                // An update whose own-data evidence favours other data breaks the protocol
                // (its pool was not trained): it enters the match as a failure, so that honest
                // peers rank above however much it lowers the loss.
                Verdict::Evaluated { own_z: Some(z), .. }
                    if trains_other_data(params, w, rec, z) =>
                {
                    match_players.push(u);
                    match_scores.push(params.missing_match_score);
                }
                Verdict::Evaluated { loss_score, .. } => {
                    match_players.push(u);
                    match_scores.push(loss_score);
                }
                Verdict::Missing { .. } | Verdict::Invalid | Verdict::Copied { .. }
                    if expected.contains(&u) =>
                {
                    match_players.push(u);
                    match_scores.push(params.missing_match_score);
                }
                _ => {}
            }
            verdicts.insert(u, v);
        }

        // One OpenSkill match over everyone scored (and the expected-but-failed at −99).
        let mut before: Vec<Rating> = match_players.iter().map(|u| self.peers[u].rating).collect();
        if params.rating_baseline && !match_players.is_empty() {
            before.push(Rating::new(&params.openskill));
            match_scores.push(0.0);
        }
        let after = rate(&params.openskill, &before, &match_scores);

        // What the strengths are measured against (see `penalties.weak_update`).
        let best = verdicts
            .values()
            .filter_map(|v| match v {
                Verdict::Evaluated { loss_score, .. } if loss_score.is_finite() => {
                    Some(*loss_score)
                }
                _ => None,
            })
            .fold(0.0f64, f64::max);

        // Commit.
        self.history = history;
        for (u, r) in match_players.iter().zip(after) {
            self.peers.get_mut(u).expect("player is a peer").rating = r;
        }
        let mut reports = BTreeMap::new();
        let primaries: BTreeSet<Uid> = plan.aggregation.primary.iter().copied().collect();
        let undelivered = primaries
            .iter()
            .filter(|u| matches!(verdicts.get(u), Some(Verdict::Missing { .. })))
            .count();
        let gather_failed = !primaries.is_empty()
            && ((primaries.len() - undelivered) as f64)
                < pen.gather_success * primaries.len() as f64;
        for (&u, v) in &verdicts {
            let rec = self.peers.get_mut(&u).expect("verdict for a peer");
            let ctx = VerdictContext {
                window: w,
                looked_at: selected.contains(&u),
                primary: primaries.contains(&u),
                gather_failed,
                accepted: plan.accepted.contains(&u),
                best,
                screen: screens.get(&u).copied(),
            };
            rec.apply(params, v, &ctx);
            reports.insert(
                u,
                PeerReport {
                    verdict: *v,
                    score: rec.score,
                    ordinal: rec.rating.ordinal(),
                    excluded: rec.excluded,
                },
            );
        }
        self.last_window = Some(w);
        let weights = self.weights(params);
        Ok(WindowReport {
            window: w,
            peers: reports,
            copies,
            weights,
        })
    }

    /// The verdict on peer `u` for the window (see [`Verdict`]).
    #[allow(clippy::too_many_arguments)]
    fn verdict(
        &self,
        params: &RunParams,
        u: Uid,
        rec: &PeerRecord,
        plan: &WindowPlan,
        obs: &Observations,
        copied: &BTreeMap<Uid, (Uid, f64)>,
        expected: &BTreeSet<Uid>,
        history: &FingerprintHistory,
        step_change: &Option<Vec<f64>>,
    ) -> Verdict {
        let accepted = plan.accepted.contains(&u);
        let non_finite = matches!(
            obs.outcomes.get(&u),
            Some(EvalOutcome::NonFinite | EvalOutcome::Outlier { .. })
        );
        if let Some(&(original, overlap)) = copied.get(&u) {
            return Verdict::Copied { original, overlap };
        }
        if obs.invalid.contains(&u) || non_finite {
            return Verdict::Invalid;
        }
        if obs.zero.contains(&u) {
            return Verdict::Zero;
        }
        if obs.unavailable.contains(&u) {
            return Verdict::Unavailable {
                streak: rec.unavailable_streak + 1,
            };
        }
        let missing = Verdict::Missing {
            streak: rec.missing_streak + 1,
        };
        if obs.missing.contains(&u) && expected.contains(&u) {
            return missing;
        }
        if accepted && rec.uploads == 0 {
            return Verdict::First;
        }
        if let Some(EvalOutcome::Measured { probe, fingerprint }) = obs.outcomes.get(&u) {
            let sync = SyncInputs {
                fingerprint: fingerprint.as_ref(),
                reference: obs.references.get(&u).or(history.latest()),
                step_change: step_change.as_deref(),
            };
            return evaluated(params, probe, sync);
        }
        match (accepted, expected.contains(&u)) {
            (false, true) => missing,
            (false, false) => Verdict::Inactive,
            (true, _) => Verdict::Idle,
        }
    }
}

/// Whether, with this evaluation's z, the own-data check finds that the peer trains on other
/// data than assigned: the evidence favours other data by more than `own_data_margin` (with
/// δ 2 and margin 2, a first judged z below 0; an honest `tiny` miner's is +3…+6 at 32
/// sequences). Not before `own_data_from_window`, nor with the check off.
fn trains_other_data(params: &RunParams, w: Window, rec: &PeerRecord, z: f64) -> bool {
    params.own_data_check
        && w >= params.own_data_from_window
        && rec
            .own_data
            .after(z, params.own_data_effect)
            .favours_other(params.own_data_margin)
}

/// What a peer's sync is measured from: its fingerprint, this validator's model at the same
/// positions, and the recent per-step change (`None`s: not measurable).
struct SyncInputs<'a> {
    fingerprint: Option<&'a Fingerprint>,
    reference: Option<&'a Fingerprint>,
    step_change: Option<&'a [f64]>,
}

/// The verdict on a measured peer: its loss score, own-vs-random indicator and sync.
fn evaluated(params: &RunParams, probe: &LossProbe, sync: SyncInputs<'_>) -> Verdict {
    let (Ok(s), Ok(b)) = (probe.loss_score(), probe.own_vs_random()) else {
        return Verdict::Invalid;
    };
    let cap = params.sync_max_steps;
    let steps = match (sync.fingerprint, sync.reference, sync.step_change) {
        (Some(m), Some(v), Some(sc)) => Some(sync_distance(m, v, sc, cap).unwrap_or(cap)),
        (None, Some(_), Some(_)) => Some(cap),
        _ => None,
    };
    let sync = steps.map_or(1.0, |x| sync_score(x, params));
    Verdict::Evaluated {
        loss_score: s,
        indicator: b,
        own_z: probe.own_z,
        sync,
        sync_steps: steps,
    }
}
