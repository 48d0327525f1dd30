//! The chain on an EVM node: bindings to the `Subnet` contract (`contracts/`, compiled output
//! in `contracts/out/Subnet.json`), the Ethereum account each participant derives from its
//! ed25519 key, and where the local tools (anvil, solc-js) are. docs/CHAIN.md describes the
//! contract's rules; they are the embedded ledger's.

pub use alloy;

pub mod account;
pub mod bindings;
pub mod chain;
pub mod tools;

pub use account::{evm_signer, registration_message, registration_proof};
pub use bindings::Subnet;
pub use chain::{EvmChain, EvmOptions, PaidEpoch, Patience};

use alloy::network::EthereumWallet;
use alloy::primitives::{keccak256, Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

/// A JSON-RPC client that signs with `signer`. Its nonce is read from the node for every
/// transaction (alloy's default caches it and, after a call refused at gas estimation, would
/// send the next one with a nonce the node never mines), so several processes may share a key.
pub fn connect(
    url: alloy::transports::http::reqwest::Url,
    signer: PrivateKeySigner,
) -> DynProvider {
    let client = http_client(std::time::Duration::from_secs(30), &[]).unwrap_or_default();
    provider(url, signer, client)
}

/// The environment variable naming a PEM file of certificates to trust for `https://` chain
/// endpoints besides the system's (a private chain's certificate authority).
pub const CA_ENV: &str = "COVENANT_CHAIN_CA";

/// The certificates [`CA_ENV`] names (none when it is unset).
pub fn tls_roots_from_env() -> Result<Vec<Vec<u8>>, EvmError> {
    let Some(path) = std::env::var_os(CA_ENV) else {
        return Ok(Vec::new());
    };
    let path = std::path::PathBuf::from(path);
    std::fs::read(&path)
        .map(|pem| vec![pem])
        .map_err(|source| EvmError::CaFile { path, source })
}

/// The HTTP(S) client of a chain endpoint: a timeout on every request (so that an endpoint that
/// stops answering fails a call instead of hanging it) and TLS by rustls (ring, the provider the
/// object store client uses too) with the system's roots plus `extra_roots` (PEM).
fn http_client(
    timeout: std::time::Duration,
    extra_roots: &[Vec<u8>],
) -> Result<alloy::transports::http::reqwest::Client, EvmError> {
    use alloy::transports::http::reqwest;
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder().timeout(timeout);
    for pem in extra_roots {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(EvmError::Tls)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(EvmError::Tls)
}

fn provider(
    url: alloy::transports::http::reqwest::Url,
    signer: PrivateKeySigner,
    client: alloy::transports::http::reqwest::Client,
) -> DynProvider {
    use alloy::transports::http::Http;
    // Marked local: receipts are polled every 250 ms rather than every 7 s.
    let rpc = alloy::rpc::client::RpcClient::new(Http::with_client(client, url), true);
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(rpc)
        .erased()
}

/// [`connect`] with a timeout on every request and extra trusted certificates (PEM) for an
/// `https://` endpoint.
pub fn connect_with(
    url: alloy::transports::http::reqwest::Url,
    signer: PrivateKeySigner,
    timeout: std::time::Duration,
    extra_roots: &[Vec<u8>],
) -> Result<DynProvider, EvmError> {
    Ok(provider(url, signer, http_client(timeout, extra_roots)?))
}

/// Why something on the EVM side failed.
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    #[error("{tool} not found at {path}: run scripts/install-chain-tools.sh (or set {env})")]
    ToolMissing {
        tool: &'static str,
        path: std::path::PathBuf,
        env: &'static str,
    },
    #[error("this key derives no valid Ethereum account (a 1-in-2^128 case): use another key")]
    NoAccount,
    #[error("no contract at {address}: check the --contract address and the chain")]
    NoContract { address: Address },
    #[error("the contract at {address} is not this version's Subnet (code hash {found}, expected {expected})")]
    WrongCode {
        address: Address,
        found: B256,
        expected: B256,
    },
    #[error("the chain's RPC endpoint failed: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    #[error("starting the chain client's I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Chain(Box<covenant_net::ChainError>),
    #[error("the chain client's TLS set-up: {0}")]
    Tls(#[source] alloy::transports::http::reqwest::Error),
    #[error("reading the certificates {} ({CA_ENV}): {source}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("deploying the Subnet contract: {0}")]
    Deploy(#[source] alloy::contract::Error),
    #[error("the chain is not a local development chain (anvil_setBalance refused): fund the account from a funded one instead: {0}")]
    NotDevChain(#[source] alloy::transports::TransportError),
    #[error("transaction {hash} was not mined in time")]
    NotMined { hash: alloy::primitives::TxHash },
}

/// The code a genuine `Subnet` deployment has (the same for every deployment: the contract
/// keeps no immutables), from the checked-in compiled output.
pub fn expected_code() -> &'static [u8] {
    &Subnet::DEPLOYED_BYTECODE
}

/// Refuses `address` unless the code there is the `Subnet` contract this build knows (by
/// keccak-256 hash), so a node pointed at the wrong address, or at another contract, stops with
/// a clear error instead of trusting what it reads.
pub async fn verify_contract(provider: &DynProvider, address: Address) -> Result<(), EvmError> {
    let code = provider.get_code_at(address).await?;
    let expected = keccak256(expected_code());
    let found = keccak256(&code);
    if code.is_empty() {
        return Err(EvmError::NoContract { address });
    }
    if found != expected {
        return Err(EvmError::WrongCode {
            address,
            found,
            expected,
        });
    }
    Ok(())
}

/// Deploys a `Subnet` with `config` from `provider`'s account; its address.
pub async fn deploy(provider: &DynProvider, config: Subnet::Config) -> Result<Address, EvmError> {
    let c = Subnet::deploy(provider.clone(), config)
        .await
        .map_err(EvmError::Deploy)?;
    Ok(*c.address())
}

/// Adds `wei` to `account`'s balance on a local development chain (anvil's `anvil_setBalance`):
/// the faucet of local networks. A real chain refuses the call, and the error says so.
pub async fn fund_on_dev_chain(
    provider: &DynProvider,
    account: Address,
    wei: alloy::primitives::U256,
) -> Result<(), EvmError> {
    let now = provider.get_balance(account).await?;
    let _: serde_json::Value = provider
        .raw_request(
            "anvil_setBalance".into(),
            (account, now.saturating_add(wei)),
        )
        .await
        .map_err(EvmError::NotDevChain)?;
    Ok(())
}
