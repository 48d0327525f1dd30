//! Putting a node together: the driver for its role, the executor's shared state and its
//! model, from a run spec and an environment. [`open`] does it for a real node from a run
//! directory; the simulator does it with its own environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, ensure, Context};
use covenant_codec::{CodecError, ModelLayout};
use covenant_core::driver::miner::Miner;
use covenant_core::driver::validator::Validator;
use covenant_core::driver::{Driver, NodeConfig};
use covenant_core::{Gauntlet, RunParams, Uid, Window};
use covenant_data::{Dataset, Split};
use covenant_net::{Chain, Keypair};

use crate::adversary::{self, Behaviour};
use crate::env::{
    Env, EventSink, NetStore, NetStores, ObjectStore, StoreError, Trainer, TrainerError,
};
use crate::exec::io::{SavedState, STATE_KEY};
use crate::exec::{Compute, Identity, RunFacts, Shared};
use crate::spec::{DataSpec, RunSpec};

/// Largest validator state file read.
pub const MAX_STATE_BYTES: u64 = 256 << 20;

/// Why a node could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Trainer(#[from] TrainerError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("reading the saved validator state: {0}")]
    StateStore(#[source] StoreError),
    #[error("the saved validator state is not readable: {0}")]
    StateUnreadable(#[source] serde_json::Error),
    #[error("the saved validator state belongs to run {run:?} uid {uid}, not run {expected_run:?} uid {expected_uid}")]
    StateMismatch {
        run: String,
        uid: Uid,
        expected_run: String,
        expected_uid: Uid,
    },
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Miner,
    Validator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Miner => "miner",
            Role::Validator => "validator",
        }
    }
}

/// What an executor runs: the driver and the executor's halves.
pub struct Node {
    pub driver: Box<dyn Driver + Send>,
    pub compute: Compute,
    pub shared: Arc<Shared>,
}

/// Everything [`assemble`] needs.
pub struct Parts<'a> {
    pub spec: &'a RunSpec,
    /// The run parameters with the chain's timing.
    pub params: RunParams,
    pub role: Role,
    pub key: Keypair,
    pub uid: Uid,
    pub env: Env,
    pub trainer: Box<dyn Trainer>,
    pub behaviour: Behaviour,
    pub until_window: Option<Window>,
    pub parallel_io: bool,
}

/// `want` validation ids spread evenly over `n` samples.
pub fn val_ids(n: u64, want: usize) -> Vec<u64> {
    let want = (want as u64).min(n).max(1);
    (0..want).map(|i| i * n / want).collect()
}

/// Puts a node together (decorating an adversary's environment for its behaviour).
pub fn assemble(p: Parts<'_>) -> Result<Node, SetupError> {
    let spec = p.spec;
    let shapes = p.trainer.shapes();
    let layout = ModelLayout::new(
        spec.codec_config(),
        shapes.iter().map(|(n, s)| (n.clone(), s.as_slice())),
    )?;
    let mut env = p.env;
    let cx = adversary::Context {
        layout: layout.clone(),
        key: Arc::new(p.key.clone()),
        run_hash: spec.hash(),
        run_id: spec.name.clone(),
        seed: spec.seed,
        fingerprint_values: spec.fingerprint_values,
        uid: p.uid,
        params: p.params.clone(),
        clock: env.clock.clone(),
        chain: env.chain.clone(),
        stores: env.stores.clone(),
    };
    let (trainer, own) = adversary::decorate(p.behaviour, cx, p.trainer, env.own.clone());
    env.own = own;
    let run = RunFacts {
        params: p.params.clone(),
        seed: spec.seed,
        batch: spec.batch,
        val_ids: val_ids(trainer.samples(Split::Val), spec.val_sequences),
        fingerprint_values: spec.fingerprint_values,
        checkpoint_every: spec.checkpoint_every,
        index_coding: spec.index_coding(),
    };
    let id = Identity {
        key: p.key,
        uid: p.uid,
        run_id: spec.name.clone(),
        run_hash: spec.hash(),
    };
    let saved = match p.role {
        Role::Validator => saved_state(env.local.as_ref(), &id)?,
        Role::Miner => None,
    };
    let shared = Arc::new(Shared::new(
        env,
        id,
        run,
        layout,
        trainer.as_ref(),
        p.parallel_io,
    )?);
    let compute = Compute::new(shared.clone(), trainer);
    let cfg = NodeConfig {
        params: p.params,
        uid: p.uid,
        seed: spec.seed,
        until_window: p.until_window,
        keep_windows: spec.keep_windows,
        checkpoint_every: spec.checkpoint_every,
        overlap: spec.overlap,
    };
    let driver: Box<dyn Driver + Send> = match p.role {
        Role::Miner => Box::new(Miner::new(cfg)),
        Role::Validator => Box::new(Validator::new(cfg, saved)),
    };
    Ok(Node {
        driver,
        compute,
        shared,
    })
}

/// A validator's Gauntlet saved by an earlier run on this disk, if any.
fn saved_state(local: &dyn ObjectStore, id: &Identity) -> Result<Option<Gauntlet>, SetupError> {
    let bytes = match local.get(STATE_KEY, MAX_STATE_BYTES) {
        Ok((_, b)) => b,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SetupError::StateStore(e)),
    };
    let st: SavedState = serde_json::from_slice(&bytes).map_err(SetupError::StateUnreadable)?;
    if st.run != id.run_id || st.uid != id.uid {
        return Err(SetupError::StateMismatch {
            run: st.run,
            uid: st.uid,
            expected_run: id.run_id.clone(),
            expected_uid: id.uid,
        });
    }
    Ok(Some(st.gauntlet))
}

/// Options of `covenant miner` and `covenant validator`.
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
    /// Stop after this window; `None`: run until killed.
    pub until_window: Option<u64>,
    /// libtorch threads.
    pub threads: usize,
    /// Test-only behaviour of a miner (`honest` unless testing defences).
    pub behaviour: Behaviour,
    /// The chain: `None` for the run directory's embedded ledger, or an EVM chain (then
    /// `run_dir` is only this node's working directory and `store` is required).
    pub chain: Option<crate::evm::Endpoint>,
    /// What a validator on an EVM chain stakes if its stake does not count yet (wei; default:
    /// the contract's minimum).
    pub stake_wei: Option<u128>,
    /// Serve Prometheus metrics here (`None`: no endpoint; docs/METRICS.md).
    pub metrics: Option<std::net::SocketAddr>,
}

/// A real node opened from its run directory, with the I/O runtime it needs.
pub struct Opened {
    pub node: Node,
    pub rt: tokio::runtime::Runtime,
}

/// Opens a node of a run directory: the run spec, the chain ledger, its key (registering it and
/// committing its bucket), its stores, the data and the model.
pub fn open(opts: &NodeOptions, role: Role) -> anyhow::Result<Opened> {
    let key = load_or_create_key(&opts.key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let (spec, chain): (RunSpec, Arc<dyn Chain>) = match &opts.chain {
        None => (
            RunSpec::read(&opts.run_dir.join("run.json"))?,
            Arc::new(
                covenant_net::Ledger::open(&opts.run_dir.join("chain"))
                    .context("opening the run's chain")?,
            ),
        ),
        Some(ep) => {
            ensure!(
                opts.store.is_some(),
                "--store is required with --chain: the other nodes read this node's uploads there"
            );
            crate::evm::connect(ep, &key, role, opts.stake_wei, rt.handle())?
        }
    };
    let params = spec.params_for(chain.genesis())?;
    let node_dir = opts.run_dir.join("nodes").join(&opts.name);
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("creating {}", node_dir.display()))?;
    let log = crate::log::EventLog::open(&node_dir.join("events.jsonl"), role.name(), &opts.name)
        .with_context(|| {
            format!(
                "opening the event log {}",
                node_dir.join("events.jsonl").display()
            )
        })?
        .with_join_progress(params.schedule());
    let sink = with_metrics(Arc::new(log), opts, role, &node_dir, &chain, rt.handle())?;
    let store_url = opts
        .store
        .clone()
        .unwrap_or_else(|| crate::network::default_store_url(&opts.run_dir, &opts.name));
    let stores = Arc::new(NetStores::new(rt.handle().clone()));
    let own: Arc<dyn ObjectStore> = Arc::new(NetStore::new(
        covenant_net::Store::open(&store_url)
            .with_context(|| format!("opening own store {store_url}"))?,
        rt.handle().clone(),
    ));
    let local: Arc<dyn ObjectStore> = Arc::new(crate::env::LocalDisk::new(&node_dir));
    let faucet = match opts.chain {
        None => crate::network::faucet(&opts.run_dir)?,
        Some(_) => None,
    };
    let uid = register(chain.as_ref(), &key, &store_url, faucet.as_ref())?;
    let data = Arc::new(open_data(&spec, &opts.run_dir)?);
    covenant_model::set_num_threads(opts.threads.max(1));
    let cfg = spec.model_config(data.vocab_size() as usize)?;
    ensure!(
        data.seq_len() as usize <= cfg.max_seq_len,
        "the data's sequence length {} exceeds preset {}'s {}",
        data.seq_len(),
        spec.preset,
        cfg.max_seq_len
    );
    let model = covenant_model::Trainer::new(
        cfg,
        spec.optim_config(),
        spec.seed,
        covenant_model::DeviceChoice::Auto,
    )?;
    let trainer = Box::new(crate::model_trainer::ModelTrainer::new(
        model, data, spec.batch,
    ));
    let env = Env {
        clock: Arc::new(crate::env::SystemClock),
        chain,
        stores,
        own,
        local,
        sink,
    };
    let node = assemble(Parts {
        spec: &spec,
        params,
        role,
        key,
        uid,
        env,
        trainer,
        behaviour: opts.behaviour,
        until_window: opts.until_window,
        parallel_io: true,
    })?;
    Ok(Opened { node, rt })
}

/// The event log, and with `--metrics` the metrics beside it: the endpoint is served on `rt`
/// and its address written to `<node dir>/metrics.addr` and printed.
fn with_metrics(
    log: Arc<dyn EventSink>,
    opts: &NodeOptions,
    role: Role,
    node_dir: &Path,
    chain: &Arc<dyn Chain>,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<Arc<dyn EventSink>> {
    let Some(addr) = opts.metrics else {
        return Ok(log);
    };
    let metrics = Arc::new(crate::metrics::Metrics::new(role, &opts.name));
    let file = node_dir.join("metrics.addr");
    let bound = crate::metrics::start(addr, metrics.clone(), chain.clone(), rt, &file)
        .with_context(|| format!("--metrics {addr}"))?;
    crate::log::stderr_line(&format!(
        "[{} {}] metrics at http://{bound}/metrics",
        role.name(),
        opts.name
    ));
    Ok(Arc::new(crate::log::Fanout(vec![log, metrics])))
}

/// How often `register` signs a transaction again after losing a nonce race.
const NONCE_RETRIES: u32 = 16;

/// Registers `key` (if needed) and commits `bucket_url`; returns the uid. A registration burns
/// `Genesis::registration_burn`; when the key holds less, `funder` (a local network's faucet)
/// pays the difference first, and without one the error says what is missing.
pub fn register(
    chain: &dyn Chain,
    key: &Keypair,
    bucket_url: &str,
    funder: Option<&Keypair>,
) -> anyhow::Result<Uid> {
    use covenant_net::{ChainError, Rejection, Transaction, TxBody};
    let run = chain.genesis().run_id.clone();
    // A key may be shared by processes that start together (every local node funds itself
    // from the one faucet key): a nonce another process used first is refused as a replay,
    // which changes nothing on the chain, so the transaction is signed again with the next
    // nonce, a bounded number of times.
    let send = |k: &Keypair, body: TxBody| -> Result<covenant_net::chain::Receipt, ChainError> {
        let mut tries = 0;
        loop {
            let nonce = chain.next_nonce(&k.public())?;
            match chain.submit(&Transaction::sign(k, &run, nonce, body.clone())) {
                Err(ChainError::Rejected(Rejection::Replay { .. })) if tries < NONCE_RETRIES => {
                    tries += 1
                }
                r => return r,
            }
        }
    };
    let mut r = send(key, TxBody::Register);
    if let (
        Err(ChainError::Rejected(Rejection::InsufficientBalance { needed, balance })),
        Some(f),
    ) = (&r, funder)
    {
        let to = key.public();
        send(
            f,
            TxBody::Transfer {
                to,
                // The chain's own figures, but never trusted to be consistent: a chain that
                // says "short" with enough balance gets a transfer of 0, refused as malformed.
                amount: needed.saturating_sub(*balance),
            },
        )
        .map_err(|e| anyhow!("funding the registration from the faucet: {e}"))?;
        r = send(key, TxBody::Register);
    }
    match r {
        Ok(_) | Err(ChainError::Rejected(Rejection::AlreadyRegistered(_))) => {}
        Err(ChainError::Rejected(e @ Rejection::InsufficientBalance { .. })) => {
            return Err(anyhow!(
                "registering key {} on the chain: {e}; fund it (embedded ledger: `covenant chain transfer`; EVM chain: send to its account, `covenant chain account --key`)",
                key.public()
            ))
        }
        Err(e) => return Err(anyhow!("registering on the chain: {e}")),
    }
    let r = send(
        key,
        TxBody::Commit {
            bucket_url: bucket_url.to_string(),
            read_credentials: String::new(),
        },
    )
    .map_err(|e| anyhow!("committing the bucket: {e}"))?;
    r.uid.ok_or_else(|| anyhow!("the chain gave no uid"))
}

pub fn load_or_create_key(path: &Path) -> anyhow::Result<Keypair> {
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

/// The run's prepared data (the bundled corpus is prepared on first use).
pub fn open_data(spec: &RunSpec, run_dir: &Path) -> anyhow::Result<Dataset> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use covenant_net::chain::Receipt;
    use covenant_net::{
        Balance, ChainError, Genesis, Ledger, Metagraph, PublicKey, Snapshot, Transaction, TxBody,
        VirtualClock,
    };

    use super::*;

    fn chain(faucet: &Keypair) -> Ledger {
        let genesis = Genesis {
            run_id: "run".into(),
            genesis_time_ms: 0,
            block_time_ms: 1000,
            blocks_per_window: 20,
            max_uids: 8,
            immunity_blocks: 0,
            validators: vec![],
            kappa: 0.5,
            registration_burn: 7,
            balances: vec![Balance {
                key: faucet.public(),
                amount: 10,
            }],
        };
        Ledger::in_memory(&genesis, Arc::new(VirtualClock::new(0))).unwrap()
    }

    #[test]
    fn a_key_that_cannot_pay_the_burn_is_funded_by_the_faucet_or_told_how() {
        let faucet = Keypair::from_seed([3; 32]);
        let c = chain(&faucet);
        let key = Keypair::from_seed([4; 32]);
        let e = register(&c, &key, "mem://a", None).unwrap_err().to_string();
        assert!(
            e.contains("balance 0 is below the 7") && e.contains("covenant chain transfer"),
            "{e}"
        );
        assert_eq!(register(&c, &key, "mem://a", Some(&faucet)).unwrap(), 0);
        assert_eq!(c.balance(&faucet.public()).unwrap(), 3);
        assert_eq!(c.balance(&key.public()).unwrap(), 0);
        // Registered already: nothing more is paid.
        assert_eq!(register(&c, &key, "mem://b", Some(&faucet)).unwrap(), 0);
        assert_eq!(c.balance(&faucet.public()).unwrap(), 3);
        // The faucet runs dry: the error names the faucet.
        let other = Keypair::from_seed([5; 32]);
        let e = register(&c, &other, "mem://c", Some(&faucet))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("funding the registration from the faucet"),
            "{e}"
        );
    }

    /// A chain on which another process spends the faucet's next nonce between the moment
    /// `register` reads it and the moment it submits (local nodes start together and share
    /// the faucet key).
    struct Racing {
        inner: Ledger,
        faucet: Keypair,
        races: std::sync::Mutex<u32>,
    }

    impl Chain for Racing {
        fn genesis(&self) -> &Genesis {
            self.inner.genesis()
        }
        fn block(&self) -> u64 {
            self.inner.block()
        }
        fn balance(&self, key: &PublicKey) -> Result<u64, ChainError> {
            self.inner.balance(key)
        }
        fn next_nonce(&self, key: &PublicKey) -> Result<u64, ChainError> {
            let nonce = self.inner.next_nonce(key)?;
            let mut races = self.races.lock().unwrap();
            if *key == self.faucet.public() && *races > 0 {
                *races -= 1;
                let other = Keypair::from_seed([9; 32]).public();
                let body = TxBody::Transfer {
                    to: other,
                    amount: 1,
                };
                let run = self.genesis().run_id.clone();
                self.inner
                    .submit(&Transaction::sign(&self.faucet, &run, nonce, body))?;
            }
            Ok(nonce)
        }
        fn submit(&self, tx: &Transaction) -> Result<Receipt, ChainError> {
            self.inner.submit(tx)
        }
        fn metagraph(&self) -> Result<Metagraph, ChainError> {
            self.inner.metagraph()
        }
        fn snapshot(&self, block: u64) -> Result<Snapshot, ChainError> {
            self.inner.snapshot(block)
        }
    }

    #[test]
    fn a_faucet_nonce_taken_by_another_process_is_retried() {
        let faucet = Keypair::from_seed([3; 32]);
        let c = Racing {
            inner: chain(&faucet),
            faucet: faucet.clone(),
            races: std::sync::Mutex::new(2),
        };
        let key = Keypair::from_seed([4; 32]);
        assert_eq!(register(&c, &key, "mem://a", Some(&faucet)).unwrap(), 0);
        // Two racing transfers of 1 and the burn of 7: the faucet's 10 are spent.
        assert_eq!(c.balance(&faucet.public()).unwrap(), 1);
        assert_eq!(*c.races.lock().unwrap(), 0);
    }
}
