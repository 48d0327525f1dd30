//! Opt-in Prometheus metrics of a node (`--metrics ADDR`, docs/METRICS.md): [`Metrics`] holds
//! a registry of `covenant_*` metrics and updates them from the node's events (it is an
//! [`EventSink`] beside the event log), and [`http::serve`] answers `GET /metrics` on the node's
//! I/O runtime, sampling the chain height at each scrape.
//!
//! Label values are bounded: peers by the chain's uids (the per-peer series are replaced by each
//! window's report), reasons, phases, sources and verdicts by fixed lists.

pub mod http;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use covenant_core::driver::events::{PeerLine, StepSource};
use covenant_core::driver::{NodeEvent, NodeStats, RejectionNote};
use covenant_core::gauntlet::Verdict;
use covenant_core::{Millis, Uid, Window};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::text as openmetrics_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use self::http::{start, MetricsError};
use crate::env::EventSink;
use crate::setup::Role;

/// A gauge of floating-point values.
type FGauge = Gauge<f64, AtomicU64>;
/// A counter of floating-point values (seconds).
type FCounter = Counter<f64, AtomicU64>;
/// One label with a value from a fixed list.
type Fixed = [(&'static str, &'static str); 1];
/// One label with a peer's uid.
type Peer = [(&'static str, String); 1];

/// The phases whose time `covenant_phase_seconds_total` counts ([`NodeStats`]).
pub const PHASES: [&str; 4] = ["inner", "outer", "wait", "eval"];

/// Which text format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, for clients that ask for it (`Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The metrics of one node (see the module docs and docs/METRICS.md): what every node exports,
/// and its role's own.
pub struct Metrics {
    registry: Registry,
    /// The running totals last seen (for per-window differences); held while an event is
    /// applied and while the metrics are encoded, so that a scrape sees whole events.
    last: Mutex<NodeStats>,
    node: NodeMetrics,
    miner: Option<MinerMetrics>,
    validator: Option<ValidatorMetrics>,
}

/// Registers a new metric (of the type asked for) and hands it back.
fn reg<M: prometheus_client::registry::Metric + Clone + Default>(
    r: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let m = M::default();
    r.register(name, help, m.clone());
    m
}

/// A float gauge without a value yet (`NaN`), registered.
fn unset(r: &mut Registry, name: &str, help: &str) -> FGauge {
    let g: FGauge = reg(r, name, help);
    g.set(f64::NAN);
    g
}

/// The label set of a value from a fixed list.
fn fixed(key: &'static str, value: &'static str) -> Fixed {
    [(key, value)]
}

/// Makes the series of these label values exist (at zero), so that rates work from the start.
fn touch<M: Default>(f: &Family<Fixed, M>, key: &'static str, values: &[&'static str]) {
    for &v in values {
        drop(f.get_or_create(&fixed(key, v)));
    }
}

/// What every node exports.
struct NodeMetrics {
    uid: Gauge,
    chain_height: Gauge,
    window: Gauge,
    errors: Counter,
    download_bytes: Counter,
    window_download_bytes: Gauge,
    window_uploads_listed: Gauge,
    window_peers_gathered: Gauge,
    window_peers_aggregated: Gauge,
    window_peers_rejected: Family<Fixed, Gauge>,
    rejected: Family<Fixed, Counter>,
    outer_steps: Family<Fixed, Counter>,
    outer_lr: FGauge,
    phase_seconds: Family<Fixed, FCounter>,
    window_phase_seconds: Family<Fixed, FGauge>,
}

impl NodeMetrics {
    fn new(r: &mut Registry) -> Self {
        let m = NodeMetrics {
            uid: reg(r, "covenant_uid", "The node's uid on the chain"),
            chain_height: reg(
                r,
                "covenant_chain_height",
                "The chain's block height, read at the scrape",
            ),
            window: reg(
                r,
                "covenant_window",
                "The last window whose outer step the node applied",
            ),
            errors: reg(
                r,
                "covenant_errors",
                "Errors the node reported and carried on from",
            ),
            download_bytes: reg(
                r,
                "covenant_download_bytes",
                "Bytes of peers' uploads fetched",
            ),
            window_download_bytes: reg(
                r,
                "covenant_window_download_bytes",
                "Bytes of peers' uploads fetched since the previous outer step",
            ),
            window_uploads_listed: reg(
                r,
                "covenant_window_uploads_listed",
                "Uploads found when the last window was listed",
            ),
            window_peers_gathered: reg(
                r,
                "covenant_window_peers_gathered",
                "Peers in the last listed window's gather set",
            ),
            window_peers_aggregated: reg(
                r,
                "covenant_window_peers_aggregated",
                "Peers aggregated in the last outer step",
            ),
            window_peers_rejected: reg(
                r,
                "covenant_window_peers_rejected",
                "Uploads rejected in the last outer step, by reason",
            ),
            rejected: reg(
                r,
                "covenant_gather_rejected",
                "Uploads rejected by outer steps, by reason",
            ),
            outer_steps: reg(
                r,
                "covenant_outer_steps",
                "Outer steps applied, by source (live, record, recomputed)",
            ),
            outer_lr: unset(
                r,
                "covenant_outer_lr",
                "Outer learning rate of the last outer step",
            ),
            phase_seconds: reg(
                r,
                "covenant_phase_seconds",
                "Time spent in each phase (inner, outer, wait, eval)",
            ),
            window_phase_seconds: reg(
                r,
                "covenant_window_phase_seconds",
                "Time spent in each phase since the previous outer step",
            ),
        };
        touch(&m.rejected, "reason", &RejectionNote::KINDS);
        touch(&m.window_peers_rejected, "reason", &RejectionNote::KINDS);
        touch(&m.phase_seconds, "phase", &PHASES);
        touch(&m.window_phase_seconds, "phase", &PHASES);
        touch(&m.outer_steps, "source", &SOURCES);
        m
    }

    fn listed(&self, uploads: usize, gather: &[Uid]) {
        self.window_uploads_listed.set(gauge_int(uploads as u64));
        self.window_peers_gathered
            .set(gauge_int(gather.len() as u64));
    }

    fn outer_step(
        &self,
        window: Window,
        peers: &[Uid],
        rejected: &BTreeMap<Uid, RejectionNote>,
        lr: f64,
        source: StepSource,
    ) {
        self.window.set(gauge_int(window));
        self.window_peers_aggregated
            .set(gauge_int(peers.len() as u64));
        self.rejections(rejected.values());
        self.outer_lr.set(lr);
        self.outer_steps
            .get_or_create(&fixed("source", source_name(source)))
            .inc();
    }

    /// An outer step's rejections, counted by reason (an unknown one as `other`).
    fn rejections<'a>(&self, notes: impl Iterator<Item = &'a RejectionNote>) {
        let mut by: BTreeMap<&'static str, i64> =
            RejectionNote::KINDS.iter().map(|&k| (k, 0)).collect();
        for n in notes {
            let k = RejectionNote::KINDS
                .iter()
                .find(|&&k| k == n.kind)
                .copied()
                .unwrap_or("other");
            *by.entry(k).or_default() += 1;
        }
        for (k, n) in by {
            let l = fixed("reason", k);
            self.window_peers_rejected.get_or_create(&l).set(n);
            self.rejected.get_or_create(&l).inc_by(n as u64);
        }
    }

    /// Moves the counters kept as running totals to `now`; returns what was added.
    fn advance(&self, last: &mut NodeStats, now: &NodeStats) -> NodeStats {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let delta = NodeStats {
            inner_ms: d(now.inner_ms, last.inner_ms),
            outer_ms: d(now.outer_ms, last.outer_ms),
            wait_ms: d(now.wait_ms, last.wait_ms),
            wall_ms: d(now.wall_ms, last.wall_ms),
            bytes_up: d(now.bytes_up, last.bytes_up),
            bytes_down: d(now.bytes_down, last.bytes_down),
            inner_steps: d(now.inner_steps, last.inner_steps),
            stale_steps: d(now.stale_steps, last.stale_steps),
            eval_ms: d(now.eval_ms, last.eval_ms),
        };
        self.download_bytes.inc_by(delta.bytes_down);
        for (p, ms) in phase_ms(&delta) {
            self.phase_seconds
                .get_or_create(&fixed("phase", p))
                .inc_by(seconds(ms));
        }
        *last = *now;
        delta
    }

    /// The per-window gauges from what a window added to the running totals.
    fn window_figures(&self, delta: &NodeStats) {
        self.window_download_bytes.set(gauge_int(delta.bytes_down));
        for (p, ms) in phase_ms(delta) {
            self.window_phase_seconds
                .get_or_create(&fixed("phase", p))
                .set(seconds(ms));
        }
    }
}

/// What miners export: their training and uploads.
struct MinerMetrics {
    inner_loss: Family<Fixed, FGauge>,
    inner_lr: FGauge,
    inner_steps: Counter,
    window_inner_steps: Family<Fixed, Gauge>,
    upload_bytes: Counter,
    window_upload_bytes: Gauge,
    utilisation: FGauge,
}

impl MinerMetrics {
    fn new(r: &mut Registry) -> Self {
        MinerMetrics {
            inner_loss: reg(
                r,
                "covenant_inner_loss",
                "Losses of the last trained window's inner steps (stat: first, last, mean)",
            ),
            inner_lr: unset(
                r,
                "covenant_inner_lr",
                "Inner learning rate of the last inner step",
            ),
            inner_steps: reg(r, "covenant_inner_steps", "Inner steps taken"),
            window_inner_steps: reg(
                r,
                "covenant_window_inner_steps",
                "Inner steps of the last trained window (kind: taken, planned, sent)",
            ),
            upload_bytes: reg(
                r,
                "covenant_upload_bytes",
                "Bytes of the node's uploads put in its bucket",
            ),
            window_upload_bytes: reg(
                r,
                "covenant_window_upload_bytes",
                "Bytes of the last window's upload",
            ),
            utilisation: unset(
                r,
                "covenant_utilisation_ratio",
                "Compute utilisation since the previous outer step: inner/(inner+outer+wait)",
            ),
        }
    }

    fn trained(&self, event: &NodeEvent) {
        let NodeEvent::Trained {
            steps,
            planned_steps,
            sent_steps,
            loss_first,
            loss_last,
            loss_mean,
            lr_last,
            ..
        } = event
        else {
            return;
        };
        let losses = [
            ("first", loss_first),
            ("last", loss_last),
            ("mean", loss_mean),
        ];
        for (stat, l) in losses {
            if let Some(l) = l {
                self.inner_loss
                    .get_or_create(&fixed("stat", stat))
                    .set(f64::from(*l));
            }
        }
        if let Some(lr) = lr_last {
            self.inner_lr.set(*lr);
        }
        self.inner_steps.inc_by(u64::from(*steps));
        let counts = [
            ("taken", steps),
            ("planned", planned_steps),
            ("sent", sent_steps),
        ];
        for (kind, n) in counts {
            self.window_inner_steps
                .get_or_create(&fixed("kind", kind))
                .set(i64::from(*n));
        }
    }

    fn uploaded(&self, bytes: u64) {
        self.upload_bytes.inc_by(bytes);
        self.window_upload_bytes.set(gauge_int(bytes));
    }
}

/// What validators export: the Gauntlet's outcome.
struct ValidatorMetrics {
    val_loss: FGauge,
    peer_score: Family<Peer, FGauge>,
    peer_ordinal: Family<Peer, FGauge>,
    peer_weight: Family<Peer, FGauge>,
    window_peers_by_verdict: Family<Fixed, Gauge>,
    window_peers_evaluated: Gauge,
    checkpoints: Counter,
}

impl ValidatorMetrics {
    fn new(r: &mut Registry) -> Self {
        ValidatorMetrics {
            val_loss: unset(
                r,
                "covenant_val_loss",
                "Validation loss after the last outer step",
            ),
            peer_score: reg(
                r,
                "covenant_peer_score",
                "Each peer's Gauntlet score in the last report",
            ),
            peer_ordinal: reg(
                r,
                "covenant_peer_ordinal",
                "Each peer's rating ordinal in the last report",
            ),
            peer_weight: reg(
                r,
                "covenant_peer_weight",
                "Each peer's weight in the last report",
            ),
            window_peers_by_verdict: reg(
                r,
                "covenant_window_peers_by_verdict",
                "Peers of the last report, by verdict",
            ),
            window_peers_evaluated: reg(
                r,
                "covenant_window_peers_evaluated",
                "Peers fully evaluated in the last report",
            ),
            checkpoints: reg(r, "covenant_checkpoints", "Checkpoints published"),
        }
    }

    /// A window report replaces the per-peer series.
    fn report(&self, peers: &BTreeMap<Uid, PeerLine>, evaluated: usize) {
        self.peer_score.clear();
        self.peer_ordinal.clear();
        self.peer_weight.clear();
        self.window_peers_by_verdict.clear();
        touch(&self.window_peers_by_verdict, "verdict", &VERDICTS);
        for (uid, p) in peers {
            let l: Peer = [("uid", uid.to_string())];
            self.peer_score.get_or_create(&l).set(p.score);
            self.peer_ordinal.get_or_create(&l).set(p.ordinal);
            self.peer_weight.get_or_create(&l).set(p.weight);
            self.window_peers_by_verdict
                .get_or_create(&fixed("verdict", verdict_name(&p.verdict)))
                .inc();
        }
        self.window_peers_evaluated.set(gauge_int(evaluated as u64));
    }
}

impl Metrics {
    /// The metrics of a node of `role` named `name`, none observed yet.
    pub fn new(role: Role, name: &str) -> Metrics {
        let mut r = Registry::default();
        let info = Info::new(vec![
            ("role".to_string(), role.name().to_string()),
            ("name".to_string(), name.to_string()),
        ]);
        r.register("covenant_node", "The node's role and name", info);
        Metrics {
            node: NodeMetrics::new(&mut r),
            miner: (role == Role::Miner).then(|| MinerMetrics::new(&mut r)),
            validator: (role == Role::Validator).then(|| ValidatorMetrics::new(&mut r)),
            registry: r,
            last: Mutex::new(NodeStats::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NodeStats> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates the metrics from one event.
    pub fn observe(&self, event: &NodeEvent) {
        let mut last = self.lock();
        let (node, miner, validator) = (&self.node, &self.miner, &self.validator);
        match event {
            NodeEvent::Started { uid } => {
                node.uid.set(i64::from(*uid));
            }
            NodeEvent::Trained { .. } => miner.iter().for_each(|m| m.trained(event)),
            NodeEvent::Uploaded { bytes, .. } => miner.iter().for_each(|m| m.uploaded(*bytes)),
            NodeEvent::Listed {
                uploads, gather, ..
            } => node.listed(*uploads, gather),
            NodeEvent::OuterStep {
                window,
                peers,
                rejected,
                lr,
                source,
                val_loss,
                stats,
                ..
            } => {
                node.outer_step(*window, peers, rejected, *lr, *source);
                let delta = node.advance(&mut last, stats);
                node.window_figures(&delta);
                if let (Some(m), Some(u)) = (miner, delta.utilisation()) {
                    m.utilisation.set(u);
                }
                if let (Some(v), Some(l)) = (validator, val_loss) {
                    v.val_loss.set(*l);
                }
            }
            NodeEvent::Report { peers, eval, .. } => {
                validator.iter().for_each(|v| v.report(peers, eval.len()))
            }
            NodeEvent::Checkpoint { .. } => validator.iter().for_each(|v| {
                v.checkpoints.inc();
            }),
            NodeEvent::Error { .. } => {
                node.errors.inc();
            }
            NodeEvent::Finished { stats, .. } => {
                node.advance(&mut last, stats);
            }
            NodeEvent::Restored { .. }
            | NodeEvent::CheckpointRefused { .. }
            | NodeEvent::Joined { .. }
            | NodeEvent::Memory { .. } => {}
        }
    }

    /// The chain's height, as read now.
    pub fn set_chain_height(&self, block: u64) {
        self.node.chain_height.set(gauge_int(block));
    }

    /// The metrics as text.
    pub fn encode(&self, format: Format) -> String {
        let _whole = self.lock();
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = match format {
            Format::Prometheus => prometheus_text::encode(&mut s, &self.registry),
            Format::OpenMetrics => openmetrics_text::encode(&mut s, &self.registry),
        };
        s
    }
}

impl EventSink for Metrics {
    fn emit(&self, _t: Millis, event: &NodeEvent) {
        self.observe(event);
    }
}

/// The label values of `covenant_window_peers_by_verdict`.
pub const VERDICTS: [&str; 9] = [
    "evaluated",
    "idle",
    "zero",
    "first",
    "missing",
    "unavailable",
    "invalid",
    "copied",
    "inactive",
];

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Evaluated { .. } => "evaluated",
        Verdict::Idle => "idle",
        Verdict::Zero => "zero",
        Verdict::First => "first",
        Verdict::Missing { .. } => "missing",
        Verdict::Unavailable { .. } => "unavailable",
        Verdict::Invalid => "invalid",
        Verdict::Copied { .. } => "copied",
        Verdict::Inactive => "inactive",
    }
}

/// The label values of `covenant_outer_steps_total`.
const SOURCES: [&str; 3] = ["live", "record", "recomputed"];

fn source_name(s: StepSource) -> &'static str {
    match s {
        StepSource::Live => "live",
        StepSource::Record => "record",
        StepSource::Recomputed => "recomputed",
    }
}

/// Each of [`PHASES`] with its milliseconds in `s`.
fn phase_ms(s: &NodeStats) -> [(&'static str, u64); 4] {
    [
        (PHASES[0], s.inner_ms),
        (PHASES[1], s.outer_ms),
        (PHASES[2], s.wait_ms),
        (PHASES[3], s.eval_ms),
    ]
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// An integer gauge's value (gauges hold `i64`).
fn gauge_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use covenant_core::driver::events::StepSource;

    use super::*;

    fn note(kind: &str) -> RejectionNote {
        RejectionNote {
            kind: kind.into(),
            detail: String::new(),
        }
    }

    fn step(window: u64, peers: Vec<Uid>, stats: NodeStats) -> NodeEvent {
        NodeEvent::OuterStep {
            window,
            peers,
            rejected: [(4, note("invalid")), (5, note("out_of_time"))].into(),
            lr: 0.7,
            hash: String::new(),
            source: StepSource::Live,
            val_loss: None,
            stats,
        }
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }

    fn trained() -> NodeEvent {
        NodeEvent::Trained {
            window: 1,
            steps: 6,
            planned_steps: 8,
            sent_steps: 6,
            loss_first: Some(7.5),
            loss_last: Some(6.25),
            loss_mean: Some(7.0),
            lr_first: Some(1e-3),
            lr_last: Some(2e-3),
            inner_ms: 1200,
        }
    }

    #[test]
    fn a_miners_events_become_its_metrics() {
        let m = Metrics::new(Role::Miner, "miner-1");
        m.observe(&NodeEvent::Started { uid: 3 });
        m.observe(&trained());
        m.observe(&NodeEvent::Uploaded {
            window: 1,
            bytes: 48_000,
        });
        m.observe(&NodeEvent::Listed {
            window: 1,
            uploads: 4,
            gather: vec![1, 2, 3],
        });
        let first = NodeStats {
            inner_ms: 3000,
            outer_ms: 1000,
            wait_ms: 2000,
            bytes_down: 500,
            ..NodeStats::default()
        };
        m.observe(&step(1, vec![1, 2], first));
        m.set_chain_height(42);
        let t = m.encode(Format::Prometheus);
        for line in [
            r#"covenant_node_info{role="miner",name="miner-1"} 1"#,
            "covenant_uid 3",
            "covenant_chain_height 42",
            "covenant_window 1",
            r#"covenant_inner_loss{stat="mean"} 7.0"#,
            r#"covenant_inner_loss{stat="last"} 6.25"#,
            r#"covenant_window_inner_steps{kind="planned"} 8"#,
            "covenant_inner_steps_total 6",
            "covenant_upload_bytes_total 48000",
            "covenant_window_upload_bytes 48000",
            "covenant_window_uploads_listed 4",
            "covenant_window_peers_gathered 3",
            "covenant_window_peers_aggregated 2",
            r#"covenant_gather_rejected_total{reason="invalid"} 1"#,
            r#"covenant_gather_rejected_total{reason="not_found"} 0"#,
            r#"covenant_window_peers_rejected{reason="out_of_time"} 1"#,
            r#"covenant_outer_steps_total{source="live"} 1"#,
            r#"covenant_outer_steps_total{source="record"} 0"#,
            "covenant_download_bytes_total 500",
            "covenant_window_download_bytes 500",
            r#"covenant_phase_seconds_total{phase="inner"} 3.0"#,
            r#"covenant_window_phase_seconds{phase="wait"} 2.0"#,
            "covenant_utilisation_ratio 0.5",
            "# TYPE covenant_upload_bytes_total counter",
            "# TYPE covenant_inner_loss gauge",
        ] {
            has(&t, line);
        }
        // The next window's figures are what it added.
        let second = NodeStats {
            inner_ms: 4000,
            outer_ms: 1000,
            wait_ms: 2000,
            bytes_down: 800,
            ..first
        };
        m.observe(&step(2, vec![1], second));
        m.observe(&NodeEvent::Error {
            window: Some(2),
            message: "x".into(),
        });
        let t = m.encode(Format::Prometheus);
        for line in [
            "covenant_window 2",
            "covenant_download_bytes_total 800",
            "covenant_window_download_bytes 300",
            r#"covenant_phase_seconds_total{phase="inner"} 4.0"#,
            r#"covenant_window_phase_seconds{phase="inner"} 1.0"#,
            r#"covenant_window_phase_seconds{phase="wait"} 0.0"#,
            "covenant_utilisation_ratio 1.0",
            r#"covenant_gather_rejected_total{reason="invalid"} 2"#,
            "covenant_errors_total 1",
        ] {
            has(&t, line);
        }
        assert!(!t.contains("covenant_peer_score") && !t.contains("covenant_val_loss"));
    }

    fn line(verdict: Verdict, score: f64) -> PeerLine {
        PeerLine {
            verdict,
            score,
            ordinal: score - 1.0,
            weight: score / 2.0,
            excluded: false,
        }
    }

    fn report(peers: BTreeMap<Uid, PeerLine>) -> NodeEvent {
        NodeEvent::Report {
            window: 3,
            aggregated: vec![],
            copies: vec![],
            peers,
            eval: BTreeMap::new(),
            screens: BTreeMap::new(),
            rejected: BTreeMap::new(),
        }
    }

    #[test]
    fn a_validators_report_replaces_its_per_peer_series() {
        let m = Metrics::new(Role::Validator, "validator-1");
        m.observe(&report(
            [
                (2, line(Verdict::Idle, 0.5)),
                (7, line(Verdict::Zero, 0.25)),
            ]
            .into(),
        ));
        let t = m.encode(Format::Prometheus);
        has(&t, r#"covenant_peer_score{uid="2"} 0.5"#);
        has(&t, r#"covenant_peer_weight{uid="7"} 0.125"#);
        has(&t, r#"covenant_peer_ordinal{uid="2"} -0.5"#);
        has(&t, r#"covenant_window_peers_by_verdict{verdict="zero"} 1"#);
        has(
            &t,
            r#"covenant_window_peers_by_verdict{verdict="copied"} 0"#,
        );
        assert!(!t.contains("covenant_utilisation_ratio"), "miners only");
        assert!(!t.contains("covenant_upload_bytes"), "miners only");
        has(&t, "covenant_val_loss NaN");
        m.observe(&report([(2, line(Verdict::Inactive, 0.75))].into()));
        let t = m.encode(Format::Prometheus);
        has(&t, r#"covenant_peer_score{uid="2"} 0.75"#);
        assert!(
            !t.contains(r#"uid="7""#),
            "a peer gone from the report: {t}"
        );
        has(&t, r#"covenant_window_peers_by_verdict{verdict="zero"} 0"#);
    }

    #[test]
    fn label_lists_name_every_verdict_and_source() {
        let verdicts = [
            Verdict::Evaluated {
                loss_score: 0.0,
                indicator: 1,
                own_z: None,
                sync: 1.0,
                sync_steps: None,
            },
            Verdict::Idle,
            Verdict::Zero,
            Verdict::First,
            Verdict::Missing { streak: 1 },
            Verdict::Unavailable { streak: 1 },
            Verdict::Invalid,
            Verdict::Copied {
                original: 1,
                overlap: 1.0,
            },
            Verdict::Inactive,
        ];
        let names: Vec<&str> = verdicts.iter().map(verdict_name).collect();
        assert_eq!(names, VERDICTS);
        let sources = [StepSource::Live, StepSource::Record, StepSource::Recomputed];
        let names: Vec<&str> = sources.into_iter().map(source_name).collect();
        assert_eq!(names, SOURCES);
    }

    #[test]
    fn openmetrics_is_served_to_those_who_ask() {
        let m = Metrics::new(Role::Miner, "m");
        let t = m.encode(Format::OpenMetrics);
        assert!(t.ends_with("# EOF\n"), "{t}");
        has(&t, "# TYPE covenant_upload_bytes counter");
        assert!(!m.encode(Format::Prometheus).contains("# EOF"));
    }

    /// Every sample name either role exports (the `# TYPE` lines of the Prometheus text, once
    /// every family has a series).
    fn exported() -> BTreeSet<String> {
        [Role::Miner, Role::Validator]
            .into_iter()
            .flat_map(|r| {
                let m = Metrics::new(r, "n");
                m.observe(&trained());
                m.observe(&report([(2, line(Verdict::Idle, 0.5))].into()));
                let t = m.encode(Format::Prometheus);
                t.lines()
                    .filter_map(|l| l.strip_prefix("# TYPE "))
                    .filter_map(|l| l.split(' ').next())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The `covenant_…` names in a query.
    fn names_in(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(i) = rest.find("covenant_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        out
    }

    /// Every query of the string values under `v` (panel targets' `expr`, variables' queries).
    fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        serde_json::Value::String(s)
                            if ["expr", "definition", "query"].contains(&k.as_str()) =>
                        {
                            out.push(s.clone())
                        }
                        _ => queries(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
            _ => {}
        }
    }

    /// The checked-in Grafana dashboard cannot drift from the code: it parses, takes its data
    /// source as an input, and every metric its queries name is one the nodes export.
    #[test]
    fn the_grafana_dashboard_names_only_exported_metrics() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../grafana/covenant-dashboard.json"
        );
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
        let mut qs = Vec::new();
        queries(&d["panels"], &mut qs);
        queries(&d["templating"], &mut qs);
        let known = exported();
        let mut used = BTreeSet::new();
        for q in &qs {
            let names = names_in(q);
            assert!(!names.is_empty(), "a query without a covenant metric: {q}");
            for n in names {
                assert!(
                    known.contains(&n),
                    "{n} (in {q}) is not exported; known: {known:?}"
                );
                used.insert(n);
            }
        }
        for must in [
            "covenant_inner_loss",
            "covenant_val_loss",
            "covenant_window_upload_bytes",
            "covenant_window_download_bytes",
            "covenant_gather_rejected_total",
            "covenant_window_phase_seconds",
            "covenant_utilisation_ratio",
            "covenant_peer_score",
            "covenant_peer_weight",
            "covenant_chain_height",
        ] {
            assert!(used.contains(must), "the dashboard shows {must}");
        }
    }
}
