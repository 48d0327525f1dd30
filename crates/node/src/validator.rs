//! `covenant validator` (SPEC §1, §5, §6): for window w during w + 1, gather the same uploads
//! as the miners, measure each evaluated peer's contribution, update the Gauntlet, set weights
//! on the chain, apply the same outer step (so it holds the canonical model), publish a signed
//! record of the step (joiners replay from these) and every C windows a checkpoint.
//! The Gauntlet is saved after every window (atomically), so a validator killed with `kill -9`
//! and restarted resumes its ratings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use covenant_codec::TensorPayload;
use covenant_core::gauntlet::{EvalOutcome, Observations, WindowPlan};
use covenant_core::machine::{Validator, ValidatorAction, ValidatorEvent};
use covenant_core::{Gauntlet, LossProbe, Uid, UploadIndices, Weights};
use covenant_data::{sampler, Split};
use covenant_model::Trainer;
use covenant_net::{Transaction, TxBody};
use serde_json::json;

use crate::canon::{hex, Canon, Gathered};
use crate::objects::{self, FingerprintDoc, WindowRecord};
use crate::runtime::{self, Ctx, NodeOptions, WindowView};
use crate::spec::write_atomic;
use crate::{checkpoint, join};

/// Largest validator state file read.
const MAX_STATE_BYTES: u64 = 256 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    run: String,
    uid: Uid,
    gauntlet: Gauntlet,
}

struct State {
    trainer: Trainer,
    canon: Canon,
    applied: Option<u64>,
    machine: Validator,
    views: BTreeMap<u64, WindowView>,
    state_path: PathBuf,
    val_ids: Vec<u64>,
}

pub fn run(opts: NodeOptions) -> Result<()> {
    let ctx = Ctx::open(opts, "validator")?;
    let state_path = ctx.node_dir.join("state.json");
    let gauntlet = match load_state(&ctx, &state_path)? {
        Some(g) => {
            ctx.log.event(
                "restored",
                json!({ "peers": g.peers.len(), "last_window": g.last_window,
                        "scores": g.scores() }),
            );
            g
        }
        None => Gauntlet::new(covenant_core::rng::derive_seed(
            ctx.spec.seed,
            &[u64::from(ctx.uid), 0x7A1],
        )),
    };
    let mut trainer = ctx.trainer()?;
    let joined = join::join(&ctx, &mut trainer)?;
    ctx.log.event(
        "joined",
        json!({ "uid": ctx.uid, "window": joined.start, "from_checkpoint": joined.from_checkpoint,
                "replayed": joined.replayed, "expect": joined.expect, "hash": hex(&joined.canon.hash()) }),
    );
    let mut machine = Validator::new(ctx.params.clone(), gauntlet)?;
    let views = BTreeMap::new();
    if let Some(w) = joined.expect {
        machine.expect_window(w);
    }
    let val_ids = runtime::val_ids(&ctx.data, ctx.spec.val_sequences);
    let mut s = State {
        trainer,
        canon: joined.canon,
        applied: joined.applied,
        machine,
        views,
        state_path,
        val_ids,
    };
    let mut w = joined.start;
    loop {
        if ctx.opts.until_window.is_some_and(|u| w > u + 1) {
            break;
        }
        Ctx::sleep_until(ctx.params.window_start_ms(w) + ctx.params.block_time_ms / 2);
        if let Err(e) = s.window(&ctx, w) {
            ctx.log
                .event("error", json!({ "window": w, "message": format!("{e:#}") }));
        }
        w += 1;
    }
    ctx.log.event(
        "finished",
        json!({ "applied": s.applied, "hash": hex(&s.canon.hash()) }),
    );
    Ok(())
}

fn load_state(ctx: &Ctx, path: &std::path::Path) -> Result<Option<Gauntlet>> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    anyhow::ensure!(
        meta.len() <= MAX_STATE_BYTES,
        "{} is larger than {MAX_STATE_BYTES} bytes",
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st: SavedState = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a validator state file", path.display()))?;
    anyhow::ensure!(
        st.run == ctx.run_id() && st.uid == ctx.uid,
        "{} belongs to run {:?} uid {}, not run {:?} uid {}",
        path.display(),
        st.run,
        st.uid,
        ctx.run_id(),
        ctx.uid
    );
    Ok(Some(st.gauntlet))
}

/// Weights as the chain takes them: integers 0..=65535 proportional to the weights.
pub fn chain_weights(w: &Weights) -> Vec<(u32, u16)> {
    let max = w
        .per_uid
        .values()
        .copied()
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    if max <= 0.0 {
        return Vec::new();
    }
    w.per_uid
        .iter()
        .filter(|(_, &x)| x.is_finite() && x > 0.0)
        .map(|(&u, &x)| (u, ((x / max) * 65535.0).round().clamp(1.0, 65535.0) as u16))
        .collect()
}

impl State {
    fn window(&mut self, ctx: &Ctx, w: u64) -> Result<()> {
        let view = ctx.view(w)?;
        self.views.insert(w, view.clone());
        self.views.retain(|&k, _| k + 3 > w);
        let mut queue: Vec<ValidatorAction> =
            self.machine.handle(ValidatorEvent::WindowStarted {
                window: w,
                chain: view.chain,
            })?;
        let mut gathered: Gathered = BTreeMap::new();
        let mut report_extra = json!({});
        let mut listing: BTreeMap<Uid, u64> = BTreeMap::new();
        while !queue.is_empty() {
            let a = queue.remove(0);
            match a {
                ValidatorAction::ListUploadsAt { window, at } => {
                    Ctx::sleep_until(at);
                    let peers = runtime::gather_peers(&self.views, window);
                    let uploads = ctx.list_uploads(window, &peers);
                    listing = uploads.clone();
                    queue.extend(
                        self.machine
                            .handle(ValidatorEvent::UploadsListed { window, uploads })?,
                    );
                }
                ValidatorAction::GatherAndEvaluate {
                    plan,
                    downloads,
                    eval_lr,
                } => {
                    let peers = runtime::gather_peers(&self.views, plan.window);
                    let (ok, bad) = ctx.gather(plan.window, &downloads, &peers);
                    let (obs, extra) =
                        self.evaluate(ctx, &plan, &ok, &bad, &peers, &listing, eval_lr as f32)?;
                    report_extra = extra;
                    gathered = ok;
                    queue.extend(self.machine.handle(ValidatorEvent::Observed {
                        window: plan.window,
                        observations: obs,
                    })?);
                }
                ValidatorAction::ApplyOuterStep { window, peers, lr } => {
                    self.outer_step(ctx, window, &peers, &gathered, lr as f32)?;
                }
                ValidatorAction::SetWeights { weights, .. } => {
                    let ws = chain_weights(&weights);
                    let nonce = ctx.chain.next_nonce(&ctx.key.public())?;
                    let tx = Transaction::sign(
                        &ctx.key,
                        ctx.run_id(),
                        nonce,
                        TxBody::SetWeights { weights: ws },
                    );
                    if let Err(e) = ctx.chain.submit(&tx) {
                        ctx.log.warn(&format!("setting weights: {e}"));
                    }
                }
                ValidatorAction::PersistState => {
                    let st = SavedState {
                        run: ctx.run_id().to_string(),
                        uid: ctx.uid,
                        gauntlet: self.machine.gauntlet.clone(),
                    };
                    // A failed save (full disk, lost permission) only matters if the validator
                    // restarts before a later save succeeds: say so and carry on.
                    let saved = serde_json::to_vec(&st)
                        .map_err(anyhow::Error::from)
                        .and_then(|b| write_atomic(&self.state_path, &b));
                    if let Err(e) = saved {
                        let message = format!(
                            "saving the validator state: {e:#} (the ratings stay in memory; \
                             the next window tries again)"
                        );
                        ctx.log
                            .event("error", json!({ "window": w, "message": message }));
                    }
                }
                ValidatorAction::Report(r) => {
                    let peers: BTreeMap<String, serde_json::Value> = r
                        .peers
                        .iter()
                        .map(|(u, p)| {
                            (u.to_string(), json!({ "verdict": p.verdict, "score": p.score, "ordinal": p.ordinal,
                                                   "weight": r.weights.get(*u), "excluded": p.excluded }))
                        })
                        .collect();
                    ctx.log.event(
                        "report",
                        json!({ "window": r.window, "aggregated": r.aggregated, "copies": r.copies,
                                "peers": peers, "eval": report_extra }),
                    );
                }
            }
        }
        Ok(())
    }

    /// Measures the plan's evaluated peers (SPEC §5) on the current canonical model.
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        ctx: &Ctx,
        plan: &WindowPlan,
        ok: &Gathered,
        bad: &BTreeMap<Uid, String>,
        peers: &BTreeMap<Uid, runtime::PeerInfo>,
        listing: &BTreeMap<Uid, u64>,
        eval_lr: f32,
    ) -> Result<(Observations, serde_json::Value)> {
        let w = plan.window;
        let p = &ctx.params;
        let n_train = ctx.data.num_samples(Split::Train);
        let b = ctx.spec.batch;
        let rand_ids = sampler::random_pool(
            ctx.spec.seed,
            w,
            u64::from(ctx.uid),
            p.eval_sequences,
            n_train,
        );
        let rand_before =
            runtime::mean_loss(&mut self.trainer, &ctx.data, Split::Train, &rand_ids, b)?;
        let mut obs = Observations {
            own_fingerprint: Some(
                self.canon
                    .fingerprint(ctx.spec.seed, ctx.spec.fingerprint_values),
            ),
            // Zero updates: nothing to measure, left out of the copy check by the Gauntlet.
            zero: ok
                .iter()
                .filter(|(_, (payload, _))| payload.iter().all(TensorPayload::is_zero))
                .map(|(&uid, _)| uid)
                .collect(),
            ..Default::default()
        };
        let mut extra = serde_json::Map::new();
        let evaluate: BTreeSet<Uid> = plan.evaluate.iter().copied().collect();
        for (&uid, why) in bad {
            if evaluate.contains(&uid) {
                obs.outcomes.insert(
                    uid,
                    EvalOutcome::Invalid {
                        reason: why.clone(),
                    },
                );
            } else {
                obs.invalid.insert(uid);
            }
        }
        let mut touched = false;
        for &uid in &plan.evaluate {
            let Some((payload, _)) = ok.get(&uid) else {
                continue;
            };
            if obs.zero.contains(&uid) {
                continue;
            }
            let pool = sampler::pool(ctx.spec.seed, uid, w, p.inner_steps as usize * b, n_train);
            // The sequences the peer trained on last: where its update should help most.
            let own_ids: Vec<u64> = pool.iter().rev().take(p.eval_sequences).copied().collect();
            if touched {
                // The previous peer's update is still applied: measure from the canonical model.
                self.trainer.set_params(&self.canon.views())?;
                touched = false;
            }
            let own_before =
                runtime::mean_loss(&mut self.trainer, &ctx.data, Split::Train, &own_ids, b)?;
            let mut alone = self.canon.clone();
            alone.apply(&[payload.as_slice()], eval_lr)?;
            if self.trainer.set_params(&alone.views()).is_err() {
                obs.outcomes.insert(
                    uid,
                    EvalOutcome::Invalid {
                        reason: "update makes the model non-finite".into(),
                    },
                );
                continue;
            }
            touched = true;
            let own_after =
                runtime::mean_loss(&mut self.trainer, &ctx.data, Split::Train, &own_ids, b)?;
            let rand_after =
                runtime::mean_loss(&mut self.trainer, &ctx.data, Split::Train, &rand_ids, b)?;
            let fingerprint = peers.get(&uid).and_then(|pi| {
                ctx.rt
                    .block_on(objects::get_doc::<FingerprintDoc>(
                        &pi.store,
                        &objects::fp_key(w),
                        ctx.run_id(),
                        uid,
                        w,
                        objects::KIND_FINGERPRINT,
                        pi.key,
                    ))
                    .ok()
                    .filter(|d| d.window == w)
                    .map(|d| d.fingerprint)
            });
            let probe = LossProbe {
                rand_before,
                rand_after,
                own_before,
                own_after,
            };
            extra.insert(
                uid.to_string(),
                json!({ "rand_before": rand_before, "rand_after": rand_after,
                                                  "own_before": own_before, "own_after": own_after,
                                                  "fingerprint": fingerprint.is_some() }),
            );
            obs.outcomes
                .insert(uid, EvalOutcome::Measured { probe, fingerprint });
        }
        if touched {
            self.trainer.set_params(&self.canon.views())?;
        }
        // Copy check over every downloaded upload.
        for (&uid, (payload, _)) in ok {
            let store_time = listing.get(&uid).copied().unwrap_or(u64::MAX);
            obs.indices.push(UploadIndices {
                uid,
                store_time,
                indices: selected_indices(ctx, payload),
            });
        }
        Ok((obs, serde_json::Value::Object(extra)))
    }

    fn outer_step(
        &mut self,
        ctx: &Ctx,
        window: u64,
        peers: &[Uid],
        got: &Gathered,
        lr: f32,
    ) -> Result<()> {
        if self.applied.is_some_and(|a| a >= window) {
            return Ok(());
        }
        if self.applied.map(|a| a + 1).unwrap_or(0) != window {
            self.applied = ctx.catch_up(&mut self.canon, self.applied, Some(window - 1))?;
            anyhow::ensure!(
                self.applied.map(|a| a + 1).unwrap_or(0) == window,
                "the model is at window {:?} and cannot be brought to window {window}",
                self.applied
            );
        }
        self.canon.apply_selected(peers, got, lr)?;
        self.applied = Some(window);
        self.trainer.set_params(&self.canon.views())?;
        let hash = hex(&self.canon.hash());
        let rec = WindowRecord {
            window,
            aggregated: peers.to_vec(),
            lr,
            hash_after: hash.clone(),
            fingerprint: self
                .canon
                .fingerprint(ctx.spec.seed, ctx.spec.fingerprint_values),
        };
        ctx.rt.block_on(objects::put_doc(
            &ctx.store,
            &objects::rec_key(window),
            &ctx.key,
            ctx.run_id(),
            ctx.uid,
            window,
            objects::KIND_RECORD,
            &rec,
        ))?;
        if window >= ctx.spec.keep_windows {
            let _ = ctx.rt.block_on(
                ctx.store
                    .delete(&objects::rec_key(window - ctx.spec.keep_windows)),
            );
        }
        let val = runtime::mean_loss(
            &mut self.trainer,
            &ctx.data,
            Split::Val,
            &self.val_ids,
            ctx.spec.batch,
        )?;
        ctx.log.event(
            "outer_step",
            json!({ "window": window, "peers": peers, "lr": lr, "hash": hash, "val_loss": val }),
        );
        if (window + 1) % ctx.spec.checkpoint_every == 0 {
            match checkpoint::publish(ctx, &self.trainer, &self.canon, window) {
                Ok(()) => ctx.log.event("checkpoint", json!({ "window": window })),
                Err(e) => ctx.log.warn(&format!(
                    "publishing the checkpoint of window {window}: {e:#}"
                )),
            }
        }
        Ok(())
    }
}

/// Selected coordinates of an upload as u32 keys (tensor offset + chunk·65536 + in-chunk index),
/// for the copy check.
fn selected_indices(ctx: &Ctx, payload: &[TensorPayload]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut base: u32 = 0;
    for (t, p) in ctx.layout.tensors.iter().zip(payload) {
        let k = t.geom.k.max(1);
        for (i, &idx) in p.idx.iter().enumerate() {
            let chunk = (i / k) as u32;
            out.push(
                base.wrapping_add(chunk.wrapping_mul(65536))
                    .wrapping_add(u32::from(idx)),
            );
        }
        base = base.wrapping_add((t.geom.n_chunks as u32).wrapping_mul(65536));
    }
    out
}
