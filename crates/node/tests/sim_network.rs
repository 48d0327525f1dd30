//! The whole network in the deterministic simulator: real drivers, codec, wire format and
//! action code on a virtual clock with in-memory chain and stores.
//!
//! * Seeded faults: many seeds, every invariant holding; a deliberately broken invariant is
//!   reported with its seed; a seed replays exactly.
//! * The protocol behaviours that real-process tests used to check: the model learns, replicas
//!   agree, a joiner is in sync within two windows, a killed miner is dropped, a restarted
//!   validator keeps its ratings, zero / invalid / single-upload windows are survived, and
//!   attackers earn nothing (stand-in), with the real `tiny` model where the loss matters.

mod common;

use std::sync::Arc;

use covenant_core::driver::NodeEvent;
use covenant_core::gauntlet::Verdict;
use covenant_node::sim::{self, Sabotage, Scripted, SimConfig, SimModel, SimSummary, World};
use covenant_node::Behaviour;

/// The network of fault seed `s`: 2–6 honest miners, 1–3 validators.
fn fault_cfg(s: u64) -> SimConfig {
    let mut c = SimConfig::new(2 + (s % 5) as usize, 1 + (s % 3) as usize, 20, s);
    c.faults = true;
    c
}

fn replay(c: &SimConfig) -> String {
    format!(
        "covenant simulate --network --miners {} --validators {} --windows {} --faults --seed {}",
        c.miners, c.validators, c.windows, c.seed
    )
}

fn assert_holds(c: &SimConfig, s: &SimSummary) {
    assert!(
        s.ok(),
        "seed {} broke invariants (replay: {}):\n{}",
        s.seed,
        replay(c),
        s.violations
            .iter()
            .map(|v| format!("  window {:?}: {}", v.window, v.what))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn fault_seeds_hold_every_invariant() {
    // 0..130, and seeds that found defects while the simulator was built (a replica split over
    // pruned uploads: 256; an upload whose fingerprint failed counted as missing: 139; an
    // adversary that signed with its own key: 190; an unreadable fingerprint scored as none: 19).
    let seeds: Vec<u64> = (0..130).chain([139, 190, 256]).collect();
    let mut crashes = 0;
    for &seed in &seeds {
        let c = fault_cfg(seed);
        let (s, _) = sim::run(c.clone()).unwrap();
        assert_holds(&c, &s);
        assert!(
            s.replicas_agree && s.windows_applied == 20,
            "seed {seed}: {s:?}"
        );
        crashes += s.crashes;
    }
    assert!(crashes >= seeds.len(), "faults happened: {crashes} crashes");
}

#[test]
fn a_broken_invariant_is_reported_with_its_seed() {
    let mut c = SimConfig::new(3, 1, 8, 4242);
    // One miner's parameters change after window 3's outer step: it splits from the network.
    c.sabotage = Some(Sabotage::Diverge { node: 2, window: 3 });
    let (s, _) = sim::run(c).unwrap();
    assert!(!s.ok() && !s.replicas_agree);
    let v = &s.violations[0];
    assert_eq!(v.window, Some(4), "{v:?}");
    assert!(
        v.what.contains("replicas differ after window 4") && v.what.contains("miner-2"),
        "{v:?}"
    );
    assert!(
        s.line().contains("seed 4242") && s.line().contains("BROKEN"),
        "{}",
        s.line()
    );
}

fn all_events(w: &World) -> Vec<Vec<NodeEvent>> {
    (0..w.nodes.len()).map(|i| w.events(i)).collect()
}

#[test]
fn a_seed_replays_exactly() {
    let c = fault_cfg(77);
    let (a, wa) = sim::run(c.clone()).unwrap();
    let (b, wb) = sim::run(c).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(all_events(&wa), all_events(&wb));
    assert!(
        a.crashes > 0 || !wa.plan.stores.trouble.is_empty(),
        "seed 77 has faults"
    );
}

fn outer_steps(ev: &[NodeEvent]) -> Vec<(u64, Vec<u32>, String, Option<f64>)> {
    ev.iter()
        .filter_map(|e| match e {
            NodeEvent::OuterStep {
                window,
                peers,
                hash,
                val_loss,
                ..
            } => Some((*window, peers.clone(), hash.clone(), *val_loss)),
            _ => None,
        })
        .collect()
}

fn reports(
    ev: &[NodeEvent],
) -> Vec<(
    u64,
    std::collections::BTreeMap<u32, covenant_core::driver::events::PeerLine>,
)> {
    ev.iter()
        .filter_map(|e| match e {
            NodeEvent::Report { window, peers, .. } => Some((*window, peers.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn miners_and_a_validator_train_join_leave_and_restart() {
    let mut c = SimConfig::new(4, 1, 14, 11);
    c.script = vec![
        Scripted::StartAt {
            node: "miner-4".into(),
            window: 5,
        },
        Scripted::KillAt {
            node: "miner-3".into(),
            window: 7,
        },
        Scripted::RestartAt {
            node: "validator-1".into(),
            window: 9,
        },
    ];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let v = w.events(0);
    let steps = outer_steps(&v);
    let vals: Vec<f64> = steps.iter().filter_map(|x| x.3).collect();
    assert!(
        vals.len() >= 10 && vals[vals.len() - 1] < 0.5 * vals[0],
        "validation loss falls: {vals:?}"
    );

    // miner-4 joined from a checkpoint, follows from window 5..=7, and is measured in sync
    // within two windows.
    let m4 = w.node_index("miner-4").unwrap();
    let ev4 = w.events(m4);
    let (jw, from) = ev4
        .iter()
        .find_map(|e| match e {
            NodeEvent::Joined {
                window,
                from_checkpoint,
                ..
            } => Some((*window, *from_checkpoint)),
            _ => None,
        })
        .unwrap();
    assert!(
        (5..=7).contains(&jw) && from.is_some(),
        "joined at {jw} from {from:?}"
    );
    let uid4 = w.nodes[m4].uid;
    let syncs: Vec<f64> = reports(&v)
        .iter()
        .filter(|(win, _)| (jw..=jw + 2).contains(win))
        .filter_map(|(_, p)| match p.get(&uid4).map(|l| l.verdict) {
            Some(Verdict::Evaluated { sync, .. }) => Some(sync),
            _ => None,
        })
        .collect();
    assert!(
        !syncs.is_empty() && syncs.iter().all(|&s| s >= 0.9),
        "miner-4 in sync: {syncs:?}"
    );

    // miner-3 is not aggregated after it was killed.
    let uid3 = w.nodes[w.node_index("miner-3").unwrap()].uid;
    for (win, peers, _, _) in &steps {
        assert!(
            *win < 8 || !peers.contains(&uid3),
            "killed miner aggregated in window {win}"
        );
    }
    assert!(
        steps.iter().any(|x| x.0 == 13),
        "the run reached its last window"
    );

    // The restarted validator restored exactly the scores of the window it saved last.
    let (last, scores) = v
        .iter()
        .find_map(|e| match e {
            NodeEvent::Restored {
                last_window,
                scores,
                ..
            } => Some((last_window.unwrap(), scores.clone())),
            _ => None,
        })
        .expect("a restored event");
    let before = reports(&v)
        .into_iter()
        .find(|(win, _)| *win == last)
        .unwrap()
        .1;
    assert!(
        scores.values().any(|&x| x > 0.0),
        "ratings were not reset: {scores:?}"
    );
    for (uid, sc) in &scores {
        assert_eq!(*sc, before[uid].score, "uid {uid}");
    }

    // The honest miners that stayed end with weight.
    let cw = w.consensus();
    for m in ["miner-1", "miner-2", "miner-4"] {
        let uid = w.nodes[w.node_index(m).unwrap()].uid;
        assert!(
            cw.get(&uid).copied().unwrap_or(0.0) > 0.0,
            "{m} has weight: {cw:?}"
        );
    }
}

#[test]
fn zero_invalid_and_single_upload_windows_are_survived() {
    // One honest miner ("miner-1") from window 4, a malformed uploader ("miner-2") from window 1.
    let mut c = SimConfig::new(1, 1, 10, 5);
    c.adversaries = vec![Behaviour::Malformed];
    // The timing asserted below is the aggregation rule's. With the own-data check a
    // newcomer is paid only once its evidence favours its own data, which on this seed's first
    // evaluation (z 0.69) it did not yet: one window later.
    c.own_data_check = false;
    c.script = vec![
        Scripted::StartAt {
            node: "miner-1".into(),
            window: 4,
        },
        Scripted::StartAt {
            node: "miner-2".into(),
            window: 1,
        },
    ];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let v = w.events(0);
    assert!(
        !v.iter().any(|e| matches!(e, NodeEvent::Error { .. })),
        "validator errors"
    );
    let steps = outer_steps(&v);
    assert_eq!(
        steps.iter().map(|x| x.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let (gi, bi) = (
        w.node_index("miner-1").unwrap(),
        w.node_index("miner-2").unwrap(),
    );
    let (good, bad) = (w.nodes[gi].uid, w.nodes[bi].uid);
    let invalid = reports(&v)
        .iter()
        .filter(|(_, p)| p.get(&bad).is_some_and(|l| l.verdict == Verdict::Invalid))
        .count();
    assert!(invalid >= 3, "malformed uploads judged invalid");
    // Its first upload (window j) is its join's null window; its first update (j + 1) earns
    // weight while j + 2 runs, so from j + 2 on exactly its upload is aggregated.
    let j = w
        .events(gi)
        .iter()
        .find_map(|e| match e {
            NodeEvent::Uploaded { window, .. } => Some(*window),
            _ => None,
        })
        .unwrap();
    assert!(j + 3 <= 9, "the honest miner joined in time: {j}");
    for (win, peers, _, _) in &steps {
        if *win < j + 2 {
            assert!(peers.is_empty(), "window {win}: nobody has weight yet");
        } else {
            assert_eq!(peers, &vec![good], "window {win}");
        }
    }
    assert!(
        steps[9].3.unwrap() < steps[5].3.unwrap(),
        "one honest miner still trains the model"
    );
    assert_eq!(w.consensus().get(&bad).copied().unwrap_or(0.0), 0.0);
}

/// A scenario as `covenant scenario` runs it: 4 honest miners and `adv`, one validator, 20
/// windows; then the honest miners alone.
fn scenario(
    model: SimModel,
    data: Option<Arc<covenant_data::Dataset>>,
    adv: &[Behaviour],
) -> covenant_node::analysis::ScenarioReport {
    scenario_for(model, data, adv, 20)
}

/// [`scenario`] over `windows` windows (at least 11: the share after window 10 is asserted).
fn scenario_for(
    model: SimModel,
    data: Option<Arc<covenant_data::Dataset>>,
    adv: &[Behaviour],
    windows: u64,
) -> covenant_node::analysis::ScenarioReport {
    let mut c = SimConfig::new(4, 1, windows, 3);
    c.model = model;
    c.data = data;
    c.inner_steps = 6;
    c.adversaries = adv.to_vec();
    let (s, w) = sim::run(c.clone()).unwrap();
    let mut base = c;
    base.adversaries.clear();
    let (b, _) = sim::run(base).unwrap();
    assert!(s.replicas_agree && b.replicas_agree);
    let r = sim::scenario_report(&w, b.final_val_loss);
    assert!(r.adversary_share_after_10.unwrap() < 0.05, "{r:#?}");
    assert_eq!(r.adversary_share_final, Some(0.0), "{r:#?}");
    assert_eq!(r.adversaries.len(), adv.len());
    r
}

fn never_aggregated(r: &covenant_node::analysis::ScenarioReport, b: &str) {
    let row = r.adversaries.iter().find(|x| x.behaviour == b).unwrap();
    assert!(
        row.aggregated_windows.is_empty() && row.max_weight == 0.0,
        "{row:?}"
    );
}

#[test]
fn attack_mixes_earn_nothing_on_the_stand_in() {
    use Behaviour::*;
    let r = scenario(SimModel::Standin, None, &[Copycat, Scaled, FreeRider]);
    assert!(
        r.adversaries
            .iter()
            .find(|x| x.behaviour == "copycat")
            .unwrap()
            .copy_detected,
        "{r:#?}"
    );
    never_aggregated(&r, "free-rider");
    let r = scenario(SimModel::Standin, None, &[Noise, SignFlip, Stale]);
    never_aggregated(&r, "noise");
    let r = scenario(SimModel::Standin, None, &[Late, Early, Nan]);
    for b in ["late", "early", "nan"] {
        never_aggregated(&r, b);
    }
    let r = scenario(
        SimModel::Standin,
        None,
        &[Malformed, Truncated, BadSignature],
    );
    for b in ["malformed", "truncated", "bad-signature"] {
        never_aggregated(&r, b);
    }
    let r = scenario(
        SimModel::Standin,
        None,
        &[Oversized, WrongShape, BadIndex, Silent],
    );
    for b in ["oversized", "wrong-shape", "bad-index", "silent"] {
        never_aggregated(&r, b);
    }
    // Updates that help but were not trained on the assigned data earn nothing: the own-data
    // evidence must favour a peer's own data before it is paid (before 2026-12-02 the check
    // was off in local runs and wrong-data held 0.233 of the weight, echo 0.183).
    let r = scenario(SimModel::Standin, None, &[WrongData, Echo, Stale]);
    for b in ["wrong-data", "echo"] {
        let row = r.adversaries.iter().find(|x| x.behaviour == b).unwrap();
        let from = covenant_core::RunParams::local().own_data_from_window;
        assert!(
            row.weight_zero_from_window.is_some_and(|w| w <= from + 1)
                && row.aggregated_windows.iter().all(|&w| w <= from + 1),
            "unpaid once the check applies: {row:?}"
        );
    }
}

#[test]
fn the_tiny_model_learns_and_replicas_agree() {
    let mut c = SimConfig::new(4, 2, 20, 1);
    c.model = SimModel::Tiny;
    c.data = Some(common::tiny_data());
    let (s, _) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let (first, last) = (s.first_val_loss.unwrap(), s.final_val_loss.unwrap());
    assert!(last < first - 2.5, "validation loss {first} -> {last}");
}

#[test]
fn a_tiny_model_run_replays_exactly() {
    let mut c = SimConfig::new(2, 1, 5, 9);
    c.model = SimModel::Tiny;
    c.data = Some(common::tiny_data());
    let (a, _) = sim::run(c.clone()).unwrap();
    let (b, _) = sim::run(c).unwrap();
    assert_eq!(a.line(), b.line());
    assert_eq!(
        a.final_val_loss.map(f64::to_bits),
        b.final_val_loss.map(f64::to_bits)
    );
    assert!(a.final_val_loss.unwrap() < a.first_val_loss.unwrap());
}

#[test]
fn attackers_cost_the_tiny_model_under_two_percent() {
    use Behaviour::*;
    let r = scenario(
        SimModel::Tiny,
        Some(common::tiny_data()),
        &[Noise, SignFlip, Stale],
    );
    let ratio = r.val_loss_ratio.unwrap();
    assert!(
        ratio < 1.02,
        "honest val loss {ratio} of the all-honest run\n{r:#?}"
    );
    never_aggregated(&r, "noise");
    never_aggregated(&r, "sign-flip");
}

#[test]
fn broken_and_untimely_uploads_cost_the_tiny_model_nothing() {
    use Behaviour::*;
    let mix = [Late, Early, Nan, Malformed, BadSignature, Silent];
    // None of these uploads is ever scored, so 14 windows say as much as 20 (each of these
    // miners trains, as honest ones do, before its upload is spoiled: the run is the suite's
    // costliest).
    let r = scenario_for(SimModel::Tiny, Some(common::tiny_data()), &mix, 14);
    let ratio = r.val_loss_ratio.unwrap();
    assert!(
        ratio < 1.02,
        "honest val loss {ratio} of the all-honest run\n{r:#?}"
    );
    for b in [
        "late",
        "early",
        "nan",
        "malformed",
        "bad-signature",
        "silent",
    ] {
        never_aggregated(&r, b);
    }
}

/// Issue 14 item 10: a zero update (a restarted miner's null window) dilutes the mean and pulls
/// the median norm down, so no node aggregates one.
#[test]
fn zero_updates_are_never_aggregated() {
    let mut c = SimConfig::new(4, 1, 12, 21);
    c.script = vec![Scripted::RestartAt {
        node: "miner-2".into(),
        window: 6,
    }];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let v = w.events(0);
    let steps = outer_steps(&v);
    let mut zeros = 0;
    for (win, peers) in reports(&v) {
        for (uid, line) in peers {
            if line.verdict == Verdict::Zero {
                zeros += 1;
                let step = steps.iter().find(|x| x.0 == win).expect("a step");
                assert!(
                    !step.1.contains(&uid),
                    "the zero upload of uid {uid} was aggregated in window {win}"
                );
            }
        }
    }
    assert!(zeros > 0, "the restarted miner uploaded a null window");
}

/// Issue 14 item 1: the Gauntlet applies a peer's update clipped to the median norm of the
/// window's gathered updates (SPEC §5), as the aggregation does; so an update scaled × 100 is
/// measured as the honest update it contains, not as a huge step no node ever takes.
#[test]
fn a_lone_update_is_evaluated_median_norm_clipped() {
    let mut c = SimConfig::new(4, 1, 10, 3);
    c.adversaries = vec![Behaviour::Scaled];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let bad = w.nodes[w.node_index("miner-5").unwrap()].uid;
    let v = w.events(0);
    // Its screens find it out (a norm outlier) with the update applied as the evaluation
    // applies it: clipped, it lowers the loss.
    let mut measured = 0;
    for e in &v {
        let NodeEvent::Report {
            window,
            eval,
            screens,
            ..
        } = e
        else {
            continue;
        };
        if let Some(p) = eval.get(&bad) {
            measured += 1;
            assert!(
                p.rand_after.is_finite() && p.rand_after < p.rand_before,
                "window {window}: the scaled update, clipped, helps: {p:?}"
            );
        } else if let Some(s) = screens.get(&bad) {
            measured += 1;
            assert!(
                *s > 0.0,
                "window {window}: the scaled update, clipped, helps: {s}"
            );
        }
    }
    assert!(
        measured >= 3,
        "the scaled miner was measured {measured} times"
    );
    // Clipped it is harmless, yet it is judged invalid: its norm is 100 times everyone's.
    let invalid = reports(&v)
        .iter()
        .filter(|(_, p)| p.get(&bad).is_some_and(|l| l.verdict == Verdict::Invalid))
        .count();
    assert_eq!(invalid, measured, "every measured window judges it invalid");
}

/// Issue 14 item 7: a stale miner that publishes, as its own, the fingerprint a validator's
/// record of the previous window gives away must not look in sync.
#[test]
fn a_copied_fingerprint_does_not_pass_the_sync_check() {
    let mut c = SimConfig::new(4, 1, 12, 5);
    c.adversaries = vec![Behaviour::SpoofSync];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let bad = w.nodes[w.node_index("miner-5").unwrap()].uid;
    let syncs: Vec<(u64, f64)> = reports(&w.events(0))
        .iter()
        .filter(|(win, _)| *win >= 5)
        .filter_map(|(win, p)| match p.get(&bad).map(|l| l.verdict) {
            Some(Verdict::Evaluated { sync, .. }) => Some((*win, sync)),
            _ => None,
        })
        .collect();
    assert!(syncs.len() >= 2, "the spoofer was measured: {syncs:?}");
    assert!(
        syncs.iter().all(|&(_, s)| s < 0.5),
        "a copied fingerprint scored in sync: {syncs:?}"
    );
}

/// Issue 14 item 3: a peer that deletes or overwrites its uploads once everyone has applied
/// them must not block joiners, nor make one diverge by replaying a window without them or
/// with the replaced bytes.
#[test]
fn a_vanishing_or_rewritten_upload_does_not_block_or_split_joiners() {
    for b in [Behaviour::Vanish, Behaviour::Rewrite] {
        joiner_despite(b);
    }
}

fn joiner_despite(b: Behaviour) {
    let mut c = SimConfig::new(3, 1, 16, 8);
    c.adversaries = vec![b];
    c.script = vec![Scripted::StartAt {
        node: "miner-3".into(),
        window: 8,
    }];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let v = w.events(0);
    let vanisher = w.nodes[w.node_index("miner-4").unwrap()].uid;
    assert!(
        outer_steps(&v).iter().any(|x| x.1.contains(&vanisher)),
        "the {b:?} miner's uploads were aggregated"
    );
    let joiner = w.node_index("miner-3").unwrap();
    let joined = w.events(joiner).iter().find_map(|e| match e {
        NodeEvent::Joined { window, .. } => Some(*window),
        _ => None,
    });
    assert!(
        joined.is_some_and(|j| j <= 11),
        "the joiner joined by window 11 despite {b:?}: {joined:?}"
    );
}

/// Issue 14 item 15 (in part): a flood of 50 noise miners beside 4 honest ones earns nothing.
/// Ratings only see ranks, so noise whose step happens to lower the loss a little used to rise
/// by beating the other noise miners (56–82 % of the weight after window 10). The aggregation
/// set's top primaries are evaluated every window and an update far below the window's best
/// earns nothing.
#[test]
fn a_flood_of_noise_miners_earns_nothing() {
    let mut c = SimConfig::new(4, 1, 20, 3);
    c.adversaries = vec![Behaviour::Noise; 50];
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let r = sim::scenario_report(&w, None);
    assert!(r.adversary_share_after_10.unwrap() < 0.05, "{r:#?}");
    assert_eq!(r.adversary_share_final, Some(0.0), "{r:#?}");
}

/// The first window whose outer step (on the validator, node 0) aggregated every honest miner.
fn all_honest_aggregated_from(w: &World) -> Option<u64> {
    let honest: Vec<u32> = w
        .nodes
        .iter()
        .filter(|n| n.role == covenant_node::Role::Miner && n.behaviour == Behaviour::Honest)
        .map(|n| n.uid)
        .collect();
    outer_steps(&w.events(0))
        .into_iter()
        .find(|(_, peers, _, _)| honest.iter().all(|u| peers.contains(u)))
        .map(|(window, ..)| window)
}

/// Zero uploads, copies and first uploads cannot be scored on their merits, so they must not
/// take the evaluation slots: fifty of them beside four honest miners delayed the honest
/// miners' first aggregation by several windows (the validator's 8 slots went to whoever
/// its rotation drew, before it downloaded anything).
#[test]
fn a_flood_of_unscorable_uploads_does_not_delay_the_honest_miners() {
    let base = SimConfig::new(4, 1, 12, 3);
    let (_, w) = sim::run(base.clone()).unwrap();
    let expected = all_honest_aggregated_from(&w).expect("all-honest run aggregates everyone");
    for b in [Behaviour::FreeRider, Behaviour::Copycat] {
        let mut c = base.clone();
        c.adversaries = vec![b; 50];
        let (s, w) = sim::run(c.clone()).unwrap();
        assert_holds(&c, &s);
        let got = all_honest_aggregated_from(&w);
        assert!(
            got.is_some_and(|g| g <= expected),
            "{b:?}: every honest miner aggregated from window {got:?}, all-honest run {expected}"
        );
        let r = sim::scenario_report(&w, None);
        assert_eq!(r.adversary_share_final, Some(0.0), "{r:#?}");
    }
}

/// Fifty Sybils — registered, each paying the registration burn — of five kinds beside four
/// honest miners: no weight after window 10 or at the end, and the honest validation loss
/// within 2 % of the all-honest run (issue 14 item 15; stand-in). Junk costs the validator a
/// download, not a slot; noise is measured and earns nothing.
#[test]
fn a_sybil_flood_earns_nothing_and_costs_the_honest_under_two_percent() {
    use Behaviour::*;
    let mut c = SimConfig::new(4, 1, 20, 3);
    c.adversaries = [Noise, FreeRider, Copycat, Silent, Late].repeat(10);
    let (s, w) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let mut base = c.clone();
    base.adversaries.clear();
    let (b, _) = sim::run(base).unwrap();
    let r = sim::scenario_report(&w, b.final_val_loss);
    assert_eq!(r.adversaries.len(), 50);
    assert_eq!(r.adversary_share_after_10, Some(0.0), "{r:#?}");
    assert_eq!(r.adversary_share_final, Some(0.0), "{r:#?}");
    assert!(r.val_loss_ratio.unwrap() < 1.02, "{r:#?}");
}

/// Issue 14 item 12: at the demo's settings (`tiny`, H = 30, 200-ms steps, 2 validators) the
/// own-data check misjudged honest miners in its first judged window, where a newcomer has no
/// evidence behind it yet (seed 7, with 16 sequences per loss and margin 0: three of eight
/// honest evaluations in window 6 left unpaid, z +0.61, +0.47 and −0.26). Every honest miner
/// evaluated in the first judged windows keeps a positive score; the wrong-data miner is unpaid.
#[test]
fn honest_miners_pass_the_own_data_check_from_its_first_judged_window() {
    let from = covenant_core::RunParams::local().own_data_from_window;
    let mut c = SimConfig::new(4, 2, from + 2, 7);
    c.model = SimModel::Tiny;
    c.data = Some(common::tiny_data());
    c.inner_steps = 30;
    c.step_ms = 200;
    c.adversaries = vec![Behaviour::WrongData];
    let (s, world) = sim::run(c.clone()).unwrap();
    assert_holds(&c, &s);
    let wrong = world
        .nodes
        .iter()
        .find(|n| n.behaviour == Behaviour::WrongData);
    let wrong = wrong.unwrap().uid;
    let mut judged = 0;
    for (i, node) in world.nodes.iter().enumerate() {
        for e in world.events(i) {
            let NodeEvent::Report {
                window,
                peers,
                eval,
                ..
            } = e
            else {
                continue;
            };
            for uid in eval.keys().filter(|_| window >= from) {
                let score = peers[uid].score;
                let line = format!("{} window {window} uid {uid}: {:?}", node.name, eval[uid]);
                if *uid == wrong {
                    assert_eq!(score, 0.0, "wrong-data paid: {line}");
                } else {
                    assert!(score > 0.0, "honest miner unpaid: {line}");
                    judged += 1;
                }
            }
        }
    }
    assert_eq!(
        judged,
        2 * 4 * 2,
        "each validator judges each honest miner twice"
    );
}

/// Issue 14 item 15 and issue 16: floods of updates that must each be measured. Fifty noise
/// miners used to delay the honest miners' discovery (honest loss 1.36–2.09× the all-honest
/// run on the stand-in, seeds 1–5) and fifty wrong-data miners kept 55–69 % of the weight after
/// window 10. Screens put the honest first, and an update found training on other data enters
/// the rating match at −99, so the honest outrank it.
#[test]
fn floods_of_noise_and_wrong_data_earn_nothing_and_cost_the_honest_nothing() {
    for (b, seed) in [(Behaviour::Noise, 3), (Behaviour::WrongData, 4)] {
        let mut c = SimConfig::new(4, 1, 20, seed);
        c.adversaries = vec![b; 50];
        let (s, w) = sim::run(c.clone()).unwrap();
        assert_holds(&c, &s);
        let mut base = c.clone();
        base.adversaries.clear();
        let (all_honest, _) = sim::run(base).unwrap();
        let r = sim::scenario_report(&w, all_honest.final_val_loss);
        assert!(r.adversary_share_after_10.unwrap() < 0.05, "{b:?}: {r:#?}");
        assert_eq!(r.adversary_share_final, Some(0.0), "{b:?}: {r:#?}");
        assert!(r.val_loss_ratio.unwrap() < 1.02, "{b:?}: {r:#?}");
    }
}

/// Overlap that loses no work (issue 17): miners train window w + 1 while w's uploads are
/// gathered, carrying their own last upload's step until the network's lands. From their second
/// trained window on every inner step is in the upload (none stale; only the first, which
/// started from the model of the null window, restarts when that step lands), they never
/// wait for an outer step, replicas agree, and the model learns as it does without overlap.
/// (The first form, which trained from the old canonical model and dropped the steps before
/// a landing, ended these runs at 0.213 and 0.275: 2.5 and 3.2 times the loss without overlap.)
#[test]
fn overlap_sends_every_step_waits_for_nothing_and_learns_as_without() {
    for seed in [2, 5] {
        let base = SimConfig::new(4, 1, 16, seed);
        let mut over = base.clone();
        over.overlap = true;
        let (s0, w0) = sim::run(base).unwrap();
        let (s1, w1) = sim::run(over.clone()).unwrap();
        assert_holds(&over, &s1);
        assert!(s1.replicas_agree && s1.windows_applied == 16, "{s1:?}");
        let h = u64::from(over.inner_steps);
        for (i, n) in w1.nodes.iter().enumerate() {
            if n.role != covenant_node::Role::Miner {
                continue;
            }
            let ev = w1.events(i);
            let trained: Vec<(u64, u32, u32)> = ev
                .iter()
                .filter_map(|e| match e {
                    NodeEvent::Trained {
                        window,
                        steps,
                        sent_steps,
                        ..
                    } => Some((*window, *steps, *sent_steps)),
                    _ => None,
                })
                .collect();
            assert!(trained.len() >= 14, "{}: {trained:?}", n.name);
            for (w, steps, sent) in &trained[1..] {
                assert_eq!(steps, sent, "{} window {w}: stale steps", n.name);
            }
            let stats = ev
                .iter()
                .find_map(|e| match e {
                    NodeEvent::Finished { stats, .. } => Some(*stats),
                    _ => None,
                })
                .unwrap();
            assert!(stats.stale_steps <= h, "{}: {stats:?}", n.name);
            assert_eq!(stats.wait_ms, 0, "{}: {stats:?}", n.name);
            let u = stats.utilisation().unwrap();
            assert!(u >= 0.95, "{}: utilisation {u}", n.name);
        }
        // Without overlap the same miners wait for every outer step.
        let waited = w0
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role == covenant_node::Role::Miner)
            .all(|(i, _)| {
                w0.events(i)
                    .iter()
                    .any(|e| matches!(e, NodeEvent::Finished { stats, .. } if stats.wait_ms > 0))
            });
        assert!(waited, "the run without overlap waits");
        // The stand-in's loss falls from ~0.44 to ~0.086: overlap may give up at most 2 % of
        // that fall (seeds 1-10, 2026-12-06: it gave up none, ending 1.6-3.7 % below; the form
        // that carried the whole dense update gave up 0.2-1.2 %). The real `tiny` demo does
        // not follow the stand-in here (docs/NODES.md, "Overlap").
        let (first, l0, l1) = (
            s0.first_val_loss.unwrap(),
            s0.final_val_loss.unwrap(),
            s1.final_val_loss.unwrap(),
        );
        assert!(
            l1 - l0 <= 0.02 * (first - l0),
            "seed {seed}: validation loss {first} -> {l1} with overlap, -> {l0} without"
        );
    }
}
