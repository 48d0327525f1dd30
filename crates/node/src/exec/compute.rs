//! The model actions: inner steps, compression, outer steps, evaluation, checkpoints in.
//!
//! Besides the canonical model (in [`Shared`]) a node has a live model (in its [`Trainer`]):
//! the one it trains. Its window's starting point θ0 is the canonical model unless an outer
//! step landed mid-window ([`Live::Shift`]), which moves the live model by the same update and
//! makes the shifted model the new θ0. Compressing sends θ0 − θ and rolls the live model back to
//! the canonical one.

use std::collections::BTreeMap;
use std::sync::Arc;

use covenant_codec::{wire, DeltaSource, TensorPayload};
use covenant_core::driver::{
    Action, Applied, Chore, Compressed, Failure, FailureKind, Hash, Input, Live, StepInfo,
};
use covenant_core::gauntlet::Screen;
use covenant_core::scoring::{fingerprint_seed, own_data_z, Evaluation};
use covenant_core::{LossProbe, Uid, Window};
use covenant_data::{sampler, Split};

use super::carry::Carry;
use super::Shared;
use crate::canon::Canon;
use crate::checkpoint;
use crate::env::{InnerStep, SparseValues, Trainer, TrainerError};

/// The model side of a node.
pub struct Compute {
    shared: Arc<Shared>,
    trainer: Box<dyn Trainer>,
    ef: Vec<Vec<f32>>,
    /// Where an outer step that landed mid-window restarted the window's pseudo-gradient
    /// (a window that started from the canonical model; see [`Live::Shift`]).
    theta0: Option<Vec<Vec<f32>>>,
    /// Overlap: the live model carries on from the last window's steps (see [`Carry`]).
    carry: Option<Carry>,
    /// The assigned pool of the window being trained.
    pool: Option<(Window, Vec<u64>)>,
    /// The random-pool loss of the canonical model for a window's evaluations.
    /// The window's random pool and its losses on the canonical model, per sequence.
    rand_before: Option<(Window, Vec<u64>, Vec<f64>)>,
    /// The clip norms of a window's evaluations (see [`Canon::clip_norms`]).
    clip: Option<(Window, Vec<f32>)>,
    /// The trainer holds the canonical model (nothing trained or tried since it was set).
    at_canon: bool,
    /// The canonical values at the positions a lone update was written to (see
    /// [`Compute::try_alone`]).
    applied: Option<SparseValues>,
}

fn trainer_failure(e: TrainerError) -> Failure {
    match e {
        TrainerError::NonFinite { .. } => Failure::new(FailureKind::Codec, e),
        e => Failure::new(FailureKind::Trainer, e),
    }
}

fn codec_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureKind::Codec, e)
}

fn poisoned() -> Failure {
    Failure::new(FailureKind::Trainer, "model lock poisoned")
}

impl Compute {
    pub fn new(shared: Arc<Shared>, trainer: Box<dyn Trainer>) -> Self {
        let ef = shared
            .layout
            .tensors
            .iter()
            .map(|t| vec![0.0; t.geom.numel()])
            .collect();
        Compute {
            shared,
            trainer,
            ef,
            theta0: None,
            carry: None,
            pool: None,
            rand_before: None,
            clip: None,
            at_canon: true,
            applied: None,
        }
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Carries out a model action, with the time it took on the node's clock.
    pub fn run(&mut self, action: Action) -> Input {
        // A lone update left written by a failed screen or evaluation is written back before
        // anything else touches the model (see `Compute::try_alone`).
        if self.applied.is_some() {
            let _ = self.hold_canon();
        }
        let t0 = self.shared.now();
        let ms = |s: &Self| s.shared.now().saturating_sub(t0);
        match action {
            Action::LoadCheckpoint { window, validator } => Input::CheckpointLoaded {
                window,
                validator,
                result: self.load_checkpoint(window, validator),
            },
            Action::ResetTrainer => Input::Done {
                chore: Chore::ResetTrainer,
                window: None,
                result: self.reset(),
            },
            Action::TrainStep { window, step } => {
                let r = self.step(window, step);
                Input::Stepped {
                    window,
                    step,
                    result: r.map(|s| StepInfo {
                        loss: s.map_or(f32::NAN, |s| s.loss),
                        lr: s.map_or(f64::NAN, |s| s.lr),
                        elapsed_ms: ms(self),
                        trained: s.is_some(),
                    }),
                }
            }
            Action::Compress {
                window,
                zero,
                carry,
            } => {
                let r = self.compress(window, zero, carry);
                Input::Compressed {
                    window,
                    result: r.map(|(bytes, fell_back_to_zero)| Compressed {
                        bytes,
                        elapsed_ms: ms(self),
                        fell_back_to_zero,
                    }),
                }
            }
            Action::Apply {
                window,
                peers,
                lr,
                expect,
                live,
            } => {
                let r = self.apply(window, &peers, lr, expect, live);
                Input::Applied {
                    window,
                    result: r.map(|(hash, committed)| Applied {
                        hash,
                        committed,
                        elapsed_ms: ms(self),
                    }),
                }
            }
            Action::Fingerprint { window, peers } => self.fingerprints(window, &peers),
            Action::Screen {
                window,
                peers,
                lr,
                clip_to,
            } => Input::Screened {
                window,
                result: self.screen(window, &peers, lr, &clip_to),
            },
            Action::Evaluate {
                window,
                uid,
                lr,
                clip_to,
            } => Input::Evaluated {
                window,
                uid,
                result: self.evaluate(window, uid, lr, &clip_to),
            },
            Action::MeasureValLoss { window } => Input::Validated {
                window,
                result: self.val_loss(),
            },
            other => super::io::run(&self.shared, other),
        }
    }

    /// Makes the trainer hold the canonical model.
    fn hold_canon(&mut self) -> Result<(), Failure> {
        if self.applied.is_some() && self.restore().is_ok() {
            return Ok(());
        }
        self.applied = None;
        if !self.at_canon {
            let c = self.shared.canon.read().map_err(|_| poisoned())?;
            self.trainer.set_params(&c.theta).map_err(trainer_failure)?;
            self.at_canon = true;
            // A starting point belongs to the live model just replaced.
            self.theta0 = None;
            self.carry = None;
        }
        Ok(())
    }

    fn load_checkpoint(&mut self, window: Window, validator: Uid) -> Result<Hash, Failure> {
        let s = self.shared.clone();
        let v = super::io::validator(&s, validator).ok_or_else(|| {
            Failure::new(
                FailureKind::Verification,
                format!("validator uid {validator} has no readable store"),
            )
        })?;
        let expect = checkpoint::Expect {
            run_id: &s.id.run_id,
            layout: &s.layout,
            config: &s.hf_config,
        };
        let canon = checkpoint::load(v.store.as_ref(), window, validator, v.key, &expect)
            .map_err(|e| Failure::new(FailureKind::Verification, e))?;
        self.trainer
            .set_params(&canon.theta)
            .map_err(trainer_failure)?;
        let h = canon.hash();
        *s.canon.write().map_err(|_| poisoned())? = canon;
        self.theta0 = None;
        self.carry = None;
        self.at_canon = true;
        Ok(h)
    }

    fn reset(&mut self) -> Result<(), Failure> {
        self.trainer.reset_optimizer().map_err(trainer_failure)?;
        self.at_canon = false;
        self.theta0 = None;
        self.carry = None;
        self.hold_canon()
    }

    /// One inner step; `Ok(None)` when the pool has no batch left.
    fn step(&mut self, window: Window, step: u32) -> Result<Option<InnerStep>, Failure> {
        let r = &self.shared.run;
        let b = r.batch;
        if self.pool.as_ref().is_none_or(|p| p.0 != window) {
            let n = self.trainer.samples(Split::Train);
            let size = r.params.inner_steps as usize * b;
            let ids = sampler::pool(r.seed, self.shared.id.uid, window, size, n);
            self.pool = Some((window, ids));
        }
        let ids: Vec<u64> = self
            .pool
            .as_ref()
            .map(|p| {
                p.1.iter()
                    .skip(step as usize * b)
                    .take(b)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(None);
        }
        self.at_canon = false;
        let at = r.params.inner_step_index(window, step);
        let s = self.trainer.step(&ids, at).map_err(trainer_failure)?;
        Ok(Some(s))
    }

    /// Compresses and signs the window's update; rolls the live model back, or with `carry`
    /// keeps it as the next window's starting point.
    fn compress(
        &mut self,
        window: Window,
        zero: bool,
        carry: bool,
    ) -> Result<(u64, bool), Failure> {
        let s = self.shared.clone();
        let mut carried = None;
        let (payload, fell_back) = if zero {
            self.ef.iter_mut().for_each(|e| e.fill(0.0));
            (TensorPayload::zeros_for(&s.layout), false)
        } else {
            let after = self.trainer.params().map_err(trainer_failure)?;
            let canon = s.canon.read().map_err(|_| poisoned())?;
            let prev = self.carry.take();
            let before = match (&prev, &self.theta0) {
                (Some(c), _) => c.start(),
                (None, Some(t0)) => t0,
                (None, None) => &canon.theta,
            };
            let deltas = DeltaSource::diffs(before, &after);
            let mut efs: Vec<&mut [f32]> = self.ef.iter_mut().map(|e| e.as_mut_slice()).collect();
            match covenant_codec::compress_model(&s.layout, &mut efs, &deltas) {
                Ok(p) => {
                    if carry {
                        // The next window starts where this upload alone would take the
                        // window's start (its share of the network's step, stood in for the
                        // network's until that lands); what it did not send stays in the error
                        // feedback, as without overlap.
                        let lr = s.run.params.outer_lr_at(window) as f32;
                        let mut next =
                            Canon::new(s.layout.clone(), before.to_vec()).map_err(codec_failure)?;
                        next.apply(&[p.as_slice()], lr).map_err(codec_failure)?;
                        let own = super::carry::diff(before, &next.theta);
                        carried = Carry::sent(prev, window, own, next.theta);
                    }
                    (p, false)
                }
                Err(_) => {
                    // A non-finite pseudo-gradient: reset the error feedback, send nothing.
                    self.ef.iter_mut().for_each(|e| e.fill(0.0));
                    (TensorPayload::zeros_for(&s.layout), true)
                }
            }
        };
        self.theta0 = None;
        self.carry = carried;
        match &self.carry {
            Some(c) => {
                self.trainer
                    .set_params(c.start())
                    .map_err(trainer_failure)?;
                self.at_canon = false;
            }
            None => self.hold_canon()?,
        }
        let header = wire::PayloadHeader {
            run_id: s.id.run_hash,
            window,
            uid: s.id.uid,
        };
        let opts = wire::EncodeOptions {
            index_coding: s.run.index_coding,
        };
        let bytes = wire::encode(
            &wire::Payload {
                header,
                tensors: payload,
            },
            &s.layout,
            s.id.key.signing_key(),
            opts,
        )
        .map_err(codec_failure)?;
        let n = bytes.len() as u64;
        s.prepared
            .lock()
            .map_err(|_| poisoned())?
            .insert(window, bytes);
        Ok((n, fell_back))
    }

    fn payloads(
        &self,
        window: Window,
        peers: &[Uid],
    ) -> Result<Vec<Arc<Vec<TensorPayload>>>, Failure> {
        let g = self.shared.gathered.lock().map_err(|_| poisoned())?;
        peers
            .iter()
            .map(|u| {
                g.get(&(window, *u)).cloned().ok_or_else(|| {
                    Failure::new(
                        FailureKind::Verification,
                        format!("the upload of uid {u} for window {window} was not fetched"),
                    )
                })
            })
            .collect()
    }

    /// The outer step; `Ok((hash, false))` when `expect` is given and not met.
    fn apply(
        &mut self,
        window: Window,
        peers: &[Uid],
        lr: f64,
        expect: Option<Hash>,
        live: Live,
    ) -> Result<(Hash, bool), Failure> {
        let s = self.shared.clone();
        let ps = self.payloads(window, peers)?;
        let refs: Vec<&[TensorPayload]> = ps.iter().map(|p| p.as_slice()).collect();
        let mut canon = s.canon.write().map_err(|_| poisoned())?;
        // The model before the step is needed to move the live model, or to keep it when the
        // result must have a hash it may not have.
        let moves = live == Live::Shift || self.carry.is_some();
        let keep = (expect.is_some() || moves).then(|| canon.clone());
        canon.apply(&refs, lr as f32).map_err(codec_failure)?;
        let hash = canon.hash();
        if expect.is_some_and(|e| e != hash) {
            if let Some(before) = keep {
                *canon = before;
            }
            return Ok((hash, false));
        }
        let before = keep.filter(|_| moves);
        self.follow(window, before.as_ref(), &canon, live)?;
        drop(canon);
        if let Ok(mut g) = s.gathered.lock() {
            g.retain(|(w, _), _| *w > window);
        }
        // The step's own bytes stay until its record has mirrored them.
        if let Ok(mut b) = s.fetched_bytes.lock() {
            b.retain(|(w, _), _| *w >= window);
        }
        self.rand_before = None;
        Ok((hash, true))
    }

    /// Moves the live model after window `window`'s outer step took the canonical model from
    /// `before` to `canon`: carried on (overlap, [`Carry::landed`]), shifted with the window's
    /// update restarting there ([`Live::Shift`]), or replaced by the canonical model.
    fn follow(
        &mut self,
        window: Window,
        before: Option<&Canon>,
        canon: &Canon,
        live: Live,
    ) -> Result<(), Failure> {
        match (before, self.carry.as_mut()) {
            (Some(b), Some(c)) => {
                let mut moved = self.trainer.params().map_err(trainer_failure)?;
                c.landed(window, &b.theta, &canon.theta, &mut moved);
                self.trainer.set_params(&moved).map_err(trainer_failure)?;
                self.at_canon = false;
            }
            (Some(b), None) if live == Live::Shift => {
                let mut moved = self.trainer.params().map_err(trainer_failure)?;
                for ((m, b), a) in moved.iter_mut().zip(&b.theta).zip(&canon.theta) {
                    for ((x, b), a) in m.iter_mut().zip(b).zip(a) {
                        *x += a - b;
                    }
                }
                self.trainer.set_params(&moved).map_err(trainer_failure)?;
                self.theta0 = Some(moved);
                self.at_canon = false;
            }
            _ => {
                self.trainer
                    .set_params(&canon.theta)
                    .map_err(trainer_failure)?;
                self.theta0 = None;
                self.carry = None;
                self.at_canon = true;
            }
        }
        Ok(())
    }

    /// The window's random pool and the canonical model's loss on each of its sequences
    /// (measured once per window).
    fn rand_before(&mut self, window: Window) -> Result<(Vec<u64>, Vec<f64>), Failure> {
        if let Some((w, ids, l)) = &self.rand_before {
            if *w == window {
                return Ok((ids.clone(), l.clone()));
            }
        }
        self.hold_canon()?;
        let s = self.shared.clone();
        let r = &s.run;
        let n = self.trainer.samples(Split::Train);
        let ids = s.id.eval_pool(r.seed, window, r.params.eval_sequences, n);
        let l = self.losses(&ids)?;
        self.rand_before = Some((window, ids.clone(), l.clone()));
        Ok((ids, l))
    }

    /// Makes the trainer hold the canonical model with `uid`'s update applied alone at `lr`,
    /// clipped to the window's clip norms, by writing only the positions it changes (no copy
    /// of the model: [`Compute::restore`] writes the canonical values back); its norm ratio
    /// ([`Canon::apply_clipped`]).
    fn try_alone(
        &mut self,
        window: Window,
        uid: Uid,
        lr: f64,
        clip_to: &[Uid],
    ) -> Result<f64, Failure> {
        self.hold_canon()?;
        let payload = self.payloads(window, &[uid])?.remove(0);
        let norms = self.clip_norms(window, clip_to)?;
        let lone = self
            .shared
            .canon
            .read()
            .map_err(|_| poisoned())?
            .lone_update(payload.as_slice(), &norms, lr as f32)
            .map_err(codec_failure)?;
        if lone
            .new
            .tensors
            .iter()
            .any(|(_, v)| v.iter().any(|x| !x.is_finite()))
        {
            return Err(codec_failure("the update makes the model non-finite"));
        }
        // Until it is written back, the trainer may hold anything between the two.
        self.at_canon = false;
        self.trainer.write_at(&lone.new).map_err(trainer_failure)?;
        self.applied = Some(lone.old);
        Ok(lone.norm_ratio)
    }

    /// Writes back the canonical values a [`Compute::try_alone`] changed.
    fn restore(&mut self) -> Result<(), Failure> {
        if let Some(old) = self.applied.take() {
            self.trainer.write_at(&old).map_err(trainer_failure)?;
            self.at_canon = true;
        }
        Ok(())
    }

    /// Screens (see [`Action::Screen`]): each peer's update alone on the first
    /// `screen_sequences` of the random pool. The validator's own trouble fails the whole
    /// screen; an update's (non-finite, a norm outlier) judges that peer.
    fn screen(
        &mut self,
        window: Window,
        peers: &[Uid],
        lr: f64,
        clip_to: &[Uid],
    ) -> Result<BTreeMap<Uid, Screen>, Failure> {
        let (ids, before) = self.rand_before(window)?;
        let k = self.shared.run.params.screen_sequences.min(ids.len());
        let (ids, before) = (&ids[..k], mean(&before[..k]));
        let outlier = self.shared.run.params.penalties.outlier_norm;
        let mut out = BTreeMap::new();
        let mut result = Ok(());
        for &uid in peers {
            let sc = self.try_alone(window, uid, lr, clip_to).and_then(|ratio| {
                let after = mean(&self.losses(ids)?);
                let score = if before > 0.0 {
                    (before - after) / before
                } else {
                    0.0
                };
                Ok(if ratio > outlier {
                    Screen::Outlier { ratio, score }
                } else {
                    Screen::Score(score)
                })
            });
            match sc {
                Ok(sc) if !sc.score().is_some_and(f64::is_finite) => {
                    out.insert(uid, Screen::NonFinite)
                }
                Ok(sc) => out.insert(uid, sc),
                Err(e) if e.kind == FailureKind::Codec => out.insert(uid, Screen::NonFinite),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
        }
        self.hold_canon()?;
        result.map(|()| out)
    }

    /// The four Gauntlet losses of `uid`'s update applied alone (SPEC §5).
    fn evaluate(
        &mut self,
        window: Window,
        uid: Uid,
        lr: f64,
        clip_to: &[Uid],
    ) -> Result<Evaluation, Failure> {
        let s = self.shared.clone();
        let (rand_ids, rand_before) = self.rand_before(window)?;
        self.hold_canon()?;
        let r = &s.run;
        let n = self.trainer.samples(Split::Train);
        let pool = sampler::pool(
            r.seed,
            uid,
            window,
            r.params.inner_steps as usize * r.batch,
            n,
        );
        // A secret sample of the sequences the peer trained on this window.
        let own_ids = s.id.own_sample(window, uid, &pool, r.params.eval_sequences);
        let own_before = self.losses(&own_ids)?;
        let norm_ratio = self.try_alone(window, uid, lr, clip_to)?;
        let own_after = self.losses(&own_ids);
        let rand_after = self.losses(&rand_ids);
        self.hold_canon()?;
        let (own_after, rand_after) = (own_after?, rand_after?);
        let pairs = |b: &[f64], a: &[f64]| -> Vec<(f64, f64)> {
            b.iter().copied().zip(a.iter().copied()).collect()
        };
        Ok(Evaluation {
            probe: LossProbe {
                rand_before: mean(&rand_before),
                rand_after: mean(&rand_after),
                own_before: mean(&own_before),
                own_after: mean(&own_after),
                own_z: own_data_z(
                    &pairs(&own_before, &own_after),
                    &pairs(&rand_before, &rand_after),
                ),
            },
            norm_ratio,
        })
    }

    /// The live model's loss on each of these training sequences.
    fn losses(&mut self, ids: &[u64]) -> Result<Vec<f64>, Failure> {
        self.trainer
            .eval_each(Split::Train, ids)
            .map_err(trainer_failure)
    }

    /// The canonical model's fingerprint at the run's positions and at each peer's.
    fn fingerprints(&self, window: Window, peers: &[Uid]) -> Input {
        let (seed, n) = (self.shared.run.seed, self.shared.run.fingerprint_values);
        let Ok(c) = self.shared.canon.read() else {
            return Input::Fingerprinted {
                window,
                fingerprint: Default::default(),
                peers: Default::default(),
            };
        };
        Input::Fingerprinted {
            window,
            fingerprint: c.fingerprint(seed, n),
            peers: peers
                .iter()
                .map(|&u| (u, c.fingerprint(fingerprint_seed(seed, window, u), n)))
                .collect(),
        }
    }

    /// The window's clip norms, computed at its first evaluation.
    fn clip_norms(&mut self, window: Window, clip_to: &[Uid]) -> Result<Vec<f32>, Failure> {
        if let Some((w, n)) = &self.clip {
            if *w == window {
                return Ok(n.clone());
            }
        }
        let ps = self.payloads(window, clip_to)?;
        let refs: Vec<&[TensorPayload]> = ps.iter().map(|p| p.as_slice()).collect();
        let norms = self
            .shared
            .canon
            .read()
            .map_err(|_| poisoned())?
            .clip_norms(&refs)
            .map_err(codec_failure)?;
        self.clip = Some((window, norms.clone()));
        Ok(norms)
    }

    fn val_loss(&mut self) -> Result<f64, Failure> {
        self.hold_canon()?;
        let ids = self.shared.run.val_ids.clone();
        self.trainer.eval(Split::Val, &ids).map_err(trainer_failure)
    }
}

/// Mean of a non-empty list (the losses of a pool).
fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}
