//! The Gauntlet's rules, one window at a time, including the edge cases (no peers, one peer,
//! all missing, ties) and a validator restart from serialised state.

use std::collections::{BTreeMap, BTreeSet};

use covenant_core::gauntlet::{EvalOutcome, Gauntlet, Observations, Verdict, WindowPlan};
use covenant_core::scoring::{Fingerprint, LossProbe};
use covenant_core::selection::{AggregationSet, UploadIndices};
use covenant_core::{CoreError, RunParams, Uid, Window};

fn params() -> RunParams {
    RunParams {
        uids_per_window: 20,
        ..RunParams::local()
    }
}

fn on_time(p: &RunParams, w: Window) -> u64 {
    p.upload_interval(w).0 + 1
}

fn reg(uids: &[Uid]) -> BTreeSet<Uid> {
    uids.iter().copied().collect()
}

fn agg(primary: &[Uid], reserves: &[Uid]) -> AggregationSet {
    AggregationSet {
        primary: primary.to_vec(),
        reserves: reserves.to_vec(),
    }
}

/// Honest: 2% better on random data, 4% on its own.
fn honest() -> EvalOutcome {
    EvalOutcome::Measured {
        probe: LossProbe {
            rand_before: 5.0,
            rand_after: 4.9,
            own_before: 5.0,
            own_after: 4.8,
            own_z: None,
        },
        fingerprint: None,
    }
}

/// Improves by `gain` on random data and 2 × gain on its own.
fn gain(g: f64) -> EvalOutcome {
    EvalOutcome::Measured {
        probe: LossProbe {
            rand_before: 5.0,
            rand_after: 5.0 * (1.0 - g),
            own_before: 5.0,
            own_after: 5.0 * (1.0 - 2.0 * g),
            own_z: None,
        },
        fingerprint: None,
    }
}

/// A free-rider: uploads noise that barely helps, as much on its own data as on random data
/// (indicator −1).
fn free_rider() -> EvalOutcome {
    EvalOutcome::Measured {
        probe: LossProbe {
            rand_before: 5.0,
            rand_after: 4.999,
            own_before: 5.0,
            own_after: 4.999,
            own_z: None,
        },
        fingerprint: None,
    }
}

/// What the validator saw of one download.
enum Seen {
    Measured(EvalOutcome),
    /// Failed validation.
    Invalid,
    /// A store error: nothing is known.
    Unavailable,
    /// Listed on time, but gone or replaced when read.
    Gone,
}

struct Net {
    p: RunParams,
    g: Gauntlet,
    w: Window,
}

impl Net {
    fn new() -> Self {
        Self {
            p: params(),
            g: Gauntlet::new(7),
            w: 0,
        }
    }

    /// Runs one window: everybody in `uploaders` uploads on time; `outcome` gives the measurement
    /// of each evaluated peer.
    fn window(
        &mut self,
        registered: &[Uid],
        a: AggregationSet,
        uploaders: &[Uid],
        outcome: impl Fn(Uid) -> EvalOutcome,
    ) -> (WindowPlan, covenant_core::WindowReport) {
        self.window_seen(registered, a, uploaders, |u| Seen::Measured(outcome(u)))
    }

    /// Like [`Net::window`], with downloads that failed validation or could not be read.
    fn window_seen(
        &mut self,
        registered: &[Uid],
        a: AggregationSet,
        uploaders: &[Uid],
        seen: impl Fn(Uid) -> Seen,
    ) -> (WindowPlan, covenant_core::WindowReport) {
        let t = on_time(&self.p, self.w);
        let uploads: BTreeMap<Uid, u64> = uploaders.iter().map(|&u| (u, t)).collect();
        let plan = self
            .g
            .plan(&self.p, self.w, &reg(registered), a, &uploads)
            .unwrap();
        let mut obs = Observations::default();
        for u in plan.downloads() {
            match seen(u) {
                Seen::Measured(o) if plan.evaluate(&self.p).contains(&u) => {
                    obs.outcomes.insert(u, o);
                }
                Seen::Measured(_) => {}
                Seen::Invalid => {
                    obs.invalid.insert(u);
                }
                Seen::Unavailable => {
                    obs.unavailable.insert(u);
                }
                Seen::Gone => {
                    obs.missing.insert(u);
                }
            }
        }
        let rep = self.g.finish(&self.p, &plan, obs).unwrap();
        self.w += 1;
        (plan, rep)
    }

    /// A window in which `peers` upload the zero update of their join's null window (their
    /// first upload, never rated).
    fn join(&mut self, peers: &[Uid]) {
        let t = on_time(&self.p, self.w);
        let uploads: BTreeMap<Uid, u64> = peers.iter().map(|&u| (u, t)).collect();
        let plan = self
            .g
            .plan(&self.p, self.w, &reg(peers), agg(peers, &[]), &uploads)
            .unwrap();
        let obs = Observations {
            zero: reg(peers),
            ..Default::default()
        };
        let rep = self.g.finish(&self.p, &plan, obs).unwrap();
        assert!(peers.iter().all(|u| rep.peers[u].verdict == Verdict::Zero));
        assert!(rep.weights.is_empty());
        self.w += 1;
    }
}

#[test]
fn no_peers_is_a_quiet_window() {
    let mut n = Net::new();
    let (plan, rep) = n.window(&[], agg(&[], &[]), &[], |_| honest());
    assert!(plan.evaluate(&n.p).is_empty() && plan.gather.is_empty());
    assert!(rep.peers.is_empty() && rep.weights.is_empty());
}

#[test]
fn one_honest_peer_earns_all_weight() {
    let mut n = Net::new();
    for w in 0..5 {
        let (plan, rep) = n.window(&[3], agg(&[3], &[]), &[3], |_| honest());
        // Its first upload (a join's null window) is not scored, so not evaluated.
        let due = if w == 0 { vec![] } else { vec![3] };
        assert_eq!(plan.evaluate(&n.p), due);
        assert_eq!(plan.gather, vec![3]);
        assert!(rep.peers.contains_key(&3));
    }
    let w = n.g.weights(&n.p);
    assert!((w.get(3) - 1.0).abs() < 1e-12, "{w:?}");
    assert!(
        n.g.peers[&3].rating.ordinal() > 0.0,
        "beats the do-nothing baseline"
    );
}

#[test]
fn lone_peer_without_baseline_gains_no_rating() {
    let mut n = Net::new();
    n.p.rating_baseline = false;
    for _ in 0..5 {
        n.window(&[3], agg(&[3], &[]), &[3], |_| honest());
    }
    assert!(n.g.peers[&3].rating.ordinal() <= 0.0);
    assert!(n.g.weights(&n.p).is_empty());
}

#[test]
fn better_improvement_earns_more_and_free_riders_nothing() {
    let mut n = Net::new();
    let peers: Vec<Uid> = (0..6).collect();
    for _ in 0..12 {
        n.window(&peers, agg(&peers, &[]), &peers, |u| match u {
            0 => gain(0.03),
            1 => gain(0.02),
            2 => gain(0.01),
            _ => free_rider(),
        });
    }
    let w = n.g.weights(&n.p);
    assert!(
        w.get(0) > w.get(1) && w.get(1) > w.get(2) && w.get(2) > 0.0,
        "{w:?}"
    );
    for u in 3..6 {
        assert_eq!(w.get(u), 0.0, "free-rider {u}");
        assert!(n.g.peers[&u].bma.value < 0.0);
    }
}

#[test]
fn ties_rate_equally_and_split_by_uid() {
    let mut n = Net::new();
    for _ in 0..3 {
        n.window(&[4, 9], agg(&[4, 9], &[]), &[4, 9], |_| honest());
    }
    let (a, b) = (&n.g.peers[&4], &n.g.peers[&9]);
    assert_eq!(a.rating, b.rating);
    assert_eq!(a.score, b.score);
    let w = n.g.weights(&n.p);
    assert!(w.get(4) > w.get(9) && w.get(9) > 0.0);
}

#[test]
fn a_primary_that_misses_is_penalised_escalating() {
    let mut n = Net::new();
    let peers = [1, 2, 3];
    for _ in 0..3 {
        n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
    }
    let s0 = n.g.peers[&1].score;
    assert!(s0 > 0.0);
    // Primaries not delivered, as in the reference: × 0.75, then × 0.5, then × 0 (uid 1
    // misses; 2 of 3 deliver, so the gather did not fail).
    let (_, rep) = n.window(&peers, agg(&peers, &[]), &[2, 3], |_| honest());
    assert_eq!(rep.peers[&1].verdict, Verdict::Missing { streak: 1 });
    let s1 = n.g.peers[&1].score;
    assert!((s1 - s0 * 0.75).abs() < 1e-12, "{s1} vs {s0}");
    n.window(&peers, agg(&peers, &[]), &[2, 3], |_| honest());
    let s2 = n.g.peers[&1].score;
    assert!((s2 - s1 * 0.5).abs() < 1e-12, "second miss in a row × 0.5");
    n.window(&peers, agg(&peers, &[]), &[2, 3], |_| honest());
    assert_eq!(n.g.peers[&1].score, 0.0, "third miss in a row × 0");
    assert!(n.g.peers[&1].excluded, "three negatives in a row");
}

#[test]
fn all_missing_zeroes_every_primary_and_gathers_nothing() {
    let mut n = Net::new();
    let peers = [1, 2, 3];
    for _ in 0..3 {
        n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
    }
    assert!(n.g.peers[&1].score > 0.0);
    let (plan, rep) = n.window(&peers, agg(&peers, &[]), &[], |_| honest());
    assert!(plan.gather.is_empty() && plan.evaluate(&n.p).is_empty());
    assert_eq!(rep.peers[&1].verdict, Verdict::Missing { streak: 1 });
    // Nobody delivered: fewer than 40 % of the gather succeeded.
    assert!(peers.iter().all(|u| n.g.peers[u].score == 0.0));
    assert!(n.g.weights(&n.p).is_empty());
}

/// An evaluated peer (not a primary) that misses loses a quarter of its score and of its BMA,
/// as in the reference (before 2026-12-02: three quarters, and the BMA kept).
#[test]
fn a_missing_evaluated_upload_costs_a_quarter_of_score_and_bma() {
    let mut n = Net::new();
    let peers = [1, 2, 3];
    for _ in 0..3 {
        n.window(&peers, agg(&[], &[]), &peers, |_| honest());
    }
    let (s0, b0) = (n.g.peers[&1].score, n.g.peers[&1].bma.value);
    assert!(s0 > 0.0 && b0 > 0.0);
    let (_, rep) = n.window_seen(&peers, agg(&[], &[]), &peers, |u| {
        if u == 1 {
            Seen::Gone
        } else {
            Seen::Measured(honest())
        }
    });
    if rep.peers[&1].verdict == (Verdict::Missing { streak: 1 }) {
        let (s1, b1) = (n.g.peers[&1].score, n.g.peers[&1].bma.value);
        assert!((s1 - s0 * 0.75).abs() < 1e-12, "{s1} vs {s0}");
        assert!((b1 - b0 * 0.75).abs() < 1e-12, "{b1} vs {b0}");
    } else {
        panic!("uid 1 was not judged missing: {:?}", rep.peers[&1]);
    }
}

/// More than half negative of the last 8 judged windows excludes a peer even without three
/// negatives in a row (the reference's rule; before 2026-12-02 only the streak counted).
#[test]
fn mostly_negative_recent_evaluations_exclude_a_peer() {
    let mut n = Net::new();
    let peers = [1, 2, 3];
    // uid 1 alternates harmful and helpful updates: never three negatives in a row.
    for i in 0..10u32 {
        n.window(&peers, agg(&[], &[]), &peers, |u| {
            if u == 1 && i % 3 != 2 {
                gain(-0.01)
            } else {
                honest()
            }
        });
    }
    let r = &n.g.peers[&1];
    assert!(r.negative_streak < 3, "{r:?}");
    assert!(r.excluded, "6 or more of its last 8 were negative: {r:?}");
    assert!(!n.g.peers[&2].excluded);
}

/// A peer inactive for more than 3 windows in a row starts afresh (the reference's
/// `reset_peer`; before 2026-12-02 its old rating was kept forever).
#[test]
fn a_peer_inactive_for_more_than_three_windows_starts_afresh() {
    let mut n = Net::new();
    let peers = [1, 2, 3];
    for _ in 0..4 {
        n.window(&peers, agg(&[], &[]), &peers, |_| honest());
    }
    assert!(n.g.peers[&1].evaluations > 0);
    for k in 1..=4u32 {
        n.window(&peers, agg(&[], &[]), &[2, 3], |_| honest());
        let r = &n.g.peers[&1];
        if k <= 3 {
            assert_eq!(r.inactive_streak, k, "{r:?}");
            assert!(r.evaluations > 0);
        } else {
            assert_eq!(
                (r.evaluations, r.score, r.uploads),
                (0, 0.0, 0),
                "reset after the 4th: {r:?}"
            );
        }
    }
}

#[test]
fn inactive_peers_decay_25_percent_per_window() {
    let mut n = Net::new();
    let peers = [1, 2];
    for _ in 0..3 {
        n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
    }
    let s0 = n.g.peers[&2].score;
    // Peer 2 no longer expected (not a primary) and uploads nothing.
    let (_, rep) = n.window(&peers, agg(&[1], &[]), &[1], |_| honest());
    assert_eq!(rep.peers[&2].verdict, Verdict::Inactive);
    assert!((n.g.peers[&2].score - 0.75 * s0).abs() < 1e-12);
    n.window(&peers, agg(&[1], &[]), &[1], |_| honest());
    assert!((n.g.peers[&2].score - 0.75 * 0.75 * s0).abs() < 1e-12);
    assert!(
        !n.g.peers[&2].excluded,
        "inactivity decays, it does not exclude"
    );
}

#[test]
fn reserves_replace_missing_primaries_and_late_uploads_are_skipped() {
    let p = params();
    let mut g = Gauntlet::new(1);
    let (open, close) = p.upload_interval(0);
    let uploads: BTreeMap<Uid, u64> = [
        (1, open),
        (2, close + 1),
        (3, open - 1),
        (10, close),
        (11, open),
    ]
    .into();
    let plan = g
        .plan(
            &p,
            0,
            &reg(&[1, 2, 3, 4, 10, 11]),
            agg(&[1, 2, 3, 4], &[10, 11]),
            &uploads,
        )
        .unwrap();
    assert_eq!(plan.accepted, reg(&[1, 10, 11]));
    assert_eq!(plan.gather, vec![1, 10, 11]);
    let obs = Observations {
        outcomes: plan.evaluate(&p).iter().map(|&u| (u, honest())).collect(),
        ..Default::default()
    };
    let rep = g.finish(&p, &plan, obs).unwrap();
    for u in [2, 3, 4] {
        assert_eq!(
            rep.peers[&u].verdict,
            Verdict::Missing { streak: 1 },
            "uid {u}: late, early, missing"
        );
    }
}

#[test]
fn copier_is_blamed_and_original_is_not() {
    let mut n = Net::new();
    n.join(&[1, 2, 3]);
    let (p, mut g) = (n.p, n.g);
    let (open, _) = p.upload_interval(1);
    let uploads: BTreeMap<Uid, u64> = [(1, open + 10), (2, open + 500), (3, open + 20)].into();
    let plan = g
        .plan(&p, 1, &reg(&[1, 2, 3]), agg(&[1, 2, 3], &[]), &uploads)
        .unwrap();
    let orig: Vec<u64> = (0..64).collect();
    let copy: Vec<u64> = (0..40).chain(5000..5024).collect();
    let own: Vec<u64> = (100..164).collect();
    let obs = Observations {
        outcomes: plan.evaluate(&p).iter().map(|&u| (u, honest())).collect(),
        indices: vec![
            UploadIndices {
                uid: 1,
                store_time: open + 10,
                indices: orig,
            },
            UploadIndices {
                uid: 2,
                store_time: open + 500,
                indices: copy,
            },
            UploadIndices {
                uid: 3,
                store_time: open + 20,
                indices: own,
            },
        ],
        ..Default::default()
    };
    let rep = g.finish(&p, &plan, obs).unwrap();
    assert!(matches!(
        rep.peers[&2].verdict,
        Verdict::Copied { original: 1, .. }
    ));
    assert!(matches!(rep.peers[&1].verdict, Verdict::Evaluated { .. }));
    assert!(g.peers[&2].rating.mu < g.peers[&1].rating.mu);
    assert_eq!(g.peers[&2].score, 0.0);
    assert!(g.peers[&1].score > 0.0);
}

#[test]
fn invalid_uploads_enter_at_minus_99_and_are_excluded() {
    let mut n = Net::new();
    let peers = [1, 2];
    let (_, rep) = n.window_seen(&peers, agg(&peers, &[]), &peers, |u| {
        if u == 2 {
            Seen::Invalid
        } else {
            Seen::Measured(honest())
        }
    });
    assert_eq!(rep.peers[&2].verdict, Verdict::Invalid);
    assert!(n.g.peers[&2].rating.mu < 25.0);
    // All invalid: survived.
    let (_, rep) = n.window_seen(&peers, agg(&peers, &[]), &peers, |_| Seen::Invalid);
    assert!(rep.weights.is_empty());
    // Non-finite losses count as invalid, not as a crash; so does an update that makes the
    // model non-finite.
    let (_, rep) = n.window_seen(&peers, agg(&peers, &[]), &peers, |u| {
        Seen::Measured(if u == 1 {
            EvalOutcome::NonFinite
        } else {
            EvalOutcome::Measured {
                probe: LossProbe {
                    rand_before: 5.0,
                    rand_after: f64::NAN,
                    own_before: 5.0,
                    own_after: 4.0,
                    own_z: None,
                },
                fingerprint: None,
            }
        })
    });
    assert_eq!(rep.peers[&1].verdict, Verdict::Invalid);
    assert_eq!(rep.peers[&2].verdict, Verdict::Invalid);
    assert!(n.g.peers[&2].excluded, "three negatives in a row");
    assert!(!n.g.peers[&1].excluded, "only two");
}

#[test]
fn unreadable_uploads_are_not_penalised_until_the_grace_runs_out() {
    let mut n = Net::new();
    let peers = [1, 2];
    n.join(&peers);
    for _ in 0..3 {
        n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
    }
    let s0 = n.g.peers[&2].score;
    let mu0 = n.g.peers[&2].rating.mu;
    assert!(s0 > 0.0);
    let seen = |u: Uid| {
        if u == 2 {
            Seen::Unavailable
        } else {
            Seen::Measured(honest())
        }
    };
    let grace = n.p.penalties.unavailable_grace;
    for k in 1..=grace {
        let (_, rep) = n.window_seen(&peers, agg(&peers, &[]), &peers, seen);
        assert_eq!(rep.peers[&2].verdict, Verdict::Unavailable { streak: k });
        assert_eq!(
            n.g.peers[&2].score, s0,
            "a store outage is not the peer's fault"
        );
        assert_eq!(n.g.peers[&2].rating.mu, mu0, "not rated");
        assert!(!n.g.peers[&2].excluded);
    }
    // Unreadable for longer than the grace: it decays like an inactive peer (never excluded).
    n.window_seen(&peers, agg(&peers, &[]), &peers, seen);
    assert!((n.g.peers[&2].score - 0.75 * s0).abs() < 1e-12);
    assert!(!n.g.peers[&2].excluded);
    // Readable again: rated as before, the streak forgotten.
    let (_, rep) = n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
    assert!(matches!(rep.peers[&2].verdict, Verdict::Evaluated { .. }));
    assert_eq!(n.g.peers[&2].unavailable_streak, 0);
}

#[test]
fn exclusion_after_three_negatives_and_recovery() {
    let mut n = Net::new();
    let peers = [1, 2];
    n.join(&peers);
    let bad = |u: Uid| if u == 2 { gain(-0.01) } else { honest() };
    for i in 0..3 {
        n.window(&peers, agg(&peers, &[]), &peers, bad);
        assert_eq!(n.g.peers[&2].excluded, i == 2);
    }
    assert_eq!(n.g.weights(&n.p).get(2), 0.0);
    n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
    assert!(
        !n.g.peers[&2].excluded,
        "a positive evaluation ends the exclusion"
    );
}

fn fp(v: f32) -> Fingerprint {
    Fingerprint {
        tensors: vec![vec![v; 4]; 4],
    }
}

#[test]
fn out_of_sync_peer_scores_less() {
    let mut n = Net::new();
    let peers = [1, 2];
    // The validator's model moves by 0.1 per window.
    for k in 0..6 {
        let vfp = fp(k as f32 * 0.1);
        let t = on_time(&n.p, n.w);
        let uploads: BTreeMap<Uid, u64> = peers.iter().map(|&u| (u, t)).collect();
        let plan =
            n.g.plan(&n.p, n.w, &reg(&peers), agg(&peers, &[]), &uploads)
                .unwrap();
        let mk = |u: Uid| {
            let lag = if u == 2 { 2.5 } else { 0.0 };
            EvalOutcome::Measured {
                probe: LossProbe {
                    rand_before: 5.0,
                    rand_after: 4.9,
                    own_before: 5.0,
                    own_after: 4.8,
                    own_z: None,
                },
                fingerprint: Some(fp((k as f32 - lag) * 0.1)),
            }
        };
        let obs = Observations {
            outcomes: plan.evaluate(&n.p).iter().map(|&u| (u, mk(u))).collect(),
            own_fingerprint: Some(vfp),
            ..Default::default()
        };
        let rep = n.g.finish(&n.p, &plan, obs).unwrap();
        if k >= 1 {
            let Verdict::Evaluated {
                sync, sync_steps, ..
            } = rep.peers[&2].verdict
            else {
                panic!()
            };
            assert!((sync_steps.unwrap() - 2.5).abs() < 1e-3, "{sync_steps:?}");
            assert!((sync - (1.0f64 / 6.0).powf(2.5)).abs() < 1e-3, "{sync}");
            let Verdict::Evaluated { sync, .. } = rep.peers[&1].verdict else {
                panic!()
            };
            assert_eq!(sync, 1.0);
        }
        n.w += 1;
    }
    let (a, b) = (&n.g.peers[&1], &n.g.peers[&2]);
    assert_eq!(a.rating, b.rating, "same losses, same rating");
    assert!(
        b.score < 0.01 * a.score,
        "sync {:?} and the 75% penalty",
        b.last_sync
    );
}

#[test]
fn errors_for_out_of_order_windows_and_unselected_results() {
    let mut n = Net::new();
    n.window(&[1], agg(&[1], &[]), &[1], |_| honest());
    let p = n.p.clone();
    let err =
        n.g.plan(&p, 0, &reg(&[1]), agg(&[1], &[]), &BTreeMap::new())
            .unwrap_err();
    assert_eq!(err, CoreError::WindowNotAdvancing { current: 0, got: 0 });
    let plan =
        n.g.plan(&p, 1, &reg(&[1]), agg(&[1], &[]), &BTreeMap::new())
            .unwrap();
    let before = n.g.clone();
    let obs = Observations {
        outcomes: [(5, honest())].into(),
        ..Default::default()
    };
    assert_eq!(
        n.g.finish(&p, &plan, obs).unwrap_err(),
        CoreError::NotSelected { uid: 5, window: 1 }
    );
    assert_eq!(n.g, before, "a rejected window changes nothing");
}

#[test]
fn deregistered_uids_are_forgotten_and_new_ones_start_fresh() {
    let mut n = Net::new();
    n.window(&[1, 2], agg(&[1, 2], &[]), &[1, 2], |_| honest());
    n.window(&[1, 3], agg(&[1], &[]), &[1, 3], |_| honest());
    assert!(!n.g.peers.contains_key(&2));
    assert_eq!(n.g.peers[&3].first_seen, 1);
}

#[test]
fn restarted_validator_resumes_identically() {
    let mut a = Net::new();
    let peers: Vec<Uid> = (0..8).collect();
    let out = |u: Uid| {
        if matches!(u % 3, 0) {
            free_rider()
        } else {
            gain(0.005 * u as f64)
        }
    };
    for _ in 0..5 {
        a.window(&peers, agg(&peers[..4], &peers[4..]), &peers, out);
    }
    let json = serde_json::to_string(&a.g).unwrap();
    let restored: Gauntlet = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, a.g);
    let mut b = Net {
        p: a.p.clone(),
        g: restored,
        w: a.w,
    };
    for _ in 0..5 {
        let (_, ra) = a.window(&peers, agg(&peers[..4], &peers[4..]), &peers, out);
        let (_, rb) = b.window(&peers, agg(&peers[..4], &peers[4..]), &peers, out);
        assert_eq!(ra, rb);
    }
}

/// Garbage in (non-finite and extreme losses, malformed fingerprints, timestamps anywhere,
/// peers coming and going): no panic, weights stay a distribution, scores stay finite.
#[test]
fn random_garbage_never_panics_and_weights_stay_normalised() {
    use covenant_core::rng::SplitMix64;
    let p = RunParams {
        uids_per_window: 8,
        aggregation_size: 5,
        reserves: 3,
        ..RunParams::local()
    };
    let mut g = Gauntlet::new(3);
    let mut r = SplitMix64::new(99);
    let weird = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -1.0,
        1e300,
        1e-300,
        5.0,
        4.9,
    ];
    for w in 0..200u64 {
        let registered: BTreeSet<Uid> = (0..30).filter(|_| r.chance(0.7)).collect();
        let (open, close) = p.upload_interval(w);
        let mut uploads: BTreeMap<Uid, u64> = BTreeMap::new();
        for &u in &registered {
            if r.chance(0.8) {
                uploads.insert(
                    u,
                    open.saturating_sub(2_000) + r.below(close - open + 4_000),
                );
            }
        }
        let primary: Vec<Uid> = (0..40).filter(|_| r.chance(0.15)).collect();
        let plan = g
            .plan(&p, w, &registered, agg(&primary, &[1, 2, 3]), &uploads)
            .unwrap();
        let mut pick = || weird[r.below(weird.len() as u64) as usize];
        let mut obs = Observations::default();
        for &u in &plan.evaluate(&p) {
            let o = match u % 4 {
                1 => {
                    obs.invalid.insert(u);
                    continue;
                }
                2 => {
                    obs.unavailable.insert(u);
                    continue;
                }
                0 => EvalOutcome::Measured {
                    probe: LossProbe {
                        rand_before: pick(),
                        rand_after: pick(),
                        own_before: pick(),
                        own_after: pick(),
                        own_z: None,
                    },
                    fingerprint: Some(Fingerprint {
                        tensors: vec![vec![f32::NAN; (u % 3) as usize]; (u % 5) as usize],
                    }),
                },
                _ => honest(),
            };
            obs.outcomes.insert(u, o);
        }
        obs.own_fingerprint = Some(Fingerprint {
            tensors: vec![vec![w as f32; 4]; 4],
        });
        obs.indices = plan
            .downloads()
            .iter()
            .map(|&u| UploadIndices {
                uid: u,
                store_time: uploads.get(&u).copied().unwrap_or(0),
                indices: (0..16).map(|i| i * (u64::from(u) % 3 + 1)).collect(),
            })
            .collect();
        let rep = g.finish(&p, &plan, obs).unwrap();
        let total: f64 = rep.weights.per_uid.values().sum::<f64>() + rep.weights.burn;
        assert!(
            rep.weights.is_empty() || (total - 1.0).abs() < 1e-9,
            "window {w}: {total}"
        );
        assert!(rep
            .weights
            .per_uid
            .values()
            .all(|x| x.is_finite() && *x >= 0.0));
        assert!(g
            .peers
            .values()
            .all(|x| x.score.is_finite() && x.rating.mu.is_finite() && x.rating.sigma > 0.0));
    }
}

/// Improves own and random data equally (indicator −1): the own-data check zeroes its score;
/// with the check off, the loss score alone decides.
#[test]
fn own_data_check_can_be_switched_off() {
    let same = || EvalOutcome::Measured {
        probe: LossProbe {
            rand_before: 5.0,
            rand_after: 4.9,
            own_before: 5.0,
            own_after: 4.9,
            own_z: None,
        },
        fingerprint: None,
    };
    for check in [true, false] {
        let mut n = Net::new();
        n.p.own_data_check = check;
        for _ in 0..12 {
            n.window(&[1, 2], agg(&[1, 2], &[]), &[1, 2], |u| {
                if u == 1 {
                    same()
                } else {
                    free_rider()
                }
            });
        }
        let w = n.g.weights(&n.p);
        assert!(
            n.g.peers[&1].bma.value < 0.0,
            "indicator tracked either way"
        );
        if check {
            assert_eq!(w.get(1), 0.0, "{w:?}");
        } else {
            assert!(w.get(1) > 0.5, "{w:?}");
        }
    }
}

/// A null window's zero updates (everyone's, identical indices) earn nobody a rating or a copy
/// verdict, so nobody has weight before a real update is measured; a free-rider that keeps
/// uploading zeros never gains weight while an honest peer does. A peer whose first upload is
/// not the protocol's zero update (uid 4) is not rated for it either: it cannot be the only
/// rated peer of the genesis window and take all the weight.
#[test]
fn zero_updates_are_neither_rated_nor_copies() {
    let p = params();
    let mut g = Gauntlet::new(7);
    let peers = [1, 2, 3, 4];
    let same: Vec<u64> = (0..64).collect();
    for w in 0..4u64 {
        let open = p.upload_interval(w).0;
        let uploads: BTreeMap<Uid, u64> = peers.iter().map(|&u| (u, open + u as u64)).collect();
        let plan = g
            .plan(&p, w, &reg(&peers), agg(&peers, &[]), &uploads)
            .unwrap();
        // Window 0: everybody's null window (uid 4 uploads something else). Later: uid 3
        // keeps uploading zeros.
        let zero: BTreeSet<Uid> = if w == 0 { reg(&[1, 2, 3]) } else { reg(&[3]) };
        let obs = Observations {
            outcomes: plan
                .evaluate(&p)
                .iter()
                .filter(|u| !zero.contains(u))
                .map(|&u| (u, honest()))
                .collect(),
            indices: peers
                .iter()
                .map(|&u| UploadIndices {
                    uid: u,
                    store_time: uploads[&u],
                    indices: if zero.contains(&u) {
                        same.clone()
                    } else {
                        (0..64).map(|i| i * 7 + u64::from(u) * 1000).collect()
                    },
                })
                .collect(),
            zero: zero.clone(),
            ..Default::default()
        };
        let rep = g.finish(&p, &plan, obs).unwrap();
        assert!(rep.copies.is_empty(), "window {w}: {:?}", rep.copies);
        for u in &zero {
            assert_eq!(rep.peers[u].verdict, Verdict::Zero, "window {w}");
            assert!(rep.peers[u].ordinal.abs() < 1e-9, "window {w}: never rated");
            assert_eq!(rep.weights.get(*u), 0.0, "window {w}");
        }
        if w == 0 {
            assert_eq!(rep.peers[&4].verdict, Verdict::First);
            assert!(rep.weights.is_empty(), "no weights from null windows");
        } else {
            assert!(matches!(rep.peers[&4].verdict, Verdict::Evaluated { .. }));
            assert!(rep.weights.get(1) > 0.0 && rep.weights.get(2) > 0.0);
        }
    }
}

/// When fewer than 40 % of a window's primaries deliver, those that did not get × 0, as in the
/// reference (before 2026-12-02 a failed gather cost them what any miss did).
#[test]
fn primaries_that_fail_a_mostly_failed_gather_lose_their_score() {
    let peers = [1, 2, 3, 4, 5];
    let score_after_miss = |delivering: &[Uid]| {
        let mut n = Net::new();
        for _ in 0..3 {
            n.window(&peers, agg(&peers, &[]), &peers, |_| honest());
        }
        let s0 = n.g.peers[&5].score;
        n.window(&peers, agg(&peers, &[]), delivering, |_| honest());
        (s0, n.g.peers[&5].score)
    };
    // 2 of 5 delivered: 40 %, not fewer: the first miss costs a quarter.
    let (s0, s1) = score_after_miss(&[1, 2]);
    assert!(s0 > 0.0 && (s1 - 0.75 * s0).abs() < 1e-12, "{s0} {s1}");
    // 1 of 5: 20 %.
    let (s0, s1) = score_after_miss(&[1]);
    assert!(s0 > 0.0 && s1 == 0.0, "{s0} {s1}");
}

/// One noisy measurement must not cost an honest peer its pay: the weak-update bar judges a
/// peer's loss scores over several windows (`penalties.weak_update_decay`), not one window's.
#[test]
fn a_peer_that_measures_weak_in_one_window_keeps_its_weight() {
    let mut n = Net::new();
    let peers: Vec<Uid> = (0..4).collect();
    for _ in 0..8 {
        n.window(&peers, agg(&peers, &[]), &peers, |_| gain(0.02));
    }
    assert!(n.g.weights(&n.p).get(0) > 0.0);
    // Peer 0 measures a tenth of the others' gain once (below the bar of a quarter).
    n.window(&peers, agg(&peers, &[]), &peers, |u| {
        gain(if u == 0 { 0.002 } else { 0.02 })
    });
    let w = n.g.weights(&n.p);
    assert!(w.get(0) > 0.0, "one weak window took its weight: {w:?}");
}

/// An update that is always weak earns nothing, from its first evaluation on, and one that
/// turns weak stops earning within a few windows.
#[test]
fn an_update_that_stays_weak_earns_nothing() {
    let mut n = Net::new();
    let peers: Vec<Uid> = (0..5).collect();
    for i in 0..10 {
        n.window(&peers, agg(&peers, &[]), &peers, |u| {
            gain(if u == 4 { 0.004 } else { 0.02 })
        });
        let w = n.g.weights(&n.p);
        assert_eq!(w.get(4), 0.0, "a fifth of the others' gain: {w:?}");
        // (The first upload is a join's, never rated.)
        assert!(i < 2 || w.get(0) > 0.0, "window {i}: {w:?}");
    }
    let mut paid = Vec::new();
    for _ in 0..6 {
        n.window(&peers, agg(&peers, &[]), &peers, |u| {
            gain(if u == 0 { 0.002 } else { 0.02 })
        });
        paid.push(n.g.weights(&n.p).get(0) > 0.0);
    }
    assert!(paid[0], "one weak window is forgiven: {paid:?}");
    assert!(
        !paid[3] && !paid[4] && !paid[5],
        "weak ever since: {paid:?}"
    );
}

/// Issue 16: the full evaluations of a window. Due: the bar (top primaries), then challengers
/// best screened first (at least `eval_challengers`), then incumbents, suspects first (a
/// screen at or below 0, or none: worst first); the rest follow as time allows.
#[test]
fn evaluations_go_to_the_bar_the_best_challengers_and_the_suspect_incumbents() {
    let mut n = Net::new();
    n.p.aggregation_size = 3;
    n.p.reserves = 2;
    n.p.uids_per_window = 5;
    n.p.eval_incumbents = 1;
    n.p.eval_challengers = 2;
    let peers: Vec<Uid> = (1..=10).collect();
    n.join(&peers);
    let t = on_time(&n.p, n.w);
    let uploads: BTreeMap<Uid, u64> = peers.iter().map(|&u| (u, t)).collect();
    let plan =
        n.g.plan(&n.p, n.w, &reg(&peers), agg(&[1, 2, 3], &[4, 5]), &uploads)
            .unwrap();
    assert_eq!(plan.bar, vec![1]);
    assert_eq!(plan.incumbents, vec![2, 3, 4, 5]);
    assert_eq!(plan.challengers.len(), 5);
    assert_eq!(plan.downloads(), peers);
    // Unscreened: the bar, challengers in look-at order, then incumbents by weight.
    let q = plan.queue(&n.p, &Observations::default());
    assert_eq!(q.required, 5);
    assert_eq!(q.order[..3], [1, plan.challengers[0], plan.challengers[1]]);
    assert_eq!(q.order[3..5], [2, 3]);
    // Screened (uid 4's screen failed, uid 8 is zero).
    let screens: BTreeMap<Uid, f64> = [
        (1, 0.5),
        (2, -0.1),
        (3, 0.2),
        (5, 0.3),
        (6, 0.1),
        (7, 0.4),
        (9, 0.05),
        (10, 0.3),
    ]
    .into();
    let obs = Observations {
        screens,
        zero: reg(&[8]),
        ..Default::default()
    };
    let q = plan.queue(&n.p, &obs);
    assert_eq!(q.required, 5);
    assert_eq!(q.order, vec![1, 7, 10, 4, 2, 6, 9, 3, 5]);
    // Few challengers: incumbents take their room.
    n.p.eval_challengers = 4;
    let q = plan.queue(&n.p, &obs);
    assert_eq!(q.order[..q.required], [1, 7, 10, 6, 9]);
    // No room beyond the bar.
    n.p.uids_per_window = 1;
    let q = plan.queue(&n.p, &obs);
    assert_eq!((q.required, q.order.len()), (1, 9));
}

/// Issue 16: a challenger that did well is looked at again, and a newcomer is looked at in its
/// first scorable window, however many others wait.
#[test]
fn a_good_challenger_and_a_newcomer_are_looked_at_first() {
    let mut n = Net::new();
    n.p.uids_per_window = 2;
    n.p.eval_incumbents = 0;
    n.p.eval_spares = 2;
    let peers: Vec<Uid> = (1..=12).collect();
    n.join(&peers);
    // Window 1: everyone never looked at; four are.
    let (plan, _) = n.window(&peers, agg(&[], &[]), &peers, |u| {
        gain(0.001 * f64::from(u))
    });
    let first: Vec<Uid> = plan.challengers.clone();
    assert_eq!(first.len(), 4);
    // Window 2: the two evaluated (positive loss scores) are contenders; the others looked at
    // go to the back of the rotation.
    let evaluated: Vec<Uid> = plan.evaluate(&n.p);
    let (plan, _) = n.window(&peers, agg(&[], &[]), &peers, |_| honest());
    let mut contenders = plan.challengers[..2].to_vec();
    contenders.sort_unstable();
    assert_eq!(contenders, evaluated);
    assert!(plan.challengers[2..].iter().all(|u| !first.contains(u)));
    // A newcomer (its first upload, then its first scorable one) comes before the rotation.
    let mut all = peers.clone();
    all.push(13);
    n.window(&all, agg(&[], &[]), &all, |_| honest());
    let (plan, _) = n.window(&all, agg(&[], &[]), &all, |_| honest());
    assert!(plan.challengers[2..].contains(&13) || plan.challengers[..2].contains(&13));
    assert_eq!(
        plan.challengers
            .iter()
            .position(|&u| u == 13)
            .map(|i| i <= 2),
        Some(true),
        "{:?}",
        plan.challengers
    );
}
