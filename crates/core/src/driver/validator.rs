//! The validator driver (SPEC §5, §6): for each window it follows live, plan the Gauntlet
//! (who is aggregated, who is evaluated), fetch the uploads, measure the evaluated peers'
//! updates one by one on the canonical model, rate and score, set weights on the chain, save
//! its state, apply the same outer step as the miners ([`Replica`]), and publish a signed
//! record of the step (joiners replay from it) and every C windows a checkpoint.
//!
//! The validator aggregates exactly what a miner aggregates: the gathered peers whose upload
//! verified. How an update scores never changes whether it is applied, so a validator and the
//! miners cannot split over an update that scores badly. A window the validator only catches
//! up (it was behind) is applied but not scored.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::events::{NodeEvent, PeerLine, ProbeLine, RejectionNote};
use super::replica::{Note, Replica};
use super::{
    hex, Action, Chore, Driver, FailureKind, FetchDetail, Fetched, FingerprintSeen, Hash, Input,
    Life, Listing, NodeConfig, Output, Rejection,
};
use crate::gauntlet::{EvalOutcome, Gauntlet, Observations, Screen, WindowPlan};
use crate::rng::derive_seed;
use crate::scoring::{Evaluation, Fingerprint};
use crate::selection::UploadIndices;
use crate::{Millis, Uid, Window};

/// Purpose tag of the validators' look-at seed.
const TAG_GAUNTLET: u64 = 0x7A1;

/// One live window's Gauntlet in progress.
#[derive(Debug, Clone, PartialEq)]
struct Round {
    plan: WindowPlan,
    /// Store timestamps from the listing.
    listed: BTreeMap<Uid, Millis>,
    gathered: Option<Gathered>,
    obs: Observations,
    fingerprints: BTreeMap<Uid, Fingerprint>,
    /// Full evaluations in order; the first `required` are due, the rest while time lasts.
    queue: VecDeque<Uid>,
    required: usize,
    /// Evaluations started so far.
    tried: usize,
    eval: BTreeMap<Uid, ProbeLine>,
    rejected: BTreeMap<Uid, RejectionNote>,
    /// When the uploads were in (the evaluation phase's start).
    gathered_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
struct Gathered {
    valid: Vec<Uid>,
    complete: bool,
    /// The uploads whose median norm a lone update is clipped to (see [`clip_set`]).
    clip_to: Vec<Uid>,
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Validator {
    r: Replica,
    pub gauntlet: Gauntlet,
    restored: bool,
    round: Option<Round>,
    /// The live window applied last, waiting for its validation loss.
    stepped: Option<Note>,
    /// The last checkpoint could not be published: publish one after the next outer step.
    checkpoint_due: bool,
    life: Life,
}

impl Validator {
    /// `saved`: the Gauntlet of an earlier run of this validator (a restart), if any.
    pub fn new(cfg: NodeConfig, saved: Option<Gauntlet>) -> Self {
        let restored = saved.is_some();
        // Every validator of the run looks at challengers in the same order (a state saved
        // before that rule carries a seed of its own).
        let seed = derive_seed(cfg.seed, &[TAG_GAUNTLET]);
        let mut gauntlet = saved.unwrap_or_else(|| Gauntlet::new(seed));
        gauntlet.seed = seed;
        Validator {
            r: Replica::new(cfg, true),
            gauntlet,
            restored,
            round: None,
            stepped: None,
            checkpoint_due: false,
            life: Life::default(),
        }
    }

    fn cfg(&self) -> &NodeConfig {
        &self.r.cfg
    }

    fn start(&mut self, now: Millis, out: &mut Vec<Output>) {
        let cfg = self.r.cfg.clone();
        self.life.start(now, &cfg);
        out.push(Output::Emit(NodeEvent::Started {
            uid: self.cfg().uid,
        }));
        if self.restored {
            let g = &self.gauntlet;
            out.push(Output::Emit(NodeEvent::Restored {
                peers: g.peers.len(),
                last_window: g.last_window,
                scores: g.scores(),
            }));
        }
    }

    /// The live window is listed: plan it and fetch what the plan needs.
    fn listed(
        &mut self,
        window: Window,
        set: crate::selection::AggregationSet,
        view: &super::ChainView,
        uploads: &BTreeMap<Uid, Listing>,
        gather: Vec<Uid>,
        out: &mut Vec<Output>,
    ) {
        let listed: BTreeMap<Uid, Millis> = uploads
            .iter()
            .filter_map(|(&u, l)| match l {
                Listing::Found(t) => Some((u, *t)),
                _ => None,
            })
            .collect();
        let p = self.cfg().params.clone();
        self.gauntlet.track_keys(&view.keys);
        let planned = self
            .gauntlet
            .plan(&p, window, &view.registered, set, &listed);
        let detail = FetchDetail {
            copy_keys: true,
            fingerprint: true,
            mirror: None,
        };
        match planned {
            Ok(plan) => {
                let downloads = plan.downloads();
                self.round = Some(Round {
                    plan,
                    listed,
                    gathered: None,
                    obs: Observations::default(),
                    fingerprints: BTreeMap::new(),
                    queue: VecDeque::new(),
                    required: 0,
                    tried: 0,
                    eval: BTreeMap::new(),
                    rejected: BTreeMap::new(),
                    gathered_at: 0,
                });
                self.r.fetch(window, downloads, detail, out);
            }
            Err(e) => {
                // A restored state already past this window: follow it without scoring.
                out.push(Output::Emit(NodeEvent::Error {
                    window: Some(window),
                    message: format!("not scoring window {window}: {e}"),
                }));
                self.r.fetch(window, gather, detail, out);
            }
        }
    }

    /// The live window's uploads are in: sort them into observations and queue the
    /// evaluations (own fingerprint first).
    fn gathered(
        &mut self,
        now: Millis,
        window: Window,
        valid: Vec<Uid>,
        complete: bool,
        results: &BTreeMap<Uid, Result<Fetched, Rejection>>,
        out: &mut Vec<Output>,
    ) {
        self.life.stats.bytes_down += results
            .values()
            .filter_map(|r| r.as_ref().ok())
            .map(|f| f.bytes)
            .sum::<u64>();
        let Some(round) = self.round.as_mut().filter(|r| r.plan.window == window) else {
            if complete {
                self.r.apply(window, valid, out);
            }
            return;
        };
        let mut unreadable: BTreeSet<Uid> = BTreeSet::new();
        for (&uid, r) in results {
            match r {
                Ok(f) => {
                    if f.zero {
                        round.obs.zero.insert(uid);
                    }
                    if matches!(f.fingerprint, Some(FingerprintSeen::Unreadable)) {
                        unreadable.insert(uid);
                    }
                    if let Some(FingerprintSeen::Found(fp)) = &f.fingerprint {
                        round.fingerprints.insert(uid, fp.clone());
                    }
                    round.obs.indices.push(UploadIndices {
                        uid,
                        store_time: round.listed.get(&uid).copied().unwrap_or(f.store_time),
                        indices: f.copy_keys.clone(),
                    });
                }
                Err(e) => {
                    round.rejected.insert(uid, RejectionNote::from(e));
                    match e {
                        Rejection::Invalid(_) | Rejection::TooLarge { .. } => {
                            round.obs.invalid.insert(uid);
                        }
                        Rejection::Unavailable { .. } => {
                            round.obs.unavailable.insert(uid);
                        }
                        _ => {
                            round.obs.missing.insert(uid);
                        }
                    }
                }
            }
        }
        // A peer whose fingerprint cannot be read cannot have its sync measured: not rated
        // this window.
        let p = &self.r.cfg.params;
        for uid in round.plan.scorable(p, &round.obs) {
            if unreadable.contains(&uid) {
                round.obs.unavailable.insert(uid);
            }
        }
        let clip_to = clip_set(&valid, results);
        round.gathered_at = now;
        round.gathered = Some(Gathered {
            valid,
            complete,
            clip_to: clip_to.clone(),
        });
        let peers = round.plan.scorable(p, &round.obs);
        if p.screen_sequences == 0 || peers.is_empty() {
            self.queue_evaluations(out);
            return;
        }
        let lr = p.outer_lr_at(window) * p.eval_lr_factor;
        let screen = Action::Screen {
            window,
            peers,
            lr,
            clip_to,
        };
        self.r.submit(screen, out);
    }

    /// The screens are in (or there are none): order the full evaluations, then take the
    /// fingerprints they need.
    fn queue_evaluations(&mut self, out: &mut Vec<Output>) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        let q = round.plan.queue(&self.r.cfg.params, &round.obs);
        round.queue = q.order.iter().copied().collect();
        round.required = q.required;
        let window = round.plan.window;
        self.r.submit(
            Action::Fingerprint {
                window,
                peers: q.order,
            },
            out,
        );
    }

    fn screened(
        &mut self,
        window: Window,
        result: &Result<BTreeMap<Uid, Screen>, super::Failure>,
        out: &mut Vec<Output>,
    ) {
        let Some(round) = self.round.as_mut().filter(|r| r.plan.window == window) else {
            return;
        };
        match result {
            Ok(screens) => {
                for (&uid, &sc) in screens {
                    if let Some(s) = sc.score() {
                        round.obs.screens.insert(uid, s);
                    }
                    if let Some(o) = sc.outcome() {
                        round.obs.outcomes.insert(uid, o);
                    }
                }
            }
            // Unscreened, the evaluations go in the plan's order.
            Err(e) => out.push(Output::Emit(NodeEvent::Error {
                window: Some(window),
                message: format!("screening the uploads: {e}"),
            })),
        }
        self.queue_evaluations(out);
    }

    /// The next evaluation, or the window's outcome once the due ones are measured and the
    /// window's evaluation time is over (or nobody is left).
    fn next_evaluation(&mut self, now: Millis, out: &mut Vec<Output>) {
        let deadline = self
            .r
            .cfg
            .eval_deadline(self.round.as_ref().map_or(0, |r| r.plan.window));
        let Some(round) = self.round.as_mut() else {
            return;
        };
        let window = round.plan.window;
        let more = round.tried < round.required || now < deadline;
        if let Some(uid) = round.queue.pop_front().filter(|_| more) {
            round.tried += 1;
            let lr = self.r.cfg.params.outer_lr_at(window) * self.r.cfg.params.eval_lr_factor;
            let clip_to = round
                .gathered
                .as_ref()
                .map(|g| g.clip_to.clone())
                .unwrap_or_default();
            self.r.submit(
                Action::Evaluate {
                    window,
                    uid,
                    lr,
                    clip_to,
                },
                out,
            );
            return;
        }
        self.finish_round(now, out);
    }

    fn evaluated(
        &mut self,
        now: Millis,
        window: Window,
        uid: Uid,
        result: &Result<Evaluation, super::Failure>,
        out: &mut Vec<Output>,
    ) {
        let Some(round) = self.round.as_mut().filter(|r| r.plan.window == window) else {
            return;
        };
        match result {
            Ok(Evaluation { probe, norm_ratio }) => {
                let fingerprint = round.fingerprints.get(&uid).cloned();
                round.eval.insert(
                    uid,
                    ProbeLine {
                        rand_before: probe.rand_before,
                        rand_after: probe.rand_after,
                        own_before: probe.own_before,
                        own_after: probe.own_after,
                        own_z: probe.own_z,
                        fingerprint: fingerprint.is_some(),
                    },
                );
                let pen = &self.r.cfg.params.penalties;
                let outcome = EvalOutcome::measured(pen, *probe, fingerprint, *norm_ratio);
                round.obs.outcomes.insert(uid, outcome);
            }
            // The update itself makes the model non-finite: the peer's doing.
            Err(e) if e.kind == FailureKind::Codec => {
                round.obs.outcomes.insert(uid, EvalOutcome::NonFinite);
            }
            // This validator's own trouble (its model, its data): not the peer's.
            Err(e) => {
                round.obs.unavailable.insert(uid);
                out.push(Output::Emit(NodeEvent::Error {
                    window: Some(window),
                    message: format!("evaluating uid {uid}: {e}"),
                }));
            }
        }
        self.next_evaluation(now, out);
    }

    /// Scores the window, sets weights, saves the state and applies the outer step.
    fn finish_round(&mut self, now: Millis, out: &mut Vec<Output>) {
        let Some(round) = self.round.take() else {
            return;
        };
        let window = round.plan.window;
        let Some(g) = round.gathered else { return };
        self.life.stats.eval_ms += now.saturating_sub(round.gathered_at);
        let p = self.r.cfg.params.clone();
        let screens = round.obs.screens.clone();
        match self.gauntlet.finish(&p, &round.plan, round.obs) {
            Ok(report) => {
                let peers = report
                    .peers
                    .iter()
                    .map(|(&u, r)| (u, PeerLine::new(r, report.weights.get(u))))
                    .collect();
                out.push(Output::Emit(NodeEvent::Report {
                    window,
                    aggregated: g.valid.clone(),
                    copies: report.copies.clone(),
                    peers,
                    eval: round.eval,
                    screens,
                    rejected: round.rejected,
                }));
                // Until it has measured someone its weights say nothing: the chain keeps the
                // ones it set before (a restart) or none, rather than an empty vector.
                if self.gauntlet.has_measured() {
                    out.push(Output::Do(Action::SetWeights {
                        window,
                        weights: report.weights.quantize(),
                    }));
                }
                out.push(Output::Do(Action::Persist {
                    window,
                    gauntlet: Box::new(self.gauntlet.clone()),
                }));
            }
            Err(e) => out.push(Output::Emit(NodeEvent::Error {
                window: Some(window),
                message: format!("scoring window {window}: {e}"),
            })),
        }
        if g.complete {
            self.r.apply(window, g.valid, out);
        }
    }

    /// After an outer step: for a live one the record, a checkpoint; the validation loss of
    /// every step since the node joined (a window caught up after an outage is part of the
    /// run's loss curve; the windows replayed to join were measured by the nodes then live).
    fn stepped(&mut self, now: Millis, note: Note, out: &mut Vec<Output>) {
        let Note::Applied {
            window,
            hash,
            ref peers,
            lr,
            source,
            ..
        } = note
        else {
            return;
        };
        self.life.last_hash = Some(hash);
        if source == super::events::StepSource::Live {
            self.publish(window, peers.clone(), lr, hash, out);
        } else if !self.r.joined() {
            self.emit_step(now, &note, None, out);
            return;
        }
        self.stepped = Some(note);
        self.r.submit(Action::MeasureValLoss { window }, out);
    }

    /// A live step's record, the pruning of an old window and, when due, a checkpoint.
    fn publish(
        &mut self,
        window: Window,
        aggregated: Vec<Uid>,
        lr: f64,
        hash: Hash,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Do(Action::PublishRecord {
            window,
            aggregated,
            lr,
            hash,
        }));
        let keep = self.cfg().keep_windows;
        if window >= keep {
            out.push(Output::Do(Action::Prune {
                window: window - keep,
            }));
        }
        if self.checkpoint_due || (window + 1).is_multiple_of(self.cfg().checkpoint_every.max(1)) {
            self.checkpoint_due = false;
            out.push(Output::Do(Action::PublishCheckpoint { window }));
        }
    }

    fn emit_step(&self, now: Millis, note: &Note, val_loss: Option<f64>, out: &mut Vec<Output>) {
        if let Note::Applied {
            window,
            hash,
            peers,
            lr,
            source,
            rejected,
        } = note
        {
            out.push(Output::Emit(NodeEvent::OuterStep {
                window: *window,
                peers: peers.clone(),
                rejected: rejected.clone(),
                lr: *lr,
                hash: hex(hash),
                source: *source,
                val_loss,
                stats: self.life.stats_at(now),
            }));
        }
    }

    fn note(&mut self, now: Millis, note: Note, out: &mut Vec<Output>) {
        match note {
            Note::Listed {
                window,
                view,
                set,
                uploads,
                gather,
            } => self.listed(window, set, &view, &uploads, gather, out),
            Note::Gathered {
                window,
                valid,
                complete,
                results,
                ..
            } => self.gathered(now, window, valid, complete, &results, out),
            n @ Note::Applied { .. } => self.stepped(now, n, out),
            Note::WindowStarted(_) | Note::Joined => {}
        }
    }

    fn maybe_stop(&mut self, now: Millis, out: &mut Vec<Output>) {
        let applied = self.r.applied();
        let done = self
            .cfg()
            .until_window
            .is_some_and(|u| applied.is_some_and(|a| a >= u))
            && self.stepped.is_none();
        self.life.stop_if(now, done, applied, out);
    }
}

/// The uploads a lone update is clipped against: the window's aggregated set (what the
/// outer step clips to), or, while nobody is aggregated yet, every non-zero upload fetched.
fn clip_set(valid: &[Uid], results: &BTreeMap<Uid, Result<Fetched, Rejection>>) -> Vec<Uid> {
    if !valid.is_empty() {
        return valid.to_vec();
    }
    results
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|f| !f.zero))
        .map(|(&u, _)| u)
        .collect()
}

impl Driver for Validator {
    fn handle(&mut self, now: Millis, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if self.life.stopped {
            return out;
        }
        if input == Input::Start {
            self.start(now, &mut out);
        }
        let notes = self.r.handle(now, &input, &mut out);
        match &input {
            Input::Fingerprinted {
                window,
                fingerprint,
                peers,
            } => {
                if let Some(r) = self.round.as_mut().filter(|r| r.plan.window == *window) {
                    r.obs.own_fingerprint = Some(fingerprint.clone());
                    r.obs.references = peers.clone();
                    self.next_evaluation(now, &mut out);
                }
            }
            Input::Screened { window, result } => self.screened(*window, result, &mut out),
            Input::Evaluated {
                window,
                uid,
                result,
            } => self.evaluated(now, *window, *uid, result, &mut out),
            Input::Validated { window, result } => {
                if let Some(n) = self.stepped.take() {
                    let loss = match result {
                        Ok(l) => Some(*l),
                        Err(e) => {
                            out.push(Output::Emit(NodeEvent::Error {
                                window: Some(*window),
                                message: format!("validation loss: {e}"),
                            }));
                            None
                        }
                    };
                    self.emit_step(now, &n, loss, &mut out);
                }
            }
            Input::Applied { result: Ok(a), .. } => self.life.stats.outer_ms += a.elapsed_ms,
            Input::Done {
                chore,
                window,
                result,
            } => match result {
                Ok(()) if *chore == Chore::PublishCheckpoint => {
                    if let Some(w) = window {
                        out.push(Output::Emit(NodeEvent::Checkpoint { window: *w }));
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    // Joiners need checkpoints: a failed one is published after the next step.
                    self.checkpoint_due |= *chore == Chore::PublishCheckpoint;
                    out.push(Output::Emit(NodeEvent::Error {
                        window: *window,
                        message: e.message.clone(),
                    }))
                }
            },
            _ => {}
        }
        for n in notes {
            self.note(now, n, &mut out);
        }
        self.maybe_stop(now, &mut out);
        out
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.life.poll(&[self.r.poll_timeout()])
    }
}
