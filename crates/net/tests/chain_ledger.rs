//! The embedded chain ledger: transactions, rejections, replacement, consensus, and many OS
//! processes sharing one ledger.

use std::sync::Arc;

use covenant_net::chain::{Receipt, ValidatorStake};
use covenant_net::{
    Balance, Chain, ChainError, Clock, Genesis, Keypair, Ledger, Rejection, Transaction, TxBody,
    VirtualClock,
};

const T0: u64 = 1_700_000_000_000;

fn genesis(validators: &[(&Keypair, u64)], max_uids: u32, immunity: u64) -> Genesis {
    Genesis {
        run_id: "test-run".into(),
        genesis_time_ms: T0,
        block_time_ms: 1000,
        blocks_per_window: 10,
        max_uids,
        immunity_blocks: immunity,
        validators: validators
            .iter()
            .map(|(k, s)| ValidatorStake {
                key: k.public(),
                stake: *s,
            })
            .collect(),
        kappa: 0.5,
        registration_burn: 0,
        balances: vec![],
    }
}

fn ledger(g: &Genesis) -> (tempfile::TempDir, Ledger, VirtualClock) {
    let dir = tempfile::tempdir().unwrap();
    Ledger::init(dir.path(), g).unwrap();
    let clock = VirtualClock::new(T0);
    let l = Ledger::open_with_clock(dir.path(), Arc::new(clock.clone())).unwrap();
    (dir, l, clock)
}

fn send(chain: &Ledger, key: &Keypair, body: TxBody) -> Result<Receipt, ChainError> {
    let nonce = chain.next_nonce(&key.public()).unwrap();
    chain.submit(&Transaction::sign(key, "test-run", nonce, body))
}

fn rejection(r: Result<Receipt, ChainError>) -> Rejection {
    match r {
        Err(ChainError::Rejected(j)) => j,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn blocks_and_windows_follow_the_clock() {
    let v = Keypair::from_seed([1; 32]);
    let (_d, chain, clock) = ledger(&genesis(&[(&v, 1)], 4, 0));
    assert_eq!((chain.block(), chain.window()), (0, 0));
    clock.advance(9_999);
    assert_eq!((chain.block(), chain.window()), (9, 0));
    clock.advance(1);
    assert_eq!((chain.block(), chain.window()), (10, 1));
    clock.advance(125_000);
    assert_eq!((chain.block(), chain.window()), (135, 13));
    assert_eq!(chain.genesis().schedule().window_start_ms(13), T0 + 130_000);
}

#[test]
fn register_commit_and_metagraph() {
    let v = Keypair::from_seed([1; 32]);
    let (_d, chain, clock) = ledger(&genesis(&[(&v, 100)], 8, 0));
    let a = Keypair::from_seed([10; 32]);
    let b = Keypair::from_seed([11; 32]);
    assert_eq!(send(&chain, &a, TxBody::Register).unwrap().uid, Some(0));
    clock.advance(3000);
    let r = send(&chain, &b, TxBody::Register).unwrap();
    assert_eq!((r.uid, r.block), (Some(1), 3));
    assert_eq!(
        rejection(send(&chain, &a, TxBody::Register)),
        Rejection::AlreadyRegistered(0)
    );
    let commit = TxBody::Commit {
        bucket_url: "s3://bucket-a/run".into(),
        read_credentials: "ro-key:ro-secret".into(),
    };
    assert_eq!(send(&chain, &a, commit).unwrap().uid, Some(0));
    let stranger = Keypair::from_seed([12; 32]);
    let commit = TxBody::Commit {
        bucket_url: "file:///x".into(),
        read_credentials: String::new(),
    };
    assert_eq!(
        rejection(send(&chain, &stranger, commit)),
        Rejection::NotRegistered
    );

    let m = chain.metagraph().unwrap();
    assert_eq!(m.neurons.len(), 2);
    assert_eq!(m.uid_of(&b.public()), Some(1));
    assert_eq!(
        m.neuron(0).unwrap().commitment.as_ref().unwrap().bucket_url,
        "s3://bucket-a/run"
    );
    assert!(m.neuron(1).unwrap().commitment.is_none());
    assert_eq!(m.validators[0].stake, 100);
    assert_eq!(m.block, 3);
}

#[test]
fn forged_replayed_and_foreign_transactions_change_nothing() {
    let v = Keypair::from_seed([1; 32]);
    let (_d, chain, _clock) = ledger(&genesis(&[(&v, 100)], 8, 0));
    let a = Keypair::from_seed([10; 32]);
    let mallory = Keypair::from_seed([66; 32]);
    send(&chain, &a, TxBody::Register).unwrap();
    let before = chain.metagraph().unwrap();

    // Forged: mallory signs a commit and claims it comes from a.
    let mut forged = Transaction::sign(
        &mallory,
        "test-run",
        99,
        TxBody::Commit {
            bucket_url: "s3://evil".into(),
            read_credentials: String::new(),
        },
    );
    forged.signer = a.public();
    assert_eq!(
        rejection(chain.submit(&forged)),
        Rejection::BadSignature(a.public())
    );
    // Tampered body after signing.
    let mut tampered = Transaction::sign(
        &a,
        "test-run",
        50,
        TxBody::Commit {
            bucket_url: "s3://good".into(),
            read_credentials: String::new(),
        },
    );
    tampered.body = TxBody::Commit {
        bucket_url: "s3://evil".into(),
        read_credentials: String::new(),
    };
    assert!(matches!(
        rejection(chain.submit(&tampered)),
        Rejection::BadSignature(_)
    ));
    // Garbage signature.
    let mut garbage = Transaction::sign(&a, "test-run", 51, TxBody::Register);
    garbage.signature = "xyz".into();
    assert!(matches!(
        rejection(chain.submit(&garbage)),
        Rejection::Malformed(_)
    ));
    // Other run.
    let other = Transaction::sign(
        &a,
        "other-run",
        52,
        TxBody::Commit {
            bucket_url: "s3://x".into(),
            read_credentials: String::new(),
        },
    );
    assert!(matches!(
        rejection(chain.submit(&other)),
        Rejection::WrongRun { .. }
    ));
    // Non-validator setting weights.
    assert_eq!(
        rejection(send(
            &chain,
            &a,
            TxBody::SetWeights {
                weights: vec![(0, 1)]
            }
        )),
        Rejection::NotValidator
    );
    assert_eq!(
        chain.metagraph().unwrap(),
        before,
        "rejected transactions changed the chain"
    );

    // Replay: an accepted transaction submitted again, and an older nonce.
    let tx = Transaction::sign(
        &a,
        "test-run",
        chain.next_nonce(&a.public()).unwrap(),
        TxBody::Commit {
            bucket_url: "s3://good".into(),
            read_credentials: String::new(),
        },
    );
    chain.submit(&tx).unwrap();
    let after_commit = chain.metagraph().unwrap();
    assert!(matches!(
        rejection(chain.submit(&tx)),
        Rejection::Replay { .. }
    ));
    let stale = Transaction::sign(
        &a,
        "test-run",
        1,
        TxBody::Commit {
            bucket_url: "s3://old".into(),
            read_credentials: String::new(),
        },
    );
    assert!(matches!(
        rejection(chain.submit(&stale)),
        Rejection::Replay { .. }
    ));
    assert_eq!(chain.metagraph().unwrap(), after_commit);

    // Oversized fields and bad weights.
    let big = TxBody::Commit {
        bucket_url: "s".repeat(10_000),
        read_credentials: String::new(),
    };
    assert!(matches!(
        rejection(send(&chain, &a, big)),
        Rejection::Malformed(_)
    ));
    assert!(matches!(
        rejection(send(
            &chain,
            &v,
            TxBody::SetWeights {
                weights: vec![(0, 1), (0, 2)]
            }
        )),
        Rejection::InvalidWeights(_)
    ));
    assert!(matches!(
        rejection(send(
            &chain,
            &v,
            TxBody::SetWeights {
                weights: vec![(8, 1)]
            }
        )),
        Rejection::InvalidWeights(_)
    ));
    assert_eq!(chain.metagraph().unwrap().neurons, after_commit.neurons);
}

#[test]
fn full_registry_replaces_lowest_weight_uid_past_immunity() {
    let v = Keypair::from_seed([1; 32]);
    let (_d, chain, clock) = ledger(&genesis(&[(&v, 100)], 3, 5));
    let miners: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed([20 + i; 32])).collect();
    for m in &miners {
        send(&chain, m, TxBody::Register).unwrap();
    }
    let newcomer = Keypair::from_seed([30; 32]);
    // Everybody still immune (registered at block 0, immunity 5 blocks).
    clock.advance(4_000);
    assert_eq!(
        rejection(send(&chain, &newcomer, TxBody::Register)),
        Rejection::Full(3)
    );
    // The validator values uids 0 and 2; uid 1 has the lowest weight.
    send(
        &chain,
        &v,
        TxBody::SetWeights {
            weights: vec![(0, 10), (2, 5)],
        },
    )
    .unwrap();
    clock.advance(1_000);
    let r = send(&chain, &newcomer, TxBody::Register).unwrap();
    assert_eq!(r.uid, Some(1));
    assert_eq!(r.replaced, Some(miners[1].public()));
    let m = chain.metagraph().unwrap();
    assert_eq!(m.uid_of(&newcomer.public()), Some(1));
    assert_eq!(m.uid_of(&miners[1].public()), None);
    assert!(m.neuron(1).unwrap().immune);
    // The evicted key's old weights do not carry over to the newcomer.
    assert_eq!(m.validators[0].weights, vec![(0, 10), (2, 5)]);
    assert_eq!(m.neuron(1).unwrap().consensus_weight, 0.0);
}

#[test]
fn consensus_with_a_dishonest_minority_validator() {
    let honest1 = Keypair::from_seed([1; 32]);
    let honest2 = Keypair::from_seed([2; 32]);
    let liar = Keypair::from_seed([3; 32]);
    let (_d, chain, _clock) = ledger(&genesis(
        &[(&honest1, 40), (&honest2, 35), (&liar, 25)],
        8,
        0,
    ));
    let miners: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed([40 + i; 32])).collect();
    for m in &miners {
        send(&chain, m, TxBody::Register).unwrap();
    }
    send(
        &chain,
        &honest1,
        TxBody::SetWeights {
            weights: vec![(0, 300), (1, 200), (2, 100)],
        },
    )
    .unwrap();
    send(
        &chain,
        &honest2,
        TxBody::SetWeights {
            weights: vec![(0, 3), (1, 2), (2, 1)],
        },
    )
    .unwrap();
    // The liar puts everything on uid 3 (say, its own miner).
    send(
        &chain,
        &liar,
        TxBody::SetWeights {
            weights: vec![(3, u16::MAX)],
        },
    )
    .unwrap();
    let m = chain.metagraph().unwrap();
    let w: Vec<f64> = m.neurons.iter().map(|n| n.consensus_weight).collect();
    assert_eq!(w[3], 0.0, "minority-backed uid rewarded: {w:?}");
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(
        (w[0] - 0.5).abs() < 1e-9 && (w[1] - 1.0 / 3.0).abs() < 1e-9,
        "{w:?}"
    );
    assert_eq!(m.aggregation_set(2), vec![0, 1]);
    assert_eq!(m.aggregation_set(10), vec![0, 1, 2]);
    // Deterministic: another process opening the same ledger computes the same state.
    let again = Ledger::open_with_clock(
        chain.path().parent().unwrap(),
        Arc::new(VirtualClock::new(T0)),
    )
    .unwrap();
    assert_eq!(again.metagraph().unwrap(), m);
}

#[test]
fn init_refuses_existing_and_bad_genesis() {
    let v = Keypair::from_seed([1; 32]);
    let g = genesis(&[(&v, 1)], 4, 0);
    let dir = tempfile::tempdir().unwrap();
    Ledger::init(dir.path(), &g).unwrap();
    assert!(matches!(
        Ledger::init(dir.path(), &g),
        Err(ChainError::Exists { .. })
    ));
    let mut bad = g.clone();
    bad.blocks_per_window = 0;
    assert!(matches!(
        Ledger::init(&dir.path().join("x"), &bad),
        Err(ChainError::Genesis(_))
    ));
    let mut bad = g.clone();
    bad.validators.push(bad.validators[0].clone());
    assert!(matches!(
        Ledger::init(&dir.path().join("y"), &bad),
        Err(ChainError::Genesis(_))
    ));
    assert!(matches!(
        Ledger::open(&dir.path().join("none")),
        Err(ChainError::Missing { .. })
    ));
}

// ---- many OS processes sharing one ledger -------------------------------------------------

const CHILD_DIR: &str = "COVENANT_TEST_CHAIN_CHILD_DIR";
const CHILD_INDEX: &str = "COVENANT_TEST_CHAIN_CHILD_INDEX";
const PROCS: u8 = 6;
const KEYS_PER_PROC: u8 = 5;

/// Run by the child processes (a no-op in a normal test run).
#[test]
fn child_worker() {
    let (Some(dir), Some(idx)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_INDEX).ok())
    else {
        return;
    };
    let idx: u8 = idx.parse().unwrap();
    let chain = Ledger::open(std::path::Path::new(&dir)).unwrap();
    for k in 0..KEYS_PER_PROC {
        let key = Keypair::from_seed([100 + idx * KEYS_PER_PROC + k; 32]);
        let r = send(&chain, &key, TxBody::Register).unwrap();
        let uid = r.uid.unwrap();
        let body = TxBody::Commit {
            bucket_url: format!("file:///buckets/p{idx}-k{k}"),
            read_credentials: format!("uid{uid}"),
        };
        assert_eq!(send(&chain, &key, body).unwrap().uid, Some(uid));
    }
}

#[test]
fn many_processes_register_and_commit_concurrently() {
    let v = Keypair::from_seed([1; 32]);
    let dir = tempfile::tempdir().unwrap();
    let mut g = genesis(&[(&v, 1)], 64, 0);
    g.genesis_time_ms = covenant_net::SystemClock.now_ms();
    Ledger::init(dir.path(), &g).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|i| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_worker", "--test-threads", "1"])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_INDEX, i.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "child ran no test"
        );
    }
    let m = Ledger::open(dir.path()).unwrap().metagraph().unwrap();
    let n = (PROCS * KEYS_PER_PROC) as usize;
    assert_eq!(m.neurons.len(), n, "lost or extra uids");
    let mut uids: Vec<u32> = m.neurons.iter().map(|x| x.uid).collect();
    uids.dedup();
    assert_eq!(
        uids,
        (0..n as u32).collect::<Vec<_>>(),
        "uids not dense/unique"
    );
    let mut keys: Vec<_> = m.neurons.iter().map(|x| x.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key holds two uids");
    for nrn in &m.neurons {
        let c = nrn
            .commitment
            .as_ref()
            .unwrap_or_else(|| panic!("uid {} lost its commitment", nrn.uid));
        assert_eq!(
            c.read_credentials,
            format!("uid{}", nrn.uid),
            "commitment landed on the wrong uid"
        );
    }
}

#[test]
fn snapshot_at_a_block_ignores_later_registrations_and_weights() {
    let v = Keypair::from_seed([1; 32]);
    let (_d, chain, clock) = ledger(&genesis(&[(&v, 100)], 8, 0));
    let a = Keypair::from_seed([10; 32]);
    let b = Keypair::from_seed([11; 32]);
    send(&chain, &a, TxBody::Register).unwrap(); // block 0 → uid 0
    clock.advance(2000);
    send(
        &chain,
        &v,
        TxBody::SetWeights {
            weights: vec![(0, 100)],
        },
    )
    .unwrap(); // block 2
    clock.advance(3000);
    send(&chain, &b, TxBody::Register).unwrap(); // block 5 → uid 1
    send(
        &chain,
        &v,
        TxBody::SetWeights {
            weights: vec![(0, 10), (1, 90)],
        },
    )
    .unwrap(); // block 5
    clock.advance(5000);

    let at = |block| {
        let s = chain.snapshot(block).unwrap();
        s.neurons
            .iter()
            .map(|n| (n.uid, (n.consensus_weight * 100.0).round() as i64))
            .collect::<Vec<_>>()
    };
    assert_eq!(at(0), vec![]);
    assert_eq!(at(1), vec![(0, 0)]); // registered, no weights yet
    assert_eq!(at(3), vec![(0, 100)]);
    assert_eq!(at(5), vec![(0, 100)]); // block-5 changes are not before block 5
    assert_eq!(at(6), vec![(0, 10), (1, 90)]);
    // Asking again later gives the same answer.
    clock.advance(60_000);
    send(
        &chain,
        &v,
        TxBody::SetWeights {
            weights: vec![(0, 50)],
        },
    )
    .unwrap();
    assert_eq!(at(3), vec![(0, 100)]);
    assert_eq!(at(6), vec![(0, 10), (1, 90)]);
    // The current metagraph agrees with a snapshot after the last change.
    let now = chain.block() + 1;
    let m = chain.metagraph().unwrap();
    let s = chain.snapshot(now).unwrap();
    assert_eq!(
        m.neurons
            .iter()
            .map(|n| (n.uid, n.consensus_weight))
            .collect::<Vec<_>>(),
        s.neurons
            .iter()
            .map(|n| (n.uid, n.consensus_weight))
            .collect::<Vec<_>>()
    );
}

/// Consensus weights per uid, in percent, of the snapshot at `block`.
fn weights_at(chain: &Ledger, block: u64) -> Vec<(u32, i64)> {
    let s = chain.snapshot(block).unwrap();
    s.neurons
        .iter()
        .map(|n| (n.uid, (n.consensus_weight * 100.0).round() as i64))
        .collect()
}

/// A transaction that waits for SQLite's write lock while block 10 begins must not land in
/// block 9 or earlier: a node that already read `snapshot(10)` would otherwise hold a set that
/// a later reader no longer gets.
#[test]
fn transaction_waiting_for_the_write_lock_cannot_change_a_passed_snapshot() {
    let v = Keypair::from_seed([1; 32]);
    let a = Keypair::from_seed([10; 32]);
    let (dir, chain, clock) = ledger(&genesis(&[(&v, 100)], 8, 0));
    send(&chain, &a, TxBody::Register).unwrap(); // block 0 → uid 0
    clock.advance(5000);
    // A second process with the same clock, and a third that holds the write lock.
    let writer = Ledger::open_with_clock(dir.path(), Arc::new(clock.clone())).unwrap();
    let tx = Transaction::sign(
        &v,
        "test-run",
        writer.next_nonce(&v.public()).unwrap(),
        TxBody::SetWeights {
            weights: vec![(0, 100)],
        },
    );
    let holder =
        rusqlite::Connection::open(dir.path().join(covenant_net::chain::ledger::LEDGER_FILE))
            .unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (receipt, first) = std::thread::scope(|s| {
        let late = s.spawn(|| writer.submit(&tx));
        // The submitter is now waiting for the lock (at block 5) …
        std::thread::sleep(std::time::Duration::from_millis(300));
        // … while block 10 begins and a node reads its snapshot.
        clock.advance(5000);
        let read = s.spawn(|| weights_at(&chain, 10));
        std::thread::sleep(std::time::Duration::from_millis(300));
        holder.execute_batch("COMMIT").unwrap();
        (late.join().unwrap().unwrap(), read.join().unwrap())
    });
    assert_eq!(
        weights_at(&chain, 10),
        first,
        "snapshot(10) changed after it was read (the transaction landed in block {})",
        receipt.block
    );
    assert!(receipt.block >= 10, "stamped {}", receipt.block);
    assert_eq!(weights_at(&chain, 11), vec![(0, 100)]);
}

/// A clock that steps back (an NTP correction) must not reopen a block a node has read.
#[test]
fn clock_stepping_back_cannot_change_a_passed_snapshot() {
    let v = Keypair::from_seed([1; 32]);
    let a = Keypair::from_seed([10; 32]);
    let (_d, chain, clock) = ledger(&genesis(&[(&v, 100)], 8, 0));
    send(&chain, &a, TxBody::Register).unwrap(); // block 0 → uid 0
    clock.set(T0 + 12_000);
    let first = weights_at(&chain, 12);
    assert_eq!(first, vec![(0, 0)]);
    clock.set(T0 + 11_000);
    let r = send(
        &chain,
        &v,
        TxBody::SetWeights {
            weights: vec![(0, 100)],
        },
    )
    .unwrap();
    assert_eq!(weights_at(&chain, 12), first, "stamped {}", r.block);
    assert_eq!(r.block, 12);
    assert_eq!(weights_at(&chain, 13), vec![(0, 100)]);
}

/// Issue 14 item 16: the burn share of validators' weights reaches the chain, and nobody is
/// paid it.
#[test]
fn the_burn_share_reaches_the_chain_and_pays_nobody() {
    use covenant_core::weights::BURN_UID;
    let v1 = Keypair::from_seed([1; 32]);
    let v2 = Keypair::from_seed([2; 32]);
    let (_d, chain, clock) = ledger(&genesis(&[(&v1, 50), (&v2, 50)], 8, 0));
    let miners: Vec<Keypair> = (0..2).map(|i| Keypair::from_seed([40 + i; 32])).collect();
    for m in &miners {
        send(&chain, m, TxBody::Register).unwrap();
    }
    clock.advance(1000);
    for v in [&v1, &v2] {
        let weights = vec![(0, 30_000), (1, 10_000), (BURN_UID, 40_000)];
        send(&chain, v, TxBody::SetWeights { weights }).unwrap();
    }
    clock.advance(2000);
    let snap = chain.snapshot(chain.block()).unwrap();
    let w: Vec<f64> = snap.neurons.iter().map(|n| n.consensus_weight).collect();
    assert!((snap.burned - 0.5).abs() < 1e-9, "burned {}", snap.burned);
    assert!(
        (w[0] - 0.375).abs() < 1e-9 && (w[1] - 0.125).abs() < 1e-9,
        "{w:?}"
    );
    assert!(snap.neurons.iter().all(|n| n.uid != BURN_UID));
}

/// Registering was free, so a flood of identities cost nothing (issue 14 item 15). Now every
/// registration burns `registration_burn` from the signer's balance; a key that cannot pay is
/// refused with what it holds, and nothing changes, not even its nonce.
#[test]
fn registration_burns_and_a_key_that_cannot_pay_is_refused() {
    let v = Keypair::from_seed([1; 32]);
    let rich = Keypair::from_seed([20; 32]);
    let poor = Keypair::from_seed([21; 32]);
    let mut g = genesis(&[(&v, 100)], 8, 0);
    g.registration_burn = 10;
    g.balances = vec![Balance {
        key: rich.public(),
        amount: 25,
    }];
    let (_d, chain, _clock) = ledger(&g);
    assert_eq!(send(&chain, &rich, TxBody::Register).unwrap().uid, Some(0));
    assert_eq!(chain.balance(&rich.public()).unwrap(), 15);
    assert_eq!(chain.burned_total().unwrap(), 10);

    assert_eq!(
        rejection(send(&chain, &poor, TxBody::Register)),
        Rejection::InsufficientBalance {
            needed: 10,
            balance: 0
        }
    );
    assert_eq!(chain.next_nonce(&poor.public()).unwrap(), 1);
    assert_eq!(chain.metagraph().unwrap().neurons.len(), 1);

    // Transfers: none of nothing, none beyond the balance; then the poor key can pay.
    let to = poor.public();
    assert!(matches!(
        rejection(send(&chain, &rich, TxBody::Transfer { to, amount: 0 })),
        Rejection::Malformed(_)
    ));
    assert_eq!(
        rejection(send(&chain, &rich, TxBody::Transfer { to, amount: 16 })),
        Rejection::InsufficientBalance {
            needed: 16,
            balance: 15
        }
    );
    send(&chain, &rich, TxBody::Transfer { to, amount: 12 }).unwrap();
    assert_eq!(chain.balance(&rich.public()).unwrap(), 3);
    assert_eq!(send(&chain, &poor, TxBody::Register).unwrap().uid, Some(1));
    assert_eq!(chain.balance(&poor.public()).unwrap(), 2);
    assert_eq!(chain.burned_total().unwrap(), 20);
    // Registered already: refused as such, and nothing is burned.
    assert_eq!(
        rejection(send(&chain, &poor, TxBody::Register)),
        Rejection::AlreadyRegistered(1)
    );
    assert_eq!(chain.balance(&poor.public()).unwrap(), 2);
}

#[test]
fn a_genesis_with_two_balances_for_one_key_is_refused() {
    let v = Keypair::from_seed([1; 32]);
    let mut g = genesis(&[(&v, 100)], 8, 0);
    let b = Balance {
        key: v.public(),
        amount: 1,
    };
    g.balances = vec![b.clone(), b];
    let dir = tempfile::tempdir().unwrap();
    let e = Ledger::init(dir.path(), &g).unwrap_err().to_string();
    assert!(e.contains("two genesis balances"), "{e}");
}
