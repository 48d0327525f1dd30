//! The drivers against a scripted executor that answers every action at once: what they ask
//! for, in what order and when. (The whole network runs in `covenant-node`'s simulator.)

use std::collections::BTreeMap;

use super::events::StepSource;
use super::miner::Miner;
use super::validator::Validator;
use super::*;
use crate::params::RunParams;

const G: Millis = 1_000_000;

fn cfg(uid: Uid) -> NodeConfig {
    NodeConfig {
        params: RunParams {
            genesis_ms: G,
            ..RunParams::local()
        },
        uid,
        seed: 1,
        until_window: None,
        keep_windows: 12,
        checkpoint_every: 5,
        overlap: false,
    }
}

/// Miners 1 and 2 registered with weight, validator 0.
fn view(w: Window) -> ChainView {
    ChainView {
        window: w,
        registered: [1, 2].into(),
        consensus: [(1, 0.5), (2, 0.5)].into(),
        committed: [1, 2].into(),
        validators: [0].into(),
        keys: [(1, [1; 32]), (2, [2; 32])].into(),
    }
}

fn fetched() -> Fetched {
    Fetched {
        bytes: 10,
        store_time: 0,
        zero: false,
        copy_keys: vec![1, 2, 3],
        fingerprint: None,
    }
}

/// Answers actions like a perfect world; `fetch` decides each fetch's result.
struct Script<F: FnMut(Uid) -> Result<Fetched, Rejection>> {
    now: Millis,
    log: Vec<Action>,
    events: Vec<NodeEvent>,
    fetch: F,
    view: fn(Window) -> ChainView,
    /// Time an evaluation takes.
    eval_ms: Millis,
    /// A uid whose uploads cannot be read in a span of time (a store outage).
    outage: Option<(Uid, std::ops::Range<Millis>)>,
}

impl<F: FnMut(Uid) -> Result<Fetched, Rejection>> Script<F> {
    fn new(fetch: F) -> Self {
        Script {
            now: G - 5_000,
            log: Vec::new(),
            events: Vec::new(),
            fetch,
            view,
            eval_ms: 0,
            outage: None,
        }
    }

    fn answer(&mut self, a: &Action, p: &RunParams) -> Option<Input> {
        Some(match a.clone() {
            Action::ReadChain { window } => Input::Chain {
                window,
                view: Ok((self.view)(window)),
            },
            Action::ListCheckpoints => Input::Checkpoints { found: Ok(vec![]) },
            Action::List { window, peers } => Input::Listed {
                window,
                uploads: peers
                    .iter()
                    .map(|&u| (u, Listing::Found(p.upload_interval(window).0 + 10)))
                    .collect(),
            },
            Action::Fetch { window, peers, .. } => {
                let now = self.now;
                let down =
                    |u: Uid| matches!(&self.outage, Some((o, t)) if *o == u && t.contains(&now));
                let results = peers
                    .iter()
                    .map(|&u| {
                        let r = if down(u) {
                            Err(unavailable())
                        } else {
                            (self.fetch)(u)
                        };
                        (u, r)
                    })
                    .collect();
                Input::Fetched { window, results }
            }
            Action::FetchRecords { window } => Input::Records {
                window,
                records: vec![],
            },
            Action::ResetTrainer => Input::Done {
                chore: Chore::ResetTrainer,
                window: None,
                result: Ok(()),
            },
            Action::TrainStep { window, step } => Input::Stepped {
                window,
                step,
                result: Ok(StepInfo {
                    loss: 1.0,
                    lr: 1e-3,
                    elapsed_ms: 10,
                    trained: true,
                }),
            },
            Action::Compress { window, .. } => Input::Compressed {
                window,
                result: Ok(Compressed {
                    bytes: 100,
                    elapsed_ms: 1,
                    fell_back_to_zero: false,
                }),
            },
            Action::Upload { window, .. } => Input::Uploaded {
                window,
                result: Ok(100),
            },
            Action::Apply { window, .. } => Input::Applied {
                window,
                result: Ok(Applied {
                    hash: [window as u8; 32],
                    committed: true,
                    elapsed_ms: 1,
                }),
            },
            Action::Fingerprint { window, .. } => Input::Fingerprinted {
                window,
                fingerprint: Default::default(),
                peers: Default::default(),
            },
            Action::Screen { window, peers, .. } => Input::Screened {
                window,
                result: Ok(peers
                    .iter()
                    .map(|&u| (u, crate::gauntlet::Screen::Score(0.02)))
                    .collect()),
            },
            Action::Evaluate { window, uid, .. } => {
                self.now += self.eval_ms;
                self.evaluated(window, uid)
            }
            Action::MeasureValLoss { window } => Input::Validated {
                window,
                result: Ok(4.0),
            },
            _ => return None,
        })
    }

    fn evaluated(&self, window: Window, uid: Uid) -> Input {
        Input::Evaluated {
            window,
            uid,
            result: Ok(crate::scoring::Evaluation {
                probe: crate::LossProbe {
                    rand_before: 5.0,
                    rand_after: 4.9,
                    own_before: 5.0,
                    own_after: 4.8,
                    own_z: None,
                },
                norm_ratio: 1.0,
            }),
        }
    }

    /// Runs the driver until `until` (ms), answering every action at once.
    fn run(&mut self, d: &mut dyn Driver, p: &RunParams, until: Millis) {
        let mut queue = vec![Input::Start];
        loop {
            if self.now > until {
                return;
            }
            let input = match queue.pop() {
                Some(i) => i,
                None => match d.poll_timeout() {
                    Some(t) if t <= until => {
                        self.now = self.now.max(t);
                        Input::Tick
                    }
                    _ => return,
                },
            };
            for out in d.handle(self.now, input) {
                match out {
                    Output::Do(a) => {
                        if let Some(i) = self.answer(&a, p) {
                            queue.insert(0, i);
                        }
                        self.log.push(a);
                    }
                    Output::Emit(e) => self.events.push(e),
                    Output::Stop => return,
                }
            }
        }
    }
}

fn unavailable() -> Rejection {
    Rejection::Unavailable {
        attempts: 3,
        fault: StoreFault::Unreachable,
    }
}

fn kinds(log: &[Action]) -> Vec<String> {
    log.iter()
        .map(|a| {
            format!("{a:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn a_miner_joins_null_then_trains_uploads_and_steps() {
    let c = cfg(1);
    let p = c.params.clone();
    let mut m = Miner::new(c);
    let mut s = Script::new(|_| Ok(fetched()));
    s.run(&mut m, &p, p.window_start_ms(3));
    let log = &s.log;
    // Joining: no checkpoint, so the initial model; window 0 is null (no inner steps).
    assert_eq!(log[0], Action::ListCheckpoints);
    let first_compress = log
        .iter()
        .position(|a| matches!(a, Action::Compress { .. }))
        .unwrap();
    assert_eq!(
        log[first_compress],
        Action::Compress {
            window: 0,
            zero: true,
            carry: false
        }
    );
    assert!(!log[..first_compress]
        .iter()
        .any(|a| matches!(a, Action::TrainStep { .. })));
    // Window 0's upload goes out when window 1 starts, with the grace period's end as deadline.
    assert!(log.contains(&Action::Upload {
        window: 0,
        deadline: p.upload_interval(0).1
    }));
    // Window 1 trains H steps only after window 0's outer step, then compresses for real.
    let apply0 = log
        .iter()
        .position(|a| matches!(a, Action::Apply { window: 0, .. }))
        .unwrap();
    let step10 = log
        .iter()
        .position(|a| *a == Action::TrainStep { window: 1, step: 0 })
        .unwrap();
    assert!(apply0 < step10, "{:?}", kinds(log));
    let steps1 = log
        .iter()
        .filter(|a| matches!(a, Action::TrainStep { window: 1, .. }))
        .count();
    assert_eq!(steps1, p.inner_steps as usize);
    assert!(log.contains(&Action::Compress {
        window: 1,
        zero: false,
        carry: false
    }));
    // Window 1's set (from the chain at window 2's first block: both miners have weight).
    assert!(log.contains(&Action::Apply {
        window: 1,
        peers: vec![1, 2],
        lr: p.outer_lr_at(1),
        expect: None,
        live: Live::Canon,
    }));
    // A miner only lists the set: not everybody.
    assert!(log
        .iter()
        .any(|a| matches!(a, Action::List { window: 1, peers } if peers == &vec![1, 2])));
}

#[test]
fn an_unreadable_upload_of_the_set_leaves_the_window_to_be_caught_up() {
    let c = cfg(1);
    let p = c.params.clone();
    let mut m = Miner::new(c);
    let mut s = Script::new(|u| {
        if u == 2 {
            Err(unavailable())
        } else {
            Ok(fetched())
        }
    });
    s.run(&mut m, &p, p.window_start_ms(3));
    // Never a step with a smaller set than the window's: uid 2 was gathered but unreadable.
    for a in &s.log {
        if let Action::Apply { peers, window, .. } = a {
            assert!(
                *window < 1 || peers.contains(&2),
                "applied window {window} without uid 2"
            );
        }
    }
    assert!(s.events.iter().any(|e| matches!(e,
        NodeEvent::Error { message, .. } if message.contains("could not be read"))));
}

#[test]
fn an_invalid_upload_is_left_out_by_every_node_alike() {
    let c = cfg(0);
    let p = c.params.clone();
    let bad = |u| {
        if u == 2 {
            Err(Rejection::Invalid(covenant_codec::WireError::BadSignature))
        } else {
            Ok(fetched())
        }
    };
    let mut v = Validator::new(c.clone(), None);
    let mut sv = Script::new(bad);
    sv.run(&mut v, &p, p.window_start_ms(3));
    let mut m = Miner::new(cfg(1));
    let mut sm = Script::new(bad);
    sm.run(&mut m, &p, p.window_start_ms(3));
    let applied = |log: &[Action]| -> BTreeMap<Window, Vec<Uid>> {
        log.iter()
            .filter_map(|a| match a {
                Action::Apply { window, peers, .. } => Some((*window, peers.clone())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(applied(&sv.log), applied(&sm.log));
    assert_eq!(applied(&sv.log)[&1], vec![1]);
    // The validator judged it invalid and set weights.
    assert!(sv
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::Report { window: 1, peers, .. }
        if peers[&2].verdict == crate::gauntlet::Verdict::Invalid)));
    assert!(sv
        .log
        .iter()
        .any(|a| matches!(a, Action::SetWeights { window: 1, .. })));
}

#[test]
fn a_node_behind_the_uploads_retention_waits_for_a_newer_checkpoint() {
    let c = cfg(1);
    let p = c.params.clone();
    let mut m = Miner::new(c);
    // It starts 20 windows into the run: no checkpoint, no records.
    let mut s = Script::new(|_| Ok(fetched()));
    s.now = p.window_start_ms(20) + 1000;
    s.run(&mut m, &p, p.window_start_ms(21));
    assert!(
        !s.log
            .iter()
            .any(|a| matches!(a, Action::List { .. } | Action::Apply { .. })),
        "never recomputes over pruned uploads: {:?}",
        kinds(&s.log)
    );
    assert!(
        s.log
            .iter()
            .filter(|a| **a == Action::ListCheckpoints)
            .count()
            >= 2,
        "looks again"
    );
}

#[test]
fn a_new_key_on_a_uid_starts_from_a_fresh_record() {
    let c = cfg(0);
    let p = c.params.clone();
    let mut v = Validator::new(c, None);
    let mut s = Script::new(|_| Ok(fetched()));
    // Uid 2's slot is taken by another key from window 4's first block on (the view
    // window 3 is planned with).
    s.view = |w| {
        let mut v = view(w);
        if w >= 4 {
            v.keys.insert(2, [9; 32]);
        }
        v
    };
    s.run(&mut v, &p, p.window_start_ms(7));
    let (old, new) = (&v.gauntlet.peers[&1], &v.gauntlet.peers[&2]);
    assert!(
        old.first_seen == 0 && old.uploads >= 5,
        "uid 1 kept its own: {old:?}"
    );
    assert!(
        new.first_seen >= 3 && new.uploads < old.uploads && new.rating != old.rating,
        "uid 2 kept the old owner's record: {new:?}"
    );
}

/// Distinct uploads that the copy check does not tie together.
fn fetched_from(u: Uid) -> Fetched {
    Fetched {
        copy_keys: (0..8).map(|i| u64::from(u) * 1000 + i).collect(),
        ..fetched()
    }
}

#[test]
fn a_fresh_validator_sets_no_weights_before_it_has_measured_anyone() {
    let c = cfg(0);
    let p = c.params.clone();
    // Only zero uploads: nobody can be measured, so nothing may overwrite the chain's weights.
    let mut v = Validator::new(c.clone(), None);
    let mut s = Script::new(|_| {
        Ok(Fetched {
            zero: true,
            ..fetched()
        })
    });
    s.run(&mut v, &p, p.window_start_ms(5));
    assert!(
        s.events
            .iter()
            .any(|e| matches!(e, NodeEvent::Report { .. })),
        "it scored windows"
    );
    let set: Vec<&Action> = s
        .log
        .iter()
        .filter(|a| matches!(a, Action::SetWeights { .. }))
        .collect();
    assert!(set.is_empty(), "weights set unmeasured: {set:?}");
    // With uploads it can measure, it sets weights once it has.
    let mut v = Validator::new(c, None);
    let mut s = Script::new(|u| Ok(fetched_from(u)));
    s.run(&mut v, &p, p.window_start_ms(5));
    assert!(v.gauntlet.peers.values().any(|r| r.evaluations > 0));
    assert!(s.log.iter().any(|a| matches!(a, Action::SetWeights { .. })));
}

/// A validator that could not read an upload until the window's live deadline had passed
/// catches the window up, and measures the validation loss of that step as of a live one
/// (the chaos test's store outage left a window's loss unmeasured).
#[test]
fn a_validator_measures_the_loss_of_a_window_it_caught_up() {
    let c = cfg(0);
    let p = c.params.clone();
    let mut v = Validator::new(c.clone(), None);
    let mut s = Script::new(|u| Ok(fetched_from(u)));
    // Window 2 is gathered after window 3 starts; the store is back after its live deadline.
    s.outage = Some((2, p.window_start_ms(3)..c.live_deadline(2) + 1));
    s.run(&mut v, &p, p.window_start_ms(5));
    let steps: BTreeMap<Window, (StepSource, Option<f64>)> = s
        .events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::OuterStep {
                window,
                source,
                val_loss,
                ..
            } => Some((*window, (*source, *val_loss))),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps.get(&2).map(|s| s.0),
        Some(StepSource::Recomputed),
        "{steps:?}"
    );
    for w in 0..=3 {
        assert_eq!(
            steps.get(&w).and_then(|s| s.1),
            Some(4.0),
            "window {w}: {steps:?}"
        );
    }
}

/// Six miners with weight (validator 0).
fn six(w: Window) -> ChainView {
    let miners: Vec<Uid> = (1..=6).collect();
    ChainView {
        window: w,
        registered: miners.iter().copied().collect(),
        consensus: miners.iter().map(|&u| (u, 1.0 / 6.0)).collect(),
        committed: miners.iter().copied().collect(),
        validators: [0].into(),
        keys: miners.iter().map(|&u| (u, [u as u8; 32])).collect(),
    }
}

/// Issue 16: a validator evaluates its `uids_per_window`, then goes on down its queue while
/// the window's evaluation time lasts (`NodeConfig::eval_deadline`).
#[test]
fn a_validator_evaluates_more_while_time_lasts_and_stops_at_the_deadline() {
    let mut c = cfg(0);
    c.params.uids_per_window = 2;
    let p = c.params.clone();
    let per_window = |eval_ms: Millis| {
        let mut v = Validator::new(c.clone(), None);
        let mut s = Script::new(|u| Ok(fetched_from(u)));
        s.view = six;
        s.eval_ms = eval_ms;
        s.run(&mut v, &p, p.window_start_ms(4));
        let n = |w: Window| {
            s.log
                .iter()
                .filter(|a| matches!(a, Action::Evaluate { window, .. } if *window == w))
                .count()
        };
        (n(1), n(2))
    };
    assert_eq!(per_window(0), (6, 6), "time for everyone");
    // Evaluations start at list_time (5.5 s into the next window); the deadline is at 16 s:
    // the two due ones end at 10.5 and 15.5 s, one more starts before 16 s.
    assert_eq!(c.eval_deadline(1) - p.window_start_ms(2), 16_000);
    assert_eq!(per_window(5_000), (3, 3));
    // However slow, the due ones are evaluated.
    assert_eq!(per_window(30_000).0, 2);
}
