//! `covenant chain`: the embedded chain ledger (a SQLite file shared by the processes of one
//! machine): create it, show the metagraph, and send signed transactions by hand.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use covenant_net::chain::text::{
    parse_balance, parse_duration_ms, parse_public_key, parse_validator, parse_weights,
};
use covenant_net::chain::Genesis;
use covenant_net::{Chain, Clock, Keypair, Ledger, SystemClock, Transaction, TxBody};

#[derive(clap::Subcommand)]
pub enum ChainCommand {
    /// Create a ledger with its genesis (run id, timing, uid slots, validators and stakes).
    Init {
        /// Directory of the ledger (ledger.sqlite3 is created there).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        run_id: String,
        /// Block time, e.g. 1s, 500ms, 12s.
        #[arg(long, default_value = "1s")]
        block_time: String,
        #[arg(long, default_value_t = 20)]
        blocks_per_window: u64,
        #[arg(long, default_value_t = 256)]
        max_uids: u32,
        /// A validator as KEY:STAKE, KEY being a public key in hex or a key file; repeatable.
        #[arg(long = "validator", value_name = "KEY:STAKE")]
        validators: Vec<String>,
        /// Blocks after registration during which a uid cannot be replaced.
        #[arg(long, default_value_t = 100)]
        immunity: u64,
        /// Genesis time in Unix milliseconds (default: now).
        #[arg(long)]
        genesis_time_ms: Option<u64>,
        /// Consensus threshold: share of stake that must back a weight.
        #[arg(long, default_value_t = 0.5)]
        kappa: f64,
        /// Burned from the signer's balance by every registration (0: free).
        #[arg(long, default_value_t = 0)]
        registration_burn: u64,
        /// A genesis balance as KEY:AMOUNT (public key in hex or a key file); repeatable.
        #[arg(long = "fund", value_name = "KEY:AMOUNT")]
        funds: Vec<String>,
    },
    /// Print a key's balance.
    Balance {
        #[arg(long)]
        dir: PathBuf,
        /// A public key in hex or a key file.
        #[arg(long)]
        key: String,
    },
    /// Move tokens from this key's balance to another key.
    Transfer {
        #[arg(long)]
        dir: PathBuf,
        /// Key file of the payer.
        #[arg(long)]
        key: PathBuf,
        /// The payee: a public key in hex or a key file.
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: u64,
    },
    /// Print the metagraph: uids, keys, commitments, stakes, last weights, consensus weights.
    Status {
        /// The embedded ledger's directory (or --chain and --contract).
        #[arg(long, required_unless_present = "chain", conflicts_with = "chain")]
        dir: Option<PathBuf>,
        /// An EVM chain's JSON-RPC URL.
        #[arg(long, requires = "contract")]
        chain: Option<String>,
        /// The `Subnet` contract's address on --chain.
        #[arg(long, requires = "chain")]
        contract: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the Ethereum account a key sends its EVM transactions from.
    Account {
        /// Key file (from `covenant keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Add ETH from a key's account to an EVM chain's emission pool.
    FundPool {
        #[arg(long)]
        chain: String,
        #[arg(long)]
        contract: String,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        eth: f64,
    },
    /// Pay the last finished epoch's rewards on an EVM chain (anyone may); prints JSON: the
    /// wei credited per uid, and the consensus weights around the block.
    PayEpoch {
        #[arg(long)]
        chain: String,
        #[arg(long)]
        contract: String,
        #[arg(long)]
        key: PathBuf,
    },
    /// Add ETH to an account on a local development chain (anvil): the local faucet.
    Fund {
        #[arg(long)]
        chain: String,
        /// The account (0x…), or a key file whose account to fund.
        #[arg(long)]
        to: String,
        #[arg(long)]
        eth: f64,
    },
    /// Register a key for a uid.
    Register {
        #[arg(long)]
        dir: PathBuf,
        /// Key file (from `covenant keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Publish where this key's bucket is and how to read it.
    Commit {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// e.g. s3://bucket/prefix or file:///path
        #[arg(long)]
        bucket_url: String,
        /// Read-only credentials for the bucket (empty for a public or local bucket).
        #[arg(long, default_value = "")]
        read_credentials: String,
    },
    /// Set a validator's weights, as uid:weight,uid:weight,...
    SetWeights {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        weights: String,
    },
}

pub fn run(c: ChainCommand) -> Result<()> {
    match c {
        ChainCommand::Init {
            dir,
            run_id,
            block_time,
            blocks_per_window,
            max_uids,
            validators,
            immunity,
            genesis_time_ms,
            kappa,
            registration_burn,
            funds,
        } => {
            let block_time_ms = parse_duration_ms(&block_time).map_err(anyhow::Error::msg)?;
            let validators = validators
                .iter()
                .map(|v| parse_validator(v))
                .collect::<Result<Vec<_>, _>>()?;
            if validators.is_empty() {
                bail!("at least one --validator KEY:STAKE is needed (nobody could set weights)");
            }
            let genesis = Genesis {
                run_id,
                genesis_time_ms: genesis_time_ms.unwrap_or_else(|| SystemClock.now_ms()),
                block_time_ms,
                blocks_per_window,
                max_uids,
                immunity_blocks: immunity,
                validators,
                kappa,
                registration_burn,
                balances: funds
                    .iter()
                    .map(|f| parse_balance(f))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ledger::init(&dir, &genesis)?;
            println!("created chain ledger in {}", dir.display());
            Ok(())
        }
        ChainCommand::Status {
            dir,
            chain,
            contract,
            json,
        } => {
            let m = match (dir, chain) {
                (Some(dir), _) => Ledger::open(&dir)?.metagraph()?,
                (None, Some(url)) => {
                    let c = evm_chain(&url, &contract.unwrap_or_default(), None)?;
                    c.metagraph()?
                }
                (None, None) => bail!("give --dir, or --chain and --contract"),
            };
            if json {
                println!("{}", m.to_json_pretty());
            } else {
                print!("{}", m.render());
            }
            Ok(())
        }
        ChainCommand::Account { key } => {
            let key =
                Keypair::load(&key).with_context(|| format!("loading key {}", key.display()))?;
            println!("{}", covenant_evm::evm_signer(&key)?.address());
            Ok(())
        }
        ChainCommand::Fund { chain, to, eth } => fund(&chain, &to, eth),
        ChainCommand::FundPool {
            chain,
            contract,
            key,
            eth,
        } => {
            let wei = super::node::eth_to_wei(eth);
            anyhow::ensure!(wei > 0, "--eth must be positive");
            evm_chain(&chain, &contract, Some(&key))?
                .fund_pool(covenant_evm::alloy::primitives::U256::from(wei))?;
            println!("added {eth} ETH to the emission pool");
            Ok(())
        }
        ChainCommand::PayEpoch {
            chain,
            contract,
            key,
        } => {
            let paid = evm_chain(&chain, &contract, Some(&key))?.pay_epoch()?;
            println!("{}", serde_json::to_string(&paid)?);
            Ok(())
        }
        ChainCommand::Balance { dir, key } => {
            let key = parse_public_key(&key).map_err(anyhow::Error::msg)?;
            println!("{}", Ledger::open(&dir)?.balance(&key)?);
            Ok(())
        }
        ChainCommand::Transfer {
            dir,
            key,
            to,
            amount,
        } => {
            let to = parse_public_key(&to).map_err(anyhow::Error::msg)?;
            let r = send(&dir, &key, TxBody::Transfer { to, amount })?;
            println!("transferred {amount} to {to} at block {}", r.block);
            Ok(())
        }
        ChainCommand::Register { dir, key } => {
            let r = send(&dir, &key, TxBody::Register)?;
            match (r.uid, r.replaced) {
                (Some(u), Some(old)) => println!(
                    "registered as uid {u} (replaced {old}) at block {}",
                    r.block
                ),
                (Some(u), None) => println!("registered as uid {u} at block {}", r.block),
                _ => println!("registered at block {}", r.block),
            }
            Ok(())
        }
        ChainCommand::Commit {
            dir,
            key,
            bucket_url,
            read_credentials,
        } => {
            let r = send(
                &dir,
                &key,
                TxBody::Commit {
                    bucket_url,
                    read_credentials,
                },
            )?;
            println!(
                "committed for uid {} at block {}",
                r.uid.map(|u| u.to_string()).unwrap_or_default(),
                r.block
            );
            Ok(())
        }
        ChainCommand::SetWeights { dir, key, weights } => {
            let weights = parse_weights(&weights).map_err(anyhow::Error::msg)?;
            let r = send(&dir, &key, TxBody::SetWeights { weights })?;
            println!("weights set at block {}", r.block);
            Ok(())
        }
    }
}

fn send(
    dir: &std::path::Path,
    key: &std::path::Path,
    body: TxBody,
) -> Result<covenant_net::chain::Receipt> {
    let key = Keypair::load(key).with_context(|| format!("loading key {}", key.display()))?;
    let chain = Ledger::open(dir)?;
    let nonce = chain.next_nonce(&key.public())?;
    let tx = Transaction::sign(&key, &chain.genesis().run_id, nonce, body);
    Ok(chain.submit(&tx)?)
}

/// A client of an EVM chain's contract, as `key` (a throwaway key when only reading).
fn evm_chain(
    url: &str,
    contract: &str,
    key: Option<&std::path::Path>,
) -> Result<covenant_evm::EvmChain> {
    use covenant_evm::{EvmChain, EvmOptions, Patience};
    let key = match key {
        Some(k) => Keypair::load(k).with_context(|| format!("loading key {}", k.display()))?,
        None => Keypair::generate()?,
    };
    EvmChain::connect(EvmOptions {
        url: url
            .parse()
            .with_context(|| format!("--chain {url:?} is not a URL"))?,
        contract: contract.parse().with_context(|| {
            format!("--contract {contract:?} is not an address (0x and 40 hex digits)")
        })?,
        key,
        // What these commands print is in blocks and windows, which do not depend on it.
        block_time_ms: 1_000,
        patience: Patience::default(),
        tls_roots: covenant_evm::tls_roots_from_env()?,
    })
    .with_context(|| format!("reading the contract {contract} on {url}"))
}

fn fund(url: &str, to: &str, eth: f64) -> Result<()> {
    use covenant_evm::alloy::primitives::{Address, U256};
    let account: Address = match to.parse() {
        Ok(a) => a,
        Err(_) => {
            let key = Keypair::load(std::path::Path::new(to))
                .with_context(|| format!("--to {to:?} is neither an address nor a key file"))?;
            covenant_evm::evm_signer(&key)?.address()
        }
    };
    let wei = super::node::eth_to_wei(eth);
    anyhow::ensure!(wei > 0, "--eth must be positive");
    let provider = covenant_evm::connect(
        url.parse()
            .with_context(|| format!("--chain {url:?} is not a URL"))?,
        covenant_evm::evm_signer(&Keypair::generate()?)?,
    );
    tokio::runtime::Runtime::new()?.block_on(covenant_evm::fund_on_dev_chain(
        &provider,
        account,
        U256::from(wei),
    ))?;
    println!("funded {account} with {eth} ETH");
    Ok(())
}
