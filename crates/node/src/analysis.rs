//! What an attack run did, from a validator's typed events: per adversary, when its weight fell
//! to zero for good, its share of the weight, whether it was aggregated or caught copying, and
//! the honest validation loss against an all-honest run. `covenant scenario` (real processes)
//! and `covenant simulate --network --adversaries` both report with it.

use std::collections::BTreeMap;

use covenant_core::driver::events::PeerLine;
use covenant_core::driver::NodeEvent;
use covenant_core::selection::Copy;
use covenant_core::{Uid, Window};
use serde::{Deserialize, Serialize};

use crate::adversary::Behaviour;

/// A miner of the run.
#[derive(Debug, Clone)]
pub struct Participant {
    pub name: String,
    /// `None`: it never started.
    pub uid: Option<Uid>,
    pub behaviour: Behaviour,
}

/// One adversary's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdversaryRow {
    pub miner: String,
    pub uid: Option<Uid>,
    pub behaviour: String,
    /// First window from which its weight is zero until the end (`None`: never).
    pub weight_zero_from_window: Option<Window>,
    pub final_weight_share: Option<f64>,
    pub max_weight: f64,
    /// Windows whose outer step included its upload.
    pub aggregated_windows: Vec<Window>,
    pub copy_detected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole run's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub honest: usize,
    pub windows: u64,
    pub adversary_share_after_10: Option<f64>,
    pub adversary_share_final: Option<f64>,
    pub honest_final_val_loss: Option<f64>,
    pub all_honest_final_val_loss: Option<f64>,
    pub val_loss_ratio: Option<f64>,
    pub adversaries: Vec<AdversaryRow>,
}

/// The uid a node reported when it started.
pub fn uid_of(events: &[NodeEvent]) -> Option<Uid> {
    events.iter().find_map(|e| match e {
        NodeEvent::Started { uid, .. } => Some(*uid),
        _ => None,
    })
}

/// Validation loss after the validator's last outer step.
pub fn final_val(events: &[NodeEvent]) -> Option<f64> {
    events.iter().rev().find_map(|e| match e {
        NodeEvent::OuterStep { val_loss, .. } => *val_loss,
        _ => None,
    })
}

/// One window's report, as the analysis reads it.
struct Rep<'a> {
    window: Window,
    peers: &'a BTreeMap<Uid, PeerLine>,
    copies: &'a [Copy],
}

impl Rep<'_> {
    fn weight(&self, uid: Uid) -> f64 {
        self.peers.get(&uid).map_or(0.0, |p| p.weight)
    }
    fn total(&self) -> f64 {
        self.peers.values().map(|p| p.weight).sum()
    }
    fn share(&self, uid: Uid) -> f64 {
        let t = self.total();
        if t > 0.0 {
            self.weight(uid) / t
        } else {
            0.0
        }
    }
}

/// Per-adversary outcome of a run, from the events of one validator.
pub fn analyse(
    validator: &[NodeEvent],
    miners: &[Participant],
    baseline_val: Option<f64>,
) -> ScenarioReport {
    let reports: Vec<Rep> = validator
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Report {
                window,
                peers,
                copies,
                ..
            } => Some(Rep {
                window: *window,
                peers,
                copies,
            }),
            _ => None,
        })
        .collect();
    let adversaries: Vec<Uid> = miners
        .iter()
        .filter(|m| m.behaviour != Behaviour::Honest)
        .filter_map(|m| m.uid)
        .collect();
    let share_at = |w: Window| -> Option<f64> {
        let r = reports.iter().find(|r| r.window == w)?;
        Some(adversaries.iter().map(|&u| r.share(u)).sum())
    };
    let last_window = reports.iter().map(|r| r.window).max().unwrap_or(0);
    let mut rows = Vec::new();
    for m in miners.iter().filter(|m| m.behaviour != Behaviour::Honest) {
        let mut row = AdversaryRow {
            miner: m.name.clone(),
            uid: m.uid,
            behaviour: m.behaviour.name().into(),
            weight_zero_from_window: None,
            final_weight_share: None,
            max_weight: 0.0,
            aggregated_windows: Vec::new(),
            copy_detected: false,
            error: None,
        };
        let Some(uid) = m.uid else {
            row.error = Some("never started".into());
            rows.push(row);
            continue;
        };
        let ws: Vec<(Window, f64)> = reports.iter().map(|r| (r.window, r.weight(uid))).collect();
        row.weight_zero_from_window = ws
            .iter()
            .rev()
            .take_while(|(_, w)| *w == 0.0)
            .last()
            .map(|(w, _)| *w);
        row.final_weight_share = reports.last().map(|r| r.share(uid));
        row.max_weight = ws.iter().map(|(_, w)| *w).fold(0.0, f64::max);
        row.aggregated_windows = validator
            .iter()
            .filter_map(|e| match e {
                NodeEvent::OuterStep { window, peers, .. } if peers.contains(&uid) => Some(*window),
                _ => None,
            })
            .collect();
        row.copy_detected = reports
            .iter()
            .any(|r| r.copies.iter().any(|c| c.copier == uid));
        rows.push(row);
    }
    let attack_val = final_val(validator);
    ScenarioReport {
        honest: miners
            .iter()
            .filter(|m| m.behaviour == Behaviour::Honest)
            .count(),
        windows: last_window + 1,
        adversary_share_after_10: share_at(10.min(last_window)),
        adversary_share_final: share_at(last_window),
        honest_final_val_loss: attack_val,
        all_honest_final_val_loss: baseline_val,
        val_loss_ratio: attack_val.zip(baseline_val).map(|(x, y)| x / y),
        adversaries: rows,
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "—".into())
}

/// The report as a Markdown table and summary.
pub fn markdown(r: &ScenarioReport) -> String {
    let mut s = String::from(
        "| behaviour | weight 0 from window | final weight share | max weight | aggregated in windows | copy detected |\n|---|---|---|---|---|---|\n",
    );
    for row in &r.adversaries {
        let agg = match row.aggregated_windows.first() {
            None => "none".to_string(),
            Some(f) => format!("{} (first {f})", row.aggregated_windows.len()),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.3} | {} | {} |\n",
            row.behaviour,
            row.weight_zero_from_window
                .map(|w| w.to_string())
                .unwrap_or_else(|| "never".into()),
            row.final_weight_share
                .map(|x| format!("{x:.3}"))
                .unwrap_or_default(),
            row.max_weight,
            agg,
            row.copy_detected,
        ));
    }
    s.push_str(&format!(
        "\nadversaries' weight share after window 10: {}; at the end: {}\nhonest validation loss {} vs all-honest {} (ratio {})\n",
        fmt(r.adversary_share_after_10),
        fmt(r.adversary_share_final),
        fmt(r.honest_final_val_loss),
        fmt(r.all_honest_final_val_loss),
        fmt(r.val_loss_ratio),
    ));
    s
}
