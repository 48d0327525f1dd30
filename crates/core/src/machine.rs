//! Per-window state machines of a miner and a validator: events in, actions out.
//!
//! The runtime owns the clock, the chain, the store and the model; it feeds what happened as
//! events and carries out the actions. Window `w` (SPEC §4): the miner trains during `w`; when
//! `w + 1` starts it uploads the window-`w` payload (deadline: end of the grace period), and once
//! the grace period has ended it lists the window-`w` uploads, gathers the aggregation set and
//! applies the outer step while already training `w + 1`. The validator does the same gather
//! plus the Gauntlet and sets weights. The aggregation set of `w` is fixed by the chain at
//! `w + 1`'s first block (the `chain` of `WindowStarted(w + 1)`).
//!
//! ```text
//! miner      WindowStarted(w) ─▶ Upload(w−1) · ListUploadsAt(w−1, end of grace) · Train(w)
//!            UploadsListed(w−1) ─▶ Gather(w−1, set)
//!            Gathered(w−1, valid) ─▶ ApplyOuterStep(w−1, valid, α)
//! validator  WindowStarted(w) ─▶ ListUploadsAt(w−1, end of grace)
//!            UploadsListed(w−1) ─▶ GatherAndEvaluate(w−1, …)
//!            Observed(w−1, …) ─▶ ApplyOuterStep · SetWeights · PersistState
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::gauntlet::{Gauntlet, Observations, WindowPlan, WindowReport};
use crate::params::RunParams;
use crate::selection::{aggregation_set, AggregationSet};
use crate::weights::Weights;
use crate::{Millis, Uid, Window};

/// Chain state read at a window's first block (it fixes the previous window's aggregation set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainView {
    /// Registered uids.
    pub registered: BTreeSet<Uid>,
    /// Consensus weights (normalised or not; only the order matters here).
    pub consensus: BTreeMap<Uid, f64>,
}

/// The windows whose uploads a node will gather, and their aggregation sets.
///
/// A window's set is fixed when its uploads are due, from the chain at the first block of the
/// next window: the weights the validators set while the window ran (from the window before)
/// already decide who is aggregated in it, one window sooner than reading the chain at the
/// window's own start, so a peer scored at zero stops being aggregated a window earlier.
/// Every node reads that block only once it has passed, so all of them fix the same set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SetBook {
    /// Windows seen starting (or expected by a joiner) whose set is not fixed yet.
    watching: BTreeSet<Window>,
    /// Fixed sets (with the uids registered then) of the windows still to be gathered.
    sets: BTreeMap<Window, (AggregationSet, BTreeSet<Uid>)>,
}

impl SetBook {
    /// Window `w` started: watch it; fix the set of `w − 1` from `chain` (the chain at `w`'s
    /// first block) if `w − 1` was watched. Returns whether `w − 1` is to be gathered.
    fn started(&mut self, params: &RunParams, w: Window, chain: &ChainView) -> bool {
        self.watching.insert(w);
        let prev = w.checked_sub(1).filter(|p| self.watching.remove(p));
        if let Some(p) = prev {
            let set = aggregation_set(
                &chain.consensus,
                &chain.registered,
                params.aggregation_size,
                params.reserves,
            );
            self.sets.insert(p, (set, chain.registered.clone()));
        }
        // Keep w − 1 (being gathered) and w (running) only.
        self.watching.retain(|&k| k + 1 >= w);
        self.sets.retain(|&k, _| k + 1 >= w);
        prev.is_some()
    }

    fn get(&self, w: Window) -> Result<&(AggregationSet, BTreeSet<Uid>)> {
        let current = self
            .watching
            .iter()
            .chain(self.sets.keys())
            .max()
            .copied()
            .unwrap_or(0);
        self.sets.get(&w).ok_or(CoreError::WrongWindow {
            expected: current.saturating_sub(1),
            got: w,
        })
    }
}

fn advance(current: &mut Option<Window>, w: Window) -> Result<()> {
    if let Some(c) = *current {
        if w <= c {
            return Err(CoreError::WindowNotAdvancing { current: c, got: w });
        }
    }
    *current = Some(w);
    Ok(())
}

/// What happened, as seen by a miner's runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MinerEvent {
    /// The chain reached the first block of `window`.
    WindowStarted { window: Window, chain: ChainView },
    /// Store timestamps of the uploads found for `window` after its grace period.
    UploadsListed {
        window: Window,
        uploads: BTreeMap<Uid, Millis>,
    },
    /// The gathered uploads of `window` that downloaded and validated.
    Gathered { window: Window, valid: Vec<Uid> },
}

/// What a miner's runtime must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MinerAction {
    /// Run `inner_steps` inner steps on the window's assigned data; a null window runs none and
    /// keeps the error feedback at zero.
    Train {
        window: Window,
        null: bool,
        inner_steps: u32,
    },
    /// Compress and upload the window's pseudo-gradient (a zero update if `zero`), so that the
    /// store's timestamp is before `deadline`.
    Upload {
        window: Window,
        zero: bool,
        deadline: Millis,
    },
    /// List the window's uploads (with store timestamps) at `at`, when its grace period ends.
    ListUploadsAt { window: Window, at: Millis },
    /// Download and validate these peers' uploads of `window`.
    Gather { window: Window, peers: Vec<Uid> },
    /// Aggregate these peers' uploads (in this order) and step θ ← θ − lr·update.
    ApplyOuterStep {
        window: Window,
        peers: Vec<Uid>,
        lr: f64,
    },
}

/// A miner's per-window logic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miner {
    params: RunParams,
    pub uid: Uid,
    /// Window of the (re)join: the first `null_windows` from here are null.
    pub joined: Window,
    current: Option<Window>,
    trained: Option<(Window, bool)>,
    book: SetBook,
}

impl Miner {
    pub fn new(params: RunParams, uid: Uid, joined: Window) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            uid,
            joined,
            current: None,
            trained: None,
            book: SetBook::default(),
        })
    }

    pub fn current_window(&self) -> Option<Window> {
        self.current
    }

    /// Before the first event: window `w`'s uploads are to be gathered too (a node that joins
    /// at `w + 1` gathers `w` itself; its set is fixed by `WindowStarted(w + 1)`).
    pub fn expect_window(&mut self, w: Window) {
        self.book.watching.insert(w);
    }

    pub fn handle(&mut self, ev: MinerEvent) -> Result<Vec<MinerAction>> {
        let p = &self.params;
        match ev {
            MinerEvent::WindowStarted { window: w, chain } => {
                advance(&mut self.current, w)?;
                let gather_prev = self.book.started(p, w, &chain);
                let mut out = Vec::new();
                if let Some((tw, null)) = self.trained.take() {
                    if tw + 1 == w {
                        out.push(MinerAction::Upload {
                            window: tw,
                            zero: null,
                            deadline: p.upload_interval(tw).1,
                        });
                    }
                }
                if gather_prev {
                    out.push(MinerAction::ListUploadsAt {
                        window: w - 1,
                        at: p.gather_time(w - 1),
                    });
                }
                if w >= self.joined {
                    let null = p.is_null_window(self.joined, w);
                    out.push(MinerAction::Train {
                        window: w,
                        null,
                        inner_steps: if null { 0 } else { p.inner_steps },
                    });
                    self.trained = Some((w, null));
                }
                Ok(out)
            }
            MinerEvent::UploadsListed { window, uploads } => {
                let (set, registered) = self.book.get(window)?;
                let accepted = p.accepted_uploads(window, registered, &uploads);
                Ok(vec![MinerAction::Gather {
                    window,
                    peers: set.gather(&accepted),
                }])
            }
            MinerEvent::Gathered { window, mut valid } => {
                self.book.get(window)?;
                self.book.sets.remove(&window);
                valid.sort_unstable();
                valid.dedup();
                Ok(vec![MinerAction::ApplyOuterStep {
                    window,
                    peers: valid,
                    lr: p.outer_lr_at(window),
                }])
            }
        }
    }
}

/// What happened, as seen by a validator's runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ValidatorEvent {
    WindowStarted {
        window: Window,
        chain: ChainView,
    },
    UploadsListed {
        window: Window,
        uploads: BTreeMap<Uid, Millis>,
    },
    /// Measurements of the window planned by the last `GatherAndEvaluate`.
    Observed {
        window: Window,
        observations: Observations,
    },
}

/// What a validator's runtime must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ValidatorAction {
    ListUploadsAt {
        window: Window,
        at: Millis,
    },
    /// Download `downloads`, validate them, and for every uid in `evaluate` measure the four
    /// losses with the update applied alone at `eval_lr` (α × eval_lr_factor), restoring after.
    GatherAndEvaluate {
        plan: Box<WindowPlan>,
        downloads: Vec<Uid>,
        eval_lr: f64,
    },
    ApplyOuterStep {
        window: Window,
        peers: Vec<Uid>,
        lr: f64,
    },
    SetWeights {
        window: Window,
        weights: Weights,
    },
    /// Serialise [`Validator::gauntlet`] now (it changed).
    PersistState,
    /// For logs and dashboards.
    Report(Box<WindowReport>),
}

/// A validator's per-window logic around its [`Gauntlet`].
#[derive(Debug, Clone, PartialEq)]
pub struct Validator {
    params: RunParams,
    pub gauntlet: Gauntlet,
    current: Option<Window>,
    book: SetBook,
    pending: Option<WindowPlan>,
}

impl Validator {
    /// `gauntlet` is a fresh [`Gauntlet::new`] or one restored after a restart.
    pub fn new(params: RunParams, gauntlet: Gauntlet) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            gauntlet,
            current: None,
            book: SetBook::default(),
            pending: None,
        })
    }

    /// See [`Miner::expect_window`].
    pub fn expect_window(&mut self, w: Window) {
        self.book.watching.insert(w);
    }

    pub fn handle(&mut self, ev: ValidatorEvent) -> Result<Vec<ValidatorAction>> {
        let p = &self.params;
        match ev {
            ValidatorEvent::WindowStarted { window: w, chain } => {
                advance(&mut self.current, w)?;
                let mut out = Vec::new();
                if self.book.started(p, w, &chain) {
                    out.push(ValidatorAction::ListUploadsAt {
                        window: w - 1,
                        at: p.gather_time(w - 1),
                    });
                }
                Ok(out)
            }
            ValidatorEvent::UploadsListed { window, uploads } => {
                let (set, registered) = self.book.get(window)?.clone();
                let plan = self.gauntlet.plan(p, window, &registered, set, &uploads)?;
                let downloads = plan.downloads();
                self.pending = Some(plan.clone());
                let eval_lr = p.outer_lr_at(window) * p.eval_lr_factor;
                Ok(vec![ValidatorAction::GatherAndEvaluate {
                    plan: Box::new(plan),
                    downloads,
                    eval_lr,
                }])
            }
            ValidatorEvent::Observed {
                window,
                observations,
            } => {
                let Some(plan) = self.pending.as_ref() else {
                    return Err(CoreError::UnexpectedEvent {
                        event: "Observed",
                        phase: "no window planned",
                    });
                };
                if plan.window != window {
                    return Err(CoreError::WrongWindow {
                        expected: plan.window,
                        got: window,
                    });
                }
                let report = self.gauntlet.finish(p, plan, observations)?;
                self.pending = None;
                self.book.sets.remove(&window);
                Ok(vec![
                    ValidatorAction::ApplyOuterStep {
                        window,
                        peers: report.aggregated.clone(),
                        lr: p.outer_lr_at(window),
                    },
                    ValidatorAction::SetWeights {
                        window,
                        weights: report.weights.clone(),
                    },
                    ValidatorAction::PersistState,
                    ValidatorAction::Report(Box::new(report)),
                ])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gauntlet::EvalOutcome;
    use crate::scoring::LossProbe;

    fn chain(uids: &[Uid]) -> ChainView {
        ChainView {
            registered: uids.iter().copied().collect(),
            consensus: BTreeMap::new(),
        }
    }

    /// Registered `uids`, each with consensus weight (plus `extra` weighted but unregistered).
    fn weighted(uids: &[Uid], extra: &[Uid]) -> ChainView {
        ChainView {
            registered: uids.iter().copied().collect(),
            consensus: uids.iter().chain(extra).map(|&u| (u, 1.0)).collect(),
        }
    }

    #[test]
    fn miner_joins_with_a_null_window_then_trains_uploads_gathers_steps() {
        let p = RunParams {
            null_windows: 1,
            ..RunParams::local()
        };
        let mut m = Miner::new(p.clone(), 3, 5).unwrap();
        let a = m
            .handle(MinerEvent::WindowStarted {
                window: 5,
                chain: chain(&[1, 2, 3]),
            })
            .unwrap();
        assert_eq!(
            a,
            vec![MinerAction::Train {
                window: 5,
                null: true,
                inner_steps: 0
            }],
            "no gather of a window it never saw"
        );
        // The chain at window 6's first block fixes window 5's set.
        let a = m
            .handle(MinerEvent::WindowStarted {
                window: 6,
                chain: weighted(&[1, 2, 3], &[9]),
            })
            .unwrap();
        assert_eq!(
            a,
            vec![
                MinerAction::Upload {
                    window: 5,
                    zero: true,
                    deadline: p.upload_interval(5).1
                },
                MinerAction::ListUploadsAt {
                    window: 5,
                    at: p.gather_time(5)
                },
                MinerAction::Train {
                    window: 6,
                    null: false,
                    inner_steps: p.inner_steps
                },
            ]
        );
        let (open, close) = p.upload_interval(5);
        let uploads: BTreeMap<Uid, Millis> =
            [(1, open), (2, close + 1), (3, close), (9, open)].into();
        let a = m
            .handle(MinerEvent::UploadsListed { window: 5, uploads })
            .unwrap();
        assert_eq!(
            a,
            vec![MinerAction::Gather {
                window: 5,
                peers: vec![1, 3]
            }],
            "late and unregistered skipped"
        );
        let a = m
            .handle(MinerEvent::Gathered {
                window: 5,
                valid: vec![3, 1, 3],
            })
            .unwrap();
        assert_eq!(
            a,
            vec![MinerAction::ApplyOuterStep {
                window: 5,
                peers: vec![1, 3],
                lr: p.outer_lr_at(5)
            }]
        );
        assert!(
            m.handle(MinerEvent::Gathered {
                window: 5,
                valid: vec![]
            })
            .is_err(),
            "gathered twice"
        );
        // Window 6's set is fixed by window 7's chain: nobody has weight there.
        let a = m
            .handle(MinerEvent::WindowStarted {
                window: 7,
                chain: chain(&[1, 2, 3]),
            })
            .unwrap();
        assert!(a.contains(&MinerAction::ListUploadsAt {
            window: 6,
            at: p.gather_time(6)
        }));
        let a = m
            .handle(MinerEvent::UploadsListed {
                window: 6,
                uploads: [(1, p.upload_interval(6).0)].into(),
            })
            .unwrap();
        assert_eq!(
            a,
            vec![MinerAction::Gather {
                window: 6,
                peers: vec![]
            }],
            "no weights on chain: nobody aggregated"
        );
    }

    #[test]
    fn miner_rejects_stale_windows_and_survives_skips() {
        let mut m = Miner::new(RunParams::local(), 0, 0).unwrap();
        m.handle(MinerEvent::WindowStarted {
            window: 0,
            chain: chain(&[0]),
        })
        .unwrap();
        assert_eq!(
            m.handle(MinerEvent::WindowStarted {
                window: 0,
                chain: chain(&[0])
            })
            .unwrap_err(),
            CoreError::WindowNotAdvancing { current: 0, got: 0 }
        );
        // Skipping window 1 (the runtime stalled): no upload of window 0 is late-scheduled.
        let a = m
            .handle(MinerEvent::WindowStarted {
                window: 2,
                chain: chain(&[0]),
            })
            .unwrap();
        assert!(a.iter().all(|x| !matches!(x, MinerAction::Upload { .. })));
        assert!(m
            .handle(MinerEvent::UploadsListed {
                window: 0,
                uploads: BTreeMap::new()
            })
            .is_err());
    }

    #[test]
    fn miner_with_no_peers_gathers_nothing() {
        let p = RunParams::local();
        let mut m = Miner::new(p, 0, 0).unwrap();
        m.handle(MinerEvent::WindowStarted {
            window: 0,
            chain: chain(&[]),
        })
        .unwrap();
        m.handle(MinerEvent::WindowStarted {
            window: 1,
            chain: chain(&[]),
        })
        .unwrap();
        let a = m
            .handle(MinerEvent::UploadsListed {
                window: 0,
                uploads: BTreeMap::new(),
            })
            .unwrap();
        assert_eq!(
            a,
            vec![MinerAction::Gather {
                window: 0,
                peers: vec![]
            }]
        );
    }

    #[test]
    fn validator_cycle_sets_weights_and_agrees_with_miners_on_the_gather_set() {
        let p = RunParams::local();
        let mut v = Validator::new(p.clone(), Gauntlet::new(5)).unwrap();
        let mut m = Miner::new(p.clone(), 1, 0).unwrap();
        let c = weighted(&[1, 2, 3], &[]);
        assert!(v
            .handle(ValidatorEvent::WindowStarted {
                window: 0,
                chain: c.clone()
            })
            .unwrap()
            .is_empty());
        m.handle(MinerEvent::WindowStarted {
            window: 0,
            chain: c.clone(),
        })
        .unwrap();
        let a = v
            .handle(ValidatorEvent::WindowStarted {
                window: 1,
                chain: c.clone(),
            })
            .unwrap();
        assert_eq!(
            a,
            vec![ValidatorAction::ListUploadsAt {
                window: 0,
                at: p.gather_time(0)
            }]
        );
        m.handle(MinerEvent::WindowStarted {
            window: 1,
            chain: c.clone(),
        })
        .unwrap();
        let t = p.upload_interval(0).0;
        let uploads: BTreeMap<Uid, Millis> = [(1, t), (2, t)].into();
        let a = v
            .handle(ValidatorEvent::UploadsListed {
                window: 0,
                uploads: uploads.clone(),
            })
            .unwrap();
        let ValidatorAction::GatherAndEvaluate {
            plan,
            downloads,
            eval_lr,
        } = &a[0]
        else {
            panic!("{a:?}")
        };
        assert_eq!(downloads, &vec![1, 2]);
        assert!((eval_lr - p.outer_lr_at(0) * 0.2).abs() < 1e-12);
        let ma = m
            .handle(MinerEvent::UploadsListed { window: 0, uploads })
            .unwrap();
        assert_eq!(
            ma,
            vec![MinerAction::Gather {
                window: 0,
                peers: plan.gather.clone()
            }],
            "same set"
        );
        let probe = LossProbe {
            rand_before: 5.0,
            rand_after: 4.9,
            own_before: 5.0,
            own_after: 4.8,
        };
        // Every planned peer measured with the same probe.
        let measured = |evaluate: &[Uid]| Observations {
            outcomes: evaluate
                .iter()
                .map(|&u| {
                    (
                        u,
                        EvalOutcome::Measured {
                            probe,
                            fingerprint: None,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        };
        let obs = measured(&plan.evaluate);
        assert!(matches!(
            v.handle(ValidatorEvent::Observed {
                window: 7,
                observations: obs.clone()
            }),
            Err(CoreError::WrongWindow {
                expected: 0,
                got: 7
            })
        ));
        let a = v
            .handle(ValidatorEvent::Observed {
                window: 0,
                observations: obs.clone(),
            })
            .unwrap();
        assert!(
            matches!(&a[0], ValidatorAction::ApplyOuterStep { peers, .. } if peers == &vec![1, 2])
        );
        // Everybody's first upload is the null window of its join: nobody is rated yet.
        assert!(matches!(&a[1], ValidatorAction::SetWeights { weights, .. } if weights.is_empty()));
        assert_eq!(a[2], ValidatorAction::PersistState);
        assert!(matches!(
            v.handle(ValidatorEvent::Observed {
                window: 0,
                observations: obs.clone()
            }),
            Err(CoreError::UnexpectedEvent { .. })
        ));
        // Window 1: the same uploads are rated and earn weight.
        v.handle(ValidatorEvent::WindowStarted {
            window: 2,
            chain: c.clone(),
        })
        .unwrap();
        let t = p.upload_interval(1).0;
        let a = v
            .handle(ValidatorEvent::UploadsListed {
                window: 1,
                uploads: [(1, t), (2, t)].into(),
            })
            .unwrap();
        let ValidatorAction::GatherAndEvaluate { plan, .. } = &a[0] else {
            panic!("{a:?}")
        };
        let obs = measured(&plan.evaluate);
        let a = v
            .handle(ValidatorEvent::Observed {
                window: 1,
                observations: obs,
            })
            .unwrap();
        assert!(
            matches!(&a[1], ValidatorAction::SetWeights { weights, .. } if weights.get(1) > 0.0 && weights.get(3) == 0.0),
            "{a:?}"
        );
    }
}
