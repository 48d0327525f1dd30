//! `covenant miner`, `covenant validator` and `covenant network init`: the processes of a
//! network (crate `covenant-node`, docs/NODES.md).

use std::path::PathBuf;

use anyhow::Result;
use covenant_node::network::{self, NetworkTiming};
use covenant_node::{Behaviour, NodeOptions, Role, RunSpec};

#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Run directory (from `covenant network init`): run.json, chain/, keys/, store/, nodes/.
    #[arg(long)]
    pub run: PathBuf,
    /// Node name (its directory under <run>/nodes/ and default bucket <run>/store/<name>).
    #[arg(long)]
    pub name: String,
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
        NodeOptions {
            run_dir: self.run.clone(),
            name: self.name.clone(),
            key: self
                .key
                .clone()
                .unwrap_or_else(|| network::key_path(&self.run, &self.name)),
            store: self.store.clone(),
            until_window: self.until_window,
            threads: self.threads,
            behaviour,
        }
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
}

#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Run directory to create (must not exist or be empty).
    #[arg(long)]
    pub run: PathBuf,
    /// Run name (the chain's run id).
    #[arg(long, default_value = "local")]
    pub name: String,
    /// Model preset.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Validators (their keys are created under <run>/keys/).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Window length in seconds (1-second blocks).
    #[arg(long, default_value_t = 20)]
    pub window_secs: u64,
    /// Upload grace period in seconds.
    #[arg(long, default_value_t = 5)]
    pub grace_secs: u64,
    /// Window 0 starts this many seconds from now.
    #[arg(long, default_value_t = 20)]
    pub start_in: u64,
    /// Inner steps per window (H).
    #[arg(long, default_value_t = 8)]
    pub inner_steps: u32,
    /// Sequences per inner step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Validators publish a checkpoint every this many windows.
    #[arg(long, default_value_t = 5)]
    pub checkpoint_every: u64,
    /// Miners train the next window while the last one is gathered (see docs/NODES.md).
    #[arg(long)]
    pub overlap: bool,
    /// Switch off the validators' own-data check (which zeroes miners whose updates do not
    /// favour their assigned data; docs/NODES.md).
    #[arg(long)]
    pub no_own_data_check: bool,
}

pub fn spec_of(a: &InitArgs) -> RunSpec {
    let mut s = RunSpec::local(&a.name, &a.preset);
    s.params.inner_steps = a.inner_steps;
    s.params.grace_ms = a.grace_secs * 1000;
    s.batch = a.batch;
    s.checkpoint_every = a.checkpoint_every;
    s.overlap = a.overlap;
    s.params.own_data_check = !a.no_own_data_check;
    s.keep_windows = s.keep_windows.max(a.checkpoint_every + 3);
    s
}

pub fn init(a: &InitArgs) -> Result<()> {
    let spec = spec_of(a);
    let g = network::init(
        &a.run,
        &spec,
        a.validators,
        &NetworkTiming {
            block_ms: 1000,
            blocks_per_window: a.window_secs,
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
        a.window_secs,
        a.start_in
    );
    Ok(())
}

pub fn network(c: NetworkCommand) -> Result<()> {
    match c {
        NetworkCommand::Init(a) => init(&a),
    }
}
