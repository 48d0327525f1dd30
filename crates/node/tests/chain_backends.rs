//! The same node-level chain test on both backends: the embedded ledger, and the `Subnet`
//! contract on a real anvil node through `covenant_evm::EvmChain`. Each participant reaches the
//! chain through its own handle (a remote chain signs for one key), registers with the node's
//! own `setup::register`, and the snapshot rules a window's aggregation set depends on are
//! checked: who is registered and committed, which keys are validators, and consensus weights
//! that follow the weights set before the snapshot block, the same however late one asks.

use std::sync::Arc;

use covenant_evm::alloy::node_bindings::{Anvil, AnvilInstance};
use covenant_evm::alloy::primitives::{FixedBytes, U256};
use covenant_evm::{EvmChain, EvmOptions, Patience, Subnet};
use covenant_net::chain::{Genesis, ValidatorStake};
use covenant_net::clock::VirtualClock;
use covenant_net::{Chain, ChainError, Keypair, Ledger, Rejection, Transaction, TxBody};

const BLOCK_MS: u64 = 1_000;
const ETH: u128 = 1_000_000_000_000_000_000;

/// A chain every participant reaches through its own handle, and a way to let blocks pass.
trait Backend {
    fn chain(&self, key: &Keypair) -> Arc<dyn Chain>;
    fn advance(&self, blocks: u64);
    fn name(&self) -> &'static str;
}

struct Embedded {
    ledger: Arc<Ledger>,
    clock: VirtualClock,
}

impl Embedded {
    fn new(validator: &Keypair) -> Embedded {
        let clock = VirtualClock::new(1_000_000);
        let genesis = Genesis {
            run_id: "backends".into(),
            genesis_time_ms: 1_000_000,
            block_time_ms: BLOCK_MS,
            blocks_per_window: 5,
            max_uids: 8,
            immunity_blocks: 0,
            validators: vec![ValidatorStake {
                key: validator.public(),
                stake: 1_000,
            }],
            kappa: 0.5,
            registration_burn: 0,
            balances: vec![],
        };
        let ledger = Ledger::in_memory(&genesis, Arc::new(clock.clone())).unwrap();
        Embedded {
            ledger: Arc::new(ledger),
            clock,
        }
    }
}

impl Backend for Embedded {
    fn chain(&self, _: &Keypair) -> Arc<dyn Chain> {
        self.ledger.clone()
    }
    fn advance(&self, blocks: u64) {
        self.clock.advance(blocks * BLOCK_MS);
    }
    fn name(&self) -> &'static str {
        "embedded ledger"
    }
}

struct Evm {
    anvil: AnvilInstance,
    contract: covenant_evm::alloy::primitives::Address,
    owner: covenant_evm::alloy::providers::DynProvider,
    rt: tokio::runtime::Runtime,
}

impl Evm {
    fn new(validator: &Keypair, others: &[Keypair]) -> Evm {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let bin = covenant_evm::tools::anvil().unwrap_or_else(|e| panic!("{e}"));
        let anvil = Anvil::at(bin).spawn();
        let owner = covenant_evm::connect(anvil.endpoint_url(), anvil.keys()[0].clone().into());
        let config = Subnet::Config {
            netuid: 1,
            runId: "backends".into(),
            specHash: FixedBytes::ZERO,
            specUrl: String::new(),
            blocksPerWindow: 5,
            maxUids: 8,
            immunityBlocks: 0,
            registrationBurn: U256::ZERO,
            minValidatorStake: U256::from(ETH),
            unstakeDelayBlocks: 10,
            weightsRateLimit: 0,
            kappa: 500_000_000,
            versionKey: 0,
            commitReveal: false,
            revealDelayBlocks: 0,
            revealWindowBlocks: 0,
            epochBlocks: 100,
            emissionPerEpoch: U256::ZERO,
        };
        let contract = rt.block_on(covenant_evm::deploy(&owner, config)).unwrap();
        for k in std::iter::once(validator).chain(others) {
            let a = covenant_evm::evm_signer(k).unwrap().address();
            rt.block_on(covenant_evm::fund_on_dev_chain(
                &owner,
                a,
                U256::from(10 * ETH),
            ))
            .unwrap();
        }
        let evm = Evm {
            anvil,
            contract,
            owner,
            rt,
        };
        let mut v = evm.client(validator);
        v.stake(U256::from(2 * ETH)).unwrap();
        evm
    }

    fn client(&self, key: &Keypair) -> EvmChain {
        EvmChain::connect(EvmOptions {
            url: self.anvil.endpoint_url(),
            contract: self.contract,
            key: key.clone(),
            block_time_ms: BLOCK_MS,
            patience: Patience::default(),
            tls_roots: Vec::new(),
        })
        .unwrap()
    }
}

impl Backend for Evm {
    fn chain(&self, key: &Keypair) -> Arc<dyn Chain> {
        Arc::new(self.client(key))
    }
    fn advance(&self, blocks: u64) {
        use covenant_evm::alloy::providers::Provider;
        let _: serde_json::Value = self
            .rt
            .block_on(
                self.owner
                    .raw_request("anvil_mine".into(), (U256::from(blocks),)),
            )
            .unwrap();
    }
    fn name(&self) -> &'static str {
        "EVM contract on anvil"
    }
}

fn send(chain: &dyn Chain, key: &Keypair, body: TxBody) -> Result<u64, ChainError> {
    let nonce = chain.next_nonce(&key.public())?;
    let run = chain.genesis().run_id.clone();
    chain
        .submit(&Transaction::sign(key, &run, nonce, body))
        .map(|r| r.block)
}

fn the_rules_hold(b: &dyn Backend, validator: &Keypair, miners: &[Keypair]) {
    let who = b.name();
    let vc = b.chain(validator);
    assert_eq!(vc.genesis().run_id, "backends", "{who}");
    assert_eq!(vc.genesis().blocks_per_window, 5, "{who}");
    let v_uid = covenant_node::setup::register(vc.as_ref(), validator, "file:///v", None)
        .unwrap_or_else(|e| panic!("{who}: {e:#}"));
    let chains: Vec<_> = miners.iter().map(|k| b.chain(k)).collect();
    let mut uids = Vec::new();
    for (i, (k, c)) in miners.iter().zip(&chains).enumerate() {
        let url = format!("file:///m{i}");
        uids.push(covenant_node::setup::register(c.as_ref(), k, &url, None).unwrap());
    }
    assert_eq!(v_uid, 0, "{who}: the lowest free uid");
    assert_eq!(uids, vec![1, 2], "{who}");
    // Registering again changes nothing (the node's register finds itself registered).
    assert_eq!(
        covenant_node::setup::register(chains[0].as_ref(), &miners[0], "file:///m0", None).unwrap(),
        1,
        "{who}"
    );
    b.advance(1);
    let before = vc.block() + 1;
    let snap = vc.snapshot(before).unwrap();
    let keys: Vec<_> = snap.neurons.iter().map(|n| (n.uid, n.key)).collect();
    assert_eq!(
        keys,
        vec![
            (0, validator.public()),
            (1, miners[0].public()),
            (2, miners[1].public())
        ],
        "{who}"
    );
    let urls: Vec<_> = snap
        .neurons
        .iter()
        .map(|n| n.commitment.as_ref().map(|c| c.bucket_url.clone()))
        .collect();
    assert_eq!(
        urls,
        vec![
            Some("file:///v".into()),
            Some("file:///m0".into()),
            Some("file:///m1".into())
        ],
        "{who}"
    );
    assert!(snap.validators.contains(&validator.public()), "{who}");
    assert!(!snap.validators.contains(&miners[0].public()), "{who}");
    assert!(
        snap.neurons.iter().all(|n| n.consensus_weight == 0.0),
        "{who}"
    );
    // A miner may not set weights; a weight on an unknown uid is refused.
    let e = send(
        chains[0].as_ref(),
        &miners[0],
        TxBody::SetWeights {
            weights: vec![(2, 1)],
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, ChainError::Rejected(Rejection::NotValidator)),
        "{who}: {e}"
    );
    let e = send(
        vc.as_ref(),
        validator,
        TxBody::SetWeights {
            weights: vec![(9, 1)],
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, ChainError::Rejected(Rejection::InvalidWeights(_))),
        "{who}: {e}"
    );
    let set_at = send(
        vc.as_ref(),
        validator,
        TxBody::SetWeights {
            weights: vec![(1, 3), (2, 1)],
        },
    )
    .unwrap();
    b.advance(2);
    let old = vc.snapshot(set_at).unwrap();
    assert!(
        old.neurons.iter().all(|n| n.consensus_weight == 0.0),
        "{who}: weights set at block {set_at} count from block {}",
        set_at + 1
    );
    let new = vc.snapshot(set_at + 1).unwrap();
    let w: Vec<_> = new.neurons.iter().map(|n| n.consensus_weight).collect();
    assert!(
        (w[1] - 0.75).abs() < 1e-9 && (w[2] - 0.25).abs() < 1e-9 && w[0] == 0.0,
        "{who}: {w:?}"
    );
    // Asked later, by another node, the same block gives the same answer.
    b.advance(3);
    assert_eq!(chains[1].snapshot(set_at + 1).unwrap(), new, "{who}");
    let g = vc.genesis();
    let m = chains[1].metagraph().unwrap();
    assert_eq!(m.neurons.len(), 3, "{who}");
    assert_eq!(m.window, g.schedule().window_of_block(m.block), "{who}");
    let v = m
        .validators
        .iter()
        .find(|v| v.key == validator.public())
        .unwrap();
    assert_eq!(
        (v.uid, v.weights.clone()),
        (Some(0), vec![(1, 3), (2, 1)]),
        "{who}"
    );
    // Commitments are bounded on both.
    let e = send(
        chains[0].as_ref(),
        &miners[0],
        TxBody::Commit {
            bucket_url: "x".repeat(covenant_net::chain::MAX_URL + 1),
            read_credentials: String::new(),
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, ChainError::Rejected(Rejection::Malformed(_))),
        "{who}: {e}"
    );
}

fn keys() -> (Keypair, Vec<Keypair>) {
    (
        Keypair::from_seed([1; 32]),
        vec![Keypair::from_seed([2; 32]), Keypair::from_seed([3; 32])],
    )
}

#[test]
fn on_the_embedded_ledger() {
    let (v, m) = keys();
    the_rules_hold(&Embedded::new(&v), &v, &m);
}

#[test]
fn on_the_evm_contract() {
    let (v, m) = keys();
    the_rules_hold(&Evm::new(&v, &m), &v, &m);
}

/// A remote chain answers balances and nonces for the node's own key only, and says so.
#[test]
fn an_evm_client_speaks_for_its_own_key_only() {
    let (v, m) = keys();
    let evm = Evm::new(&v, &m);
    let c = evm.client(&m[0]);
    assert_eq!(c.balance(&m[0].public()).unwrap(), 10_000_000_000);
    let e = c.balance(&m[1].public()).unwrap_err();
    assert!(matches!(e, ChainError::Unsupported(_)), "{e}");
    let tx = Transaction::sign(&m[1], "backends", 1, TxBody::Register);
    assert!(matches!(c.submit(&tx), Err(ChainError::Unsupported(_))));
}

/// Found on the first real run on anvil: a validator stakes before it registers, and did not
/// know itself as a validator (so it kept no copies of the uploads it aggregated). Others
/// learn its key only from its registration, whose proof binds the key to the account.
#[test]
fn a_validator_knows_itself_by_its_stake_before_it_registers() {
    let (v, m) = keys();
    let evm = Evm::new(&v, &m);
    let own = evm.client(&v);
    assert!(own.genesis().validator_keys().contains(&v.public()));
    let other = evm.client(&m[0]);
    assert!(!other.genesis().validator_keys().contains(&v.public()));
    covenant_node::setup::register(&own, &v, "file:///v", None).unwrap();
    let other = evm.client(&m[0]);
    assert!(other.genesis().validator_keys().contains(&v.public()));
}

/// A TCP forwarder to anvil that can be cut (connections refused and open ones dropped) and
/// restored, to take the RPC endpoint away from a client without losing the chain.
struct Link {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl Link {
    fn to(target: std::net::SocketAddr) -> Link {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        from.set_read_timeout(Some(std::time::Duration::from_millis(50)))
                            .unwrap();
                        while flag.load(Ordering::SeqCst) {
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Link { port, up }
    }
    fn set(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Issue 13: when the RPC endpoint goes away, a read retries with backoff and succeeds once it
/// is back; past the client's patience it fails with an error naming the endpoint, and the
/// same client works again afterwards.
#[test]
fn an_unreachable_endpoint_is_retried_then_named_and_the_client_carries_on() {
    let (v, m) = keys();
    let evm = Evm::new(&v, &m);
    let anvil_addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", evm.anvil.port()).parse().unwrap();
    let link = Link::to(anvil_addr);
    let url: covenant_evm::alloy::transports::http::reqwest::Url =
        format!("http://127.0.0.1:{}", link.port).parse().unwrap();
    let patience = Patience {
        first_backoff_ms: 100,
        max_backoff_ms: 400,
        total_ms: 3_000,
        request_ms: 1_000,
    };
    let c = EvmChain::connect(EvmOptions {
        url: url.clone(),
        contract: evm.contract,
        key: m[0].clone(),
        block_time_ms: BLOCK_MS,
        patience,
        tls_roots: Vec::new(),
    })
    .unwrap();
    let block = c.block() + 1;
    let before = c.snapshot(block).unwrap();
    // Down for a second: the read waits it out.
    link.set(false);
    let restore = std::thread::spawn({
        let up = link.up.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(1_000));
            up.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let t = std::time::Instant::now();
    assert_eq!(c.snapshot(block).unwrap(), before);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(900),
        "it waited"
    );
    restore.join().unwrap();
    // Down for longer than the patience: a clear error naming the endpoint.
    link.set(false);
    let e = c.snapshot(block).unwrap_err();
    assert!(matches!(e, ChainError::Endpoint { .. }), "{e}");
    assert!(
        c.block() >= block - 1,
        "the head does not go back while unreachable"
    );
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{}", link.port)),
        "{e}"
    );
    // Back: the same client carries on.
    link.set(true);
    assert_eq!(c.snapshot(block).unwrap(), before);
}

/// Issue 13: a registration with too little funds gets a clear error naming what it needs, and
/// a node pointed at an address without the contract stops before trusting anything it reads.
#[test]
fn too_little_funds_and_a_wrong_address_are_refused_clearly() {
    let (v, m) = keys();
    let evm = Evm::new(&v, &m);
    let poor = Keypair::from_seed([9; 32]);
    let c = evm.client(&poor);
    let e = covenant_node::setup::register(&c, &poor, "file:///p", None).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("balance 0 is below"), "{msg}");
    assert!(msg.contains("fund it"), "{msg}");
    assert_eq!(
        c.metagraph().unwrap().neurons.len(),
        0,
        "nothing registered"
    );
    let wrong = EvmChain::connect(EvmOptions {
        url: evm.anvil.endpoint_url(),
        contract: covenant_evm::alloy::primitives::Address::repeat_byte(0x42),
        key: poor,
        block_time_ms: BLOCK_MS,
        patience: Patience::default(),
        tls_roots: Vec::new(),
    });
    assert!(
        matches!(wrong, Err(covenant_evm::EvmError::NoContract { .. })),
        "{:?}",
        wrong.err()
    );
}
