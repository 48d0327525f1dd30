//! `covenant miner` (SPEC §1, §3, §4): every window train H inner steps on the assigned pool,
//! compress the pseudo-gradient with error feedback, upload it as the next window starts, and
//! apply the window's aggregated outer step while already training the next one.
//!
//! Threads: this (training) thread owns the model and the protocol state machine; a
//! communication thread uploads, lists and downloads. Between inner steps the training thread
//! picks up what the communication thread finished, so the gather and outer step of window w
//! overlap the inner steps of window w + 1. An outer step that lands mid-window moves both the
//! live parameters and the window's starting point θ0 by the same update, so the pseudo-gradient
//! stays the window's own progress and the rollback lands exactly on the canonical model.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use covenant_codec::{wire, DeltaSource, TensorPayload};
use covenant_core::machine::{Miner, MinerAction, MinerEvent};
use covenant_core::Uid;
use covenant_data::{sampler, Split};
use covenant_model::Trainer;
use serde_json::json;

use crate::canon::{hex, Canon, Gathered};
use crate::join;
use crate::objects::{self, FingerprintDoc};
use crate::runtime::{self, Behaviour, Ctx, NodeOptions, PeerInfo};

enum Req {
    /// Re-sign another peer's window-`window` upload as ours (the copycat behaviour).
    Copy {
        window: u64,
        fp: FingerprintDoc,
        peers: BTreeMap<Uid, PeerInfo>,
    },
    Upload {
        /// Not before this time (ms; 0: now).
        not_before: u64,
        window: u64,
        grad: Vec<u8>,
        fp: FingerprintDoc,
    },
    ListAt {
        window: u64,
        at: u64,
        peers: BTreeMap<Uid, PeerInfo>,
    },
    Gather {
        window: u64,
        uids: Vec<Uid>,
        peers: BTreeMap<Uid, PeerInfo>,
    },
}

enum Resp {
    Uploaded {
        window: u64,
        bytes: u64,
        error: Option<String>,
    },
    Listed {
        window: u64,
        uploads: BTreeMap<Uid, u64>,
    },
    Gathered {
        window: u64,
        ok: Gathered,
        bad: BTreeMap<Uid, String>,
    },
}

fn comm_worker(ctx: Arc<Ctx>, rx: Receiver<Req>, tx: Sender<Resp>) {
    for req in rx {
        let resp = match req {
            Req::Upload {
                not_before,
                window,
                grad,
                fp,
            } => {
                Ctx::sleep_until(not_before);
                upload(&ctx, window, grad, fp)
            }
            Req::Copy { window, fp, peers } => match copy_someone(&ctx, window, &peers) {
                Some(grad) => upload(&ctx, window, grad, fp),
                None => Resp::Uploaded {
                    window,
                    bytes: 0,
                    error: Some("nothing to copy".into()),
                },
            },
            Req::ListAt { window, at, peers } => {
                Ctx::sleep_until(at);
                Resp::Listed {
                    window,
                    uploads: ctx.list_uploads(window, &peers),
                }
            }
            Req::Gather {
                window,
                uids,
                peers,
            } => {
                let (ok, bad) = ctx.gather(window, &uids, &peers);
                Resp::Gathered { window, ok, bad }
            }
        };
        if tx.send(resp).is_err() {
            return;
        }
    }
}

fn upload(ctx: &Ctx, window: u64, grad: Vec<u8>, fp: FingerprintDoc) -> Resp {
    let n = grad.len() as u64;
    let put = ctx
        .rt
        .block_on(ctx.store.put(&objects::grad_key(window), Bytes::from(grad)));
    let fp_put = ctx.rt.block_on(objects::put_doc(
        &ctx.store,
        &objects::fp_key(window),
        &ctx.key,
        ctx.run_id(),
        ctx.uid,
        window,
        objects::KIND_FINGERPRINT,
        &fp,
    ));
    prune(ctx, window);
    let error = put
        .err()
        .map(|e| e.to_string())
        .or(fp_put.err().map(|e| format!("{e:#}")));
    Resp::Uploaded {
        window,
        bytes: n,
        error,
    }
}

/// The copycat: waits (until shortly before the grace period ends) for another peer's upload of
/// `window`, decodes it with that peer's key and re-encodes it as its own.
fn copy_someone(ctx: &Ctx, window: u64, peers: &BTreeMap<Uid, PeerInfo>) -> Option<Vec<u8>> {
    let others: BTreeMap<Uid, PeerInfo> = peers
        .iter()
        .filter(|(u, _)| **u != ctx.uid)
        .map(|(u, p)| (*u, p.clone()))
        .collect();
    let (start, end) = ctx.params.upload_interval(window);
    let deadline = end.saturating_sub(ctx.params.block_time_ms).max(start);
    while Ctx::now_ms() < deadline {
        let listed = ctx.list_uploads(window, &others);
        if let Some((&uid, _)) = listed.iter().min_by_key(|(_, &t)| t) {
            let (ok, _) = ctx.gather(window, &[uid], &others);
            if let Some((tensors, _)) = ok.into_iter().next().map(|(_, v)| v) {
                let header = wire::PayloadHeader {
                    run_id: ctx.run_hash,
                    window,
                    uid: ctx.uid,
                };
                return wire::encode(
                    &wire::Payload { header, tensors },
                    &ctx.layout,
                    ctx.key.signing_key(),
                    wire::EncodeOptions::default(),
                )
                .ok();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Deletes own objects older than the retention.
fn prune(ctx: &Ctx, w: u64) {
    let keep = ctx.spec.keep_windows;
    if w >= keep {
        let old = w - keep;
        let _ = ctx.rt.block_on(ctx.store.delete(&objects::grad_key(old)));
        let _ = ctx.rt.block_on(ctx.store.delete(&objects::fp_key(old)));
    }
}

struct State {
    ctx: Arc<Ctx>,
    trainer: Trainer,
    canon: Canon,
    applied: Option<u64>,
    machine: Miner,
    ef: Vec<Vec<f32>>,
    to_comm: Sender<Req>,
    from_comm: Receiver<Resp>,
    views: BTreeMap<u64, runtime::WindowView>,
    /// Encoded payload + fingerprint of the last trained window, uploaded when the next starts.
    ready: Option<(u64, Vec<u8>)>,
    inner_secs: f64,
    outer_secs: f64,
    /// Time the training thread waited for an outer step (no overlap).
    wait_secs: f64,
    bytes_up: u64,
    bytes_down: u64,
    started: Instant,
    /// The live parameters equal the canonical ones (not mid-window).
    live_is_canon: bool,
    /// Mid-window starting point after an outer step landed (see `outer_step`).
    theta0: Option<Vec<Vec<f32>>>,
    /// Inner steps of this window so far, and those whose progress an outer step made stale.
    steps_in_window: u64,
    stale_steps: u64,
    total_steps: u64,
    /// The `echo` adversary's copy of the last applied outer step, as an update
    /// (Δ = (θ before − θ after) / lr, the convention of an upload).
    echo: Option<Vec<Vec<f32>>>,
}

pub fn run(opts: NodeOptions) -> Result<()> {
    let ctx = Arc::new(Ctx::open(opts, "miner")?);
    let mut trainer = ctx.trainer()?;
    let joined = join::join(&ctx, &mut trainer)?;
    ctx.log.event(
        "joined",
        json!({
            "uid": ctx.uid,
            "window": joined.start,
            "from_checkpoint": joined.from_checkpoint,
            "replayed": joined.replayed, "expect": joined.expect,
            "hash": hex(&joined.canon.hash()),
            "device": trainer.device_description(),
        }),
    );
    let mut machine = Miner::new(ctx.params.clone(), ctx.uid, joined.start)?;
    let views = BTreeMap::new();
    if let Some(w) = joined.expect {
        machine.expect_window(w);
    }
    let (req_tx, req_rx) = mpsc::channel();
    let (resp_tx, resp_rx) = mpsc::channel();
    {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("comm".into())
            .spawn(move || comm_worker(ctx, req_rx, resp_tx))
            .context("starting the communication thread")?;
    }
    let ef = joined
        .canon
        .theta
        .iter()
        .map(|t| vec![0.0; t.len()])
        .collect();
    let mut s = State {
        ctx: ctx.clone(),
        trainer,
        canon: joined.canon,
        applied: joined.applied,
        machine,
        ef,
        to_comm: req_tx,
        from_comm: resp_rx,
        views,
        ready: None,
        inner_secs: 0.0,
        outer_secs: 0.0,
        wait_secs: 0.0,
        bytes_up: 0,
        bytes_down: 0,
        started: Instant::now(),
        live_is_canon: true,
        theta0: None,
        steps_in_window: 0,
        stale_steps: 0,
        echo: None,
        total_steps: 0,
    };
    let mut w = joined.start;
    loop {
        // With --until-window u, window u + 1 only uploads window u's payload and gathers it.
        let last = ctx.opts.until_window.is_some_and(|u| w > u);
        let at = ctx.params.window_start_ms(w) + ctx.params.block_time_ms / 2;
        s.pump_until(at, None);
        if let Err(e) = s.window(w, !last) {
            ctx.log
                .event("error", json!({ "window": w, "message": format!("{e:#}") }));
        }
        if last {
            let until = ctx.params.gather_time(w - 1) + ctx.params.window_ms() / 2;
            s.pump_until(until, Some(w - 1));
            break;
        }
        w += 1;
    }
    let total = s.started.elapsed().as_secs_f64();
    ctx.log.event(
        "finished",
        json!({
            "uid": ctx.uid,
            "applied": s.applied,
            "hash": hex(&s.canon.hash()),
            "inner_secs": s.inner_secs,
            "outer_secs": s.outer_secs,
            "wait_secs": s.wait_secs,
            "wall_secs": total,
            "bytes_up": s.bytes_up,
            "bytes_down": s.bytes_down,
            "inner_steps": s.total_steps,
            "stale_steps": s.stale_steps,
        }),
    );
    Ok(())
}

impl State {
    /// Handles communication results until the wall clock reaches `until_ms` (or, with
    /// `applied_target`, until that window's outer step is applied).
    fn pump_until(&mut self, until_ms: u64, applied_target: Option<u64>) {
        loop {
            if let Some(t) = applied_target {
                if self.applied.is_some_and(|a| a >= t) {
                    return;
                }
            }
            let now = Ctx::now_ms();
            if now >= until_ms {
                return;
            }
            match self
                .from_comm
                .recv_timeout(Duration::from_millis((until_ms - now).min(200)))
            {
                Ok(r) => self.handle(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn pump_now(&mut self) {
        while let Ok(r) = self.from_comm.try_recv() {
            self.handle(r);
        }
    }

    fn handle(&mut self, r: Resp) {
        if let Err(e) = self.try_handle(r) {
            self.ctx
                .log
                .event("error", json!({ "message": format!("{e:#}") }));
        }
    }

    fn try_handle(&mut self, r: Resp) -> Result<()> {
        match r {
            Resp::Uploaded {
                window,
                bytes,
                error,
            } => match error {
                None => {
                    self.bytes_up += bytes;
                    self.ctx.log.event(
                        "uploaded",
                        json!({ "window": window, "bytes": bytes, "error": null }),
                    );
                }
                // A full disk or a store this node may not write: the window's update is lost,
                // the node carries on with the next window.
                Some(e) => self.ctx.log.event(
                    "error",
                    json!({ "window": window, "message": format!("uploading the update of window {window}: {e}") }),
                ),
            },
            Resp::Listed { window, uploads } => {
                let n = uploads.len();
                for a in self
                    .machine
                    .handle(MinerEvent::UploadsListed { window, uploads })?
                {
                    if let MinerAction::Gather { window, peers } = a {
                        let view = runtime::gather_peers(&self.views, window);
                        self.ctx.log.event(
                            "listed",
                            json!({ "window": window, "uploads": n, "gather": peers }),
                        );
                        self.to_comm.send(Req::Gather {
                            window,
                            uids: peers,
                            peers: view,
                        })?;
                    }
                }
            }
            Resp::Gathered { window, ok, bad } => {
                self.bytes_down += ok.values().map(|(_, b)| b).sum::<u64>();
                let valid: Vec<Uid> = ok.keys().copied().collect();
                for a in self
                    .machine
                    .handle(MinerEvent::Gathered { window, valid })?
                {
                    if let MinerAction::ApplyOuterStep { window, peers, lr } = a {
                        self.outer_step(window, &peers, &ok, lr as f32, &bad)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn outer_step(
        &mut self,
        window: u64,
        peers: &[Uid],
        got: &Gathered,
        lr: f32,
        bad: &BTreeMap<Uid, String>,
    ) -> Result<()> {
        let t = Instant::now();
        if self.applied.is_some_and(|a| a >= window) {
            return Ok(());
        }
        if self.ctx.opts.behaviour == Behaviour::Stale {
            // Keeps training its old model.
            self.applied = Some(window);
            return Ok(());
        }
        if self.applied.map(|a| a + 1).unwrap_or(0) != window {
            // A window was missed: catch up (records or recomputation) first, and continue
            // training from the caught-up model.
            self.applied = self
                .ctx
                .catch_up(&mut self.canon, self.applied, Some(window - 1))?;
            self.shift_live_to_canon()?;
            if !self.live_is_canon {
                self.theta0 = Some(self.canon.theta.clone());
                self.stale_steps += self.steps_in_window;
                self.steps_in_window = 0;
            }
            anyhow::ensure!(
                self.applied.map(|a| a + 1).unwrap_or(0) == window,
                "cannot bring the model to window {window} (it is at {:?})",
                self.applied
            );
        }
        let before = self.canon.theta.clone();
        self.canon.apply_selected(peers, got, lr)?;
        self.applied = Some(window);
        if self.ctx.opts.behaviour == Behaviour::Echo && !peers.is_empty() && lr > 0.0 {
            self.echo = Some(crate::adversary::echo_update(
                &before,
                &self.canon.theta,
                lr,
            ));
        }
        if self.live_is_canon {
            self.shift_live_to_canon()?;
        } else {
            // Mid-window: the live parameters move by the same update, and the window's
            // pseudo-gradient restarts from here. The steps taken so far started from a model
            // without this update, which was itself built from the same kind of progress;
            // sending them again would count that progress twice (an overshoot that made a
            // 4-miner run diverge). They stay as a warm start of the live model.
            let mut live = self.trainer.try_params()?;
            for ((l, b), a) in live.iter_mut().zip(&before).zip(&self.canon.theta) {
                for ((x, b), a) in l.data.iter_mut().zip(b).zip(a) {
                    *x += a - b;
                }
            }
            self.trainer.set_params(&live)?;
            self.theta0 = Some(live.into_iter().map(|v| v.data).collect());
            self.stale_steps += self.steps_in_window;
            self.steps_in_window = 0;
        }
        self.outer_secs += t.elapsed().as_secs_f64();
        self.ctx.log.event(
            "outer_step",
            json!({
                "window": window,
                "peers": peers,
                "rejected": bad,
                "lr": lr,
                "hash": hex(&self.canon.hash()),
            }),
        );
        Ok(())
    }

    /// The signed-upload companion: a fingerprint of the canonical model as it is now.
    fn fingerprint_doc(&self, window: u64) -> FingerprintDoc {
        let spec = &self.ctx.spec;
        FingerprintDoc {
            window,
            fingerprint: self.canon.fingerprint(spec.seed, spec.fingerprint_values),
        }
    }

    fn shift_live_to_canon(&mut self) -> Result<()> {
        self.trainer.set_params(&self.canon.views())?;
        Ok(())
    }

    fn window(&mut self, w: u64, train: bool) -> Result<()> {
        let ctx = self.ctx.clone();
        let view = ctx.view(w)?;
        self.views.insert(w, view.clone());
        self.views.retain(|&k, _| k + 3 > w);
        for a in self.machine.handle(MinerEvent::WindowStarted {
            window: w,
            chain: view.chain,
        })? {
            match a {
                MinerAction::Upload { window, .. } => {
                    let fp = self.fingerprint_doc(window);
                    match ctx.opts.behaviour {
                        Behaviour::Silent | Behaviour::Early => {}
                        Behaviour::Copycat => {
                            let peers = runtime::gather_peers(&self.views, window);
                            self.to_comm.send(Req::Copy { window, fp, peers })?;
                        }
                        b => {
                            if let Some((rw, grad)) = self.ready.take() {
                                if rw == window {
                                    let not_before = if b == Behaviour::Late {
                                        let (_, end) = ctx.params.upload_interval(window);
                                        end + ctx.params.block_time_ms
                                    } else {
                                        0
                                    };
                                    self.to_comm.send(Req::Upload {
                                        not_before,
                                        window,
                                        grad,
                                        fp,
                                    })?;
                                }
                            }
                        }
                    }
                }
                MinerAction::ListUploadsAt { window, at } => {
                    let peers = runtime::gather_peers(&self.views, window);
                    self.to_comm.send(Req::ListAt { window, at, peers })?;
                }
                MinerAction::Train {
                    window,
                    null,
                    inner_steps,
                } if train => self.train(window, null, inner_steps)?,
                MinerAction::Train { .. } => {}
                other => ctx.log.warn(&format!("unexpected action {other:?}")),
            }
        }
        Ok(())
    }

    fn train(&mut self, w: u64, null: bool, steps: u32) -> Result<()> {
        let ctx = self.ctx.clone();
        let b = ctx.spec.batch;
        let payload: Vec<TensorPayload> = if null {
            for e in &mut self.ef {
                e.iter_mut().for_each(|x| *x = 0.0);
            }
            TensorPayload::zeros_for(&ctx.layout)
        } else {
            // (The early uploader does not wait: it wants its upload in before the window ends.)
            if !ctx.spec.overlap
                && w > 0
                && self.applied.is_none_or(|a| a + 1 < w)
                && ctx.opts.behaviour != Behaviour::Early
            {
                // Wait (bounded) for the outer step of window w − 1 before training.
                let t = Instant::now();
                let until = ctx.params.gather_time(w - 1) + ctx.params.window_ms() / 2;
                self.pump_until(until, Some(w - 1));
                self.wait_secs += t.elapsed().as_secs_f64();
            }
            let n_train = ctx.data.num_samples(Split::Train);
            // The wrong-data miner trains on a pool no uid is assigned.
            let data_uid = if ctx.opts.behaviour == Behaviour::WrongData {
                ctx.uid ^ 0x8000_0000
            } else {
                ctx.uid
            };
            let pool = sampler::pool(ctx.spec.seed, data_uid, w, steps as usize * b, n_train);
            let t0 = Instant::now();
            self.live_is_canon = false;
            self.theta0 = None;
            self.steps_in_window = 0;
            let mut losses = Vec::with_capacity(steps as usize);
            for s in 0..steps as usize {
                self.pump_now();
                let ids: Vec<u64> = pool.iter().skip(s * b).take(b).copied().collect();
                if ids.is_empty() {
                    break;
                }
                let toks = runtime::tokens(&ctx.data, Split::Train, &ids)?;
                let st = self.trainer.step(&toks, ids.len())?;
                self.steps_in_window += 1;
                self.total_steps += 1;
                losses.push(st.loss);
            }
            let inner = t0.elapsed().as_secs_f64();
            self.inner_secs += inner;
            self.pump_now();
            let t1 = Instant::now();
            let after = self.trainer.try_params()?;
            let theta0 = self.theta0.take();
            let fresh_steps = if theta0.is_some() {
                self.steps_in_window
            } else {
                losses.len() as u64
            };
            let deltas: Vec<DeltaSource> = theta0
                .as_ref()
                .unwrap_or(&self.canon.theta)
                .iter()
                .zip(&after)
                .map(|(b, a)| DeltaSource::Diff {
                    before: b,
                    after: &a.data,
                })
                .collect();
            let mut efs: Vec<&mut [f32]> = self.ef.iter_mut().map(|e| e.as_mut_slice()).collect();
            let payload = match covenant_codec::compress_model(&ctx.layout, &mut efs, &deltas) {
                Ok(p) => p,
                Err(e) => {
                    // A non-finite delta: reset the error feedback and send nothing useful.
                    for e in &mut self.ef {
                        e.iter_mut().for_each(|x| *x = 0.0);
                    }
                    ctx.log.warn(&format!(
                        "window {w}: compression failed ({e}); uploading a zero update"
                    ));
                    TensorPayload::zeros_for(&ctx.layout)
                }
            };
            // Roll back to the canonical model.
            self.trainer.set_params(&self.canon.views())?;
            self.live_is_canon = true;
            self.outer_secs += t1.elapsed().as_secs_f64();
            let first = losses.first().copied().unwrap_or(f32::NAN);
            let last = losses.last().copied().unwrap_or(f32::NAN);
            let mean = losses.iter().sum::<f32>() / losses.len().max(1) as f32;
            ctx.log.event(
                "trained",
                json!({ "window": w, "steps": losses.len(), "sent_steps": fresh_steps, "loss_first": first, "loss_last": last,
                        "loss_mean": mean, "inner_secs": inner }),
            );
            payload
        };
        let mut payload = payload;
        crate::adversary::tamper_payload(ctx.opts.behaviour, &mut payload, &ctx.layout, ctx.uid, w);
        if ctx.opts.behaviour == Behaviour::Echo {
            payload = crate::adversary::echo_payload(&ctx.layout, self.echo.take().as_deref());
        }
        let header = wire::PayloadHeader {
            run_id: ctx.run_hash,
            window: w,
            uid: ctx.uid,
        };
        let grad = crate::adversary::encode_as(
            ctx.opts.behaviour,
            &ctx.layout,
            ctx.key.signing_key(),
            header,
            payload,
        )?;
        if ctx.opts.behaviour == Behaviour::Early {
            // Upload now, before the window has ended.
            let fp = self.fingerprint_doc(w);
            self.to_comm.send(Req::Upload {
                not_before: 0,
                window: w,
                grad,
                fp,
            })?;
            return Ok(());
        }
        self.ready = Some((w, grad));
        Ok(())
    }
}
