//! What miners and validators share: the node context (spec, chain, keys, stores, data), the
//! chain view of a window, listing and gathering uploads, replaying validators' records, and
//! the event log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use covenant_codec::{wire, ModelLayout};
use covenant_core::machine::ChainView;
use covenant_core::{RunParams, Uid};
use covenant_data::{Dataset, Split};
use covenant_model::{DeviceChoice, Trainer};
use covenant_net::{Chain, Keypair, PublicKey, Store};
use serde::Serialize;

use crate::canon::{hex, Canon, Gathered};
use crate::objects::{self, WindowRecord};
use crate::spec::{DataSpec, RunSpec};

/// Largest codec payload read is the layout's limit; this bounds listing.
pub const MAX_LIST: usize = 100_000;

/// Options shared by `covenant miner` and `covenant validator`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Run directory: `run.json`, `chain/` (the embedded ledger), default stores under `store/`.
    pub run_dir: PathBuf,
    /// This node's name (directory under `<run>/nodes/`, default store `<run>/store/<name>`).
    pub name: String,
    /// Key file (created if missing).
    pub key: PathBuf,
    /// Own bucket URL (`s3://…`, `file://…` or a path); default `<run>/store/<name>`.
    pub store: Option<String>,
    /// Stop after this window (inclusive); `None`: run until killed.
    pub until_window: Option<u64>,
    /// libtorch threads.
    pub threads: usize,
    /// Test-only behaviour of a miner (`honest` unless testing defences).
    pub behaviour: Behaviour,
}

/// How a miner behaves. Everything but `Honest` exists to test the defences (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    Honest,
    /// Random updates: random codes and lookup values on valid indices.
    Noise,
    /// The honest update × 100.
    Scaled,
    /// The honest update × −1.
    SignFlip,
    /// Re-uploads another peer's payload of the window, re-signed as its own, as soon as it appears.
    Copycat,
    /// Trains on an old model: never applies outer steps.
    Stale,
    /// Uploads a zero update every window.
    FreeRider,
    /// A free-rider that uploads a copy of the last window's aggregated outer step
    /// (re-compressed) instead of its own update.
    Echo,
    /// Trains on sequences other than its assigned pool.
    WrongData,
    /// Uploads after the grace period.
    Late,
    /// Uploads before its window has ended.
    Early,
    /// Corrupts the signed body (signature / body hash no longer verify).
    Malformed,
    /// Uploads half of the payload.
    Truncated,
    /// Uploads more bytes than any honest payload can have.
    Oversized,
    /// Signs with a key other than its registered one.
    BadSignature,
    /// Encodes for a model with other tensor shapes.
    WrongShape,
    /// A validly signed payload with a NaN in a lookup table.
    Nan,
    /// A validly signed payload whose indices are not ascending inside a chunk.
    BadIndex,
    /// Trains but never uploads.
    Silent,
}

impl Behaviour {
    pub const ALL: [(&'static str, Behaviour); 19] = [
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
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

impl std::str::FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
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

/// Everything a node needs, opened once.
pub struct Ctx {
    pub spec: RunSpec,
    pub params: RunParams,
    /// Run id bound into codec payloads (the spec's hash).
    pub run_hash: [u8; 32],
    pub chain: Arc<dyn Chain>,
    pub key: Keypair,
    pub uid: Uid,
    pub store: Store,
    pub data: Dataset,
    pub layout: ModelLayout,
    pub node_dir: PathBuf,
    pub log: EventLog,
    pub rt: tokio::runtime::Runtime,
    pub opts: NodeOptions,
    stores: Mutex<HashMap<String, Store>>,
}

/// A registered peer's key and bucket.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub key: PublicKey,
    pub store: Store,
}

/// The chain as of a window's first block, as the protocol core and the runtime need it.
#[derive(Clone, Debug)]
pub struct WindowView {
    pub chain: ChainView,
    /// Miners (non-validator uids) with a readable commitment.
    pub peers: BTreeMap<Uid, PeerInfo>,
}

/// The peers whose window-`w` uploads may be gathered: from the view read at `w + 1`'s first
/// block, the chain that also fixes `w`'s aggregation set (none if it is not among a node's
/// recent views).
pub fn gather_peers(views: &BTreeMap<u64, WindowView>, w: u64) -> BTreeMap<Uid, PeerInfo> {
    views
        .get(&(w + 1))
        .map(|v| v.peers.clone())
        .unwrap_or_default()
}

impl Ctx {
    /// Opens the run: spec, chain, key (registering it and committing the bucket), data.
    pub fn open(opts: NodeOptions, role: &str) -> Result<Ctx> {
        let spec = RunSpec::read(&opts.run_dir.join("run.json"))?;
        let chain: Arc<dyn Chain> = Arc::new(
            covenant_net::Ledger::open(&opts.run_dir.join("chain"))
                .context("opening the run's chain")?,
        );
        let params = spec.params_for(chain.genesis())?;
        let key = load_or_create_key(&opts.key)?;
        let node_dir = opts.run_dir.join("nodes").join(&opts.name);
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("creating {}", node_dir.display()))?;
        let log = EventLog::open(&node_dir.join("events.jsonl"), role, &opts.name)?;
        let store_url = opts
            .store
            .clone()
            .unwrap_or_else(|| crate::network::default_store_url(&opts.run_dir, &opts.name));
        let store =
            Store::open(&store_url).with_context(|| format!("opening own store {store_url}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the I/O runtime")?;
        let uid = register(chain.as_ref(), &key, &store_url)?;
        let data = open_data(&spec, &opts.run_dir)?;
        covenant_model::set_num_threads(opts.threads.max(1));
        let cfg = spec.model_config(data.vocab_size() as usize)?;
        ensure!(
            data.seq_len() as usize <= cfg.max_seq_len,
            "the data's sequence length {} exceeds preset {}'s {}",
            data.seq_len(),
            spec.preset,
            cfg.max_seq_len
        );
        let layout = ModelLayout::new(
            spec.codec_config(),
            cfg.param_shapes()
                .iter()
                .map(|(n, s)| (n.clone(), s.as_slice())),
        )?;
        let run_hash = spec.hash();
        Ok(Ctx {
            spec,
            params,
            run_hash,
            chain,
            key,
            uid,
            store,
            data,
            layout,
            node_dir,
            log,
            rt,
            opts,
            stores: Mutex::new(HashMap::new()),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.spec.name
    }

    pub fn trainer(&self) -> Result<Trainer> {
        let cfg = self.spec.model_config(self.data.vocab_size() as usize)?;
        Ok(Trainer::new(
            cfg,
            self.spec.optim_config(),
            self.spec.seed,
            DeviceChoice::Auto,
        )?)
    }

    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Sleeps until the wall clock reaches `ms`.
    pub fn sleep_until(ms: u64) {
        let now = Self::now_ms();
        if ms > now {
            std::thread::sleep(Duration::from_millis(ms - now));
        }
    }

    fn store_for(&self, url: &str) -> Result<Store> {
        let mut m = self
            .stores
            .lock()
            .map_err(|_| anyhow!("store cache poisoned"))?;
        if let Some(s) = m.get(url) {
            return Ok(s.clone());
        }
        let s = Store::open(url).with_context(|| format!("opening peer store {url}"))?;
        m.insert(url.to_string(), s.clone());
        Ok(s)
    }

    fn validator_keys(&self) -> BTreeSet<PublicKey> {
        self.chain
            .genesis()
            .validators
            .iter()
            .map(|v| v.key)
            .collect()
    }

    /// The chain at window `w`'s first block.
    pub fn view(&self, w: u64) -> Result<WindowView> {
        let snap = self.chain.snapshot(self.params.window_start_block(w))?;
        let validators = self.validator_keys();
        let mut chain = ChainView::default();
        let mut peers = BTreeMap::new();
        for n in snap.neurons {
            if validators.contains(&n.key) {
                continue;
            }
            chain.registered.insert(n.uid);
            chain.consensus.insert(n.uid, n.consensus_weight);
            if let Some(c) = &n.commitment {
                match self.store_for(&c.bucket_url) {
                    Ok(store) => {
                        peers.insert(n.uid, PeerInfo { key: n.key, store });
                    }
                    Err(e) => self.log.warn(&format!("uid {}: {e:#}", n.uid)),
                }
            }
        }
        Ok(WindowView { chain, peers })
    }

    /// Validators (uid, key, store) with a commitment, from the current metagraph.
    pub fn validators(&self) -> Result<Vec<(Uid, PublicKey, Store)>> {
        let m = self.chain.metagraph()?;
        let mut out = Vec::new();
        for v in &m.validators {
            let Some(uid) = v.uid else { continue };
            let Some(c) = m.neuron(uid).and_then(|n| n.commitment.clone()) else {
                continue;
            };
            if let Ok(s) = self.store_for(&c.bucket_url) {
                out.push((uid, v.key, s));
            }
        }
        Ok(out)
    }

    /// Store timestamps (ms) of the window-`w` uploads of `peers`.
    pub fn list_uploads(&self, w: u64, peers: &BTreeMap<Uid, PeerInfo>) -> BTreeMap<Uid, u64> {
        let key = objects::grad_key(w);
        let futs = peers.iter().map(|(&uid, p)| {
            let key = key.clone();
            async move { (uid, p.store.head(&key).await) }
        });
        let heads = self.rt.block_on(futures::future::join_all(futs));
        heads
            .into_iter()
            .filter_map(|(uid, r)| {
                let info = r.ok()?;
                let ms = info
                    .last_modified
                    .duration_since(UNIX_EPOCH)
                    .ok()?
                    .as_millis() as u64;
                Some((uid, ms))
            })
            .collect()
    }

    /// Downloads and decodes the window-`w` uploads of `uids`. Returns the valid payloads (with
    /// their byte sizes) and the reasons the others were rejected.
    pub fn gather(
        &self,
        w: u64,
        uids: &[Uid],
        peers: &BTreeMap<Uid, PeerInfo>,
    ) -> (Gathered, BTreeMap<Uid, String>) {
        let limits = wire::DecodeLimits::for_layout(&self.layout);
        let key = objects::grad_key(w);
        let futs = uids.iter().map(|&uid| {
            let key = key.clone();
            let peer = peers.get(&uid).cloned();
            async move {
                let Some(p) = peer else {
                    return (uid, Err("no commitment on chain".to_string()));
                };
                match p.store.get(&key, limits.max_bytes as u64).await {
                    Ok(b) => (uid, Ok((b, p.key))),
                    Err(e) => (uid, Err(e.to_string())),
                }
            }
        });
        let fetched = self.rt.block_on(futures::future::join_all(futs));
        let mut ok = BTreeMap::new();
        let mut bad = BTreeMap::new();
        for (uid, r) in fetched {
            match r {
                Err(e) => {
                    bad.insert(uid, e);
                }
                Ok((bytes, pk)) => {
                    let Some(vk) = pk.verifying_key() else {
                        bad.insert(uid, "registered key is not a valid ed25519 key".into());
                        continue;
                    };
                    let expected = wire::ExpectedModel {
                        layout: &self.layout,
                        run_id: self.run_hash,
                        window: w,
                        uid,
                    };
                    match wire::decode(&bytes, &expected, &vk, &limits) {
                        Ok(p) => {
                            ok.insert(uid, (p.tensors, bytes.len() as u64));
                        }
                        Err(e) => {
                            bad.insert(uid, format!("invalid payload: {e}"));
                        }
                    }
                }
            }
        }
        (ok, bad)
    }

    /// Window `w`'s outer step recomputed as a live node computes it: the chain at `w + 1`'s
    /// first block (which fixes `w`'s aggregation set), the uploads' store timestamps,
    /// validation. Returns the aggregated uids (sorted) and their payloads.
    pub fn recompute_window(&self, w: u64) -> Result<(Vec<Uid>, Gathered)> {
        let p = &self.params;
        let view = self.view(w + 1)?;
        let set = covenant_core::aggregation_set(
            &view.chain.consensus,
            &view.chain.registered,
            p.aggregation_size,
            p.reserves,
        );
        let uploads = self.list_uploads(w, &view.peers);
        let accepted = p.accepted_uploads(w, &view.chain.registered, &uploads);
        let gather = set.gather(&accepted);
        let (ok, _) = self.gather(w, &gather, &view.peers);
        let valid: Vec<Uid> = gather.into_iter().filter(|u| ok.contains_key(u)).collect();
        Ok((valid, ok))
    }

    /// Brings `canon` (θ after window `applied`; `None`: the initial model) forward window by
    /// window: from a validator's signed record (the aggregated uploads are downloaded and the
    /// model hash after the step is checked), or, where no validator published one and the
    /// window's grace period is over, by recomputing the window as a live node would. Stops at
    /// the first window that can be done neither way yet; returns the last window applied.
    /// With `until`, stops after that window.
    pub fn catch_up(
        &self,
        canon: &mut Canon,
        mut applied: Option<u64>,
        until: Option<u64>,
    ) -> Result<Option<u64>> {
        let validators = self.validators()?;
        loop {
            let w = applied.map(|a| a + 1).unwrap_or(0);
            if until.is_some_and(|u| w > u) {
                return Ok(applied);
            }
            let mut rec: Option<WindowRecord> = None;
            for (vuid, vkey, vstore) in &validators {
                let r = self.rt.block_on(objects::get_doc::<WindowRecord>(
                    vstore,
                    &objects::rec_key(w),
                    self.run_id(),
                    *vuid,
                    w,
                    objects::KIND_RECORD,
                    *vkey,
                ));
                if let Ok(r) = r {
                    rec = Some(r);
                    break;
                }
            }
            match rec {
                Some(rec) => {
                    ensure!(
                        rec.window == w,
                        "record for window {w} names window {}",
                        rec.window
                    );
                    ensure!(
                        rec.lr.is_finite() && rec.lr >= 0.0,
                        "record for window {w}: bad lr {}",
                        rec.lr
                    );
                    let view = self.view(w + 1)?;
                    let (got, bad) = self.gather(w, &rec.aggregated, &view.peers);
                    if let Some((uid, why)) = bad.iter().next() {
                        bail!(
                            "replaying window {w}: the upload of uid {uid} is not available: {why}"
                        );
                    }
                    canon.apply_selected(&rec.aggregated, &got, rec.lr)?;
                    let h = hex(&canon.hash());
                    ensure!(
                        h == rec.hash_after,
                        "replaying window {w}: model hash {h} differs from the validators' {}",
                        rec.hash_after
                    );
                }
                None => {
                    // A little after the grace period, so every upload's timestamp is final.
                    if Ctx::now_ms() < self.params.gather_time(w) + self.params.block_time_ms {
                        return Ok(applied);
                    }
                    let (valid, got) = self.recompute_window(w)?;
                    canon.apply_selected(&valid, &got, self.params.outer_lr_at(w) as f32)?;
                    self.log.event(
                        "recomputed",
                        serde_json::json!({ "window": w, "peers": valid, "hash": hex(&canon.hash()) }),
                    );
                }
            }
            applied = Some(w);
        }
    }
}

/// Registers `key` (if needed) and commits `bucket_url`; returns the uid.
pub fn register(chain: &dyn Chain, key: &Keypair, bucket_url: &str) -> Result<Uid> {
    use covenant_net::{ChainError, Rejection, Transaction, TxBody};
    let run = chain.genesis().run_id.clone();
    let send = |body: TxBody| -> Result<covenant_net::chain::Receipt, ChainError> {
        let nonce = chain.next_nonce(&key.public())?;
        chain.submit(&Transaction::sign(key, &run, nonce, body))
    };
    match send(TxBody::Register) {
        Ok(_) | Err(ChainError::Rejected(Rejection::AlreadyRegistered(_))) => {}
        Err(e) => return Err(anyhow!("registering on the chain: {e}")),
    }
    let r = send(TxBody::Commit {
        bucket_url: bucket_url.to_string(),
        read_credentials: String::new(),
    })
    .map_err(|e| anyhow!("committing the bucket: {e}"))?;
    r.uid.ok_or_else(|| anyhow!("the chain gave no uid"))
}

pub fn load_or_create_key(path: &Path) -> Result<Keypair> {
    if path.exists() {
        return Keypair::load(path).with_context(|| format!("loading key {}", path.display()));
    }
    let k = Keypair::generate()?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    k.save(path, false).context("creating this node's key")?;
    Ok(k)
}

pub fn open_data(spec: &RunSpec, run_dir: &Path) -> Result<Dataset> {
    let dir = match &spec.data {
        DataSpec::Prepared { dir } => dir.clone(),
        DataSpec::Bundled => {
            let seq = covenant_model::ModelConfig::preset(&spec.preset)?.max_seq_len;
            let cache = std::env::var_os("COVENANT_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| run_dir.join("cache"));
            let dir = cache.join(format!("data/bundled-seq{seq}"));
            covenant_data::prepare_bundled(&dir, seq as u32)
                .with_context(|| format!("preparing the bundled corpus in {}", dir.display()))?
        }
    };
    let ds = Dataset::open(&dir)
        .with_context(|| format!("opening prepared data in {}", dir.display()))?;
    ensure!(
        ds.num_samples(Split::Train) > 0 && ds.num_samples(Split::Val) > 0,
        "{} has no samples",
        dir.display()
    );
    Ok(ds)
}

/// Tokens of the given sample ids, concatenated.
pub fn tokens(ds: &Dataset, split: Split, ids: &[u64]) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(ids.len() * ds.seq_len() as usize);
    for &id in ids {
        out.extend_from_slice(&ds.sample(split, id)?);
    }
    Ok(out)
}

/// Mean loss over `ids` in batches of `batch`.
pub fn mean_loss(
    t: &mut Trainer,
    ds: &Dataset,
    split: Split,
    ids: &[u64],
    batch: usize,
) -> Result<f64> {
    let mut total = 0.0;
    let mut n = 0usize;
    for c in ids.chunks(batch.max(1)) {
        let toks = tokens(ds, split, c)?;
        total += t.eval_loss(&toks, c.len())? as f64 * c.len() as f64;
        n += c.len();
    }
    ensure!(n > 0, "no sequences to evaluate");
    Ok(total / n as f64)
}

/// `want` validation ids spread evenly.
pub fn val_ids(ds: &Dataset, want: usize) -> Vec<u64> {
    let n = ds.num_samples(Split::Val);
    let want = (want as u64).min(n).max(1);
    (0..want).map(|i| i * n / want).collect()
}

/// JSON lines of what a node did, for the demo's live view and the tests. Every event is also
/// printed on stderr. A write to the file that fails (full disk, lost permission) does not stop
/// the node: the first failure prints one warning on stderr naming the file and the OS error,
/// and later events are still tried (and still printed on stderr).
#[derive(Clone)]
pub struct EventLog {
    file: Arc<Mutex<std::fs::File>>,
    path: Arc<PathBuf>,
    /// Set once a write has failed (the warning is printed once).
    failed: Arc<AtomicBool>,
    role: String,
    name: String,
}

impl EventLog {
    pub fn open(path: &Path, role: &str, name: &str) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the event log {}", path.display()))?;
        Ok(EventLog {
            file: Arc::new(Mutex::new(file)),
            path: Arc::new(path.to_path_buf()),
            failed: Arc::new(AtomicBool::new(false)),
            role: role.into(),
            name: name.into(),
        })
    }

    /// Appends `{"t", "role", "name", "event", ...fields}`.
    pub fn event(&self, event: &str, fields: serde_json::Value) {
        let mut obj = serde_json::json!({
            "t": Ctx::now_ms(),
            "role": self.role,
            "name": self.name,
            "event": event,
        });
        if let (Some(o), serde_json::Value::Object(f)) = (obj.as_object_mut(), fields) {
            o.extend(f);
        }
        let line = format!("{obj}\n");
        let written = match self.file.lock() {
            Ok(mut f) => f.write_all(line.as_bytes()),
            Err(_) => Err(std::io::Error::other("event log lock poisoned")),
        };
        if let Err(e) = written {
            if !self.failed.swap(true, Ordering::Relaxed) {
                stderr_line(&format!(
                    "[{} {}] warning: writing the event log {} failed: {e}; the node carries on \
                     and prints its events here only",
                    self.role,
                    self.name,
                    self.path.display()
                ));
            }
        }
        stderr_line(&format!(
            "[{} {}] {}",
            self.role,
            self.name,
            line.trim_end()
        ));
    }

    pub fn warn(&self, msg: &str) {
        self.event("warning", serde_json::json!({ "message": msg }));
    }
}

/// Prints a line on stderr, ignoring a failure (`eprintln!` panics when stderr cannot be
/// written, e.g. when it is a log file on a full disk).
pub fn stderr_line(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes()).and_then(|_| e.write_all(b"\n"));
}
