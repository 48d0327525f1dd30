//! The simulator's clocks and object stores.
//!
//! Time: the world's virtual clock ([`WorldClock`]) moves only when the simulator moves it.
//! Each node sees it through a [`NodeClock`]: plus the node's clock skew, plus the time the
//! action it is carrying out has taken so far (a store call's latency, a retry's backoff: a
//! "sleep" adds to that instead of waiting).
//!
//! Stores: every bucket lives in one [`MemWorld`]. An object carries the store's timestamp of
//! the put (the world's time when it landed, skew-free, as a real store's clock would give) and
//! the time it becomes visible (a store that lists late). Outages and slow periods from the
//! fault plan apply to every call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use covenant_core::rng::SplitMix64;
use covenant_core::Millis;

use crate::env::{Clock, ObjectInfo, ObjectStore, StoreError, Stores};

/// The world's time, shared.
#[derive(Debug, Default)]
pub struct WorldClock(AtomicU64);

impl WorldClock {
    pub fn new(t: Millis) -> Self {
        WorldClock(AtomicU64::new(t))
    }
    pub fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, t: Millis) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl covenant_net::Clock for WorldClock {
    fn now_ms(&self) -> u64 {
        self.now()
    }
}

/// A node's view of the world's time.
pub struct NodeClock {
    world: Arc<WorldClock>,
    /// The node's clock is off by this much (ms, either way).
    skew: i64,
    /// Time the current action has taken.
    spent: AtomicU64,
    /// Latencies of this node's store calls.
    rng: Mutex<SplitMix64>,
}

impl NodeClock {
    pub fn new(world: Arc<WorldClock>, skew: i64, seed: u64) -> Self {
        NodeClock {
            world,
            skew,
            spent: AtomicU64::new(0),
            rng: Mutex::new(SplitMix64::new(seed)),
        }
    }

    /// The world's time where the current action is now (skew-free: what a store stamps).
    pub fn true_now(&self) -> Millis {
        self.world.now() + self.spent.load(Ordering::SeqCst)
    }

    /// Starts timing an action.
    pub fn begin(&self) {
        self.spent.store(0, Ordering::SeqCst);
    }

    /// How long the current action took.
    pub fn spent(&self) -> u64 {
        self.spent.load(Ordering::SeqCst)
    }

    /// A node's view of a world time.
    pub fn view(&self, world_t: Millis) -> Millis {
        world_t.saturating_add_signed(self.skew)
    }

    /// The world time at which this node's clock shows `t`.
    pub fn world_time_of(&self, t: Millis) -> Millis {
        t.saturating_add_signed(-self.skew)
    }

    fn latency(&self, lo: u64, hi: u64) -> u64 {
        let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        lo + r.below(hi - lo + 1)
    }
}

impl Clock for NodeClock {
    fn now_ms(&self) -> Millis {
        self.view(self.true_now())
    }
    fn sleep_ms(&self, ms: u64) {
        self.spent.fetch_add(ms, Ordering::SeqCst);
    }
    fn mark(&self) -> u64 {
        self.spent()
    }
    fn set_mark(&self, mark: u64) {
        self.spent.store(mark, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
struct Object {
    bytes: Bytes,
    stored_at: Millis,
    visible_at: Millis,
}

/// An interval of trouble on the stores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoreTrouble {
    /// Every call fails.
    Outage { from: Millis, to: Millis },
    /// Every call takes `extra_ms` longer.
    Slow {
        from: Millis,
        to: Millis,
        extra_ms: u64,
    },
}

/// Store faults in force over the run.
#[derive(Debug, Clone, Default)]
pub struct StoreFaults {
    pub trouble: Vec<StoreTrouble>,
    /// Chance that a put becomes visible late, and the longest lag (ms).
    pub late_listing: f64,
    pub max_lag_ms: u64,
}

impl StoreFaults {
    fn outage_at(&self, t: Millis) -> Option<Millis> {
        self.trouble.iter().find_map(|x| match *x {
            StoreTrouble::Outage { from, to } if (from..to).contains(&t) => Some(to),
            _ => None,
        })
    }

    fn extra_at(&self, t: Millis) -> u64 {
        self.trouble
            .iter()
            .map(|x| match *x {
                StoreTrouble::Slow { from, to, extra_ms } if (from..to).contains(&t) => extra_ms,
                _ => 0,
            })
            .sum()
    }
}

/// All buckets of the simulated world.
pub struct MemWorld {
    objects: Mutex<BTreeMap<(String, String), Object>>,
    pub faults: StoreFaults,
    lag: Mutex<SplitMix64>,
}

impl MemWorld {
    pub fn new(faults: StoreFaults, seed: u64) -> Self {
        MemWorld {
            objects: Mutex::new(BTreeMap::new()),
            faults,
            lag: Mutex::new(SplitMix64::new(seed)),
        }
    }

    /// The store timestamp of an object, if it exists (for the invariant checks).
    pub fn stored_at(&self, bucket: &str, key: &str) -> Option<Millis> {
        self.objects
            .lock()
            .ok()?
            .get(&(bucket.to_string(), key.to_string()))
            .map(|o| o.stored_at)
    }

    /// Bytes of an object (tests).
    pub fn bytes(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.objects
            .lock()
            .ok()?
            .get(&(bucket.to_string(), key.to_string()))
            .map(|o| o.bytes.clone())
    }

    fn lag(&self) -> u64 {
        let mut r = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        if self.faults.max_lag_ms > 0 && r.chance(self.faults.late_listing) {
            r.below(self.faults.max_lag_ms + 1)
        } else {
            0
        }
    }
}

/// One bucket as one node reaches it (its latencies land on that node's clock).
pub struct MemBucket {
    world: Arc<MemWorld>,
    clock: Arc<NodeClock>,
    name: String,
}

impl MemBucket {
    pub fn new(world: Arc<MemWorld>, clock: Arc<NodeClock>, name: &str) -> Self {
        MemBucket {
            world,
            clock,
            name: name.to_string(),
        }
    }

    /// Pays a call's latency; fails if the store is down when the call is made.
    fn call(&self, op: &'static str, key: &str, lo: u64, hi: u64) -> Result<Millis, StoreError> {
        let t = self.clock.true_now();
        if let Some(until) = self.world.faults.outage_at(t) {
            // A timed-out request: the client waits a while before giving up.
            self.clock.sleep_ms(500.min(until - t).max(1));
            return Err(StoreError::Unavailable {
                store: self.location(),
                op,
                key: key.into(),
                attempts: 1,
                elapsed: Duration::from_millis(500),
                deadline: Duration::from_millis(500),
                last_error: "simulated outage".into(),
            });
        }
        let wait = self.clock.latency(lo, hi) + self.world.faults.extra_at(t);
        self.clock.sleep_ms(wait);
        Ok(self.clock.true_now())
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            store: self.location(),
            key: key.into(),
        }
    }

    fn info(key: &str, o: &Object) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            size: o.bytes.len() as u64,
            last_modified: UNIX_EPOCH + Duration::from_millis(o.stored_at),
            e_tag: None,
        }
    }

    fn visible(&self, key: &str, at: Millis) -> Option<Object> {
        let m = self.world.objects.lock().ok()?;
        m.get(&(self.name.clone(), key.to_string()))
            .filter(|o| o.visible_at <= at)
            .cloned()
    }
}

impl ObjectStore for MemBucket {
    fn location(&self) -> String {
        format!("mem://{}", self.name)
    }

    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let at = self.call("put", key, 20, 80)?;
        let lag = self.world.lag();
        let mut m = self
            .world
            .objects
            .lock()
            .map_err(|_| StoreError::Config("store poisoned".into()))?;
        m.insert(
            (self.name.clone(), key.to_string()),
            Object {
                bytes,
                stored_at: at,
                visible_at: at + lag,
            },
        );
        Ok(())
    }

    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let at = self.call("head", key, 5, 15)?;
        let o = self.visible(key, at).ok_or_else(|| self.not_found(key))?;
        Ok(Self::info(key, &o))
    }

    fn get(&self, key: &str, max_bytes: u64) -> Result<(ObjectInfo, Bytes), StoreError> {
        let at = self.call("get", key, 15, 50)?;
        let o = self.visible(key, at).ok_or_else(|| self.not_found(key))?;
        if o.bytes.len() as u64 > max_bytes {
            return Err(StoreError::TooLarge {
                store: self.location(),
                key: key.into(),
                size: o.bytes.len() as u64,
                limit: max_bytes,
            });
        }
        Ok((Self::info(key, &o), o.bytes))
    }

    fn list(&self, prefix: &str, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        let at = self.call("list", prefix, 10, 30)?;
        let m = self
            .world
            .objects
            .lock()
            .map_err(|_| StoreError::Config("store poisoned".into()))?;
        let out: Vec<ObjectInfo> = m
            .iter()
            .filter(|((b, k), o)| *b == self.name && k.starts_with(prefix) && o.visible_at <= at)
            .map(|((_, k), o)| Self::info(k, o))
            .collect();
        if out.len() > max {
            return Err(StoreError::TooMany {
                store: self.location(),
                prefix: prefix.into(),
                limit: max,
            });
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call("delete", key, 5, 15)?;
        let mut m = self
            .world
            .objects
            .lock()
            .map_err(|_| StoreError::Config("store poisoned".into()))?;
        m.remove(&(self.name.clone(), key.to_string()))
            .map(|_| ())
            .ok_or_else(|| self.not_found(key))
    }
}

/// Opens `mem://NAME` buckets for one node.
pub struct MemStores {
    pub world: Arc<MemWorld>,
    pub clock: Arc<NodeClock>,
}

impl Stores for MemStores {
    fn open(&self, url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let name = url
            .strip_prefix("mem://")
            .ok_or_else(|| StoreError::Config(format!("the simulator has no store at {url:?}")))?;
        Ok(Arc::new(MemBucket::new(
            self.world.clone(),
            self.clock.clone(),
            name,
        )))
    }
}

/// A node's local disk: in memory, kept across its restarts, never faulty.
#[derive(Default)]
pub struct MemDisk {
    files: Mutex<BTreeMap<String, Bytes>>,
}

impl ObjectStore for MemDisk {
    fn location(&self) -> String {
        "mem-disk".into()
    }
    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.files
            .lock()
            .map_err(|_| StoreError::Config("disk poisoned".into()))?
            .insert(key.into(), bytes);
        Ok(())
    }
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.get(key, u64::MAX).map(|(i, _)| i)
    }
    fn get(&self, key: &str, _max: u64) -> Result<(ObjectInfo, Bytes), StoreError> {
        let f = self
            .files
            .lock()
            .map_err(|_| StoreError::Config("disk poisoned".into()))?;
        let b = f.get(key).cloned().ok_or_else(|| StoreError::NotFound {
            store: self.location(),
            key: key.into(),
        })?;
        Ok((
            ObjectInfo {
                key: key.into(),
                size: b.len() as u64,
                last_modified: UNIX_EPOCH,
                e_tag: None,
            },
            b,
        ))
    }
    fn list(&self, prefix: &str, _max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        let f = self
            .files
            .lock()
            .map_err(|_| StoreError::Config("disk poisoned".into()))?;
        Ok(f.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, b)| ObjectInfo {
                key: k.clone(),
                size: b.len() as u64,
                last_modified: UNIX_EPOCH,
                e_tag: None,
            })
            .collect())
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.files
            .lock()
            .map_err(|_| StoreError::Config("disk poisoned".into()))?
            .remove(key);
        Ok(())
    }
}
