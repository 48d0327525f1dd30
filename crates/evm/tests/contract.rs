//! The Subnet contract's rules and rejections, against a real EVM node (anvil, from
//! scripts/install-chain-tools.sh; a missing anvil fails these tests with that instruction).

mod common;

use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::providers::Provider;
use common::{config, register, Net, ETH, GWEI, NETUID, VERSION};
use covenant_evm::Subnet::{self, SubnetErrors as E};

#[tokio::test]
async fn the_compiled_output_matches_a_fresh_compile() {
    let solc = covenant_evm::tools::solcjs().unwrap_or_else(|e| panic!("{e}"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("node")
        .arg(root.join("scripts/compile-contracts.js"))
        .arg(solc.parent().unwrap())
        .arg("--check")
        .output()
        .expect("node runs (Node.js 20 or later)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_bad_configuration_is_refused_at_deployment() {
    let anvil = common::anvil();
    let p = common::provider(&anvil, anvil.keys()[0].clone().into());
    let cases: Vec<(&str, Subnet::Config)> = vec![
        (
            "maxUids",
            Subnet::Config {
                maxUids: 0,
                ..config()
            },
        ),
        (
            "maxUids",
            Subnet::Config {
                maxUids: u16::MAX,
                ..config()
            },
        ),
        (
            "blocksPerWindow",
            Subnet::Config {
                blocksPerWindow: 0,
                ..config()
            },
        ),
        (
            "epochBlocks",
            Subnet::Config {
                epochBlocks: 0,
                ..config()
            },
        ),
        (
            "kappa",
            Subnet::Config {
                kappa: 0,
                ..config()
            },
        ),
        (
            "kappa",
            Subnet::Config {
                kappa: 1_000_000_001,
                ..config()
            },
        ),
        (
            "minValidatorStake",
            Subnet::Config {
                minValidatorStake: U256::ZERO,
                ..config()
            },
        ),
        (
            "runId",
            Subnet::Config {
                runId: String::new(),
                ..config()
            },
        ),
        (
            "specUrl",
            Subnet::Config {
                specUrl: "x".repeat(513),
                ..config()
            },
        ),
    ];
    for (field, cfg) in cases {
        let e = Subnet::deploy(p.clone(), cfg).await.expect_err(field);
        let d = e.as_decoded_interface_error::<E>();
        match d {
            Some(E::BadConfig(b)) => assert!(b.what.contains(field), "{field}: {}", b.what),
            other => panic!("{field}: {other:?} ({e})"),
        }
    }
}

#[tokio::test]
async fn registration_burns_exactly_and_takes_the_lowest_free_uid() {
    let net = Net::start(config()).await;
    let c1 = net.participant(1, ETH).await;
    let hotkey = common::hotkey(&c1);
    let proof = common::proof(&net, &c1);
    // The message the key signs is the contract's.
    let account = c1.addr;
    let msg = c1.registrationMessage(account).call().await.unwrap();
    assert_eq!(
        msg.to_vec(),
        covenant_evm::registration_message(net.chain_id(), net.address, account)
    );
    for sent in [0, GWEI - 1, GWEI + 1] {
        let e = refused!(c1.register(hotkey, proof.clone()).value(U256::from(sent)));
        assert_eq!(
            e,
            E::WrongBurn(Subnet::WrongBurn {
                required: U256::from(GWEI),
                sent: U256::from(sent)
            })
        );
    }
    let short = Bytes::from(vec![0u8; 63]);
    let e = refused!(c1.register(hotkey, short).value(U256::from(GWEI)));
    assert_eq!(e, E::BadProof(Subnet::BadProof {}));

    let receipt = ok!(c1.register(hotkey, proof.clone()).value(U256::from(GWEI)));
    let ev = receipt
        .decoded_log::<Subnet::Registered>()
        .expect("Registered event");
    assert_eq!(
        (ev.uid, ev.account, ev.hotkey, ev.replaced),
        (0, account, hotkey, Address::ZERO)
    );
    let e = refused!(c1.register(hotkey, proof).value(U256::from(GWEI)));
    assert_eq!(
        e,
        E::AlreadyRegistered(Subnet::AlreadyRegistered { uid: 0 })
    );

    let c2 = net.participant(2, ETH).await;
    assert_eq!(register(&net, &c2).await, 1);
    assert_eq!(c1.burnedTotal().call().await.unwrap(), U256::from(2 * GWEI));
    let n = c1.neuron(1).call().await.unwrap();
    assert_eq!(n.hotkey, common::hotkey(&c2));
    assert!(covenant_evm::account::proof_verifies(
        &c2.key.public(),
        &n.proof,
        net.chain_id(),
        net.address,
        n.account
    ));
}

/// Gives `uid` weight from a validator staking `stake` ETH (anvil's account `dev`).
async fn vote(net: &Net, dev: usize, stake: u128, dests: Vec<u16>, weights: Vec<u16>) {
    let v = net.dev(dev);
    if v.stakeOf(v.addr).call().await.unwrap().is_zero() {
        ok!(v.stake().value(U256::from(stake * ETH)));
    }
    ok!(v.setWeights(NETUID, dests, weights, VERSION));
}

#[tokio::test]
async fn a_full_subnet_replaces_the_lowest_weight_uid_past_its_immunity() {
    let net = Net::start(Subnet::Config {
        maxUids: 3,
        immunityBlocks: 30,
        ..config()
    })
    .await;
    let mut cs = Vec::new();
    for s in 1..=3u8 {
        let c = net.participant(s, ETH).await;
        assert_eq!(register(&net, &c).await, u16::from(s - 1));
        ok!(c.commit(format!("s3://bucket-{s}"), String::new()));
        cs.push(c);
    }
    vote(&net, 1, 2, vec![0, 1, 2], vec![100, 10, 300]).await;
    let c4 = net.participant(4, ETH).await;
    let e = refused!(c4
        .register(common::hotkey(&c4), common::proof(&net, &c4))
        .value(U256::from(GWEI)));
    assert_eq!(e, E::Full(Subnet::Full { maxUids: 3 }));
    net.mine(30).await;
    // uid 1 has the lowest consensus weight: it is replaced, its commitment and weights dropped.
    let victim = cs[1].addr;
    assert_eq!(register(&net, &c4).await, 1);
    assert_eq!(
        common::uid_of(&c4, victim).await,
        None,
        "the replaced account has no uid"
    );
    assert_eq!(c4.commitmentOf(1).call().await.unwrap().bucketUrl, "");
    let v = c4.validatorAt(U256::ZERO).call().await.unwrap();
    assert_eq!(v.weights, vec![100, 0, 300]);
    // Equal weights (all 0 now for uid 1 and the others alike): the oldest goes first.
    vote(&net, 1, 2, vec![0, 1, 2], vec![0, 0, 0]).await;
    net.mine(30).await;
    let c5 = net.participant(5, ETH).await;
    assert_eq!(
        register(&net, &c5).await,
        0,
        "oldest registration, lowest uid"
    );
}

#[tokio::test]
async fn commitments_are_bounded_and_need_a_registration() {
    let net = Net::start(config()).await;
    let c = net.participant(1, ETH).await;
    let e = refused!(c.commit("s3://b".into(), String::new()));
    assert_eq!(e, E::NotRegistered(Subnet::NotRegistered {}));
    register(&net, &c).await;
    let e = refused!(c.commit("u".repeat(513), String::new()));
    assert_eq!(
        e,
        E::TooLong(Subnet::TooLong {
            field: "bucketUrl".into(),
            length: U256::from(513),
            max: U256::from(512)
        })
    );
    let e = refused!(c.commit("s3://b".into(), "c".repeat(1025)));
    assert!(
        matches!(e, E::TooLong(ref t) if t.field == "readCredentials"),
        "{e:?}"
    );
    let r = ok!(c.commit("s3://b".into(), "key:secret".into()));
    let ev = r.decoded_log::<Subnet::Committed>().unwrap();
    assert_eq!((ev.uid, ev.bucketUrl.as_str()), (0, "s3://b"));
    let got = c.commitmentOf(0).call().await.unwrap();
    assert_eq!(
        (got.bucketUrl.as_str(), got.readCredentials.as_str()),
        ("s3://b", "key:secret")
    );
}

#[tokio::test]
async fn stake_is_withdrawn_only_after_the_unstake_delay() {
    let net = Net::start(config()).await;
    let v = net.dev(1);
    let me = v.addr;
    let e = refused!(v.stake().value(U256::from(ETH / 2)));
    assert_eq!(
        e,
        E::StakeTooSmall(Subnet::StakeTooSmall {
            minimum: U256::from(ETH),
            stake: U256::from(ETH / 2)
        })
    );
    let r = ok!(v.stake().value(U256::from(3 * ETH)));
    assert_eq!(
        r.decoded_log::<Subnet::Staked>().unwrap().stake,
        U256::from(3 * ETH)
    );
    let e = refused!(v.requestUnstake(U256::from(4 * ETH)));
    assert!(matches!(e, E::InsufficientStake(_)), "{e:?}");
    let e = refused!(v.withdraw());
    assert_eq!(e, E::NothingToWithdraw(Subnet::NothingToWithdraw {}));
    let r = ok!(v.requestUnstake(U256::from(5 * ETH / 2)));
    let ready = r
        .decoded_log::<Subnet::UnstakeRequested>()
        .unwrap()
        .readyBlock;
    assert_eq!(ready, r.block_number.unwrap() + 10);
    // Half an ETH left is below the minimum: not a validator any more.
    assert_eq!(v.stakeOf(me).call().await.unwrap(), U256::ZERO);
    let e = refused!(v.setWeights(NETUID, vec![0], vec![1], VERSION));
    assert_eq!(e, E::NotValidator(Subnet::NotValidator {}));
    let e = refused!(v.withdraw());
    assert_eq!(
        e,
        E::UnstakeNotReady(Subnet::UnstakeNotReady { readyBlock: ready })
    );
    net.mine(10).await;
    let before = net.balance(me).await;
    let r = ok!(v.withdraw());
    assert_eq!(
        r.decoded_log::<Subnet::Withdrawn>().unwrap().amount,
        U256::from(5 * ETH / 2)
    );
    let gas = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    assert_eq!(
        net.balance(me).await,
        before + U256::from(5 * ETH / 2) - gas
    );
}

#[tokio::test]
async fn at_most_sixteen_validators() {
    let net = Net::start(config()).await;
    for i in 1..=16u8 {
        let c = net.participant(100 + i, 2 * ETH).await;
        ok!(c.stake().value(U256::from(ETH)));
    }
    let c = net.participant(200, 2 * ETH).await;
    let e = refused!(c.stake().value(U256::from(ETH)));
    assert_eq!(
        e,
        E::TooManyValidators(Subnet::TooManyValidators {
            max: U256::from(16)
        })
    );
}

/// Review of stop 21: sixteen minimum stakes, withdrawn again, kept every later validator out.
#[tokio::test]
async fn a_validator_whose_stake_no_longer_counts_gives_up_its_slot() {
    let net = Net::start(config()).await;
    let mut first = Vec::new();
    for i in 1..=16u8 {
        let c = net.participant(100 + i, 4 * ETH).await;
        ok!(c.stake().value(U256::from(ETH)));
        first.push(c);
    }
    ok!(first[3].setWeights(NETUID, vec![0], vec![9], VERSION));
    for c in &first {
        ok!(c.requestUnstake(U256::from(ETH)));
    }
    let newcomer = net.participant(200, 2 * ETH).await;
    let r = ok!(newcomer.stake().value(U256::from(ETH)));
    assert_eq!(
        r.decoded_log::<Subnet::Staked>().unwrap().stake,
        U256::from(ETH)
    );
    assert_eq!(
        newcomer.validatorCount().call().await.unwrap(),
        U256::from(16)
    );
    let mut listed = Vec::new();
    for i in 0..16u64 {
        listed.push(
            newcomer
                .validatorAt(U256::from(i))
                .call()
                .await
                .unwrap()
                .account,
        );
    }
    assert!(listed.contains(&newcomer.addr), "the newcomer holds a slot");
    assert_eq!(
        listed.iter().filter(|a| **a == first[0].addr).count(),
        0,
        "the first listed zero stake is the one replaced"
    );
    // The replaced validator still withdraws what it unstaked.
    net.mine(10).await;
    ok!(first[0].withdraw());
    // A validator whose stake still counts is never replaced.
    for c in &first[1..] {
        ok!(c.stake().value(U256::from(ETH)));
    }
    let late = net.participant(201, 2 * ETH).await;
    let e = refused!(late.stake().value(U256::from(ETH)));
    assert_eq!(
        e,
        E::TooManyValidators(Subnet::TooManyValidators {
            max: U256::from(16)
        })
    );
    // Its weights go with its slot: back in the list later, it starts with none.
    ok!(first[3].requestUnstake(U256::from(ETH)));
    ok!(late.stake().value(U256::from(ETH)));
    ok!(late.requestUnstake(U256::from(ETH)));
    ok!(first[3].stake().value(U256::from(ETH)));
    let mut found = false;
    for i in 0..16u64 {
        let v = late.validatorAt(U256::from(i)).call().await.unwrap();
        if v.account == first[3].addr {
            found = true;
            assert!(v.dests.is_empty() && v.weights.is_empty(), "{v:?}");
            assert_eq!(v.lastWeightsBlock, 0);
        }
    }
    assert!(found, "back in the list");
}

#[tokio::test]
async fn weights_are_checked_and_rate_limited() {
    let net = Net::start(config()).await;
    let v = net.dev(1);
    let e = refused!(v.setWeights(NETUID, vec![0], vec![1], VERSION));
    assert_eq!(e, E::NotValidator(Subnet::NotValidator {}));
    ok!(v.stake().value(U256::from(ETH)));
    let e = refused!(v.setWeights(NETUID + 1, vec![0], vec![1], VERSION));
    assert_eq!(
        e,
        E::WrongNetuid(Subnet::WrongNetuid {
            expected: NETUID,
            found: NETUID + 1
        })
    );
    let e = refused!(v.setWeights(NETUID, vec![0], vec![1], VERSION + 1));
    assert_eq!(
        e,
        E::WrongVersionKey(Subnet::WrongVersionKey {
            expected: VERSION,
            found: VERSION + 1
        })
    );
    for (dests, weights, why) in [
        (vec![0, 1], vec![1], "differ in length"),
        (vec![8], vec![1], "out of range"),
        (vec![2, 2], vec![1, 1], "twice"),
    ] {
        let e = refused!(v.setWeights(NETUID, dests, weights, VERSION));
        assert!(
            matches!(e, E::InvalidWeights(ref w) if w.why.contains(why)),
            "{why}: {e:?}"
        );
    }
    let r = ok!(v.setWeights(NETUID, vec![0, 3, u16::MAX], vec![5, 6, 7], VERSION));
    let ev = r.decoded_log::<Subnet::WeightsSet>().unwrap();
    assert_eq!(ev.dests, vec![0, 3, u16::MAX]);
    let at = r.block_number.unwrap();
    let e = refused!(v.setWeights(NETUID, vec![0], vec![1], VERSION));
    assert_eq!(
        e,
        E::WeightsTooSoon(Subnet::WeightsTooSoon { nextBlock: at + 5 })
    );
    net.mine(4).await;
    ok!(v.setWeights(NETUID, vec![0], vec![1], VERSION));
    let e = refused!(v.commitWeights(NETUID, FixedBytes::repeat_byte(1)));
    assert_eq!(e, E::CommitRevealOff(Subnet::CommitRevealOff {}));
}

#[tokio::test]
async fn committed_weights_count_only_when_revealed_in_their_window() {
    let net = Net::start(Subnet::Config {
        commitReveal: true,
        ..config()
    })
    .await;
    let v = net.dev(1);
    let me = v.addr;
    ok!(v.stake().value(U256::from(ETH)));
    let e = refused!(v.setWeights(NETUID, vec![0], vec![1], VERSION));
    assert_eq!(e, E::CommitRevealOn(Subnet::CommitRevealOn {}));
    let (uids, values, salt) = (vec![1u16, 2], vec![10u16, 20], vec![9u16, 9, 9]);
    let e = refused!(v.revealWeights(NETUID, uids.clone(), values.clone(), salt.clone(), VERSION));
    assert_eq!(e, E::NoCommit(Subnet::NoCommit {}));
    let hash = v
        .weightsHash(
            me,
            NETUID,
            uids.clone(),
            values.clone(),
            salt.clone(),
            VERSION,
        )
        .call()
        .await
        .unwrap();
    let r = ok!(v.commitWeights(NETUID, hash));
    assert_eq!(
        r.decoded_log::<Subnet::WeightsCommitted>().unwrap().hash,
        hash
    );
    let first = r.block_number.unwrap() + 3;
    let e = refused!(v.revealWeights(NETUID, uids.clone(), values.clone(), salt.clone(), VERSION));
    assert_eq!(
        e,
        E::RevealTooEarly(Subnet::RevealTooEarly { firstBlock: first })
    );
    net.mine(2).await;
    let e = refused!(v.revealWeights(NETUID, uids.clone(), vec![10, 21], salt.clone(), VERSION));
    assert_eq!(e, E::RevealMismatch(Subnet::RevealMismatch {}));
    ok!(v.revealWeights(NETUID, uids.clone(), values.clone(), salt.clone(), VERSION));
    assert_eq!(
        v.validatorAt(U256::ZERO).call().await.unwrap().weights,
        values
    );
    // A commit not revealed within its window expires.
    net.mine(5).await;
    let hash = v
        .weightsHash(me, NETUID, vec![1], vec![1], salt.clone(), VERSION)
        .call()
        .await
        .unwrap();
    let r = ok!(v.commitWeights(NETUID, hash));
    let last = r.block_number.unwrap() + 3 + 4;
    net.mine(8).await;
    let e = refused!(v.revealWeights(NETUID, vec![1], vec![1], salt, VERSION));
    assert_eq!(
        e,
        E::RevealTooLate(Subnet::RevealTooLate { lastBlock: last })
    );
}

#[tokio::test]
async fn rewards_are_paid_by_the_consensus_weights() {
    let net = Net::start(config()).await;
    let mut miners = Vec::new();
    for s in 1..=3u8 {
        let c = net.participant(s, ETH).await;
        register(&net, &c).await;
        miners.push(c);
    }
    // Two validators, 3 and 1 ETH: the larger decides where they disagree.
    vote(&net, 1, 3, vec![0, 1, 2, u16::MAX], vec![600, 300, 0, 100]).await;
    vote(&net, 2, 1, vec![0, 2], vec![1, 1]).await;
    let c = &miners[0];
    let e = refused!(c.payEpoch());
    assert_eq!(e, E::EpochNotDue(Subnet::EpochNotDue { epoch: 0 }));
    let r = ok!(net.dev(3).fundPool().value(U256::from(100 * ETH)));
    assert_eq!(
        r.decoded_log::<Subnet::PoolFunded>().unwrap().pool,
        U256::from(100 * ETH)
    );
    let blk = net.block().await;
    net.mine(50 - blk % 50).await;
    let cons = c.consensus().call().await.unwrap();
    // The nodes' rule gives the same integers.
    let rust = covenant_core::consensus::yuma_fixed(
        4,
        &[3 * GWEI, GWEI],
        &[vec![600, 300, 0, 100], vec![1, 0, 1, 0]],
        500_000_000,
    );
    let mut ranks: Vec<U256> = cons.ranks.clone();
    ranks.push(cons.burnRank);
    assert_eq!(
        ranks,
        rust.1.iter().map(|&r| U256::from(r)).collect::<Vec<_>>()
    );
    let r = ok!(c.payEpoch());
    let ev = r.decoded_log::<Subnet::EpochPaid>().unwrap();
    let total: U256 = ranks.iter().copied().sum();
    let amount = U256::from(10 * ETH);
    let mut paid = U256::ZERO;
    for (i, m) in miners.iter().enumerate() {
        let who = m.addr;
        let owed = c.rewardsOwed(who).call().await.unwrap();
        assert_eq!(owed, amount * ranks[i] / total, "uid {i}");
        paid += owed;
    }
    assert_eq!(ev.paid, paid);
    assert!(ev.burned > U256::ZERO, "the burn uid's share is burned");
    assert_eq!(
        c.emissionPool().call().await.unwrap(),
        U256::from(100 * ETH) - paid
    );
    let e = refused!(c.payEpoch());
    assert!(matches!(e, E::EpochNotDue(_)), "paid once: {e:?}");
    // Claiming moves what is owed to the account.
    let who = c.addr;
    let owed = c.rewardsOwed(who).call().await.unwrap();
    let before = net.balance(who).await;
    let r = ok!(c.claim());
    let gas = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    assert_eq!(net.balance(who).await, before + owed - gas);
    let e = refused!(c.claim());
    assert_eq!(e, E::NothingToWithdraw(Subnet::NothingToWithdraw {}));
}

/// The contract's Yuma gives the nodes' integers on random cases (`yuma_fixed`).
#[tokio::test]
async fn the_contract_computes_the_nodes_yuma() {
    let net = Net::start(config()).await;
    let c = net.dev(0);
    let mut rng = 0x9E3779B97F4A7C15u64;
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    for case in 0..60 {
        let n = 1 + next(12) as usize;
        let m = next(6) as usize;
        let kappa = [
            500_000_000,
            1_000_000_000,
            250_000_000,
            1 + next(999_999_999),
        ][case % 4];
        // Small stakes in every other case: exact halves and other boundaries of the quantile.
        let top = if case % 2 == 0 { 4 } else { 1 << 40 };
        let stakes: Vec<u64> = (0..m)
            .map(|_| if next(5) == 0 { 0 } else { 1 + next(top) })
            .collect();
        let rows: Vec<Vec<u64>> = (0..m)
            .map(|_| {
                (0..n)
                    .map(|_| if next(3) == 0 { 0 } else { next(65536) })
                    .collect()
            })
            .collect();
        let (cr, rr) = covenant_core::consensus::yuma_fixed(n, &stakes, &rows, kappa);
        let got = c
            .yuma(
                U256::from(n),
                stakes.iter().map(|&s| U256::from(s)).collect(),
                rows.iter()
                    .map(|r| r.iter().map(|&x| U256::from(x)).collect())
                    .collect(),
                kappa,
            )
            .call()
            .await
            .unwrap();
        let cs: Vec<U256> = cr.iter().map(|&x| U256::from(x)).collect();
        let rs: Vec<U256> = rr.iter().map(|&x| U256::from(x)).collect();
        assert_eq!(
            (got.consensusValues, got.ranks),
            (cs, rs),
            "case {case}: {stakes:?} {rows:?} {kappa}"
        );
    }
}

/// Gas at the sizes docs/CHAIN.md quotes: 256 uids, 16 validators each weighting every uid.
/// Each must fit in a block (anvil's limit, 30 M, as Ethereum's); the figures are printed.
#[tokio::test]
async fn gas_at_256_uids_and_16_validators_fits_in_a_block() {
    let net = Net::start(Subnet::Config {
        maxUids: 256,
        ..config()
    })
    .await;
    let burn = U256::from(GWEI);
    let mut parties = Vec::new();
    for s in 0..=255u8 {
        parties.push(net.participant(s, ETH).await);
    }
    let mut reg_gas = 0;
    for p in &parties {
        let r = ok!(p
            .register(common::hotkey(p), common::proof(&net, p))
            .value(burn));
        reg_gas = reg_gas.max(r.gas_used);
    }
    let dests: Vec<u16> = (0..256).collect();
    let weights: Vec<u16> = (0..256).map(|u| 1 + (u * 37 % 256) as u16).collect();
    let (mut first, mut again) = (0, 0);
    for v in 1..=16 {
        let val = net.participant_at(v, 3 * ETH).await;
        ok!(val.stake().value(U256::from(ETH)));
        first = ok!(val.setWeights(NETUID, dests.clone(), weights.clone(), VERSION)).gas_used;
        net.mine(5).await;
        again = ok!(val.setWeights(NETUID, dests.clone(), weights.clone(), VERSION)).gas_used;
    }
    ok!(net.dev(1).fundPool().value(U256::from(100 * ETH)));
    let blk = net.block().await;
    net.mine(50 - blk % 50).await;
    let cons = parties[0].consensus().estimate_gas().await.unwrap();
    let pay = ok!(parties[0].payEpoch()).gas_used;
    eprintln!(
        "gas: register {reg_gas}, setWeights(256 uids) first {first}, again {again}, \
         consensus() {cons}, payEpoch(256 uids, 16 validators) {pay}"
    );
    for (what, g) in [
        ("register", reg_gas),
        ("setWeights", first),
        ("payEpoch", pay),
    ] {
        assert!(g < 30_000_000, "{what} takes {g} gas, more than a block");
    }
}

#[tokio::test]
async fn a_contract_at_the_wrong_address_is_refused_by_its_code_hash() {
    use covenant_evm::{verify_contract, EvmError};
    let net = Net::start(config()).await;
    verify_contract(&net.owner, net.address).await.unwrap();
    // Every deployment has the same code (no immutables), whatever its configuration.
    let other = Subnet::deploy(
        net.owner.clone(),
        Subnet::Config {
            maxUids: 3,
            ..config()
        },
    )
    .await
    .unwrap();
    verify_contract(&net.owner, *other.address()).await.unwrap();
    // An account without code.
    let e = verify_contract(&net.owner, net.dev(5).addr)
        .await
        .unwrap_err();
    assert!(matches!(e, EvmError::NoContract { .. }), "{e}");
    assert!(e.to_string().contains("--contract"), "{e}");
    // Other code, and the contract's own code with one byte changed.
    let mut altered = covenant_evm::expected_code().to_vec();
    altered[100] ^= 1;
    for (n, code) in [vec![0x60, 0x00, 0x60, 0x00, 0xf3], altered]
        .into_iter()
        .enumerate()
    {
        let at = Address::repeat_byte(0x40 + n as u8);
        let _: serde_json::Value = net
            .owner
            .raw_request("anvil_setCode".into(), (at, Bytes::from(code)))
            .await
            .unwrap();
        let e = verify_contract(&net.owner, at).await.unwrap_err();
        assert!(matches!(e, EvmError::WrongCode { .. }), "{e}");
        assert!(e.to_string().contains("not this version's Subnet"), "{e}");
    }
}
