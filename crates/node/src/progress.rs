//! A starting node's progress on a terminal: finding and downloading a checkpoint, then
//! replaying the windows since it, until the node has joined. What to show follows from the
//! node's events alone ([`JoinState`], no I/O); [`JoinProgress`] draws it with indicatif on
//! stderr, which shows nothing when stderr is not a terminal (a node started by the demo logs to
//! a file).

use std::sync::Mutex;
use std::time::Duration;

use covenant_core::driver::events::StepSource;
use covenant_core::driver::NodeEvent;
use covenant_core::window::Schedule;
use covenant_core::Millis;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a starting node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinState {
    /// Looking for, downloading and checking a checkpoint.
    Loading,
    /// Replaying windows from records or recomputing them: `window` done of those before
    /// `target` (the window the clock is in).
    Replaying { window: u64, target: u64 },
    /// Joined: following the network live.
    Joined,
}

impl JoinState {
    /// The state after the event at time `t`.
    pub fn next(self, schedule: &Schedule, t: Millis, event: &NodeEvent) -> JoinState {
        match (self, event) {
            (JoinState::Joined, _) | (_, NodeEvent::Joined { .. }) => JoinState::Joined,
            (
                _,
                NodeEvent::OuterStep {
                    window,
                    source: StepSource::Record | StepSource::Recomputed,
                    ..
                },
            ) => JoinState::Replaying {
                window: *window,
                target: schedule.window_of_time(t).max(window + 1),
            },
            (s, _) => s,
        }
    }
}

/// The bar or spinner of a joining node; cleared once it has joined.
pub struct JoinProgress {
    schedule: Schedule,
    inner: Mutex<(JoinState, Option<ProgressBar>)>,
}

impl JoinProgress {
    pub fn new(schedule: Schedule) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        Self::with_bar(schedule, bar)
    }

    fn with_bar(schedule: Schedule, bar: ProgressBar) -> Self {
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message("joining: finding and downloading the newest checkpoint");
        bar.enable_steady_tick(Duration::from_millis(150));
        JoinProgress {
            schedule,
            inner: Mutex::new((JoinState::Loading, Some(bar))),
        }
    }

    /// Takes an event; `print` writes its log line without tearing the bar.
    pub fn on_event(&self, t: Millis, event: &NodeEvent, print: impl FnOnce()) {
        let Ok(mut g) = self.inner.lock() else {
            return print();
        };
        let (state, bar) = &mut *g;
        let Some(pb) = bar.as_ref() else {
            return print();
        };
        pb.suspend(print);
        let was = *state;
        *state = state.next(&self.schedule, t, event);
        match *state {
            JoinState::Joined => {
                pb.finish_and_clear();
                *bar = None;
            }
            JoinState::Replaying { window, target } => {
                if !matches!(was, JoinState::Replaying { .. }) {
                    if let Ok(style) = ProgressStyle::with_template(
                        "{msg} [{bar:30}] window {pos}/{len} {elapsed} eta {eta}",
                    ) {
                        pb.set_style(style.progress_chars("=> "));
                    }
                    pb.set_message("joining: replaying windows");
                }
                pb.set_length(target);
                pb.set_position(window + 1);
            }
            JoinState::Loading => {}
        }
    }

    #[cfg(test)]
    fn state(&self) -> JoinState {
        self.inner.lock().map(|g| g.0).unwrap_or(JoinState::Loading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn schedule() -> Schedule {
        Schedule {
            genesis_ms: 0,
            block_time_ms: 1_000,
            blocks_per_window: 10,
        }
    }

    fn step(window: u64, source: StepSource) -> NodeEvent {
        NodeEvent::OuterStep {
            window,
            peers: vec![],
            rejected: BTreeMap::new(),
            lr: 1.0,
            hash: String::new(),
            source,
            val_loss: None,
            stats: Default::default(),
        }
    }

    fn joined() -> NodeEvent {
        NodeEvent::Joined {
            window: 9,
            applied: Some(8),
            from_checkpoint: Some(5),
            replayed: 3,
            hash: String::new(),
        }
    }

    #[test]
    fn loading_then_replaying_towards_the_clock_then_joined() {
        let s = schedule();
        let mut st = JoinState::Loading;
        st = st.next(&s, 1, &NodeEvent::Started { uid: 3 });
        assert_eq!(st, JoinState::Loading);
        st = st.next(&s, 91_000, &step(6, StepSource::Record));
        assert_eq!(
            st,
            JoinState::Replaying {
                window: 6,
                target: 9
            }
        );
        st = st.next(&s, 95_000, &step(7, StepSource::Recomputed));
        assert_eq!(
            st,
            JoinState::Replaying {
                window: 7,
                target: 9
            }
        );
        st = st.next(&s, 96_000, &joined());
        assert_eq!(st, JoinState::Joined);
        // Live steps after joining change nothing.
        assert_eq!(
            st.next(&s, 99_000, &step(9, StepSource::Live)),
            JoinState::Joined
        );
    }

    #[test]
    fn live_steps_do_not_count_as_replay() {
        let st = JoinState::Loading.next(&schedule(), 5_000, &step(0, StepSource::Live));
        assert_eq!(st, JoinState::Loading);
    }

    #[test]
    fn the_bar_prints_every_line_and_goes_once_joined() {
        let p = JoinProgress::with_bar(schedule(), ProgressBar::hidden());
        let mut printed = 0;
        p.on_event(91_000, &step(6, StepSource::Record), || printed += 1);
        assert_eq!(
            p.state(),
            JoinState::Replaying {
                window: 6,
                target: 9
            }
        );
        p.on_event(96_000, &joined(), || printed += 1);
        p.on_event(99_000, &step(9, StepSource::Live), || printed += 1);
        assert_eq!(printed, 3);
        assert_eq!(p.state(), JoinState::Joined);
    }
}
