//! Fuzzes chain transactions (covenant_net::chain). Byte 0 of each input is a flag set, the rest
//! is up to 8 lines, each parsed with `serde_json::from_slice::<Transaction>`:
//! - every parsed transaction is `check`ed (sizes, signature) and must round-trip through JSON;
//! - bit 0: a transaction whose signer is one of the fixed fuzz keys is re-signed with that key
//!   (so the ledger's state rules are reached, not only the signature check);
//! - bit 1: the parsed transactions are submitted in order to a fresh embedded ledger (SQLite in a
//!   temp dir, virtual clock moving one block per transaction). Every refusal must be a
//!   `Rejection` (a storage error on a healthy disk is a bug), and the resulting metagraph and
//!   snapshot must be consistent (uids in range and unique, consensus weights in [0, 1] summing
//!   to 1 or 0).
//!
//! Seeds: `cargo run --release -p covenant-net --example fuzz_seeds_net -- chain_tx DIR`.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use covenant_net::chain::ValidatorStake;
use covenant_net::{Chain, ChainError, Genesis, Keypair, Ledger, Transaction, VirtualClock};
use libfuzzer_sys::fuzz_target;

/// Keys 1..=4 (see crates/net/examples/fuzz_seeds_net.rs) are the fuzz keys (seeds [k; 32]); keys 1 and 2 are validators.
const RUN: &str = "fuzz-chain";
const GENESIS_MS: u64 = 1_700_000_000_000;
const BLOCK_MS: u64 = 1000;

struct Fixture {
    keys: Vec<Keypair>,
    genesis: Genesis,
    dir: PathBuf,
}

static FIX: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> Fixture {
    let keys: Vec<Keypair> = (1..=4u8).map(|k| Keypair::from_seed([k; 32])).collect();
    let genesis = Genesis {
        run_id: RUN.into(),
        genesis_time_ms: GENESIS_MS,
        block_time_ms: BLOCK_MS,
        blocks_per_window: 3,
        max_uids: 3,
        immunity_blocks: 2,
        validators: vec![
            ValidatorStake {
                key: keys[0].public(),
                stake: 100,
            },
            ValidatorStake {
                key: keys[1].public(),
                stake: 50,
            },
        ],
        kappa: 0.5,
    };
    // tmpfs when there is one: the ledger is created afresh for every input.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("covenant-fuzz-chain-{}", std::process::id()));
    Fixture { keys, genesis, dir }
}

fn apply(fix: &Fixture, txs: &[Transaction]) {
    let _ = std::fs::remove_dir_all(&fix.dir);
    Ledger::init(&fix.dir, &fix.genesis).expect("init ledger");
    let clock = VirtualClock::new(GENESIS_MS);
    let ledger = Ledger::open_with_clock(&fix.dir, Arc::new(clock.clone())).expect("open ledger");
    for tx in txs {
        clock.advance(BLOCK_MS);
        match ledger.submit(tx) {
            Ok(r) => {
                if let Some(u) = r.uid {
                    assert!(u < fix.genesis.max_uids);
                }
            }
            Err(ChainError::Rejected(r)) => {
                let _ = r.to_string();
            }
            Err(e) => panic!("submit failed with a non-rejection: {e}"),
        }
        let _ = ledger.next_nonce(&tx.signer).expect("next nonce");
    }
    let m = ledger.metagraph().expect("metagraph");
    let mut uids: Vec<u32> = m.neurons.iter().map(|n| n.uid).collect();
    let mut keys: Vec<_> = m.neurons.iter().map(|n| n.key).collect();
    uids.sort();
    uids.dedup();
    keys.sort();
    keys.dedup();
    assert_eq!(uids.len(), m.neurons.len(), "duplicate uid");
    assert_eq!(keys.len(), m.neurons.len(), "key registered twice");
    assert!(uids.iter().all(|&u| u < fix.genesis.max_uids));
    let check_weights = |w: Vec<f64>| {
        assert!(
            w.iter()
                .all(|x| x.is_finite() && (0.0..=1.0 + 1e-9).contains(x)),
            "{w:?}"
        );
        let s: f64 = w.iter().sum();
        assert!(s == 0.0 || (s - 1.0).abs() < 1e-6, "weights sum to {s}");
    };
    check_weights(m.neurons.iter().map(|n| n.consensus_weight).collect());
    for b in [0, m.block / 2, m.block + 1] {
        let s = ledger.snapshot(b).expect("snapshot");
        assert!(s.neurons.iter().all(|n| n.registered_block < b));
        check_weights(s.neurons.iter().map(|n| n.consensus_weight).collect());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let fix = FIX.get_or_init(fixture);
    let mut txs = Vec::new();
    for line in rest.split(|&b| b == b'\n').take(8) {
        let Ok(mut tx) = serde_json::from_slice::<Transaction>(line) else {
            continue;
        };
        let json = serde_json::to_vec(&tx).expect("serialise");
        assert_eq!(
            serde_json::from_slice::<Transaction>(&json).expect("round-trip"),
            tx
        );
        let _ = tx.check();
        if flags & 1 == 1 {
            if let Some(k) = fix.keys.iter().find(|k| k.public() == tx.signer) {
                tx = Transaction::sign(k, &tx.run_id, tx.nonce, tx.body.clone());
                // Re-signed transactions pass the signature check unless a size check refuses them.
                if let Err(e) = tx.check() {
                    assert!(
                        matches!(e, covenant_net::Rejection::Malformed(_)),
                        "re-signed transaction refused: {e}"
                    );
                }
            }
        }
        txs.push(tx);
    }
    if flags & 2 == 2 && !txs.is_empty() {
        apply(fix, &txs);
    }
});
