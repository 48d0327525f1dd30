//! The I/O actions: the chain, peers' stores and this node's own bucket and disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use covenant_codec::wire;
use covenant_core::driver::{
    parse_hex, Action, ChainView, Chore, Failure, FailureKind, FetchDetail, Fetched,
    FingerprintSeen, Input, Listing, RecordInfo, Rejection, StoreFault,
};
use covenant_core::scoring::fingerprint_seed;
use covenant_core::{copy_keys, Millis, SelectedIndices, Uid, Window};
use covenant_net::{Transaction, TxBody};

use super::{Peer, PeerBook, Shared};
use crate::checkpoint;
use crate::env::ObjectInfo;
use crate::env::StoreError;
use crate::objects::{self, DocId, FingerprintDoc, WindowRecord};

/// Attempts a listing makes before calling a store unavailable (the driver asks again).
const LIST_ATTEMPTS: u32 = 3;
const BACKOFF_MS: u64 = 200;
const MAX_BACKOFF_MS: u64 = 2_000;

/// Saved validator state (the node's local disk).
pub const STATE_KEY: &str = "state.json";

/// Carries out an I/O action.
pub fn run(s: &Shared, action: Action) -> Input {
    match action {
        Action::ReadChain { window } => Input::Chain {
            window,
            view: read_chain(s, window),
        },
        Action::List { window, peers } => Input::Listed {
            window,
            uploads: list(s, window, &peers),
        },
        Action::Fetch {
            window,
            peers,
            listed,
            deadline,
            detail,
        } => Input::Fetched {
            window,
            results: fetch(s, window, &peers, &listed, deadline, detail),
        },
        Action::FetchRecords { window } => Input::Records {
            window,
            records: records(s, window),
        },
        Action::ListCheckpoints => Input::Checkpoints {
            found: list_checkpoints(s),
        },
        Action::Upload { window, deadline } => Input::Uploaded {
            window,
            result: upload(s, window, deadline),
        },
        Action::Prune { window } => done(Chore::Prune, Some(window), prune(s, window)),
        Action::SetWeights { window, weights } => {
            done(Chore::SetWeights, Some(window), set_weights(s, weights))
        }
        Action::PublishRecord {
            window,
            aggregated,
            lr,
            hash,
        } => done(
            Chore::PublishRecord,
            Some(window),
            publish_record(s, window, aggregated, lr, hash),
        ),
        Action::PublishCheckpoint { window } => done(
            Chore::PublishCheckpoint,
            Some(window),
            publish_checkpoint(s, window),
        ),
        Action::Persist { window, gauntlet } => {
            done(Chore::Persist, Some(window), persist(s, &gauntlet))
        }
        other => Input::Done {
            chore: Chore::Persist,
            window: None,
            result: Err(Failure::new(
                FailureKind::Store,
                format!("{other:?} is not an I/O action"),
            )),
        },
    }
}

fn done(chore: Chore, window: Option<Window>, result: Result<(), Failure>) -> Input {
    Input::Done {
        chore,
        window,
        result,
    }
}

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureKind::Store, e)
}

/// Store errors worth trying again.
fn transient(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::NotFound { .. }
            | StoreError::TooLarge { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::TooMany { .. }
            | StoreError::Config(_)
    )
}

fn fault(e: &StoreError) -> StoreFault {
    match e {
        StoreError::Unavailable { .. } | StoreError::Truncated { .. } => StoreFault::Unreachable,
        StoreError::PermissionDenied { .. } => StoreFault::Denied,
        StoreError::Other { .. } => StoreFault::Server,
        _ => StoreFault::Other,
    }
}

/// Runs `op` until it succeeds, fails for good, or `deadline` (node clock) would pass.
fn retry<T>(
    s: &Shared,
    deadline: Millis,
    max_attempts: u32,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, (u32, StoreError)> {
    let mut backoff = BACKOFF_MS;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempts < max_attempts && s.now() + backoff < deadline => {
                s.env.clock.sleep_ms(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF_MS);
            }
            Err(e) => return Err((attempts, e)),
        }
    }
}

fn millis(t: std::time::SystemTime) -> Millis {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The chain as of `block`: the protocol's view and the peers' keys and stores.
fn peers_at(s: &Shared, w: Window, block: u64) -> Result<(ChainView, PeerBook), Failure> {
    let snap = s
        .env
        .chain
        .snapshot(block)
        .map_err(|e| Failure::new(FailureKind::Chain, e))?;
    let mut view = ChainView {
        window: w,
        ..Default::default()
    };
    let mut book = PeerBook::default();
    for n in snap.neurons {
        let validator = snap.validators.contains(&n.key);
        if !validator {
            view.registered.insert(n.uid);
            view.keys.insert(n.uid, n.key.0);
            view.consensus.insert(n.uid, n.consensus_weight);
        }
        let Some(c) = &n.commitment else { continue };
        match s.env.stores.open(&c.bucket_url) {
            Ok(store) => {
                let peer = Peer { key: n.key, store };
                if validator {
                    view.validators.insert(n.uid);
                    book.validators.insert(n.uid, peer);
                } else {
                    view.committed.insert(n.uid);
                    book.miners.insert(n.uid, peer);
                }
            }
            Err(e) => s.env.sink.emit(
                s.now(),
                &covenant_core::driver::NodeEvent::Error {
                    window: Some(w),
                    message: format!("uid {}: cannot open its store {}: {e}", n.uid, c.bucket_url),
                },
            ),
        }
    }
    Ok((view, book))
}

/// The chain at window `w`'s first block; its peers are kept for the fetches of `w − 1`.
fn read_chain(s: &Shared, w: Window) -> Result<ChainView, Failure> {
    let (view, book) = peers_at(s, w, s.run.params.window_start_block(w))?;
    if let Ok(mut b) = s.books.lock() {
        b.insert(w, Arc::new(book));
        while b.len() > 8 {
            b.pop_first();
        }
    }
    Ok(view)
}

/// The peers of the chain view at window `w` (read now if not cached).
fn book(s: &Shared, w: Window) -> Arc<PeerBook> {
    if let Some(b) = s.books.lock().ok().and_then(|b| b.get(&w).cloned()) {
        return b;
    }
    let _ = read_chain(s, w);
    s.books
        .lock()
        .ok()
        .and_then(|b| b.get(&w).cloned())
        .unwrap_or_default()
}

/// The validators with a readable store, as the chain has them now.
fn validators(s: &Shared) -> BTreeMap<Uid, Peer> {
    let block = s.env.chain.block() + 1;
    let w = s.run.params.window_of_block(block);
    peers_at(s, w, block)
        .map(|(_, b)| b.validators)
        .unwrap_or_default()
}

fn list(s: &Shared, w: Window, peers: &[Uid]) -> BTreeMap<Uid, Listing> {
    let book = book(s, w + 1);
    let key = objects::grad_key(w);
    let deadline = s.now() + s.run.params.block_time_ms;
    map_peers(s, peers, |uid| {
        let Some(p) = book.miners.get(&uid) else {
            return Listing::Absent;
        };
        match retry(s, deadline, LIST_ATTEMPTS, || p.store.head(&key)) {
            Ok(info) => Listing::Found(millis(info.last_modified)),
            Err((_, StoreError::NotFound { .. })) => Listing::Absent,
            Err((_, e)) => Listing::Unavailable(fault(&e)),
        }
    })
}

/// `f` for every peer, concurrently: on threads in the real executor; in the simulator one
/// after another, each from the same time on the node's clock, the batch taking as long as its
/// slowest call.
fn map_peers<T: Send>(s: &Shared, peers: &[Uid], f: impl Fn(Uid) -> T + Sync) -> BTreeMap<Uid, T> {
    if !s.parallel_io || peers.len() < 2 {
        let clock = &s.env.clock;
        let start = clock.mark();
        let mut end = start;
        let out = peers
            .iter()
            .map(|&u| {
                clock.set_mark(start);
                let r = f(u);
                end = end.max(clock.mark());
                (u, r)
            })
            .collect();
        clock.set_mark(end);
        return out;
    }
    let f = &f;
    std::thread::scope(|sc| {
        let handles: Vec<_> = peers.iter().map(|&u| sc.spawn(move || (u, f(u)))).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn fetch(
    s: &Shared,
    w: Window,
    peers: &[Uid],
    listed: &BTreeMap<Uid, Millis>,
    deadline: Millis,
    detail: FetchDetail,
) -> BTreeMap<Uid, Result<Fetched, Rejection>> {
    let book = book(s, w + 1);
    map_peers(s, peers, |uid| {
        let peer = book.miners.get(&uid).ok_or(Rejection::NoCommitment)?;
        let own = fetch_one(s, w, uid, peer, listed.get(&uid).copied(), deadline, detail);
        let copy = detail.mirror.and_then(|v| book.validators.get(&v));
        match (own, copy) {
            (Err(e), Some(v)) if e.gone() => fetch_mirror(s, w, uid, peer, v, deadline, detail),
            (r, _) => r,
        }
    })
}

/// Uid `uid`'s window-`w` upload from the copy validator `v` kept (replaying its record): the
/// peer's signed bytes, verified as such; their store time says nothing and is not checked.
fn fetch_mirror(
    s: &Shared,
    w: Window,
    uid: Uid,
    peer: &Peer,
    v: &Peer,
    deadline: Millis,
    detail: FetchDetail,
) -> Result<Fetched, Rejection> {
    let limits = wire::DecodeLimits::for_layout(&s.layout);
    let key = objects::mirror_key(w, uid);
    let (info, bytes) = get_upload(s, v, &key, limits.max_bytes as u64, deadline)?;
    let found = millis(info.last_modified);
    accept(s, w, uid, peer, bytes, found, deadline, detail)
}

/// GET `key` from `peer`'s store, store errors retried until `deadline`.
fn get_upload(
    s: &Shared,
    peer: &Peer,
    key: &str,
    max: u64,
    deadline: Millis,
) -> Result<(ObjectInfo, Bytes), Rejection> {
    retry(s, deadline, u32::MAX, || peer.store.get(key, max)).map_err(|(attempts, e)| match e {
        StoreError::NotFound { .. } => Rejection::NotFound,
        StoreError::TooLarge { size, limit, .. } => Rejection::TooLarge { size, limit },
        e => Rejection::Unavailable {
            attempts,
            fault: fault(&e),
        },
    })
}

#[allow(clippy::too_many_arguments)]
fn fetch_one(
    s: &Shared,
    w: Window,
    uid: Uid,
    peer: &Peer,
    listed: Option<Millis>,
    deadline: Millis,
    detail: FetchDetail,
) -> Result<Fetched, Rejection> {
    let limits = wire::DecodeLimits::for_layout(&s.layout);
    let key = objects::grad_key(w);
    let (info, bytes) = get_upload(s, peer, &key, limits.max_bytes as u64, deadline)?;
    let found = millis(info.last_modified);
    if let Some(l) = listed.filter(|&l| l != found) {
        return Err(Rejection::Replaced { listed: l, found });
    }
    if !s.run.params.classify_upload(w, Some(found)).accepted() {
        return Err(Rejection::OutOfTime { found });
    }
    accept(s, w, uid, peer, bytes, found, deadline, detail)
}

/// Verifies and decodes `peer`'s signed upload `bytes` of window `w` and keeps it (and its
/// bytes) for the outer step.
#[allow(clippy::too_many_arguments)]
fn accept(
    s: &Shared,
    w: Window,
    uid: Uid,
    peer: &Peer,
    bytes: Bytes,
    found: Millis,
    deadline: Millis,
    detail: FetchDetail,
) -> Result<Fetched, Rejection> {
    let limits = wire::DecodeLimits::for_layout(&s.layout);
    let vk = peer
        .key
        .verifying_key()
        .ok_or(Rejection::Invalid(wire::WireError::BadSignature))?;
    let expected = wire::ExpectedModel {
        layout: &s.layout,
        run_id: s.id.run_hash,
        window: w,
        uid,
    };
    let payload = wire::decode(&bytes, &expected, &vk, &limits).map_err(Rejection::Invalid)?;
    let zero = payload.tensors.iter().all(|t| t.is_zero());
    let keys = if detail.copy_keys {
        copy_keys(
            s.layout
                .tensors
                .iter()
                .zip(&payload.tensors)
                .map(|(t, p)| SelectedIndices {
                    n_chunks: t.geom.n_chunks,
                    k: t.geom.k,
                    idx: &p.idx,
                }),
        )
    } else {
        Vec::new()
    };
    let fingerprint = detail
        .fingerprint
        .then(|| fingerprint_of(s, w, uid, peer, deadline));
    if let Ok(mut g) = s.gathered.lock() {
        g.insert((w, uid), Arc::new(payload.tensors));
    }
    if s.keeps_copies() {
        if let Ok(mut b) = s.fetched_bytes.lock() {
            b.insert((w, uid), bytes.clone());
        }
    }
    Ok(Fetched {
        bytes: bytes.len() as u64,
        store_time: found,
        zero,
        copy_keys: keys,
        fingerprint,
    })
}

/// A peer's signed fingerprint of window `w` (store errors retried until `deadline`). Like the
/// upload it belongs to, it counts only if stored within the window's upload interval.
fn fingerprint_of(
    s: &Shared,
    w: Window,
    uid: Uid,
    peer: &Peer,
    deadline: Millis,
) -> FingerprintSeen {
    let id = DocId {
        run_id: &s.id.run_id,
        uid,
        window: w,
        kind: objects::KIND_FINGERPRINT,
    };
    let key = objects::fp_key(w);
    let got = retry(s, deadline, u32::MAX, || {
        match objects::get_doc::<FingerprintDoc>(peer.store.as_ref(), &key, id, peer.key) {
            Ok((info, d)) => Ok(Some((millis(info.last_modified), d))),
            Err(objects::DocError::Store { source, .. }) => Err(source),
            Err(_) => Ok(None), // not a valid fingerprint document
        }
    });
    let on_time = |t: Millis| s.run.params.classify_upload(w, Some(t)).accepted();
    match got {
        Ok(Some((t, d))) if d.window == w && on_time(t) => FingerprintSeen::Found(d.fingerprint),
        Ok(_) | Err((_, StoreError::NotFound { .. })) => FingerprintSeen::Absent,
        Err(_) => FingerprintSeen::Unreadable,
    }
}

fn records(s: &Shared, w: Window) -> Vec<RecordInfo> {
    let mut out = Vec::new();
    for (vuid, v) in validators(s) {
        let id = DocId {
            run_id: &s.id.run_id,
            uid: vuid,
            window: w,
            kind: objects::KIND_RECORD,
        };
        let Ok((_, r)) =
            objects::get_doc::<WindowRecord>(v.store.as_ref(), &objects::rec_key(w), id, v.key)
        else {
            continue;
        };
        let Some(hash_after) = parse_hex(&r.hash_after) else {
            continue;
        };
        if r.window == w {
            out.push(RecordInfo {
                validator: vuid,
                aggregated: r.aggregated,
                lr: f64::from(r.lr),
                hash_after,
            });
        }
    }
    out
}

/// Every validator's checkpoints; an error only if no validator's store could be listed.
fn list_checkpoints(s: &Shared) -> Result<Vec<(Window, Uid)>, Failure> {
    let vs = validators(s);
    let deadline = s.now() + s.run.params.block_time_ms * 2;
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for (vuid, v) in &vs {
        match retry(s, deadline, u32::MAX, || v.store.list("ckpt/", 10_000)) {
            Ok(objs) => out.extend(checkpoint::windows(&objs).into_iter().map(|w| (w, *vuid))),
            Err((_, e)) => failed.push(format!("validator uid {vuid}: {e}")),
        }
    }
    if !vs.is_empty() && failed.len() == vs.len() {
        return Err(store_failure(failed.join("; ")));
    }
    Ok(out)
}

/// The validator store holding `vuid`'s checkpoints.
pub(super) fn validator(s: &Shared, vuid: Uid) -> Option<Peer> {
    validators(s).remove(&vuid)
}

fn upload(s: &Shared, w: Window, deadline: Millis) -> Result<u64, Failure> {
    let bytes = s
        .prepared
        .lock()
        .map_err(|_| store_failure("prepared uploads lock poisoned"))?
        .remove(&w)
        .ok_or_else(|| store_failure(format!("no prepared upload for window {w}")))?;
    let n = bytes.len() as u64;
    let grad = Bytes::from(bytes);
    let key = objects::grad_key(w);
    retry(s, deadline, u32::MAX, || s.env.own.put(&key, grad.clone()))
        .map_err(|(_, e)| store_failure(e))?;
    let fingerprint = s
        .canon
        .read()
        .map_err(|_| store_failure("model lock poisoned"))?
        .fingerprint(
            fingerprint_seed(s.run.seed, w, s.id.uid),
            s.run.fingerprint_values,
        );
    let doc = FingerprintDoc {
        window: w,
        fingerprint,
    };
    let fp = put_signed(
        s,
        &objects::fp_key(w),
        objects::KIND_FINGERPRINT,
        w,
        &doc,
        deadline,
    );
    if let Err(e) = fp {
        // The update is in; validators will see no fingerprint (out of sync this window).
        s.env.sink.emit(
            s.now(),
            &covenant_core::driver::NodeEvent::Error {
                window: Some(w),
                message: format!("the fingerprint of window {w} was not stored: {e}"),
            },
        );
    }
    Ok(n)
}

fn prune(s: &Shared, w: Window) -> Result<(), Failure> {
    let mirrors = if s.keeps_copies() {
        match s.env.own.list(&objects::mirror_prefix(w), 100_000) {
            Ok(objs) => objs.into_iter().map(|o| o.key).collect(),
            Err(StoreError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(store_failure(e)),
        }
    } else {
        Vec::new()
    };
    let own = [
        objects::grad_key(w),
        objects::fp_key(w),
        objects::rec_key(w),
    ];
    for key in own.into_iter().chain(mirrors) {
        match s.env.own.delete(&key) {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(store_failure(e)),
        }
    }
    Ok(())
}

fn set_weights(s: &Shared, weights: Vec<(Uid, u16)>) -> Result<(), Failure> {
    let chain_err = |e: covenant_net::ChainError| Failure::new(FailureKind::Chain, e);
    let nonce = s
        .env
        .chain
        .next_nonce(&s.id.key.public())
        .map_err(chain_err)?;
    let tx = Transaction::sign(
        &s.id.key,
        &s.id.run_id,
        nonce,
        TxBody::SetWeights { weights },
    );
    s.env.chain.submit(&tx).map(|_| ()).map_err(chain_err)
}

fn publish_record(
    s: &Shared,
    w: Window,
    aggregated: Vec<Uid>,
    lr: f64,
    hash: covenant_core::driver::Hash,
) -> Result<(), Failure> {
    let fingerprint = {
        let canon = s
            .canon
            .read()
            .map_err(|_| store_failure("model lock poisoned"))?;
        if canon.hash() != hash {
            return Err(Failure::new(
                FailureKind::Verification,
                format!("the model moved on before the record of window {w} was written"),
            ));
        }
        canon.fingerprint(s.run.seed, s.run.fingerprint_values)
    };
    let deadline = s.now() + s.run.params.window_ms() / 4;
    mirror(s, w, &aggregated, deadline);
    let rec = WindowRecord {
        window: w,
        aggregated,
        lr: lr as f32,
        hash_after: crate::canon::hex(&hash),
        fingerprint,
    };
    put_signed(
        s,
        &objects::rec_key(w),
        objects::KIND_RECORD,
        w,
        &rec,
        deadline,
    )
    .map_err(store_failure)
}

/// Puts a copy of every aggregated upload of window `w` in this validator's own store, before
/// its record names them: a joiner replaying the record does not depend on the peers keeping
/// theirs. A copy that cannot be put is reported; the record is still published.
fn mirror(s: &Shared, w: Window, aggregated: &[Uid], deadline: Millis) {
    let kept: Vec<(Uid, Option<Bytes>)> = match s.fetched_bytes.lock() {
        Ok(mut b) => aggregated.iter().map(|&u| (u, b.remove(&(w, u)))).collect(),
        Err(_) => return,
    };
    for (uid, bytes) in kept {
        let key = objects::mirror_key(w, uid);
        let put = match bytes {
            Some(b) => retry(s, deadline, u32::MAX, || s.env.own.put(&key, b.clone()))
                .map_err(|(_, e)| e.to_string()),
            None => Err("its bytes are no longer held".into()),
        };
        if let Err(e) = put {
            s.env.sink.emit(
                s.now(),
                &covenant_core::driver::NodeEvent::Error {
                    window: Some(w),
                    message: format!(
                        "the copy of uid {uid}'s upload of window {w} was not kept: {e}"
                    ),
                },
            );
        }
    }
}

/// Signs `doc` as this node's `kind` document of window `w` and puts it in its own bucket at
/// `key`, retrying store errors until `deadline`.
fn put_signed<T: serde::Serialize>(
    s: &Shared,
    key: &str,
    kind: &str,
    w: Window,
    doc: &T,
    deadline: Millis,
) -> Result<(), StoreError> {
    let id = DocId {
        run_id: &s.id.run_id,
        uid: s.id.uid,
        window: w,
        kind,
    };
    retry(s, deadline, u32::MAX, || {
        objects::put_doc(s.env.own.as_ref(), key, &s.id.key, id, doc).map_err(|e| match e {
            objects::DocError::Store { source, .. } => source,
            other => StoreError::Config(other.to_string()),
        })
    })
    .map_err(|(_, e)| e)
}

fn publish_checkpoint(s: &Shared, w: Window) -> Result<(), Failure> {
    let canon = s
        .canon
        .read()
        .map_err(|_| store_failure("model lock poisoned"))?
        .clone();
    let deadline = s.now() + s.run.params.window_ms() / 2;
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let r = checkpoint::publish(
            s.env.own.as_ref(),
            &s.id.key,
            &s.id.run_id,
            s.id.uid,
            &canon,
            &s.hf_config,
            w,
            s.run.checkpoint_every,
        );
        match r {
            Ok(()) => return Ok(()),
            Err(_) if s.now() + BACKOFF_MS * attempts < deadline => {
                s.env.clock.sleep_ms(BACKOFF_MS * attempts);
            }
            Err(e) => return Err(store_failure(e)),
        }
    }
}

/// A validator's saved state: its Gauntlet, bound to the run and uid.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SavedState {
    pub run: String,
    pub uid: Uid,
    pub gauntlet: covenant_core::Gauntlet,
}

fn persist(s: &Shared, g: &covenant_core::Gauntlet) -> Result<(), Failure> {
    let st = SavedState {
        run: s.id.run_id.clone(),
        uid: s.id.uid,
        gauntlet: g.clone(),
    };
    let bytes = serde_json::to_vec(&st).map_err(|e| Failure::new(FailureKind::Disk, e))?;
    s.env.local.put(STATE_KEY, Bytes::from(bytes)).map_err(|e| {
        Failure::new(
            FailureKind::Disk,
            format!(
                "saving the validator state: {e} (the ratings stay in memory; the next window tries again)"
            ),
        )
    })
}
