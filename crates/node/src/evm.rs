//! Taking part in a network whose chain is the `Subnet` contract on an EVM node: nothing is
//! shared but the chain and object storage. The contract names the run spec (its URL and
//! hash); a node fetches it, checks the hash, and connects as its own key's account
//! ([`covenant_evm::EvmChain`]). `covenant network create --chain` deploys the contract and
//! publishes the spec ([`create`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use covenant_evm::alloy::primitives::{Address, FixedBytes, U256};
use covenant_evm::{EvmChain, EvmOptions, Patience, Subnet};
use covenant_net::{Chain, Keypair};

use crate::env::{NetStore, ObjectStore};
use crate::setup::Role;
use crate::spec::{RunSpec, MAX_SPEC_BYTES};

/// The object the run spec is published as, under the contract's `specUrl` (a store URL).
pub const SPEC_KEY: &str = "run.json";
/// Wei per ETH.
pub const ETH: u128 = 1_000_000_000_000_000_000;

/// Where a network's chain is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// JSON-RPC URL (http://…).
    pub url: String,
    /// The `Subnet` contract's address (0x…).
    pub contract: String,
}

impl Endpoint {
    fn parsed(&self) -> Result<(covenant_evm::alloy::transports::http::reqwest::Url, Address)> {
        let url = self
            .url
            .parse()
            .with_context(|| format!("--chain {:?} is not a URL", self.url))?;
        let contract = self.contract.parse().with_context(|| {
            format!(
                "--contract {:?} is not an address (0x and 40 hex digits)",
                self.contract
            )
        })?;
        Ok((url, contract))
    }
}

/// A node's chain and the run it serves: the contract's run spec, fetched and checked against
/// the hash the contract holds. A validator without counting stake stakes `stake_wei` (default:
/// the contract's minimum) first.
pub fn connect(
    ep: &Endpoint,
    key: &Keypair,
    role: Role,
    stake_wei: Option<u128>,
    rt: &tokio::runtime::Handle,
) -> Result<(RunSpec, Arc<dyn Chain>)> {
    let (url, contract) = ep.parsed()?;
    let roots = covenant_evm::tls_roots_from_env()?;
    // The spec's block time is not on the contract: the client gets it once the spec is read.
    let chain = EvmChain::connect(options(url, contract, key, 1_000, &roots))
        .with_context(|| format!("connecting to the chain at {}", ep.url))?;
    let spec = fetch_spec(chain.config(), rt)?;
    let mut chain = chain.with_block_time(spec.params.block_time_ms)?;
    if role == Role::Validator && chain.own_stake()? == 0 {
        let wei = stake_wei
            .map(U256::from)
            .unwrap_or(chain.config().minValidatorStake);
        chain.stake(wei).with_context(|| {
            format!(
                "staking {} wei from account {} (fund it first)",
                wei,
                chain.account()
            )
        })?;
    }
    Ok((spec, Arc::new(chain)))
}

fn options(
    url: covenant_evm::alloy::transports::http::reqwest::Url,
    contract: Address,
    key: &Keypair,
    block_time_ms: u64,
    tls_roots: &[Vec<u8>],
) -> EvmOptions {
    EvmOptions {
        url,
        contract,
        key: key.clone(),
        block_time_ms,
        patience: Patience::default(),
        tls_roots: tls_roots.to_vec(),
    }
}

/// The run spec the contract names, refused unless its hash is the contract's.
pub fn fetch_spec(config: &Subnet::Config, rt: &tokio::runtime::Handle) -> Result<RunSpec> {
    ensure!(
        !config.specUrl.is_empty(),
        "the contract names no run spec (its specUrl is empty)"
    );
    let store = NetStore::new(
        covenant_net::Store::open(&config.specUrl)
            .with_context(|| format!("opening the run spec's store {}", config.specUrl))?,
        rt.clone(),
    );
    let (_, bytes) = store
        .get(SPEC_KEY, MAX_SPEC_BYTES)
        .with_context(|| format!("fetching {SPEC_KEY} from {}", config.specUrl))?;
    let what = format!("{}/{SPEC_KEY}", config.specUrl);
    let spec = RunSpec::parse(&bytes, &what)?;
    let found = spec.hash();
    if found != config.specHash.0 {
        bail!(
            "the run spec at {what} has hash {}, the contract says {}: refusing it",
            covenant_net::hex::encode(&found),
            covenant_net::hex::encode(&config.specHash.0)
        );
    }
    ensure!(
        spec.name == config.runId,
        "the run spec is {:?} but the contract runs {:?}",
        spec.name,
        config.runId
    );
    Ok(spec)
}

/// What `covenant network create --chain` needs beyond the spec.
#[derive(Debug, Clone)]
pub struct Creation {
    pub url: String,
    /// Where the run spec is published (a store URL; the spec is its `run.json`).
    pub spec_store: String,
    pub netuid: u16,
    pub max_uids: u16,
    pub immunity_blocks: u64,
    pub registration_burn_wei: u128,
    pub min_validator_stake_wei: u128,
    pub unstake_delay_blocks: u64,
    pub epoch_blocks: u64,
    pub emission_per_epoch_wei: u128,
}

/// The contract configuration of a run (window length from its spec; validators may set
/// weights once a window).
pub fn contract_config(spec: &RunSpec, c: &Creation) -> Result<Subnet::Config> {
    let p = &spec.params;
    ensure!(
        p.block_time_ms >= 1 && p.blocks_per_window >= 1,
        "the run spec's block time and window length must be positive"
    );
    Ok(Subnet::Config {
        netuid: c.netuid,
        runId: spec.name.clone(),
        specHash: FixedBytes::from(spec.hash()),
        specUrl: c.spec_store.clone(),
        blocksPerWindow: p.blocks_per_window,
        maxUids: c.max_uids,
        immunityBlocks: c.immunity_blocks,
        registrationBurn: U256::from(c.registration_burn_wei),
        minValidatorStake: U256::from(c.min_validator_stake_wei),
        unstakeDelayBlocks: c.unstake_delay_blocks,
        // Half a window: a validator sets weights once a window, and when one setting lands
        // late (busy node, slow block) the next may come less than a window later.
        weightsRateLimit: (p.blocks_per_window / 2).max(1),
        kappa: 500_000_000,
        versionKey: 0,
        commitReveal: false,
        revealDelayBlocks: 0,
        revealWindowBlocks: 0,
        epochBlocks: c.epoch_blocks,
        emissionPerEpoch: U256::from(c.emission_per_epoch_wei),
    })
}

/// Publishes the run spec, then deploys the contract from `deployer`'s account (funded first
/// from a development chain's faucet when `dev_fund_wei` is given); the contract's address.
pub fn create(
    spec: &RunSpec,
    c: &Creation,
    deployer: &Keypair,
    dev_fund_wei: Option<u128>,
    rt: &tokio::runtime::Handle,
) -> Result<Address> {
    spec.validate()?;
    let config = contract_config(spec, c)?;
    let store = NetStore::new(
        covenant_net::Store::open(&c.spec_store)
            .with_context(|| format!("opening the spec store {}", c.spec_store))?,
        rt.clone(),
    );
    let bytes = serde_json::to_vec_pretty(spec)?;
    store
        .put(SPEC_KEY, bytes.into())
        .with_context(|| format!("publishing {SPEC_KEY} to {}", c.spec_store))?;
    let url = c
        .url
        .parse()
        .with_context(|| format!("--chain {:?} is not a URL", c.url))?;
    let signer = covenant_evm::evm_signer(deployer)?;
    let account = signer.address();
    let roots = covenant_evm::tls_roots_from_env()?;
    let provider = covenant_evm::connect_with(url, signer, Duration::from_secs(30), &roots)?;
    rt.block_on(async {
        if let Some(wei) = dev_fund_wei {
            covenant_evm::fund_on_dev_chain(&provider, account, U256::from(wei)).await?;
        }
        covenant_evm::deploy(&provider, config).await
    })
    .map_err(|e| anyhow!("deploying from account {account}: {e}"))
}
