//! Misbehaving miners, to measure the defences (docs/SECURITY.md): decorators around an honest
//! miner's environment, never branches in it. `covenant miner --behaviour B`, `covenant
//! scenario` and the simulator's `--adversaries` wrap the honest node's [`Trainer`] (what it
//! learns) or its own [`ObjectStore`] (what it uploads, and when).
//!
//! | behaviour | decorator | what it does |
//! |---|---|---|
//! | noise | trainer | sends random noise of the honest update's size |
//! | scaled / sign-flip | trainer | sends the honest update × 100 / × −1 |
//! | stale | trainer | never takes the network's outer steps: trains its own old model |
//! | spoof-sync | trainer + store | stale, but publishes the fingerprint a validator's record gives away |
//! | free-rider | trainer | trains nothing: zero updates |
//! | echo | trainer | trains nothing; sends the last aggregated outer step as its own |
//! | wrong-data | trainer | trains on samples other than its assigned pool |
//! | late / early / silent | store | uploads after the grace period / for the next window before it ends / never |
//! | malformed / truncated / oversized | store | corrupts / halves / pads the signed bytes |
//! | bad-signature / wrong-shape | store | signs with another key / encodes other shapes |
//! | nan / bad-index | store | a validly signed payload with a NaN lookup / descending indices |
//! | copycat | store | re-signs another peer's upload of the window as its own |
//! | vanish | store | trains honestly, deletes each upload two windows later (after everyone applied it) |
//! | rewrite | store | trains honestly, overwrites each upload two windows later with its newest, re-signed |

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use covenant_codec::{wire, ModelLayout, TensorPayload};
use covenant_core::rng::{derive_seed, SplitMix64};
use covenant_core::{RunParams, Window};
use covenant_data::Split;
use covenant_net::Keypair;
use ed25519_dalek::SigningKey;
use serde::Serialize;

use crate::env::{
    Chain, Clock, InnerStep, ObjectInfo, ObjectStore, StoreError, Stores, Trainer, TrainerError,
};
use crate::objects;

/// How a miner behaves. Everything but `Honest` exists to test the defences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    Honest,
    Noise,
    Scaled,
    SignFlip,
    Copycat,
    Stale,
    FreeRider,
    Echo,
    WrongData,
    Late,
    Early,
    Malformed,
    Truncated,
    Oversized,
    BadSignature,
    WrongShape,
    Nan,
    BadIndex,
    Silent,
    SpoofSync,
    Vanish,
    Rewrite,
}

impl Behaviour {
    pub const ALL: [(&'static str, Behaviour); 22] = [
        ("honest", Behaviour::Honest),
        ("noise", Behaviour::Noise),
        ("scaled", Behaviour::Scaled),
        ("sign-flip", Behaviour::SignFlip),
        ("copycat", Behaviour::Copycat),
        ("stale", Behaviour::Stale),
        ("free-rider", Behaviour::FreeRider),
        ("echo", Behaviour::Echo),
        ("wrong-data", Behaviour::WrongData),
        ("late", Behaviour::Late),
        ("early", Behaviour::Early),
        ("malformed", Behaviour::Malformed),
        ("truncated", Behaviour::Truncated),
        ("oversized", Behaviour::Oversized),
        ("bad-signature", Behaviour::BadSignature),
        ("wrong-shape", Behaviour::WrongShape),
        ("nan", Behaviour::Nan),
        ("bad-index", Behaviour::BadIndex),
        ("silent", Behaviour::Silent),
        ("spoof-sync", Behaviour::SpoofSync),
        ("vanish", Behaviour::Vanish),
        ("rewrite", Behaviour::Rewrite),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Trains and uploads what an honest miner would in every window (`vanish` only deletes
    /// afterwards): it may earn weight.
    pub fn trains_honestly(self) -> bool {
        matches!(
            self,
            Behaviour::Honest | Behaviour::Vanish | Behaviour::Rewrite
        )
    }

    /// Trains its own old model instead of following the network.
    fn is_stale(self) -> bool {
        matches!(self, Behaviour::Stale | Behaviour::SpoofSync)
    }

    fn changes_training(self) -> bool {
        matches!(
            self,
            Behaviour::Noise
                | Behaviour::Scaled
                | Behaviour::SignFlip
                | Behaviour::Stale
                | Behaviour::SpoofSync
                | Behaviour::FreeRider
                | Behaviour::Echo
                | Behaviour::WrongData
        )
    }
}

impl std::str::FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown behaviour {s:?} ({})", names.join(", "))
            })
    }
}

/// What the store decorators need to re-sign, time and find uploads.
#[derive(Clone)]
pub struct Context {
    pub layout: ModelLayout,
    pub key: Arc<Keypair>,
    pub run_hash: [u8; 32],
    /// The chain's run id (signed documents are bound to it).
    pub run_id: String,
    /// The run seed and values per tensor of fingerprints.
    pub seed: u64,
    pub fingerprint_values: usize,
    pub uid: u32,
    pub params: RunParams,
    pub clock: Arc<dyn Clock>,
    pub chain: Arc<dyn Chain>,
    pub stores: Arc<dyn Stores>,
}

/// The stale miner's own old model, shared by its trainer and its store decorator.
type Frozen = Arc<Mutex<Option<Vec<Vec<f32>>>>>;

/// Wraps an honest miner's trainer and own store for behaviour `b`.
pub fn decorate(
    b: Behaviour,
    cx: Context,
    trainer: Box<dyn Trainer>,
    own: Arc<dyn ObjectStore>,
) -> (Box<dyn Trainer>, Arc<dyn ObjectStore>) {
    if b == Behaviour::Honest {
        return (trainer, own);
    }
    let frozen: Frozen = Arc::new(Mutex::new(None));
    let trainer: Box<dyn Trainer> = if b.changes_training() {
        Box::new(Tampered {
            b,
            inner: trainer,
            base: None,
            frozen: frozen.clone(),
            prev: None,
            uid: cx.uid,
            calls: 0,
        })
    } else {
        trainer
    };
    // The stale miner's fingerprints are of its own old model too.
    let own: Arc<dyn ObjectStore> = if b.changes_training() && !b.is_stale() {
        own
    } else {
        Arc::new(Tampering {
            b,
            inner: own,
            cx,
            frozen,
        })
    };
    (trainer, own)
}

/// A trainer whose update is not the honest one (see the module table).
struct Tampered {
    b: Behaviour,
    inner: Box<dyn Trainer>,
    /// What the node last set as the live model.
    base: Option<Vec<Vec<f32>>>,
    /// The stale miner's own old model.
    frozen: Frozen,
    /// The echo's model before the last outer step.
    prev: Option<Vec<Vec<f32>>>,
    uid: u32,
    calls: u64,
}

fn add_scaled(a: &[Vec<f32>], b: &[Vec<f32>], c: &[Vec<f32>], f: f32) -> Vec<Vec<f32>> {
    // a + f·(b − c)
    a.iter()
        .zip(b)
        .zip(c)
        .map(|((a, b), c)| {
            a.iter()
                .zip(b)
                .zip(c)
                .map(|((a, b), c)| a + f * (b - c))
                .collect()
        })
        .collect()
}

impl Trainer for Tampered {
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.inner.shapes()
    }
    fn samples(&self, split: Split) -> u64 {
        self.inner.samples(split)
    }

    fn params(&self) -> Result<Vec<Vec<f32>>, TrainerError> {
        let live = self.inner.params()?;
        let Some(base) = &self.base else {
            return Ok(live);
        };
        Ok(match self.b {
            Behaviour::Scaled => add_scaled(base, &live, base, 100.0),
            Behaviour::SignFlip => add_scaled(base, &live, base, -1.0),
            // Its own model's progress, on top of what the node thinks it trained from.
            Behaviour::Stale | Behaviour::SpoofSync => {
                match &*self.frozen.lock().unwrap_or_else(|e| e.into_inner()) {
                    Some(f) => add_scaled(&live, base, f, 1.0),
                    None => live,
                }
            }
            // Sends prev − base: the last outer step.
            Behaviour::Echo => match &self.prev {
                Some(p) => add_scaled(base, base, p, 1.0),
                None => base.clone(),
            },
            Behaviour::Noise => {
                let mut rng =
                    SplitMix64::new(derive_seed(u64::from(self.uid), &[self.calls, 0x4E015E]));
                base.iter()
                    .zip(&live)
                    .map(|(b, l)| {
                        let rms = (b.iter().zip(l).map(|(b, l)| (l - b) * (l - b)).sum::<f32>()
                            / b.len().max(1) as f32)
                            .sqrt();
                        b.iter().map(|b| b + rms * rng.normal() as f32).collect()
                    })
                    .collect()
            }
            _ => live,
        })
    }

    fn set_params(&mut self, theta: &[Vec<f32>]) -> Result<(), TrainerError> {
        self.calls += 1;
        if self.b == Behaviour::Echo && self.base.as_deref().is_some_and(|b| b != theta) {
            self.prev = self.base.take();
        }
        self.base = Some(theta.to_vec());
        if self.b.is_stale() {
            let own = self
                .frozen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| theta.to_vec())
                .clone();
            return self.inner.set_params(&own);
        }
        self.inner.set_params(theta)
    }

    fn step(&mut self, ids: &[u64], schedule_step: u64) -> Result<InnerStep, TrainerError> {
        match self.b {
            Behaviour::FreeRider | Behaviour::Echo => {
                let loss = self.inner.eval(Split::Train, ids)? as f32;
                Ok(InnerStep { loss, lr: f64::NAN })
            }
            Behaviour::WrongData => {
                // Samples half the data away from the assigned ones: some other peer's pool.
                let n = self.inner.samples(Split::Train).max(1);
                let other: Vec<u64> = ids.iter().map(|i| (i + n / 2) % n).collect();
                self.inner.step(&other, schedule_step)
            }
            _ => self.inner.step(ids, schedule_step),
        }
    }

    fn eval(&mut self, split: Split, ids: &[u64]) -> Result<f64, TrainerError> {
        self.inner.eval(split, ids)
    }
    fn eval_each(&mut self, split: Split, ids: &[u64]) -> Result<Vec<f64>, TrainerError> {
        self.inner.eval_each(split, ids)
    }
    fn reset_optimizer(&mut self) -> Result<(), TrainerError> {
        self.inner.reset_optimizer()
    }
    fn hf_config(&self) -> serde_json::Value {
        self.inner.hf_config()
    }
    fn describe(&self) -> String {
        format!("{} ({})", self.inner.describe(), self.b.name())
    }
}

/// A miner's own store that changes what it uploads (see the module table).
struct Tampering {
    b: Behaviour,
    inner: Arc<dyn ObjectStore>,
    cx: Context,
    frozen: Frozen,
}

impl Tampering {
    fn decode_own(&self, w: Window, bytes: &[u8]) -> Option<wire::Payload> {
        let expected = wire::ExpectedModel {
            layout: &self.cx.layout,
            run_id: self.cx.run_hash,
            window: w,
            uid: self.cx.uid,
        };
        let limits = wire::DecodeLimits::for_layout(&self.cx.layout);
        wire::decode(
            bytes,
            &expected,
            &self.cx.key.signing_key().verifying_key(),
            &limits,
        )
        .ok()
    }

    fn sign(&self, p: &wire::Payload, key: &SigningKey) -> Result<Vec<u8>, StoreError> {
        wire::encode(p, &self.cx.layout, key, wire::EncodeOptions::default())
            .map_err(|e| StoreError::Config(format!("re-encoding: {e}")))
    }

    /// The bytes (and key) this behaviour uploads instead of `bytes`, `None` for nothing.
    fn replace(&self, w: Window, bytes: Bytes) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let key = objects::grad_key(w);
        let mut out = bytes.to_vec();
        match self.b {
            Behaviour::Silent => return Ok(None),
            Behaviour::Late => {
                let t = self.cx.params.upload_interval(w).1 + self.cx.params.block_time_ms;
                self.cx
                    .clock
                    .sleep_ms(t.saturating_sub(self.cx.clock.now_ms()));
            }
            Behaviour::Malformed => {
                let n = out.len();
                out[n / 2..].iter_mut().for_each(|x| *x ^= 0x5A);
            }
            Behaviour::Truncated => out.truncate(out.len() / 2),
            Behaviour::Oversized => out.resize(wire::max_encoded_len(&self.cx.layout) + 4096, 0xEE),
            Behaviour::Early => {
                // Re-signed for the next window and put now, before that window has ended.
                let Some(mut p) = self.decode_own(w, &bytes) else {
                    return Ok(None);
                };
                p.header.window = w + 1;
                return Ok(Some((
                    objects::grad_key(w + 1),
                    self.sign(&p, self.cx.key.signing_key())?,
                )));
            }
            Behaviour::BadSignature => {
                let Some(p) = self.decode_own(w, &bytes) else {
                    return Ok(None);
                };
                // Another key: its own with every bit flipped.
                let other: [u8; 32] = self.cx.key.signing_key().to_bytes().map(|b| !b);
                out = self.sign(&p, &SigningKey::from_bytes(&other))?;
            }
            Behaviour::WrongShape => out = self.wrong_shape(w)?,
            Behaviour::Nan | Behaviour::BadIndex => {
                let Some(mut p) = self.decode_own(w, &bytes) else {
                    return Ok(None);
                };
                self.break_values(&mut p.tensors);
                out = wire::encode_unchecked(&p, &self.cx.layout, self.cx.key.signing_key())
                    .map_err(|e| StoreError::Config(format!("re-encoding: {e}")))?;
            }
            Behaviour::Copycat => match self.copy_someone(w)? {
                Some(b) => out = b,
                None => return Ok(None),
            },
            _ => {}
        }
        Ok(Some((key, out)))
    }

    /// `vanish` deletes its upload of window `old`, `rewrite` overwrites it with `newest`
    /// re-signed for `old`: once every node has applied it, only joiners replaying it notice.
    fn rewrite_history(&self, old: Window, newest: &Bytes) {
        let key = objects::grad_key(old);
        match self.b {
            Behaviour::Vanish => {
                let _ = self.inner.delete(&key);
            }
            Behaviour::Rewrite => {
                let Some(mut p) = self.decode_own(old + 2, newest) else {
                    return;
                };
                p.header.window = old;
                if let Ok(b) = self.sign(&p, self.cx.key.signing_key()) {
                    let _ = self.inner.put(&key, Bytes::from(b));
                }
            }
            _ => {}
        }
    }

    /// Zero updates encoded for a model whose first tensor is transposed.
    fn wrong_shape(&self, w: Window) -> Result<Vec<u8>, StoreError> {
        let l = &self.cx.layout;
        let shapes: Vec<(String, Vec<usize>)> = l
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut s = t.geom.shape.clone();
                if i == 0 {
                    s.reverse();
                    if s.len() == 1 {
                        s.push(1);
                    }
                }
                (t.name.clone(), s)
            })
            .collect();
        let other = ModelLayout::new(
            l.config.clone(),
            shapes.iter().map(|(n, s)| (n.clone(), s.as_slice())),
        )
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let p = wire::Payload {
            header: wire::PayloadHeader {
                run_id: self.cx.run_hash,
                window: w,
                uid: self.cx.uid,
            },
            tensors: TensorPayload::zeros_for(&other),
        };
        wire::encode(
            &p,
            &other,
            self.cx.key.signing_key(),
            wire::EncodeOptions::default(),
        )
        .map_err(|e| StoreError::Config(e.to_string()))
    }

    fn break_values(&self, tensors: &mut [TensorPayload]) {
        if self.b == Behaviour::Nan {
            if let Some(v) = tensors.first_mut().and_then(|t| t.lookup.first_mut()) {
                *v = f32::NAN;
            }
        } else if let Some((t, p)) = self
            .cx
            .layout
            .tensors
            .iter()
            .zip(tensors.iter_mut())
            .find(|(t, _)| !t.geom.sends_all() && t.geom.k >= 2)
        {
            p.idx[..t.geom.k].reverse(); // the first chunk's indices descending
        }
    }

    /// Waits (until shortly before the grace period ends) for another miner's upload of `w`
    /// and re-signs it as its own.
    fn copy_someone(&self, w: Window) -> Result<Option<Vec<u8>>, StoreError> {
        let p = &self.cx.params;
        let snap = self
            .cx
            .chain
            .snapshot(p.window_start_block(w + 1))
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let validators = self.cx.chain.genesis().validator_keys();
        let (open, close) = p.upload_interval(w);
        let until = close.saturating_sub(p.block_time_ms).max(open);
        loop {
            self.cx.clock.sleep_ms(p.block_time_ms / 2);
            for n in snap
                .neurons
                .iter()
                .filter(|n| n.uid != self.cx.uid && !validators.contains(&n.key))
            {
                let Some(c) = &n.commitment else { continue };
                let Some(vk) = n.key.verifying_key() else {
                    continue;
                };
                let Ok(store) = self.cx.stores.open(&c.bucket_url) else {
                    continue;
                };
                let limits = wire::DecodeLimits::for_layout(&self.cx.layout);
                let Ok((_, bytes)) = store.get(&objects::grad_key(w), limits.max_bytes as u64)
                else {
                    continue;
                };
                let expected = wire::ExpectedModel {
                    layout: &self.cx.layout,
                    run_id: self.cx.run_hash,
                    window: w,
                    uid: n.uid,
                };
                if let Ok(mut payload) = wire::decode(&bytes, &expected, &vk, &limits) {
                    payload.header.uid = self.cx.uid;
                    return self.sign(&payload, self.cx.key.signing_key()).map(Some);
                }
            }
            if self.cx.clock.now_ms() >= until {
                return Ok(None);
            }
        }
    }
}

impl Tampering {
    /// The stale miner publishes the fingerprint of the model it really holds.
    fn stale_fingerprint(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let frozen = self
            .frozen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (Some(w), Some(theta)) = (objects::window_of_key(key), frozen) else {
            return self.inner.put(key, bytes);
        };
        let doc = objects::FingerprintDoc {
            window: w,
            fingerprint: crate::canon::fingerprint_of(
                &theta,
                covenant_core::scoring::fingerprint_seed(self.cx.seed, w, self.cx.uid),
                self.cx.fingerprint_values,
            ),
        };
        self.put_own_doc(key, w, &doc)
    }
}

impl Tampering {
    /// Publishes, as its own fingerprint of window `w`, the one in a validator's record of
    /// window `w − 1` (the model after that outer step: what an in-sync miner holds).
    fn spoofed_fingerprint(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let Some(w) = objects::window_of_key(key).filter(|&w| w > 0) else {
            return self.inner.put(key, bytes);
        };
        let Some(fingerprint) = self.validator_fingerprint(w - 1) else {
            return self.inner.put(key, bytes);
        };
        let doc = objects::FingerprintDoc {
            window: w,
            fingerprint,
        };
        self.put_own_doc(key, w, &doc)
    }

    /// The fingerprint in the first validator record of window `r` it can read.
    fn validator_fingerprint(&self, r: Window) -> Option<covenant_core::Fingerprint> {
        let snap = self
            .cx
            .chain
            .snapshot(self.cx.params.window_start_block(r + 1))
            .ok()?;
        let validators = self.cx.chain.genesis().validator_keys();
        snap.neurons
            .iter()
            .filter(|n| validators.contains(&n.key))
            .find_map(|n| {
                let store = self
                    .cx
                    .stores
                    .open(&n.commitment.as_ref()?.bucket_url)
                    .ok()?;
                let id = objects::DocId {
                    run_id: &self.cx.run_id,
                    uid: n.uid,
                    window: r,
                    kind: objects::KIND_RECORD,
                };
                let (_, rec) = objects::get_doc::<objects::WindowRecord>(
                    store.as_ref(),
                    &objects::rec_key(r),
                    id,
                    n.key,
                )
                .ok()?;
                Some(rec.fingerprint)
            })
    }

    /// Signs and puts a fingerprint document of window `w` as its own.
    fn put_own_doc(
        &self,
        key: &str,
        w: Window,
        doc: &objects::FingerprintDoc,
    ) -> Result<(), StoreError> {
        let id = objects::DocId {
            run_id: &self.cx.run_id,
            uid: self.cx.uid,
            window: w,
            kind: objects::KIND_FINGERPRINT,
        };
        objects::put_doc(self.inner.as_ref(), key, &self.cx.key, id, doc).map_err(|e| match e {
            objects::DocError::Store { source, .. } => source,
            other => StoreError::Config(other.to_string()),
        })
    }
}

impl ObjectStore for Tampering {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        if self.b == Behaviour::Stale && key.starts_with("fp/") {
            return self.stale_fingerprint(key, bytes);
        }
        if self.b == Behaviour::SpoofSync && key.starts_with("fp/") {
            return self.spoofed_fingerprint(key, bytes);
        }
        let w = objects::window_of_key(key).filter(|_| key.starts_with("grad/"));
        let Some(w) = w.filter(|_| !self.b.is_stale()) else {
            return self.inner.put(key, bytes);
        };
        if w >= 2 {
            self.rewrite_history(w - 2, &bytes);
        }
        match self.replace(w, bytes)? {
            Some((k, b)) => self.inner.put(&k, Bytes::from(b)),
            None => Ok(()),
        }
    }
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.inner.head(key)
    }
    fn get(&self, key: &str, max_bytes: u64) -> Result<(ObjectInfo, Bytes), StoreError> {
        self.inner.get(key, max_bytes)
    }
    fn list(&self, prefix: &str, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix, max)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mem::{MemBucket, MemWorld, NodeClock, WorldClock};
    use crate::sim::standin::Standin;
    use covenant_codec::CodecConfig;
    use covenant_core::RunParams;

    /// An empty in-memory chain.
    fn chain() -> Arc<dyn Chain> {
        let genesis = covenant_net::Genesis {
            run_id: "run".into(),
            genesis_time_ms: 0,
            block_time_ms: 1000,
            blocks_per_window: 20,
            max_uids: 8,
            immunity_blocks: 0,
            validators: vec![],
            kappa: 0.5,
            registration_burn: 0,
            balances: vec![],
        };
        Arc::new(
            covenant_net::Ledger::in_memory(&genesis, Arc::new(covenant_net::VirtualClock::new(0)))
                .unwrap(),
        )
    }

    fn cx(
        layout: &ModelLayout,
        clock: Arc<dyn Clock>,
        chain: Arc<dyn Chain>,
        stores: Arc<dyn Stores>,
    ) -> Context {
        Context {
            layout: layout.clone(),
            key: Arc::new(Keypair::from_seed([1; 32])),
            run_hash: [3; 32],
            run_id: "run".into(),
            seed: 7,
            fingerprint_values: 4,
            uid: 2,
            params: RunParams::local(),
            clock,
            chain,
            stores,
        }
    }

    fn layout() -> ModelLayout {
        let shapes: [(&str, &[usize]); 2] = [("a", &[128, 64]), ("n", &[64])];
        ModelLayout::new(CodecConfig::default(), shapes).unwrap()
    }

    fn honest_bytes(l: &ModelLayout, key: &Keypair, w: Window) -> Vec<u8> {
        let mut tensors = TensorPayload::zeros_for(l);
        for t in &mut tensors {
            t.lookup = vec![-1.0, -0.5, 0.5, 1.0];
        }
        let p = wire::Payload {
            header: wire::PayloadHeader {
                run_id: [3; 32],
                window: w,
                uid: 2,
            },
            tensors,
        };
        wire::encode(&p, l, key.signing_key(), wire::EncodeOptions::default()).unwrap()
    }

    /// Puts an honest upload of window 5 through behaviour `b`'s store; returns the store.
    fn through(b: Behaviour) -> (Arc<MemWorld>, ModelLayout, Keypair) {
        let world = Arc::new(MemWorld::new(Default::default(), 1));
        let wc = Arc::new(WorldClock::new(1_000_000));
        let clock = Arc::new(NodeClock::new(wc, 0, 1));
        let bucket: Arc<dyn ObjectStore> =
            Arc::new(MemBucket::new(world.clone(), clock.clone(), "m"));
        let l = layout();
        let stores: Arc<dyn Stores> = Arc::new(crate::sim::mem::MemStores {
            world: world.clone(),
            clock: clock.clone(),
        });
        let key = Keypair::from_seed([1; 32]);
        let chain = chain();
        let t: Box<dyn Trainer> = Box::new(Standin::new(1, 10, 10));
        let (_, store) = decorate(b, cx(&l, clock, chain, stores), t, bucket);
        store
            .put(
                &objects::grad_key(5),
                Bytes::from(honest_bytes(&l, &key, 5)),
            )
            .unwrap();
        (world, l, key)
    }

    fn decode(
        l: &ModelLayout,
        key: &Keypair,
        bytes: &[u8],
        w: Window,
    ) -> Result<wire::Payload, wire::WireError> {
        let expected = wire::ExpectedModel {
            layout: l,
            run_id: [3; 32],
            window: w,
            uid: 2,
        };
        wire::decode(
            bytes,
            &expected,
            &key.signing_key().verifying_key(),
            &wire::DecodeLimits::for_layout(l),
        )
    }

    #[test]
    fn broken_uploads_are_refused_by_the_decoder_and_the_honest_one_is_not() {
        for b in [
            Behaviour::Honest,
            Behaviour::Malformed,
            Behaviour::Truncated,
            Behaviour::Oversized,
            Behaviour::BadSignature,
            Behaviour::WrongShape,
            Behaviour::Nan,
            Behaviour::BadIndex,
        ] {
            let (world, l, key) = through(b);
            let bytes = world
                .bytes("m", &objects::grad_key(5))
                .expect("something was put");
            let r = decode(&l, &key, &bytes, 5);
            assert_eq!(r.is_ok(), b == Behaviour::Honest, "{b:?}: {r:?}");
            let why = r.err().map(|e| e.to_string()).unwrap_or_default();
            match b {
                // The value attacks pass the signature and are caught by the checks behind it.
                Behaviour::Nan => assert!(why.contains("lookup[0] is not finite"), "{why}"),
                Behaviour::BadIndex => assert!(why.contains("not ascending"), "{why}"),
                Behaviour::BadSignature => assert!(why.contains("signature"), "{why}"),
                _ => {}
            }
        }
    }

    #[test]
    fn silent_uploads_nothing_and_early_uploads_the_next_window_now() {
        let (world, _, _) = through(Behaviour::Silent);
        assert!(world.bytes("m", &objects::grad_key(5)).is_none());
        let (world, l, key) = through(Behaviour::Early);
        assert!(world.bytes("m", &objects::grad_key(5)).is_none());
        let bytes = world.bytes("m", &objects::grad_key(6)).unwrap();
        assert_eq!(decode(&l, &key, &bytes, 6).unwrap().header.window, 6);
    }

    #[test]
    fn late_uploads_after_the_grace_period() {
        let (world, _, _) = through(Behaviour::Late);
        let t = world.stored_at("m", &objects::grad_key(5)).unwrap();
        let p = RunParams::local();
        assert!(
            matches!(
                p.classify_upload(5, Some(t)),
                covenant_core::UploadTiming::Late { .. }
            ),
            "{t}"
        );
    }

    fn wrapped(b: Behaviour) -> Box<dyn Trainer> {
        let l = layout();
        let wc = Arc::new(WorldClock::new(0));
        let clock: Arc<dyn Clock> = Arc::new(NodeClock::new(wc.clone(), 0, 1));
        let world = Arc::new(MemWorld::new(Default::default(), 1));
        let stores: Arc<dyn Stores> = Arc::new(crate::sim::mem::MemStores {
            world: world.clone(),
            clock: Arc::new(NodeClock::new(wc, 0, 2)),
        });
        let chain = chain();
        let own: Arc<dyn ObjectStore> = Arc::new(crate::sim::mem::MemDisk::default());
        decorate(
            b,
            cx(&l, clock, chain, stores),
            Box::new(Standin::new(1, 100, 10)),
            own,
        )
        .0
    }

    /// The update a behaviour's trainer sends after one window of training from `theta0`.
    fn update_of(t: &mut dyn Trainer, theta0: &[Vec<f32>]) -> Vec<Vec<f32>> {
        t.set_params(theta0).unwrap();
        for s in 0..4 {
            t.step(&[s, s + 10], s).unwrap();
        }
        let after = t.params().unwrap();
        theta0
            .iter()
            .zip(&after)
            .map(|(b, a)| b.iter().zip(a).map(|(b, a)| b - a).collect())
            .collect()
    }

    #[test]
    fn trainer_decorators_send_the_update_they_are_named_for() {
        let theta0 = Standin::new(1, 100, 10).params().unwrap();
        let honest = update_of(wrapped(Behaviour::Honest).as_mut(), &theta0);
        let norm = |u: &[Vec<f32>]| u.iter().flatten().map(|x| x * x).sum::<f32>().sqrt();
        let close = |a: &[Vec<f32>], b: &[Vec<f32>], f: f32| {
            a.iter()
                .flatten()
                .zip(b.iter().flatten())
                .all(|(a, b)| (a - f * b).abs() <= 1e-3 * (1.0 + b.abs() * f.abs()))
        };
        assert!(norm(&honest) > 0.0);
        assert!(close(
            &update_of(wrapped(Behaviour::Scaled).as_mut(), &theta0),
            &honest,
            100.0
        ));
        assert!(close(
            &update_of(wrapped(Behaviour::SignFlip).as_mut(), &theta0),
            &honest,
            -1.0
        ));
        assert_eq!(
            norm(&update_of(wrapped(Behaviour::FreeRider).as_mut(), &theta0)),
            0.0
        );
        let wrong = update_of(wrapped(Behaviour::WrongData).as_mut(), &theta0);
        assert!(
            norm(&wrong) > 0.0 && !close(&wrong, &honest, 1.0),
            "other samples"
        );
        let noise = update_of(wrapped(Behaviour::Noise).as_mut(), &theta0);
        assert!(norm(&noise) > 0.0 && !close(&noise, &honest, 1.0));
    }

    #[test]
    fn echo_sends_the_last_outer_step_and_stale_its_own_old_progress() {
        let theta0 = Standin::new(1, 100, 10).params().unwrap();
        // The network's outer step moved θ0 to θ1: the echo sends θ0 − θ1.
        let theta1: Vec<Vec<f32>> = theta0
            .iter()
            .map(|t| t.iter().map(|x| x - 0.5).collect())
            .collect();
        let mut echo = wrapped(Behaviour::Echo);
        echo.set_params(&theta0).unwrap();
        let sent = update_of(echo.as_mut(), &theta1);
        assert!(
            sent.iter().flatten().all(|d| (d - 0.5).abs() < 1e-5),
            "the last aggregate"
        );
        // The stale miner trains its first model whatever it is given.
        let mut stale = wrapped(Behaviour::Stale);
        let own = update_of(stale.as_mut(), &theta0);
        let later = update_of(stale.as_mut(), &theta1);
        let honest_from_own = update_of(wrapped(Behaviour::Honest).as_mut(), &theta0);
        let same = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            a.iter()
                .flatten()
                .zip(b.iter().flatten())
                .all(|(a, b)| (a - b).abs() < 1e-5)
        };
        assert!(
            same(&own, &honest_from_own) && same(&later, &honest_from_own),
            "progress from its old model"
        );
    }
}
