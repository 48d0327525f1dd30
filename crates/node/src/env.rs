//! The environment an executor drives a node with: a clock, the chain, object stores, the
//! model (a [`Trainer`]) and a typed event sink. The real executor fills it with the OS clock,
//! the chain ledger, directory and S3 stores and the tch model ([`crate::real`]); the simulator
//! with a virtual clock, an in-memory chain and stores, and the real model or a stand-in
//! ([`crate::sim`]). Adversaries are decorators around these ([`crate::adversary`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use covenant_core::driver::NodeEvent;
use covenant_core::Millis;
use covenant_data::Split;
pub use covenant_net::store::{ObjectInfo, StoreError};
pub use covenant_net::Chain;

/// Time as a node sees it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
    /// Waits `ms` (the real clock sleeps; a simulated one makes the current action take that
    /// much longer). Only executors and adversaries wait; drivers never do.
    fn sleep_ms(&self, ms: u64);
    /// For a clock on which concurrent calls are made one after another (the simulator's):
    /// where the current action's time stands, and setting it back or forward, so that a batch
    /// of concurrent calls takes as long as its slowest call. The real clock has nothing to
    /// mark (its concurrent calls run on threads).
    fn mark(&self) -> u64 {
        0
    }
    fn set_mark(&self, _mark: u64) {}
}

/// An object store (one bucket or prefix), with blocking calls.
pub trait ObjectStore: Send + Sync {
    /// Where it is, for messages.
    fn location(&self) -> String;
    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// Size and store timestamp.
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;
    /// The object (at most `max_bytes`) with its info.
    fn get(&self, key: &str, max_bytes: u64) -> Result<(ObjectInfo, Bytes), StoreError>;
    /// Objects under `prefix` (at most `max`).
    fn list(&self, prefix: &str, max: usize) -> Result<Vec<ObjectInfo>, StoreError>;
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Opens the stores that chain commitments name.
pub trait Stores: Send + Sync {
    fn open(&self, url: &str) -> Result<Arc<dyn ObjectStore>, StoreError>;
}

/// Why the model or its data failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error(transparent)]
    Model(#[from] covenant_model::ModelError),
    #[error(transparent)]
    Data(#[from] covenant_data::DataError),
    #[error("parameters do not fit the model: {0}")]
    Shape(String),
    #[error("{what} is not finite")]
    NonFinite { what: &'static str },
}

/// Values at some positions of some tensors: a sparse write into a model's parameters
/// ([`Trainer::write_at`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseValues {
    /// Per tensor, in layout order: flat positions and their values.
    pub tensors: Vec<(Vec<u32>, Vec<f32>)>,
}

impl SparseValues {
    /// Writes these values into dense parameters.
    pub fn write_into(&self, theta: &mut [Vec<f32>]) -> Result<(), TrainerError> {
        if self.tensors.len() != theta.len() {
            return Err(TrainerError::Shape(format!(
                "{} tensors written into a model of {}",
                self.tensors.len(),
                theta.len()
            )));
        }
        let fits = |((pos, val), t): (&(Vec<u32>, Vec<f32>), &Vec<f32>)| {
            pos.len() == val.len() && pos.iter().all(|&i| (i as usize) < t.len())
        };
        if !self.tensors.iter().zip(theta.iter()).all(fits) {
            return Err(TrainerError::Shape("positions outside the tensor".into()));
        }
        for ((pos, val), t) in self.tensors.iter().zip(theta.iter_mut()) {
            for (&i, &v) in pos.iter().zip(val) {
                t[i as usize] = v;
            }
        }
        Ok(())
    }

    /// Values written in all.
    pub fn len(&self) -> usize {
        self.tensors.iter().map(|t| t.0.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one inner step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InnerStep {
    /// The batch's loss before the step.
    pub loss: f32,
    /// The learning rate the step used (`NaN` if nothing was stepped).
    pub lr: f64,
}

/// The model a node trains and evaluates, seen as named flat f32 buffers, with its data.
pub trait Trainer: Send {
    /// Parameter names and shapes, in layout order.
    fn shapes(&self) -> Vec<(String, Vec<usize>)>;
    /// Samples in a split of the data.
    fn samples(&self, split: Split) -> u64;
    /// Flat copies of the live parameters, in layout order.
    fn params(&self) -> Result<Vec<Vec<f32>>, TrainerError>;
    /// Overwrites the live parameters (all finite, in layout order).
    fn set_params(&mut self, theta: &[Vec<f32>]) -> Result<(), TrainerError>;
    /// Overwrites the live parameters at these positions only (all finite), in place; by
    /// default through a full copy ([`Trainer::params`], [`Trainer::set_params`]).
    fn write_at(&mut self, values: &SparseValues) -> Result<(), TrainerError> {
        let mut theta = self.params()?;
        values.write_into(&mut theta)?;
        self.set_params(&theta)
    }
    /// One optimizer step on these training samples (one batch), at position `schedule_step`
    /// of the run's inner learning-rate schedule (`RunParams::inner_step_index`: the same for
    /// every node at a given window and step, whenever it joined).
    fn step(&mut self, ids: &[u64], schedule_step: u64) -> Result<InnerStep, TrainerError>;
    /// Mean loss over these samples of `split`.
    fn eval(&mut self, split: Split, ids: &[u64]) -> Result<f64, TrainerError>;
    /// The loss of each of these samples, in order (by default one [`Trainer::eval`] each).
    fn eval_each(&mut self, split: Split, ids: &[u64]) -> Result<Vec<f64>, TrainerError> {
        ids.iter().map(|&i| self.eval(split, &[i])).collect()
    }
    /// Fresh optimizer state.
    fn reset_optimizer(&mut self) -> Result<(), TrainerError>;
    /// The `config.json` of a checkpoint of this model (Hugging Face layout).
    fn hf_config(&self) -> serde_json::Value;
    /// For logs: what runs where.
    fn describe(&self) -> String;
}

/// Where a node's typed events go.
pub trait EventSink: Send + Sync {
    fn emit(&self, t: Millis, event: &NodeEvent);
}

/// Everything but the model: shared by a node's threads.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub chain: Arc<dyn Chain>,
    pub stores: Arc<dyn Stores>,
    /// This node's own bucket (what it writes; an adversary's may tamper).
    pub own: Arc<dyn ObjectStore>,
    /// This node's local disk (the validator's saved state).
    pub local: Arc<dyn ObjectStore>,
    pub sink: Arc<dyn EventSink>,
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`; `None` elsewhere).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        covenant_net::clock::Clock::now_ms(&covenant_net::SystemClock)
    }
    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// A [`covenant_net::Store`] (directory or S3) behind blocking calls.
pub struct NetStore {
    inner: covenant_net::Store,
    rt: tokio::runtime::Handle,
}

impl NetStore {
    pub fn new(inner: covenant_net::Store, rt: tokio::runtime::Handle) -> Self {
        NetStore { inner, rt }
    }
}

impl ObjectStore for NetStore {
    fn location(&self) -> String {
        self.inner.location().to_string()
    }
    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.rt.block_on(self.inner.put(key, bytes))
    }
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.rt.block_on(self.inner.head(key))
    }
    fn get(&self, key: &str, max_bytes: u64) -> Result<(ObjectInfo, Bytes), StoreError> {
        self.rt.block_on(self.inner.get_with_info(key, max_bytes))
    }
    fn list(&self, prefix: &str, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        self.rt.block_on(self.inner.list(prefix, max))
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.rt.block_on(self.inner.delete(key))
    }
}

/// Opens directory and S3 stores by URL (cached: one client per URL).
pub struct NetStores {
    rt: tokio::runtime::Handle,
    open: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl NetStores {
    pub fn new(rt: tokio::runtime::Handle) -> Self {
        NetStores {
            rt,
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Stores for NetStores {
    fn open(&self, url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut m = self
            .open
            .lock()
            .map_err(|_| StoreError::Config("store cache poisoned".into()))?;
        if let Some(s) = m.get(url) {
            return Ok(s.clone());
        }
        let s: Arc<dyn ObjectStore> = Arc::new(NetStore::new(
            covenant_net::Store::open(url)?,
            self.rt.clone(),
        ));
        m.insert(url.to_string(), s.clone());
        Ok(s)
    }
}

/// A node's own directory as a store (its saved state): files written atomically through a
/// temporary file and a rename (`spec::write_atomic`), errors naming the file and the OS error.
pub struct LocalDisk {
    dir: std::path::PathBuf,
}

impl LocalDisk {
    pub fn new(dir: &std::path::Path) -> Self {
        LocalDisk {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> Result<std::path::PathBuf, StoreError> {
        if key.is_empty() || key.contains("..") || key.starts_with('/') {
            return Err(StoreError::InvalidKey {
                key: key.into(),
                reason: "not a plain relative name".into(),
            });
        }
        Ok(self.dir.join(key))
    }

    fn err(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Other {
            store: self.location(),
            op,
            key: key.into(),
            reason: e.to_string(),
        }
    }
}

impl ObjectStore for LocalDisk {
    fn location(&self) -> String {
        format!("file://{}", self.dir.display())
    }
    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let p = self.path(key)?;
        crate::spec::write_atomic(&p, &bytes).map_err(|e| self.err("put", key, format!("{e:#}")))
    }
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let p = self.path(key)?;
        let m = std::fs::metadata(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound {
                store: self.location(),
                key: key.into(),
            },
            _ => self.err("head", key, format!("{}: {e}", p.display())),
        })?;
        Ok(ObjectInfo {
            key: key.into(),
            size: m.len(),
            last_modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
            e_tag: None,
        })
    }
    fn get(&self, key: &str, max_bytes: u64) -> Result<(ObjectInfo, Bytes), StoreError> {
        let info = self.head(key)?;
        if info.size > max_bytes {
            return Err(StoreError::TooLarge {
                store: self.location(),
                key: key.into(),
                size: info.size,
                limit: max_bytes,
            });
        }
        let p = self.path(key)?;
        let b =
            std::fs::read(&p).map_err(|e| self.err("get", key, format!("{}: {e}", p.display())))?;
        Ok((info, Bytes::from(b)))
    }
    fn list(&self, prefix: &str, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, format!("{}: {e}", self.dir.display()))),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(prefix) && out.len() < max {
                out.push(self.head(&name)?);
            }
        }
        Ok(out)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = self.path(key)?;
        std::fs::remove_file(&p)
            .map_err(|e| self.err("delete", key, format!("{}: {e}", p.display())))
    }
}
