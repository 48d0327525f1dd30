//! Writes valid seed inputs for the cargo-fuzz targets `open_envelope` and `chain_tx`
//! (fuzz/fuzz_targets/; used by scripts/fuzz.sh):
//! `cargo run -p covenant-net --example fuzz_seeds_net -- (open_envelope|chain_tx) DIR`.
//! The keys and expectations must match those in the fuzz targets.
use covenant_net::envelope::seal;
use covenant_net::{Keypair, Transaction, TxBody};

fn envelope_seeds() -> Vec<Vec<u8>> {
    let key = Keypair::from_seed([7; 32]);
    let mut seeds = Vec::new();
    let contents: [&[u8]; 4] = [
        b"",
        b"pseudo-gradient payload",
        &[0xAB; 300],
        b"{\"window\":42}",
    ];
    for (i, content) in contents.iter().enumerate() {
        // As expected (opens), then with one field off (a typed refusal behind the signature).
        let ok = seal(&key, "fuzz-run", 7, 42, "payload", content).expect("seal");
        let other = match i {
            0 => seal(&key, "other-run", 7, 42, "payload", content),
            1 => seal(&key, "fuzz-run", 7, 41, "payload", content),
            2 => seal(&key, "fuzz-run", 8, 42, "payload", content),
            _ => seal(&key, "fuzz-run", 7, 42, "fingerprint", content),
        }
        .expect("seal");
        for mode in [0u8, 1] {
            for s in [&ok, &other] {
                let mut v = vec![mode];
                v.extend_from_slice(s);
                seeds.push(v);
            }
        }
    }
    // Signed by another key.
    let stranger = Keypair::from_seed([9; 32]);
    let mut v = vec![0u8];
    v.extend(seal(&stranger, "fuzz-run", 7, 42, "payload", b"x").expect("seal"));
    seeds.push(v);
    // JSON form.
    let env = covenant_net::Envelope::sign(&key, "fuzz-run", 7, 42, "payload", b"").expect("sign");
    let mut v = vec![2u8];
    v.extend(serde_json::to_vec(&env).expect("json"));
    seeds.push(v);
    seeds
}

fn chain_seeds() -> Vec<Vec<u8>> {
    let k: Vec<Keypair> = (1..=4u8).map(|s| Keypair::from_seed([s; 32])).collect();
    let run = "fuzz-chain";
    let line = |tx: &Transaction| serde_json::to_string(tx).expect("json");
    let commit = |url: &str| TxBody::Commit {
        bucket_url: url.into(),
        read_credentials: "key:secret".into(),
    };
    let scenarios: Vec<Vec<Transaction>> = vec![
        // Register all four keys into three uids (the last one evicts after immunity).
        (0..4)
            .map(|i| Transaction::sign(&k[i], run, 1, TxBody::Register))
            .collect(),
        // Register, commit, set weights.
        vec![
            Transaction::sign(&k[0], run, 1, TxBody::Register),
            Transaction::sign(&k[2], run, 1, TxBody::Register),
            Transaction::sign(&k[2], run, 2, commit("s3://bucket-2")),
            Transaction::sign(
                &k[0],
                run,
                2,
                TxBody::SetWeights {
                    weights: vec![(0, 100), (1, 65535)],
                },
            ),
            Transaction::sign(
                &k[1],
                run,
                1,
                TxBody::SetWeights {
                    weights: vec![(1, 7)],
                },
            ),
            Transaction::sign(&k[3], run, 1, TxBody::Register),
            Transaction::sign(&k[3], run, 2, TxBody::Register),
            Transaction::sign(&k[0], run, 3, commit("file:///tmp/b")),
        ],
        // Refusals: replay, wrong run, not a validator, duplicate uid, uid out of range, huge nonce.
        vec![
            Transaction::sign(&k[2], run, 5, TxBody::Register),
            Transaction::sign(&k[2], run, 5, commit("s3://b")),
            Transaction::sign(&k[2], "other-chain", 6, commit("s3://b")),
            Transaction::sign(
                &k[2],
                run,
                7,
                TxBody::SetWeights {
                    weights: vec![(0, 1)],
                },
            ),
            Transaction::sign(
                &k[0],
                run,
                1,
                TxBody::SetWeights {
                    weights: vec![(0, 1), (0, 2)],
                },
            ),
            Transaction::sign(
                &k[1],
                run,
                1,
                TxBody::SetWeights {
                    weights: vec![(9, 1)],
                },
            ),
            Transaction::sign(&k[3], run, u64::MAX, TxBody::Register),
        ],
    ];
    let mut seeds = Vec::new();
    for txs in &scenarios {
        let text: Vec<String> = txs.iter().map(line).collect();
        for flags in [0u8, 2, 3] {
            let mut v = vec![flags];
            v.extend_from_slice(text.join("\n").as_bytes());
            seeds.push(v);
        }
    }
    seeds
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let seeds = match target.as_str() {
        "open_envelope" => envelope_seeds(),
        "chain_tx" => chain_seeds(),
        _ => {
            eprintln!("usage: fuzz_seeds_net (open_envelope|chain_tx) DIR");
            std::process::exit(2);
        }
    };
    let dir = args
        .next()
        .unwrap_or_else(|| format!("fuzz/corpus/{target}"));
    std::fs::create_dir_all(&dir)?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:02}"), s)?;
    }
    println!("wrote {} seeds to {dir}", seeds.len());
    Ok(())
}
