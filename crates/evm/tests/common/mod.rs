//! A fresh anvil per test, the Subnet contract deployed on it, and funded participants.

#![allow(dead_code)]

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use covenant_evm::Subnet::{self, SubnetErrors, SubnetInstance};
use covenant_net::Keypair;

pub const GWEI: u64 = 1_000_000_000;
pub const ETH: u128 = 1_000_000_000_000_000_000;
pub const NETUID: u16 = 7;
pub const VERSION: u64 = 3;

pub fn anvil() -> AnvilInstance {
    let bin = covenant_evm::tools::anvil().unwrap_or_else(|e| panic!("{e}"));
    Anvil::at(bin).spawn()
}

/// The configuration the tests start from (each changes what it tests).
pub fn config() -> Subnet::Config {
    Subnet::Config {
        netuid: NETUID,
        runId: "evm-test".into(),
        specHash: FixedBytes::repeat_byte(0x5e),
        specUrl: "s3://runs/evm-test/run.json".into(),
        blocksPerWindow: 20,
        maxUids: 8,
        immunityBlocks: 0,
        registrationBurn: U256::from(GWEI),
        minValidatorStake: U256::from(ETH),
        unstakeDelayBlocks: 10,
        weightsRateLimit: 5,
        kappa: 500_000_000,
        versionKey: VERSION,
        commitReveal: false,
        revealDelayBlocks: 3,
        revealWindowBlocks: 4,
        epochBlocks: 50,
        emissionPerEpoch: U256::from(10 * ETH),
    }
}

/// Someone taking part: ed25519 key, Ethereum account, and the contract as that account sees it.
pub struct Party {
    pub key: Keypair,
    pub addr: Address,
    pub c: SubnetInstance<DynProvider>,
}

impl std::ops::Deref for Party {
    type Target = SubnetInstance<DynProvider>;
    fn deref(&self) -> &Self::Target {
        &self.c
    }
}

pub struct Net {
    pub anvil: AnvilInstance,
    /// Deployer (anvil's first account).
    pub owner: DynProvider,
    pub address: Address,
}

impl Net {
    pub async fn start(cfg: Subnet::Config) -> Net {
        let anvil = anvil();
        let owner = provider(&anvil, anvil.keys()[0].clone().into());
        let c = Subnet::deploy(owner.clone(), cfg).await.expect("deploys");
        Net {
            address: *c.address(),
            anvil,
            owner,
        }
    }

    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// The contract as seen by anvil's account `i` (funded with 10,000 ETH).
    pub fn dev(&self, i: usize) -> Party {
        let signer: PrivateKeySigner = self.anvil.keys()[i].clone().into();
        Party {
            key: Keypair::from_seed([0xD0 + i as u8; 32]),
            addr: signer.address(),
            c: Subnet::new(self.address, provider(&self.anvil, signer)),
        }
    }

    /// A participant: its ed25519 key, and the contract as seen by the account derived from it
    /// (funded with `eth` ETH from the deployer).
    pub async fn participant(&self, seed: u8, eth: u128) -> Party {
        self.party_from(Keypair::from_seed([seed; 32]), eth).await
    }

    async fn party_from(&self, key: Keypair, eth: u128) -> Party {
        let signer = covenant_evm::evm_signer(&key).unwrap();
        let addr = signer.address();
        if eth > 0 {
            let tx = TransactionRequest::default()
                .to(addr)
                .value(U256::from(eth));
            self.owner
                .send_transaction(tx)
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
        }
        Party {
            key,
            addr,
            c: Subnet::new(self.address, provider(&self.anvil, signer)),
        }
    }

    /// A participant with a 16-bit seed space (seeds `0x100 + i`), for more than 256 of them.
    pub async fn participant_at(&self, i: u16, eth: u128) -> Party {
        let mut seed = [0xAA; 32];
        seed[..2].copy_from_slice(&i.to_le_bytes());
        self.party_from(Keypair::from_seed(seed), eth).await
    }

    pub async fn mine(&self, blocks: u64) {
        let _: serde_json::Value = self
            .owner
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await
            .unwrap();
    }

    pub async fn block(&self) -> u64 {
        self.owner.get_block_number().await.unwrap()
    }

    pub async fn balance(&self, a: Address) -> U256 {
        self.owner.get_balance(a).await.unwrap()
    }
}

pub fn provider(anvil: &AnvilInstance, signer: PrivateKeySigner) -> DynProvider {
    covenant_evm::connect(anvil.endpoint_url(), signer)
}

/// Registers the party's account with its key's proof, paying the configured burn; its uid.
pub async fn register(net: &Net, p: &Party) -> u16 {
    let burn = p.config().call().await.unwrap().registrationBurn;
    let r = p
        .register(hotkey(p), proof(net, p))
        .value(burn)
        .send()
        .await;
    r.unwrap_or_else(|e| panic!("registers: {}", describe(&e)))
        .get_receipt()
        .await
        .unwrap();
    uid_of(p, p.addr).await.expect("registered")
}

pub async fn uid_of(p: &Party, a: Address) -> Option<u16> {
    let r = p.uidOf(a).call().await.unwrap();
    r._0.then_some(r._1)
}

pub fn hotkey(p: &Party) -> FixedBytes<32> {
    FixedBytes::from(p.key.public().0)
}

pub fn proof(net: &Net, p: &Party) -> Bytes {
    let sig = covenant_evm::registration_proof(&p.key, net.chain_id(), net.address, p.addr);
    Bytes::from(sig.to_vec())
}

/// The contract error a failed call reverted with.
pub fn reverted<T: std::fmt::Debug>(r: Result<T, alloy::contract::Error>) -> SubnetErrors {
    let e = r.expect_err("the call must be refused");
    e.as_decoded_interface_error::<SubnetErrors>()
        .unwrap_or_else(|| panic!("not one of Subnet's errors: {e}"))
}

pub fn describe(e: &alloy::contract::Error) -> String {
    match e.as_decoded_interface_error::<SubnetErrors>() {
        Some(d) => format!("{d:?}"),
        None => e.to_string(),
    }
}

/// Sends a call and waits for its receipt; panics with the decoded reason when refused.
#[macro_export]
macro_rules! ok {
    ($call:expr) => {{
        let r = $call.send().await;
        let pending =
            r.unwrap_or_else(|e| panic!("{}: {}", stringify!($call), common::describe(&e)));
        let receipt = pending.get_receipt().await.unwrap();
        assert!(receipt.status(), "{} reverted", stringify!($call));
        receipt
    }};
}

/// Sends a call that must be refused; the decoded contract error.
#[macro_export]
macro_rules! refused {
    ($call:expr) => {{
        common::reverted($call.send().await.map(|_| ()))
    }};
}
