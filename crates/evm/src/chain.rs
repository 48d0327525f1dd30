//! The nodes' [`Chain`] on an EVM node: the `Subnet` contract read and written over JSON-RPC.
//!
//! Blocks are counted from the contract's `genesisBlock` (block 0 of the run is the deployment
//! block), so windows follow from block numbers exactly as on the embedded ledger; the schedule's
//! time of block 0 is that block's timestamp, with the run spec's block time. A snapshot of
//! block `b` is read with `eth_call` at the chain's block `genesisBlock + b − 1` (the state
//! before `b`), so every node asking for it gets the same answer however late it asks; a block
//! the chain has not reached yet is waited for, a few block times at most.
//!
//! The client signs for one key only, the node's own: [`crate::evm_signer`] derives its
//! Ethereum account. Balances and nonces are answered for that key alone, and the node's
//! signed [`Transaction`]s become the contract calls of their bodies. Every request is retried
//! with backoff while the endpoint is unreachable, up to [`Patience::total_ms`]; then the call
//! fails with [`ChainError::Endpoint`], and the node carries on when the endpoint returns.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::{Address, Bytes, FixedBytes, TxHash, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionReceipt;
use alloy::transports::http::reqwest::Url;
use alloy::transports::{RpcError, TransportError};
use covenant_core::weights::BURN_UID;
use covenant_net::chain::{
    Commitment, Genesis, Metagraph, Neuron, Receipt, Rejection, Snapshot, ValidatorStake,
    ValidatorState,
};
use covenant_net::{Chain, ChainError, Keypair, PublicKey, Transaction, TxBody};

use crate::account::proof_verifies;
use crate::bindings::Subnet::{self, SubnetErrors, SubnetInstance};
use crate::EvmError;

/// Wei per unit the nodes count balances and stakes in (`covenant_net::chain::TOKEN` units per
/// token): one gwei.
pub const WEI_PER_UNIT: u64 = 1_000_000_000;
/// The uid weights name for the burn on the contract (`Subnet.BURN_UID`).
pub const CONTRACT_BURN_UID: u16 = u16::MAX;
/// Gas a registration is allowed when checking that an account can pay for one (it takes
/// ~231,000 on a free slot; replacing a uid computes the consensus as well).
const REGISTER_GAS_ALLOWANCE: u64 = 400_000;
/// `Subnet.MAX_VALIDATORS`.
const MAX_VALIDATORS: u64 = 16;

/// How long a client keeps retrying an unreachable endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// First wait between attempts; doubled after each, up to `max_backoff_ms`.
    pub first_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Give up after this long (the error names the endpoint and the last failure).
    pub total_ms: u64,
    /// One request's timeout.
    pub request_ms: u64,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            first_backoff_ms: 250,
            max_backoff_ms: 4_000,
            total_ms: 30_000,
            request_ms: 10_000,
        }
    }
}

/// Where a node's chain is, and who it is.
#[derive(Debug, Clone)]
pub struct EvmOptions {
    pub url: Url,
    pub contract: Address,
    /// The node's own ed25519 key (its Ethereum account is derived from it).
    pub key: Keypair,
    /// The run's block time (from its run spec): how the schedule maps blocks to time.
    pub block_time_ms: u64,
    pub patience: Patience,
    /// PEM certificates trusted for an `https://` endpoint besides the system's
    /// ([`crate::tls_roots_from_env`] reads them from `COVENANT_CHAIN_CA`).
    pub tls_roots: Vec<Vec<u8>>,
}

/// The contract's run, as read at connection.
#[derive(Debug, Clone)]
struct Deployment {
    config: Subnet::Config,
    genesis_block: u64,
    chain_id: u64,
}

/// A [`Chain`] over JSON-RPC (see the module docs).
pub struct EvmChain {
    rt: tokio::runtime::Runtime,
    provider: DynProvider,
    contract: SubnetInstance<DynProvider>,
    endpoint: String,
    key: Keypair,
    account: Address,
    deployment: Deployment,
    genesis: Genesis,
    patience: Patience,
    /// The highest run block seen ([`Chain::block`] never goes back).
    last_block: std::sync::atomic::AtomicU64,
}

/// Whether an RPC failure may pass if asked again (the endpoint down or overloaded), as opposed
/// to an answer (a revert, a bad request).
fn transient(e: &TransportError) -> bool {
    matches!(e, RpcError::Transport(_) | RpcError::NullResp)
}

fn contract_transient(e: &alloy::contract::Error) -> bool {
    match e {
        alloy::contract::Error::TransportError(t) => transient(t),
        alloy::contract::Error::PendingTransactionError(_) => true,
        _ => false,
    }
}

impl EvmChain {
    /// Connects, checks the contract's code, and reads its run (configuration, genesis block,
    /// validators).
    pub fn connect(opts: EvmOptions) -> Result<EvmChain, EvmError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(EvmError::Runtime)?;
        let signer = crate::evm_signer(&opts.key)?;
        let account = signer.address();
        let provider = crate::connect_with(
            opts.url.clone(),
            signer,
            Duration::from_millis(opts.patience.request_ms),
            &opts.tls_roots,
        )?;
        let contract = Subnet::new(opts.contract, provider.clone());
        let endpoint = opts.url.to_string();
        let mut chain = EvmChain {
            rt,
            provider,
            contract,
            endpoint,
            key: opts.key,
            account,
            deployment: Deployment {
                config: placeholder_config(),
                genesis_block: 0,
                chain_id: 0,
            },
            genesis: placeholder_genesis(),
            patience: opts.patience,
            last_block: std::sync::atomic::AtomicU64::new(0),
        };
        chain
            .rt
            .block_on(crate::verify_contract(&chain.provider, opts.contract))?;
        chain.deployment = chain.read_deployment()?;
        chain.genesis = chain.read_genesis(opts.block_time_ms)?;
        Ok(chain)
    }

    /// The same client with the run's block time (known once the run spec the contract names
    /// has been read: the schedule maps blocks to time with it).
    pub fn with_block_time(mut self, block_time_ms: u64) -> Result<EvmChain, ChainError> {
        let mut g = self.genesis.clone();
        g.block_time_ms = block_time_ms;
        g.validate()?;
        self.genesis = g;
        Ok(self)
    }

    /// This node's Ethereum account.
    pub fn account(&self) -> Address {
        self.account
    }

    pub fn config(&self) -> &Subnet::Config {
        &self.deployment.config
    }

    pub fn chain_id(&self) -> u64 {
        self.deployment.chain_id
    }

    pub fn contract_address(&self) -> Address {
        *self.contract.address()
    }

    /// The stake of this node's account that counts (units; 0 below the contract's minimum).
    pub fn own_stake(&self) -> Result<u64, ChainError> {
        let c = &self.contract;
        let s = self.read(|| async { c.stakeOf(self.account).call().await })?;
        Ok(units_down(s))
    }

    /// Adds `wei` from this node's account to the emission pool.
    pub fn fund_pool(&self, wei: U256) -> Result<(), ChainError> {
        let c = &self.contract;
        self.send(|| {
            let call = c.fundPool().value(wei);
            async move { Ok(*call.send().await?.tx_hash()) }
        })
        .map(|_| ())
    }

    /// Pays the last finished epoch (anyone may): what each uid's account was credited, with
    /// the consensus weights before and after the block it was paid in (the payment follows
    /// the consensus of the moment it ran, one of the two).
    pub fn pay_epoch(&self) -> Result<PaidEpoch, ChainError> {
        let c = &self.contract;
        let r = self.send(|| {
            let call = c.payEpoch();
            async move { Ok(*call.send().await?.tx_hash()) }
        })?;
        let block = r.block_number.unwrap_or(0);
        let epoch = r
            .decoded_log::<Subnet::EpochPaid>()
            .map(|e| e.epoch)
            .unwrap_or_default();
        let (before, after) = (
            BlockId::number(block.saturating_sub(1)),
            BlockId::number(block),
        );
        let neurons = self.neurons_at(after)?;
        let mut credited = BTreeMap::new();
        for (uid, n) in &neurons {
            let owed = |at: BlockId| {
                let account = n.account;
                self.read(move || async move { c.rewardsOwed(account).block(at).call().await })
            };
            let delta = owed(after)?.saturating_sub(owed(before)?);
            if !delta.is_zero() {
                credited.insert(*uid, u128::try_from(delta).unwrap_or(u128::MAX));
            }
        }
        Ok(PaidEpoch {
            epoch,
            block: block.saturating_sub(self.deployment.genesis_block),
            credited,
            weights_before: self.consensus_at(before)?.0,
            weights_after: self.consensus_at(after)?.0,
        })
    }

    /// Stakes `wei` from this node's account (a validator does before it starts), then reads
    /// the validators again.
    pub fn stake(&mut self, wei: U256) -> Result<(), ChainError> {
        let c = &self.contract;
        self.send(|| {
            let call = c.stake().value(wei);
            async move { Ok(*call.send().await?.tx_hash()) }
        })?;
        let block_time = self.genesis.block_time_ms;
        self.genesis = self
            .read_genesis(block_time)
            .map_err(|e| self.endpoint_error(e))?;
        Ok(())
    }

    fn endpoint_error(&self, e: impl std::error::Error + Send + Sync + 'static) -> ChainError {
        ChainError::Endpoint {
            endpoint: self.endpoint.clone(),
            source: Box::new(e),
        }
    }

    /// `f` until it succeeds, fails for good, or the endpoint stayed unreachable for
    /// `Patience::total_ms`.
    fn retry<T, E, F, Fut>(&self, is_transient: fn(&E) -> bool, mut f: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let p = self.patience;
        let start = std::time::Instant::now();
        let mut backoff = p.first_backoff_ms.max(1);
        loop {
            match self.rt.block_on(f()) {
                Err(e)
                    if is_transient(&e)
                        && (start.elapsed().as_millis() as u64).saturating_add(backoff)
                            < p.total_ms =>
                {
                    std::thread::sleep(Duration::from_millis(backoff));
                    backoff = (backoff * 2).min(p.max_backoff_ms.max(1));
                }
                r => return r,
            }
        }
    }

    /// A read (view call or RPC) with retries; its failure as a chain error.
    fn read<T, F, Fut>(&self, f: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        self.retry(contract_transient, f)
            .map_err(|e| self.endpoint_error(e))
    }

    fn rpc<T, F, Fut>(&self, f: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        self.retry(transient, f).map_err(|e| self.endpoint_error(e))
    }

    fn read_deployment(&self) -> Result<Deployment, EvmError> {
        let c = &self.contract;
        let err = |e: ChainError| EvmError::Chain(Box::new(e));
        let config = self
            .read(|| async { c.config().call().await })
            .map_err(err)?;
        let genesis_block = self
            .read(|| async { c.genesisBlock().call().await })
            .map_err(err)?;
        let chain_id = self
            .rpc(|| async { self.provider.get_chain_id().await })
            .map_err(err)?;
        Ok(Deployment {
            config,
            genesis_block,
            chain_id,
        })
    }

    fn read_genesis(&self, block_time_ms: u64) -> Result<Genesis, EvmError> {
        let err = |e: ChainError| EvmError::Chain(Box::new(e));
        let d = &self.deployment;
        let stamp = self.timestamp_of(d.genesis_block).map_err(err)?;
        let at = BlockId::latest();
        let neurons = self.neurons_at(at).map_err(err)?;
        let mut validators: Vec<ValidatorStake> = self
            .validators_at(at, &neurons)
            .map_err(err)?
            .into_iter()
            .map(|v| ValidatorStake {
                key: v.key,
                stake: v.stake,
            })
            .collect();
        // This node's own stake needs no registration to be known as its key's: a validator
        // stakes before it registers, and must know itself as one from the start.
        let me = self.key.public();
        if !validators.iter().any(|v| v.key == me) {
            let stake = self.own_stake().map_err(err)?;
            if stake > 0 {
                validators.push(ValidatorStake { key: me, stake });
            }
        }
        let c = &d.config;
        let g = Genesis {
            run_id: c.runId.clone(),
            genesis_time_ms: stamp.saturating_mul(1000),
            block_time_ms,
            blocks_per_window: c.blocksPerWindow,
            max_uids: c.maxUids as u32,
            immunity_blocks: c.immunityBlocks,
            validators,
            kappa: c.kappa as f64 / covenant_core::consensus::ONE as f64,
            registration_burn: units_up(c.registrationBurn),
            balances: Vec::new(),
        };
        g.validate().map_err(err)?;
        Ok(g)
    }

    fn timestamp_of(&self, block: u64) -> Result<u64, ChainError> {
        let b = self.rpc(|| async { self.provider.get_block_by_number(block.into()).await })?;
        b.map(|b| b.header.timestamp).ok_or(ChainError::NotYet {
            block,
            head: self.head().unwrap_or(0),
        })
    }

    /// The chain's latest block number.
    fn head(&self) -> Result<u64, ChainError> {
        self.rpc(|| async { self.provider.get_block_number().await })
    }

    /// The chain block holding the state before run block `block`, once the chain has it.
    fn state_before(&self, block: u64) -> Result<u64, ChainError> {
        let target = self.deployment.genesis_block + block.saturating_sub(1);
        let wait = self.genesis.block_time_ms.max(100);
        let give_up = std::time::Instant::now()
            + Duration::from_millis(wait.saturating_mul(5).saturating_add(2_000));
        loop {
            let head = self.head()?;
            if head >= target {
                return Ok(target);
            }
            if std::time::Instant::now() >= give_up {
                return Err(ChainError::NotYet {
                    block,
                    head: head.saturating_sub(self.deployment.genesis_block),
                });
            }
            std::thread::sleep(Duration::from_millis((wait / 4).max(25)));
        }
    }

    /// The registered uids whose payload key proves its account, as of `at`.
    fn neurons_at(&self, at: BlockId) -> Result<BTreeMap<u32, Registered>, ChainError> {
        let c = &self.contract;
        let all = self.read(|| async { c.allNeurons().block(at).call().await })?;
        let d = &self.deployment;
        Ok(proven(all, d.chain_id, *c.address(), d.genesis_block))
    }

    /// The listed validators with counting stake (units) that have a proven registration.
    fn validators_at(
        &self,
        at: BlockId,
        neurons: &BTreeMap<u32, Registered>,
    ) -> Result<Vec<ValidatorState>, ChainError> {
        let c = &self.contract;
        let count = self.read(|| async { c.validatorCount().block(at).call().await })?;
        let by_account: BTreeMap<Address, (u32, PublicKey)> = neurons
            .iter()
            .map(|(u, n)| (n.account, (*u, n.key)))
            .collect();
        let mut out = Vec::new();
        for i in 0..u64::try_from(count).unwrap_or(u64::MAX).min(MAX_VALIDATORS) {
            let v = self.read(|| async { c.validatorAt(U256::from(i)).block(at).call().await })?;
            let stake = units_down(v.stake_);
            let Some(&(uid, key)) = by_account.get(&v.account) else {
                continue;
            };
            if stake == 0 {
                continue;
            }
            out.push(ValidatorState {
                key,
                stake,
                uid: Some(uid),
                last_weights_block: (v.lastWeightsBlock != 0).then(|| {
                    v.lastWeightsBlock
                        .saturating_sub(self.deployment.genesis_block)
                }),
                weights: v
                    .dests
                    .iter()
                    .zip(&v.weights)
                    .map(|(&d, &w)| (node_uid(d), w))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Consensus weights by uid and the burned share, as of `at`.
    fn consensus_at(&self, at: BlockId) -> Result<(BTreeMap<u32, f64>, f64), ChainError> {
        let c = &self.contract;
        let r = self.read(|| async { c.consensus().block(at).call().await })?;
        let total = r.ranks.iter().fold(r.burnRank, |a, &b| a.saturating_add(b));
        let share = |x: U256| {
            if total.is_zero() {
                0.0
            } else {
                f64::from(x) / f64::from(total)
            }
        };
        let weights = r
            .uids
            .iter()
            .zip(&r.ranks)
            .map(|(&u, &rank)| (u as u32, share(rank)))
            .collect();
        Ok((weights, share(r.burnRank)))
    }

    fn commitments_at(&self, at: BlockId) -> Result<BTreeMap<u32, Commitment>, ChainError> {
        let c = &self.contract;
        let all = self.read(|| async { c.allCommitments().block(at).call().await })?;
        let g = self.deployment.genesis_block;
        Ok(all
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.bucketUrl.is_empty())
            .map(|(u, c)| {
                (
                    u as u32,
                    Commitment {
                        bucket_url: c.bucketUrl,
                        read_credentials: c.readCredentials,
                        block: c.block_.saturating_sub(g),
                    },
                )
            })
            .collect())
    }

    /// The neurons of a state, `now` being the run block their immunity is judged at.
    /// The state of chain block `at` as nodes see it, `now` being the run block immunity is
    /// judged at: the neurons, the burned share, and the validators.
    fn state_at(&self, at: BlockId, now: u64) -> Result<State, ChainError> {
        let registered = self.neurons_at(at)?;
        let (weights, burned) = self.consensus_at(at)?;
        let mut commitments = self.commitments_at(at)?;
        let immunity = self.genesis.immunity_blocks;
        let neurons = registered
            .iter()
            .map(|(&uid, n)| Neuron {
                uid,
                key: n.key,
                registered_block: n.block,
                immune: n.block.saturating_add(immunity) > now,
                commitment: commitments.remove(&uid),
                consensus_weight: weights.get(&uid).copied().unwrap_or(0.0),
            })
            .collect();
        let validators = self.validators_at(at, &registered)?;
        Ok(State {
            neurons,
            burned,
            validators,
        })
    }

    fn own(&self, key: &PublicKey) -> Result<(), ChainError> {
        if *key == self.key.public() {
            Ok(())
        } else {
            Err(ChainError::Unsupported(
                "an EVM chain client answers for its own key only",
            ))
        }
    }

    /// Sends a contract call, waits for its receipt; a revert as the rejection it means.
    fn send<F, Fut>(&self, call: F) -> Result<TransactionReceipt, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<TxHash, alloy::contract::Error>>,
    {
        let hash = match self.retry(contract_transient, call) {
            Ok(h) => h,
            Err(e) => {
                return Err(match e.as_decoded_interface_error::<SubnetErrors>() {
                    Some(d) => ChainError::Rejected(rejection(d)),
                    None => self.endpoint_error(e),
                })
            }
        };
        self.receipt(hash)
    }

    /// Polls for a transaction's receipt (a few block times at most, then retries' patience).
    fn receipt(&self, hash: TxHash) -> Result<TransactionReceipt, ChainError> {
        let wait = self.genesis.block_time_ms.max(100);
        let give_up = std::time::Instant::now()
            + Duration::from_millis(
                wait.saturating_mul(10)
                    .saturating_add(self.patience.total_ms),
            );
        loop {
            if let Some(r) =
                self.rpc(|| async { self.provider.get_transaction_receipt(hash).await })?
            {
                if !r.status() {
                    return Err(ChainError::Rejected(Rejection::Malformed(format!(
                        "transaction {hash} reverted when mined"
                    ))));
                }
                return Ok(r);
            }
            if std::time::Instant::now() >= give_up {
                return Err(self.endpoint_error(EvmError::NotMined { hash }));
            }
            std::thread::sleep(Duration::from_millis((wait / 4).max(25)));
        }
    }

    fn wei_balance(&self) -> Result<U256, ChainError> {
        self.rpc(|| async { self.provider.get_balance(self.account).await })
    }

    fn register(&self) -> Result<TransactionReceipt, ChainError> {
        let burn = self.deployment.config.registrationBurn;
        let price = self.rpc(|| async { self.provider.get_gas_price().await })?;
        let needed = burn
            .saturating_add(U256::from(price).saturating_mul(U256::from(REGISTER_GAS_ALLOWANCE)));
        let balance = self.wei_balance()?;
        if balance < needed {
            return Err(Rejection::InsufficientBalance {
                needed: units_up(needed),
                balance: units_down(balance),
            }
            .into());
        }
        let d = &self.deployment;
        let proof = crate::registration_proof(
            &self.key,
            d.chain_id,
            *self.contract.address(),
            self.account,
        );
        let hotkey = FixedBytes::from(self.key.public().0);
        let proof = Bytes::from(proof.to_vec());
        let c = &self.contract;
        self.send(|| {
            let call = c.register(hotkey, proof.clone()).value(burn);
            async move { Ok(*call.send().await?.tx_hash()) }
        })
    }

    fn set_weights(&self, weights: &[(u32, u16)]) -> Result<TransactionReceipt, ChainError> {
        let cfg = &self.deployment.config;
        if cfg.commitReveal {
            return Err(ChainError::Unsupported(
                "this contract takes weights by commit-reveal, which nodes do not speak yet",
            ));
        }
        let mut dests = Vec::with_capacity(weights.len());
        for &(u, _) in weights {
            dests.push(contract_uid(u).ok_or_else(|| {
                Rejection::InvalidWeights(format!("uid {u} is out of the contract's range"))
            })?);
        }
        let values: Vec<u16> = weights.iter().map(|w| w.1).collect();
        let (netuid, version) = (cfg.netuid, cfg.versionKey);
        let c = &self.contract;
        self.send(|| {
            let call = c.setWeights(netuid, dests.clone(), values.clone(), version);
            async move { Ok(*call.send().await?.tx_hash()) }
        })
    }

    fn commit(&self, url: &str, credentials: &str) -> Result<TransactionReceipt, ChainError> {
        let c = &self.contract;
        self.send(|| {
            let call = c.commit(url.to_string(), credentials.to_string());
            async move { Ok(*call.send().await?.tx_hash()) }
        })
    }

    fn uid_now(&self) -> Result<Option<u32>, ChainError> {
        let c = &self.contract;
        let r = self.read(|| async { c.uidOf(self.account).call().await })?;
        Ok(r._0.then_some(r._1 as u32))
    }

    /// The payload key a `Registered` event in `r` says was replaced, read from the state
    /// before that block.
    fn replaced_in(&self, r: &TransactionReceipt) -> Result<Option<PublicKey>, ChainError> {
        let Some(ev) = r.decoded_log::<Subnet::Registered>() else {
            return Ok(None);
        };
        if ev.replaced.is_zero() {
            return Ok(None);
        }
        let before = BlockId::number(r.block_number.unwrap_or(1).saturating_sub(1));
        let c = &self.contract;
        let n = self.read(|| async { c.neuron(ev.uid).block(before).call().await })?;
        Ok(Some(PublicKey(n.hotkey.0)))
    }
}

/// What [`EvmChain::pay_epoch`] paid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaidEpoch {
    pub epoch: u64,
    /// Run block it was paid in.
    pub block: u64,
    /// Wei credited to each uid's account.
    pub credited: BTreeMap<u32, u128>,
    pub weights_before: BTreeMap<u32, f64>,
    pub weights_after: BTreeMap<u32, f64>,
}

/// The registrations nodes take part with: those whose ed25519 proof binds the payload key to
/// the registering account, and of several uids with one payload key (its owner signed proofs
/// for more than one account) only the earliest registration (then the lowest uid), as the
/// ledger allows a key one uid.
fn proven(
    all: Vec<Subnet::Neuron>,
    chain_id: u64,
    contract: Address,
    genesis_block: u64,
) -> BTreeMap<u32, Registered> {
    let mut first: BTreeMap<PublicKey, (u64, u32)> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (uid, n) in all.into_iter().enumerate() {
        let key = PublicKey(n.hotkey.0);
        if !proof_verifies(&key, &n.proof, chain_id, contract, n.account) {
            continue;
        }
        let (uid, block) = (uid as u32, n.registeredBlock.saturating_sub(genesis_block));
        match first.get(&key) {
            Some(&earlier) if earlier <= (block, uid) => continue,
            Some(&(_, other)) => {
                out.remove(&other);
            }
            None => {}
        }
        first.insert(key, (block, uid));
        let account = n.account;
        out.insert(
            uid,
            Registered {
                key,
                account,
                block,
            },
        );
    }
    out
}

/// A chain block's state as nodes see it ([`EvmChain::state_at`]).
struct State {
    neurons: Vec<Neuron>,
    burned: f64,
    validators: Vec<ValidatorState>,
}

/// A registration as nodes see it.
struct Registered {
    key: PublicKey,
    account: Address,
    /// Run block (counted from the contract's genesis block).
    block: u64,
}

fn node_uid(u: u16) -> u32 {
    if u == CONTRACT_BURN_UID {
        BURN_UID
    } else {
        u as u32
    }
}

fn contract_uid(u: u32) -> Option<u16> {
    if u == BURN_UID {
        Some(CONTRACT_BURN_UID)
    } else {
        u16::try_from(u).ok().filter(|&u| u != CONTRACT_BURN_UID)
    }
}

/// Wei in units, rounded down (saturating).
fn units_down(wei: U256) -> u64 {
    u64::try_from(wei / U256::from(WEI_PER_UNIT)).unwrap_or(u64::MAX)
}

/// Wei in units, rounded up (saturating): what must be held to pay it.
fn units_up(wei: U256) -> u64 {
    let unit = U256::from(WEI_PER_UNIT);
    u64::try_from(wei.div_ceil(unit)).unwrap_or(u64::MAX)
}

/// What a contract error means to a node.
fn rejection(e: SubnetErrors) -> Rejection {
    use SubnetErrors as E;
    match e {
        E::AlreadyRegistered(x) => Rejection::AlreadyRegistered(x.uid as u32),
        E::Full(x) => Rejection::Full(x.maxUids as u32),
        E::NotRegistered(_) => Rejection::NotRegistered,
        E::NotValidator(_) => Rejection::NotValidator,
        E::InvalidWeights(x) => Rejection::InvalidWeights(x.why),
        E::WeightsTooSoon(x) => Rejection::InvalidWeights(format!(
            "weights set too soon: the next setting is allowed from chain block {}",
            x.nextBlock
        )),
        E::TooLong(x) => Rejection::Malformed(format!(
            "{} is {} bytes, at most {}",
            x.field, x.length, x.max
        )),
        other => Rejection::Malformed(format!("the contract refused: {other:?}")),
    }
}

fn placeholder_config() -> Subnet::Config {
    Subnet::Config {
        netuid: 0,
        runId: String::new(),
        specHash: FixedBytes::ZERO,
        specUrl: String::new(),
        blocksPerWindow: 1,
        maxUids: 1,
        immunityBlocks: 0,
        registrationBurn: U256::ZERO,
        minValidatorStake: U256::ZERO,
        unstakeDelayBlocks: 0,
        weightsRateLimit: 0,
        kappa: 0,
        versionKey: 0,
        commitReveal: false,
        revealDelayBlocks: 0,
        revealWindowBlocks: 0,
        epochBlocks: 1,
        emissionPerEpoch: U256::ZERO,
    }
}

fn placeholder_genesis() -> Genesis {
    Genesis {
        run_id: String::new(),
        genesis_time_ms: 0,
        block_time_ms: 1,
        blocks_per_window: 1,
        max_uids: 1,
        immunity_blocks: 0,
        validators: Vec::new(),
        kappa: 0.5,
        registration_burn: 0,
        balances: Vec::new(),
    }
}

impl Chain for EvmChain {
    fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain's head, in run blocks; while the endpoint cannot be reached, the last head
    /// seen (never going back), and every read says what failed.
    fn block(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let seen = match self.head() {
            Ok(h) => h.saturating_sub(self.deployment.genesis_block),
            Err(_) => 0,
        };
        self.last_block.fetch_max(seen, Ordering::Relaxed).max(seen)
    }

    fn balance(&self, key: &PublicKey) -> Result<u64, ChainError> {
        self.own(key)?;
        Ok(units_down(self.wei_balance()?))
    }

    fn next_nonce(&self, key: &PublicKey) -> Result<u64, ChainError> {
        self.own(key)?;
        let n = self.rpc(|| async { self.provider.get_transaction_count(self.account).await })?;
        Ok(n.saturating_add(1))
    }

    fn submit(&self, tx: &Transaction) -> Result<Receipt, ChainError> {
        tx.check()?;
        if tx.run_id != self.genesis.run_id {
            return Err(Rejection::WrongRun {
                expected: self.genesis.run_id.clone(),
                found: tx.run_id.clone(),
            }
            .into());
        }
        self.own(&tx.signer)?;
        let r = match &tx.body {
            TxBody::Register => self.register()?,
            TxBody::Commit {
                bucket_url,
                read_credentials,
            } => self.commit(bucket_url, read_credentials)?,
            TxBody::SetWeights { weights } => self.set_weights(weights)?,
            TxBody::Transfer { .. } => {
                return Err(ChainError::Unsupported(
                    "transfers to a payload key: on an EVM chain send to the recipient's \
                     account address (`covenant chain account --key`)",
                ))
            }
        };
        Ok(Receipt {
            block: r
                .block_number
                .unwrap_or(0)
                .saturating_sub(self.deployment.genesis_block),
            uid: self.uid_now()?,
            replaced: self.replaced_in(&r)?,
        })
    }

    fn metagraph(&self) -> Result<Metagraph, ChainError> {
        let head = self.head()?;
        let at = BlockId::number(head);
        let block = head.saturating_sub(self.deployment.genesis_block);
        let state = self.state_at(at, block)?;
        let g = &self.genesis;
        Ok(Metagraph {
            run_id: g.run_id.clone(),
            block,
            window: g.schedule().window_of_block(block),
            max_uids: g.max_uids,
            neurons: state.neurons,
            validators: state.validators,
        })
    }

    fn snapshot(&self, block: u64) -> Result<Snapshot, ChainError> {
        if block == 0 {
            return Ok(Snapshot {
                block,
                neurons: Vec::new(),
                burned: 0.0,
                validators: BTreeSet::new(),
            });
        }
        let at = BlockId::number(self.state_before(block)?);
        let state = self.state_at(at, block)?;
        Ok(Snapshot {
            block,
            neurons: state.neurons,
            burned: state.burned,
            validators: state.validators.into_iter().map(|v| v.key).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_map_both_ways_and_the_burn_is_its_own() {
        assert_eq!(contract_uid(BURN_UID), Some(CONTRACT_BURN_UID));
        assert_eq!(node_uid(CONTRACT_BURN_UID), BURN_UID);
        assert_eq!(contract_uid(7), Some(7));
        assert_eq!(node_uid(7), 7);
        assert_eq!(
            contract_uid(65_535),
            None,
            "65535 is the burn on the contract"
        );
        assert_eq!(contract_uid(70_000), None);
    }

    fn neuron(key: &Keypair, account: Address, block: u64, contract: Address) -> Subnet::Neuron {
        let proof = crate::registration_proof(key, 1, contract, account);
        Subnet::Neuron {
            account,
            hotkey: FixedBytes::from(key.public().0),
            proof: Bytes::from(proof.to_vec()),
            registeredBlock: block,
        }
    }

    /// Review of this change: an owner could sign proofs for two accounts and hold two uids
    /// with one payload key (the ledger allows a key one uid).
    #[test]
    fn a_payload_key_counts_once_and_a_bad_proof_not_at_all() {
        let c = Address::repeat_byte(0xC0);
        let (k, other) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let (a1, a2, a3) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        );
        let mut forged = neuron(&other, a3, 12, c);
        forged.hotkey = FixedBytes::from(k.public().0);
        // uid 0: k's second account, registered later into a lower slot; uid 1: k's first.
        let all = vec![neuron(&k, a2, 20, c), neuron(&k, a1, 10, c), forged];
        let got = proven(all, 1, c, 5);
        let uids: Vec<_> = got.iter().map(|(u, r)| (*u, r.account, r.block)).collect();
        assert_eq!(
            uids,
            vec![(1, a1, 5)],
            "the earliest registration of k, in run blocks"
        );
    }

    #[test]
    fn wei_round_to_units_in_the_safe_direction() {
        let unit = U256::from(WEI_PER_UNIT);
        assert_eq!(units_down(unit * U256::from(3) + U256::from(1)), 3);
        assert_eq!(units_up(unit * U256::from(3) + U256::from(1)), 4);
        assert_eq!(units_up(unit * U256::from(3)), 3);
        assert_eq!(units_down(U256::MAX), u64::MAX);
    }
}
