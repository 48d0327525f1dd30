//! `covenant demo --chain anvil`: the demo's network on a local EVM node. Starts anvil (1-s
//! blocks), publishes the run spec and deploys the `Subnet` contract, funds every node's
//! account from anvil's faucet and registers the nodes in name order (validators stake first);
//! the nodes then join by the contract's address, as on separate machines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use covenant_evm::alloy::primitives::U256;
use covenant_net::{Chain, Genesis};
use covenant_node::evm::{self as node_evm, Creation, Endpoint, ETH};
use covenant_node::network;
use covenant_node::{Role, RunSpec};

/// The anvil process, stopped when dropped.
struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local anvil with the run's contract; anvil is stopped when this is dropped.
pub struct LocalChain {
    _anvil: Anvil,
    pub endpoint: Endpoint,
    pub genesis: Genesis,
    /// The chain as a watcher sees it (its own key, sending nothing).
    pub chain: Arc<dyn Chain>,
}

impl LocalChain {
    /// What a node process is started with to join this chain.
    pub fn node_args(&self) -> Vec<String> {
        vec![
            "--chain".into(),
            self.endpoint.url.clone(),
            "--contract".into(),
            self.endpoint.contract.clone(),
        ]
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn spawn_anvil(out: &Path, port: u16) -> Result<Child> {
    let bin = covenant_evm::tools::anvil()?;
    let log_path = out.join("anvil.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--block-time", "1", "--silent"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting anvil ({})", bin.display()))?;
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < end,
            "anvil did not listen on port {port} within 20 s (see {})",
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

/// Starts anvil, deploys the run and registers `nodes` (name, store URL, role) in order.
pub fn start(out: &Path, spec: &RunSpec, nodes: &[(String, String, Role)]) -> Result<LocalChain> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let port = free_port()?;
    let anvil = Anvil(spawn_anvil(out, port)?);
    let url = format!("http://127.0.0.1:{port}");
    let blocks = spec.params.blocks_per_window;
    let spec_store: PathBuf = out.join("store").join("spec");
    let creation = Creation {
        url: url.clone(),
        spec_store: spec_store.display().to_string(),
        netuid: 1,
        max_uids: 256,
        immunity_blocks: 100 * blocks,
        registration_burn_wei: ETH / 1000,
        min_validator_stake_wei: ETH,
        unstake_delay_blocks: 10 * blocks,
        epoch_blocks: blocks,
        emission_per_epoch_wei: 0,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let deployer = covenant_node::setup::load_or_create_key(&network::key_path(out, "deployer"))?;
    let address = node_evm::create(spec, &creation, &deployer, Some(100 * ETH), rt.handle())?;
    let endpoint = Endpoint {
        url: url.clone(),
        contract: address.to_string(),
    };
    spec.write(&out.join("run.json"))?;
    let provider = covenant_evm::connect(url.parse()?, covenant_evm::evm_signer(&deployer)?);
    for (name, store, role) in nodes {
        let key = covenant_node::setup::load_or_create_key(&network::key_path(out, name))
            .with_context(|| format!("the key of {name}"))?;
        let account = covenant_evm::evm_signer(&key)?.address();
        rt.block_on(covenant_evm::fund_on_dev_chain(
            &provider,
            account,
            U256::from(10 * ETH),
        ))?;
        let (_, c): (RunSpec, Arc<dyn Chain>) =
            node_evm::connect(&endpoint, &key, *role, None, rt.handle())
                .with_context(|| format!("{name} joining the chain"))?;
        covenant_node::setup::register(c.as_ref(), &key, store, None)
            .with_context(|| format!("registering {name}"))?;
    }
    let reader = covenant_node::setup::load_or_create_key(&network::key_path(out, "watcher"))?;
    let (_, c) = node_evm::connect(&endpoint, &reader, Role::Miner, None, rt.handle())?;
    Ok(LocalChain {
        _anvil: anvil,
        endpoint,
        genesis: c.genesis().clone(),
        chain: c,
    })
}
