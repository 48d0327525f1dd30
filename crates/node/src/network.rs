//! Creating a local network's run directory: `run.json`, the embedded chain (genesis with the
//! validators' stakes) and the validators' keys.
//!
//! ```text
//! <run>/run.json            the run spec every node reads
//! <run>/chain/              the embedded ledger (SQLite, shared by the processes)
//! <run>/keys/<name>.key     node keys (validators' created here; miners create their own)
//! <run>/store/<name>/       each node's bucket when no --store is given
//! <run>/nodes/<name>/       each node's events.jsonl, log and state
//! ```

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use covenant_net::chain::ValidatorStake;
use covenant_net::{Balance, Genesis, Keypair, Ledger};

use crate::spec::RunSpec;

/// Timing of a local network.
#[derive(Debug, Clone)]
pub struct NetworkTiming {
    pub block_ms: u64,
    pub blocks_per_window: u64,
    /// Window 0 starts this long after `init` (time for the nodes to start and register).
    pub start_in_ms: u64,
}

pub fn validator_name(i: usize) -> String {
    format!("validator-{}", i + 1)
}

pub fn miner_name(i: usize) -> String {
    format!("miner-{}", i + 1)
}

pub fn key_path(run: &Path, name: &str) -> PathBuf {
    run.join("keys").join(format!("{name}.key"))
}

/// What a registration burns on a local network (one token).
pub const LOCAL_REGISTRATION_BURN: u64 = covenant_net::chain::TOKEN;
/// The local faucet's genesis balance: enough for 10,000 registrations. Local nodes whose key
/// cannot pay the burn are funded from it (`setup::register`); on a real chain nobody is.
pub const LOCAL_FAUCET: u64 = 10_000 * LOCAL_REGISTRATION_BURN;
const FAUCET: &str = "faucet";

/// The local faucet's key, if this run directory has one.
pub fn faucet(run: &Path) -> Result<Option<Keypair>> {
    let p = key_path(run, FAUCET);
    if !p.exists() {
        return Ok(None);
    }
    Keypair::load(&p)
        .map(Some)
        .with_context(|| format!("loading the faucet key {}", p.display()))
}

/// The bucket a node uses when no `--store` is given: `<run>/store/<name>`.
pub fn default_store_url(run: &Path, name: &str) -> String {
    run.join("store").join(name).display().to_string()
}

/// Registers the named nodes on the run's chain in the given order, each with its key at the
/// default path (created if missing) and its bucket committed, so that their uids follow that
/// order instead of the race of process start-ups. `covenant demo` and `covenant scenario` do
/// this, so the same node gets the same uid, and hence the same data pools, in every run.
/// Returns the uids. A node started later finds itself registered and carries on.
pub fn preregister(run: &Path, nodes: &[(String, String)]) -> Result<Vec<covenant_core::Uid>> {
    let chain = Ledger::open(&run.join("chain")).context("opening the run's chain")?;
    let faucet = faucet(run)?;
    nodes
        .iter()
        .map(|(name, store_url)| {
            let key = crate::setup::load_or_create_key(&key_path(run, name))
                .with_context(|| format!("the key of {name}"))?;
            crate::setup::register(&chain, &key, store_url, faucet.as_ref())
                .with_context(|| format!("registering {name}"))
        })
        .collect()
}

/// Creates the run directory (which must not exist or be empty). If a write fails (full disk,
/// no permission), the error names the file and the OS error, and what was created is removed
/// again so that the same command can be run once the problem is fixed.
pub fn init(
    run: &Path,
    spec: &RunSpec,
    validators: usize,
    timing: &NetworkTiming,
) -> Result<Genesis> {
    spec.validate()?;
    ensure!(validators >= 1, "a network needs at least one validator");
    ensure!(
        timing.block_ms >= 1 && timing.blocks_per_window >= 1,
        "block time and window length must be positive"
    );
    let existed = run.exists();
    if existed {
        let empty = std::fs::read_dir(run)
            .with_context(|| format!("reading {}", run.display()))?
            .next()
            .is_none();
        ensure!(empty, "{} already exists and is not empty", run.display());
    }
    let r = create(run, spec, validators, timing);
    if r.is_err() {
        // Only what this call created: the directory was missing or empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(run) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(run);
        }
    }
    r
}

fn create(
    run: &Path,
    spec: &RunSpec,
    validators: usize,
    timing: &NetworkTiming,
) -> Result<Genesis> {
    let keys = run.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let mut stakes = Vec::new();
    for i in 0..validators {
        let k = Keypair::generate()?;
        let name = validator_name(i);
        k.save(&key_path(run, &name), false)
            .with_context(|| format!("creating {name}'s key"))?;
        stakes.push(ValidatorStake {
            key: k.public(),
            stake: 1_000,
        });
    }
    let faucet = Keypair::generate()?;
    faucet
        .save(&key_path(run, FAUCET), false)
        .context("creating the faucet's key")?;
    let genesis = Genesis {
        run_id: spec.name.clone(),
        // On a whole second: S3 timestamps have whole-second resolution, so window starts must
        // fall on whole seconds for an upload just after one to count as on time.
        genesis_time_ms: (crate::now_ms() + timing.start_in_ms).div_ceil(1000) * 1000,
        block_time_ms: timing.block_ms,
        blocks_per_window: timing.blocks_per_window,
        max_uids: 256,
        immunity_blocks: 100 * timing.blocks_per_window,
        validators: stakes,
        kappa: 0.5,
        registration_burn: LOCAL_REGISTRATION_BURN,
        balances: vec![Balance {
            key: faucet.public(),
            amount: LOCAL_FAUCET,
        }],
    };
    spec.params_for(&genesis)?;
    let chain = run.join("chain");
    Ledger::init(&chain, &genesis)
        .with_context(|| format!("creating the chain ledger in {}", chain.display()))?;
    spec.write(&run.join("run.json"))?;
    Ok(genesis)
}
