//! The miner driver (SPEC §3, §4): every window it takes part in, train H inner steps on the
//! assigned pool, compress the pseudo-gradient with error feedback, upload it as the next
//! window starts, and apply the window's outer step with everybody else ([`Replica`]).
//!
//! Schedule of window `w`:
//! ```text
//! read_time(w)   upload w−1 (prepared) · take part in w if in time for it:
//!                the first window of a (re)join is null (zero update, error feedback reset,
//!                fresh optimizer state); otherwise train once w−1's outer step is applied
//!                (bounded by live_deadline(w−1)), or at once with overlap
//! …              TrainStep × H, one at a time (an outer step can land between two); none is
//!                started that would end after inner_deadline(w) (the window's end)
//! then           Compress(w): held until read_time(w+1), uploaded then
//! ```
//! A miner too slow for H steps in a window takes as many as end by the deadline and sends
//! those, so that its upload lands in the window's upload interval (the `Trained` event says
//! how many of the H it took).
//! With overlap the live model is not rolled back to the canonical one after compression
//! (`carry`): window w + 1 trains on from where w's upload alone takes the model, and when
//! w's outer step lands the steps taken since are rebased onto the new canonical model and all
//! of w + 1's steps are sent (docs/NODES.md derives why each step counts exactly once). A window
//! that started from the canonical model before an outer step landed (the first after a null
//! window, or one trained anyway when the step was late) restarts its pseudo-gradient at the
//! landing instead, so no progress is sent twice (the steps before it count as `stale_steps`).

use std::collections::BTreeSet;

use super::events::NodeEvent;
use super::replica::{Note, Replica};
use super::{hex, Action, Driver, FetchDetail, Input, Life, NodeConfig, Output, Timers};
use crate::{Millis, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Train window `w` even if window `w − 1`'s outer step has not landed.
    TrainAnyway(Window),
}

/// A window the miner takes part in, waiting for the model.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Waiting {
    window: Window,
    since: Millis,
    null: bool,
    /// The wait for the previous outer step timed out.
    anyway: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Training {
    window: Window,
    steps: u32,
    next: u32,
    losses: Vec<f32>,
    /// Inner learning rates of the first and the last step.
    lrs: Option<(f64, f64)>,
    /// Steps in the window's pseudo-gradient: since the window started or an outer step last
    /// restarted it.
    fresh: u32,
    /// The window started from the carried live model (overlap), not the canonical one.
    carried: bool,
    inner_ms: u64,
    /// No more steps (the window is over, the pool is spent or a step failed): compress
    /// after the step in flight.
    cut: bool,
    /// Inner steps must end by then ([`crate::RunParams::inner_deadline`]).
    deadline: Millis,
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Miner {
    r: Replica,
    timers: Timers<Timer>,
    /// First window this run of the node took part in (its first `null_windows` are null).
    joined: Option<Window>,
    /// The window that started last, and the last window it decided to take part in.
    current: Option<Window>,
    decided: Option<Window>,
    train: Option<Training>,
    waiting: Option<Waiting>,
    /// Windows whose compressed update is ready to upload.
    ready: BTreeSet<Window>,
    compressing: Option<Window>,
    /// Uploads put or in flight, by window.
    uploading: BTreeSet<Window>,
    /// How long the last inner step and the last compression took: the next one is expected
    /// to take as long.
    step_ms: u64,
    compress_ms: u64,
    /// The last window was compressed with `carry`: the next window starts from the carried
    /// live model.
    carry: bool,
    life: Life,
}

impl Miner {
    pub fn new(cfg: NodeConfig) -> Self {
        Miner {
            r: Replica::new(cfg, false),
            timers: Timers::default(),
            joined: None,
            current: None,
            decided: None,
            train: None,
            waiting: None,
            ready: BTreeSet::new(),
            compressing: None,
            uploading: BTreeSet::new(),
            step_ms: 0,
            compress_ms: 0,
            carry: false,
            life: Life::default(),
        }
    }

    fn cfg(&self) -> &NodeConfig {
        &self.r.cfg
    }

    /// Window `w` started.
    fn window_started(&mut self, now: Millis, w: Window, out: &mut Vec<Output>) {
        self.current = Some(w);
        if let Some(prev) = w.checked_sub(1) {
            if self.ready.remove(&prev) {
                self.upload(prev, out);
            }
            if let Some(t) = self.train.as_mut().filter(|t| t.window == prev) {
                t.cut = true; // a slow window: send what it has
            }
        }
        self.ready.retain(|&x| x + 1 >= w);
        if self.waiting.is_some_and(|wt| wt.window < w) {
            self.waiting = None;
        }
        self.consider(now, out);
    }

    /// Takes part in the current window if it has not yet and can: it holds every window but
    /// the last one, and it is still the window's first half (a miner that caught up after a
    /// store outage still trains the rest of the window). The first window of this run of the
    /// node is null; falling behind and catching up is not a re-join.
    fn consider(&mut self, now: Millis, out: &mut Vec<Output>) {
        let Some(w) = self.current else { return };
        let cfg = self.cfg();
        let too_late = now >= cfg.params.window_start_ms(w) + cfg.params.window_ms() / 2;
        let done = cfg.until_window.is_some_and(|u| w > u);
        if self.decided == Some(w) || too_late || done || !self.r.in_time_for(w) {
            return;
        }
        self.decided = Some(w);
        let joined = *self.joined.get_or_insert(w);
        if joined == w {
            self.r.submit(Action::ResetTrainer, out);
        }
        let null = self.cfg().params.is_null_window(joined, w);
        self.waiting = Some(Waiting {
            window: w,
            since: now,
            null,
            anyway: false,
        });
        if !null && !self.cfg().overlap && w > 0 {
            let at = self.cfg().live_deadline(w - 1);
            self.timers.set(at, Timer::TrainAnyway(w));
        }
        self.try_start(now, out);
    }

    /// Starts the waiting window once the model is free for it: the previous window is
    /// compressed and (without overlap) its outer step applied, or the wait has timed out.
    fn try_start(&mut self, now: Millis, out: &mut Vec<Output>) {
        let Some(wt) = self.waiting else { return };
        if self.train.is_some() || self.compressing.is_some() {
            return;
        }
        let applied = self.r.next() >= wt.window;
        if !(wt.null || self.cfg().overlap || applied || wt.anyway) {
            return;
        }
        self.waiting = None;
        if wt.null {
            self.compress(wt.window, true, out);
            return;
        }
        self.life.stats.wait_ms += now.saturating_sub(wt.since);
        let steps = self.cfg().params.inner_steps;
        let deadline = self
            .cfg()
            .params
            .inner_deadline(wt.window, self.compress_ms);
        self.train = Some(Training {
            window: wt.window,
            steps,
            next: 0,
            losses: Vec::with_capacity(steps as usize),
            lrs: None,
            fresh: 0,
            carried: self.carry,
            inner_ms: 0,
            cut: false,
            deadline,
        });
        self.r.set_training(true);
        self.next_step(now, wt.window, out);
    }

    /// Issues the window's next inner step if there is one to take and it would end by the
    /// deadline; otherwise compresses what the steps so far have trained.
    fn next_step(&mut self, now: Millis, w: Window, out: &mut Vec<Output>) {
        let expected = self.step_ms;
        let Some(t) = self.train.as_mut().filter(|t| t.window == w) else {
            return;
        };
        let in_time = now.saturating_add(expected) <= t.deadline;
        if t.next < t.steps && !t.cut && in_time {
            let step = t.next;
            self.r.submit(Action::TrainStep { window: w, step }, out);
        } else {
            self.compress(w, false, out);
        }
    }

    fn stepped(
        &mut self,
        now: Millis,
        w: Window,
        result: &Result<super::StepInfo, super::Failure>,
        out: &mut Vec<Output>,
    ) {
        let Some(t) = self.train.as_mut().filter(|t| t.window == w) else {
            return;
        };
        t.next += 1;
        match result {
            Ok(s) if s.trained => {
                t.losses.push(s.loss);
                t.lrs = Some((t.lrs.map_or(s.lr, |l| l.0), s.lr));
                t.fresh += 1;
                t.inner_ms += s.elapsed_ms;
                self.step_ms = s.elapsed_ms;
                self.life.stats.inner_ms += s.elapsed_ms;
                self.life.stats.inner_steps += 1;
            }
            Ok(_) => t.cut = true, // the pool has no batch left
            Err(e) => {
                t.cut = true;
                out.push(Output::Emit(NodeEvent::Error {
                    window: Some(w),
                    message: format!("inner step: {e}"),
                }));
            }
        }
        self.next_step(now, w, out);
    }

    fn compress(&mut self, w: Window, zero: bool, out: &mut Vec<Output>) {
        self.compressing = Some(w);
        self.carry = self.cfg().overlap && !zero;
        let carry = self.carry;
        self.r.submit(
            Action::Compress {
                window: w,
                zero,
                carry,
            },
            out,
        );
    }

    fn compressed(
        &mut self,
        now: Millis,
        w: Window,
        result: &Result<super::Compressed, super::Failure>,
        out: &mut Vec<Output>,
    ) {
        if self.compressing != Some(w) {
            return;
        }
        self.compressing = None;
        self.r.set_training(false);
        let t = self.train.take().filter(|t| t.window == w);
        match result {
            Ok(c) => {
                self.compress_ms = c.elapsed_ms;
                self.life.stats.outer_ms += c.elapsed_ms;
                if c.fell_back_to_zero {
                    out.push(Output::Emit(NodeEvent::Error {
                        window: Some(w),
                        message: "the pseudo-gradient was not finite; uploading a zero update"
                            .into(),
                    }));
                }
                if let Some(t) = t {
                    out.push(Output::Emit(trained_event(&t)));
                }
                if now >= self.cfg().read_time(w + 1) {
                    self.upload(w, out); // the window is already over
                } else {
                    self.ready.insert(w);
                }
            }
            Err(e) => out.push(Output::Emit(NodeEvent::Error {
                window: Some(w),
                message: format!("compressing the update: {e}"),
            })),
        }
        self.try_start(now, out);
    }

    fn upload(&mut self, w: Window, out: &mut Vec<Output>) {
        self.uploading.insert(w);
        let deadline = self.cfg().params.upload_interval(w).1;
        out.push(Output::Do(Action::Upload {
            window: w,
            deadline,
        }));
    }

    fn uploaded(&mut self, w: Window, result: &Result<u64, super::Failure>, out: &mut Vec<Output>) {
        self.uploading.remove(&w);
        match result {
            Ok(bytes) => {
                self.life.stats.bytes_up += bytes;
                out.push(Output::Emit(NodeEvent::Uploaded {
                    window: w,
                    bytes: *bytes,
                }));
                let keep = self.cfg().keep_windows;
                if w >= keep {
                    out.push(Output::Do(Action::Prune { window: w - keep }));
                }
            }
            Err(e) => out.push(Output::Emit(NodeEvent::Error {
                window: Some(w),
                message: format!("uploading the update of window {w}: {e}"),
            })),
        }
    }

    fn note(&mut self, now: Millis, note: Note, out: &mut Vec<Output>) {
        match note {
            Note::WindowStarted(w) => self.window_started(now, w, out),
            Note::Listed { window, gather, .. } => {
                self.r.fetch(window, gather, FetchDetail::default(), out)
            }
            Note::Gathered {
                window,
                valid,
                complete,
                ..
            } => {
                if complete {
                    self.r.apply(window, valid, out);
                }
            }
            Note::Applied {
                window,
                hash,
                peers,
                lr,
                source,
                rejected,
            } => {
                self.life.last_hash = Some(hash);
                // A window that started from the canonical model restarts its update here
                // (shifted); a carried one keeps every step (rebased, docs/NODES.md).
                if let Some(t) = self.train.as_mut().filter(|t| !t.carried) {
                    self.life.stats.stale_steps += u64::from(t.fresh);
                    t.fresh = 0;
                }
                out.push(Output::Emit(NodeEvent::OuterStep {
                    window,
                    peers,
                    rejected,
                    lr,
                    hash: hex(&hash),
                    source,
                    val_loss: None,
                    stats: self.life.stats_at(now),
                }));
                self.consider(now, out);
                self.try_start(now, out);
            }
            Note::Joined => {}
        }
    }

    fn maybe_stop(&mut self, now: Millis, out: &mut Vec<Output>) {
        let done = self
            .cfg()
            .until_window
            .is_some_and(|u| self.r.applied().is_some_and(|a| a >= u))
            && self.uploading.is_empty()
            && self.ready.is_empty()
            && self.compressing.is_none();
        self.life.stop_if(now, done, self.r.applied(), out);
    }
}

fn trained_event(t: &Training) -> NodeEvent {
    let finite = |x: f32| Some(x).filter(|v| v.is_finite());
    let mean = t.losses.iter().sum::<f32>() / t.losses.len().max(1) as f32;
    NodeEvent::Trained {
        window: t.window,
        steps: t.losses.len() as u32,
        planned_steps: t.steps,
        sent_steps: t.fresh,
        loss_first: t.losses.first().copied().and_then(finite),
        loss_last: t.losses.last().copied().and_then(finite),
        loss_mean: finite(mean).filter(|_| !t.losses.is_empty()),
        lr_first: t.lrs.map(|l| l.0).filter(|v| v.is_finite()),
        lr_last: t.lrs.map(|l| l.1).filter(|v| v.is_finite()),
        inner_ms: t.inner_ms,
    }
}

impl Driver for Miner {
    fn handle(&mut self, now: Millis, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if self.life.stopped {
            return out;
        }
        if input == Input::Start {
            let cfg = self.r.cfg.clone();
            self.life.start(now, &cfg);
            out.push(Output::Emit(NodeEvent::Started {
                uid: self.cfg().uid,
            }));
        }
        let notes = self.r.handle(now, &input, &mut out);
        match &input {
            Input::Tick => {
                for t in self.timers.due(now) {
                    match (t, self.waiting.as_mut()) {
                        (Timer::TrainAnyway(w), Some(wt)) if wt.window == w => wt.anyway = true,
                        _ => {}
                    }
                }
                self.try_start(now, &mut out);
            }
            Input::Stepped { window, result, .. } => self.stepped(now, *window, result, &mut out),
            Input::Compressed { window, result } => self.compressed(now, *window, result, &mut out),
            Input::Uploaded { window, result } => self.uploaded(*window, result, &mut out),
            Input::Applied { result: Ok(a), .. } => self.life.stats.outer_ms += a.elapsed_ms,
            Input::Fetched { results, .. } => {
                self.life.stats.bytes_down += results
                    .values()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|f| f.bytes)
                    .sum::<u64>();
            }
            Input::Done {
                result: Err(e),
                window,
                ..
            } => out.push(Output::Emit(NodeEvent::Error {
                window: *window,
                message: e.to_string(),
            })),
            _ => {}
        }
        for n in notes {
            self.note(now, n, &mut out);
        }
        self.maybe_stop(now, &mut out);
        out
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.life.poll(&[self.r.poll_timeout(), self.timers.next()])
    }
}
