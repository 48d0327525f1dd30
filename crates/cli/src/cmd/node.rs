//! `covenant miner`, `covenant validator` and `covenant network init`: the processes of a
//! network (crate `covenant-node`, docs/NODES.md).

use std::path::PathBuf;

use anyhow::{Context, Result};
use covenant_node::evm as network_evm;
use covenant_node::network::{self, NetworkTiming};
use covenant_node::{Behaviour, NodeOptions, Role, RunSpec};

#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Run directory (from `covenant network init`): run.json, chain/, keys/, store/, nodes/.
    /// With --chain: this node's own working directory (nodes/, the data cache; default: the
    /// current directory).
    #[arg(long, required_unless_present = "chain")]
    pub run: Option<PathBuf>,
    /// An EVM chain's JSON-RPC URL (with --contract): join the network whose `Subnet` contract
    /// is there, sharing nothing but the chain and object storage. Default: the run
    /// directory's embedded ledger.
    #[arg(long, requires = "contract")]
    pub chain: Option<String>,
    /// The `Subnet` contract's address on --chain.
    #[arg(long, requires = "chain")]
    pub contract: Option<String>,
    /// A validator on --chain whose stake does not count yet stakes this much (ETH; default:
    /// the contract's minimum).
    #[arg(long)]
    pub stake: Option<f64>,
    /// Node name (its directory under <run>/nodes/ and default bucket <run>/store/<name>;
    /// default with --chain: `node`).
    #[arg(long, required_unless_present = "chain")]
    pub name: Option<String>,
    /// Key file; created if missing. Default: <run>/keys/<name>.key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Own bucket: s3://bucket/prefix (connection from COVENANT_S3_CONFIG / AWS_* variables), file:///dir or
    /// a directory. Default: <run>/store/<name>.
    #[arg(long)]
    pub store: Option<String>,
    /// Stop after this window; default: run until stopped.
    #[arg(long)]
    pub until_window: Option<u64>,
    /// CPU threads for libtorch.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100; port 0: any free
    /// port, written to <run>/nodes/<name>/metrics.addr). Off by default; docs/METRICS.md.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MinerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Test-only misbehaviour, to exercise the defences (docs/SECURITY.md lists them).
    #[arg(long, default_value = "honest", hide = true)]
    pub behaviour: Behaviour,
}

impl NodeArgs {
    pub fn options(&self, behaviour: Behaviour) -> NodeOptions {
        // clap requires --run and --name unless --chain is given.
        let run = self.run.clone().unwrap_or_else(|| PathBuf::from("."));
        let name = self.name.clone().unwrap_or_else(|| "node".into());
        NodeOptions {
            key: self
                .key
                .clone()
                .unwrap_or_else(|| network::key_path(&run, &name)),
            run_dir: run,
            name,
            store: self.store.clone(),
            until_window: self.until_window,
            threads: self.threads,
            behaviour,
            chain: self.chain.as_ref().map(|url| network_evm::Endpoint {
                url: url.clone(),
                contract: self.contract.clone().unwrap_or_default(),
            }),
            stake_wei: self.stake.map(eth_to_wei),
            metrics: self.metrics,
        }
    }
}

/// ETH (a decimal) in wei, rounded down; negative or non-finite amounts are 0.
pub fn eth_to_wei(eth: f64) -> u128 {
    if eth.is_finite() && eth > 0.0 {
        (eth * 1e18) as u128
    } else {
        0
    }
}

pub fn miner(a: MinerArgs) -> Result<()> {
    covenant_node::real::run(a.node.options(a.behaviour), Role::Miner)
}

pub fn validator(a: NodeArgs) -> Result<()> {
    covenant_node::real::run(a.options(Behaviour::Honest), Role::Validator)
}

#[derive(clap::Subcommand)]
pub enum NetworkCommand {
    /// Create a run directory: run.json, the embedded chain and the validators' keys.
    Init(InitArgs),
    /// Start a network on an EVM chain: publish the run spec and deploy its `Subnet` contract.
    /// Nodes then join with `--chain URL --contract ADDR`, sharing nothing else.
    Create(CreateArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// The chain's JSON-RPC URL (anvil: http://127.0.0.1:8545).
    #[arg(long)]
    pub chain: String,
    /// Directory to write run.json and network.json (the contract's address) to.
    #[arg(long)]
    pub out: PathBuf,
    /// Where nodes fetch the run spec: a store URL (s3://bucket/prefix, file:///dir) that
    /// every node can read; the spec is its run.json.
    #[arg(long)]
    pub spec_store: String,
    /// The deployer's key file (created if missing); its account pays for the deployment.
    #[arg(long)]
    pub key: PathBuf,
    /// On a local development chain (anvil), add this much ETH to the deployer first.
    #[arg(long)]
    pub dev_fund: Option<f64>,
    /// Uid slots.
    #[arg(long, default_value_t = 256)]
    pub max_uids: u16,
    /// Windows after registration during which a uid cannot be replaced.
    #[arg(long, default_value_t = 100)]
    pub immunity_windows: u64,
    /// ETH burned by every registration.
    #[arg(long, default_value_t = 0.001)]
    pub registration_burn: f64,
    /// Least ETH staked that makes an account a validator.
    #[arg(long, default_value_t = 1.0)]
    pub min_stake: f64,
    /// ETH paid out of the emission pool per epoch (one window), by the consensus weights.
    #[arg(long, default_value_t = 1.0)]
    pub emission: f64,
    #[command(flatten)]
    pub spec: SpecArgs,
}

pub fn create(a: &CreateArgs) -> Result<()> {
    let mut spec = spec_of(&a.spec);
    spec.params.block_time_ms = 1_000;
    spec.params.blocks_per_window = a.spec.window_secs;
    let blocks = a.spec.window_secs;
    let creation = network_evm::Creation {
        url: a.chain.clone(),
        spec_store: a.spec_store.clone(),
        netuid: 1,
        max_uids: a.max_uids,
        immunity_blocks: a.immunity_windows.saturating_mul(blocks),
        registration_burn_wei: eth_to_wei(a.registration_burn),
        min_validator_stake_wei: eth_to_wei(a.min_stake),
        unstake_delay_blocks: 10 * blocks,
        epoch_blocks: blocks,
        emission_per_epoch_wei: eth_to_wei(a.emission),
    };
    let key = covenant_node::setup::load_or_create_key(&a.key)?;
    let rt = tokio::runtime::Runtime::new()?;
    let address = network_evm::create(
        &spec,
        &creation,
        &key,
        a.dev_fund.map(eth_to_wei),
        rt.handle(),
    )?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    spec.write(&a.out.join("run.json"))?;
    let network = serde_json::json!({
        "chain": a.chain,
        "contract": address.to_string(),
        "spec_store": a.spec_store,
        "spec_hash": covenant_net::hex::encode(&spec.hash()),
    });
    covenant_node::spec::write_atomic(
        &a.out.join("network.json"),
        serde_json::to_string_pretty(&network)?.as_bytes(),
    )?;
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout().lock(),
        "created run {} on {}: contract {address}\njoin with: covenant miner|validator --chain {} --contract {address} --key KEY --store URL",
        spec.name,
        a.chain,
        a.chain
    );
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Run directory to create (must not exist or be empty).
    #[arg(long)]
    pub run: PathBuf,
    /// Validators (their keys are created under <run>/keys/).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Window 0 starts this many seconds from now.
    #[arg(long, default_value_t = 20)]
    pub start_in: u64,
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// The run spec's settings, shared by `network init` and `network create`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpecArgs {
    /// Run name (the chain's run id).
    #[arg(long, default_value = "local")]
    pub name: String,
    /// Model preset.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Window length in seconds (1-second blocks).
    #[arg(long, default_value_t = 20)]
    pub window_secs: u64,
    /// Upload grace period in seconds.
    #[arg(long, default_value_t = 5)]
    pub grace_secs: u64,
    /// Inner steps per window (H).
    #[arg(long, default_value_t = 8)]
    pub inner_steps: u32,
    /// Sequences per inner step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Validators publish a checkpoint every this many windows.
    #[arg(long, default_value_t = 5)]
    pub checkpoint_every: u64,
    /// Miners train the next window while the last one is gathered (docs/NODES.md, "Overlap").
    #[arg(long)]
    pub overlap: bool,
    /// Switch off the validators' own-data check (which zeroes miners whose updates do not
    /// favour their assigned data; docs/NODES.md).
    #[arg(long)]
    pub no_own_data_check: bool,
    /// Miners send 12-bit packed indices, as the reference, instead of Rice-coded ones
    /// (docs/WIRE.md; Rice: about 1.4× fewer bytes).
    #[arg(long)]
    pub packed_indices: bool,
}

pub fn spec_of(a: &SpecArgs) -> RunSpec {
    let mut s = RunSpec::local(&a.name, &a.preset);
    s.params.inner_steps = a.inner_steps;
    s.params.grace_ms = a.grace_secs * 1000;
    s.batch = a.batch;
    s.checkpoint_every = a.checkpoint_every;
    s.overlap = a.overlap;
    s.params.own_data_check = !a.no_own_data_check;
    if a.packed_indices {
        s.indices = covenant_node::Indices::Packed;
    }
    s.keep_windows = s.keep_windows.max(a.checkpoint_every + 3);
    s
}

pub fn init(a: &InitArgs) -> Result<()> {
    let spec = spec_of(&a.spec);
    let g = network::init(
        &a.run,
        &spec,
        a.validators,
        &NetworkTiming {
            block_ms: 1000,
            blocks_per_window: a.spec.window_secs,
            start_in_ms: a.start_in * 1000,
        },
    )?;
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout().lock(),
        "created {} (run {}, {} validator(s), {}-s windows, window 0 starts in {} s)",
        a.run.display(),
        g.run_id,
        a.validators,
        a.spec.window_secs,
        a.start_in
    );
    Ok(())
}

pub fn network(c: NetworkCommand) -> Result<()> {
    match c {
        NetworkCommand::Init(a) => init(&a),
        NetworkCommand::Create(a) => create(&a),
    }
}
