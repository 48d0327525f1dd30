//! The typed events a node reports (its event log, the demo's live view, the simulator's
//! invariant checks). Serialised as JSON objects tagged by `event`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Rejection;
use crate::gauntlet::{PeerReport, Verdict};
use crate::selection::Copy;
use crate::{Millis, Uid, Window};

/// Why an upload was not used, for people and dashboards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionNote {
    /// One of [`RejectionNote::KINDS`].
    pub kind: String,
    pub detail: String,
}

impl RejectionNote {
    /// Every `kind` a note can have (one per [`Rejection`] variant).
    pub const KINDS: [&'static str; 7] = [
        "unavailable",
        "not_found",
        "replaced",
        "out_of_time",
        "too_large",
        "invalid",
        "no_commitment",
    ];
}

impl From<&Rejection> for RejectionNote {
    fn from(r: &Rejection) -> Self {
        let kind = match r {
            Rejection::Unavailable { .. } => "unavailable",
            Rejection::NotFound => "not_found",
            Rejection::Replaced { .. } => "replaced",
            Rejection::OutOfTime { .. } => "out_of_time",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Invalid(_) => "invalid",
            Rejection::NoCommitment => "no_commitment",
        };
        RejectionNote {
            kind: kind.into(),
            detail: r.to_string(),
        }
    }
}

/// How a window's outer step was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSource {
    /// Gathered live at the window's end of grace.
    Live,
    /// Replayed from a validator's record (hash checked).
    Record,
    /// Recomputed from the chain and the uploads' store timestamps, as a live node does.
    Recomputed,
}

/// One peer in a validator's window report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLine {
    pub verdict: Verdict,
    pub score: f64,
    pub ordinal: f64,
    pub weight: f64,
    pub excluded: bool,
}

impl PeerLine {
    pub fn new(r: &PeerReport, weight: f64) -> Self {
        PeerLine {
            verdict: r.verdict,
            score: r.score,
            ordinal: r.ordinal,
            weight,
            excluded: r.excluded,
        }
    }
}

/// The four losses measured for an evaluated peer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeLine {
    pub rand_before: f64,
    pub rand_after: f64,
    pub own_before: f64,
    pub own_after: f64,
    /// The own-data evidence (`scoring::own_data_z`), when measured per sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_z: Option<f64>,
    pub fingerprint: bool,
}

/// Time and bytes a node spent, reported when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Inner steps (training).
    pub inner_ms: u64,
    /// Outer steps and compression.
    pub outer_ms: u64,
    /// Waiting for the outer step before training (no overlap).
    pub wait_ms: u64,
    /// From the start to the stop.
    pub wall_ms: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub inner_steps: u64,
    /// Inner steps whose progress an outer step landing mid-window made stale (overlap).
    pub stale_steps: u64,
    /// Validators: screening and evaluating the live windows' uploads (from the gathered
    /// uploads to the window's outcome).
    #[serde(default)]
    pub eval_ms: u64,
}

impl NodeStats {
    /// Compute utilisation (docs/NODES.md): time in inner steps ÷ (inner steps + outer steps
    /// and compression + waiting for the outer step); `None` before any of them.
    pub fn utilisation(&self) -> Option<f64> {
        let busy = self.inner_ms + self.outer_ms + self.wait_ms;
        (busy > 0).then(|| self.inner_ms as f64 / busy as f64)
    }
}

/// What a node reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// The node is up (its role is the event line's).
    Started { uid: Uid },
    /// A validator resumed its ratings from its saved state.
    Restored {
        peers: usize,
        last_window: Option<Window>,
        #[serde(with = "uid_map")]
        scores: BTreeMap<Uid, f64>,
    },
    /// A checkpoint did not verify and was skipped.
    CheckpointRefused {
        window: Window,
        validator: Uid,
        reason: String,
    },
    /// The node holds the canonical model up to `applied` and follows from `window`.
    Joined {
        window: Window,
        applied: Option<Window>,
        from_checkpoint: Option<Window>,
        replayed: u64,
        hash: String,
    },
    /// A miner's inner steps of a window: `steps` of the `planned_steps` (H) taken (fewer when
    /// the window's training deadline came first), `sent_steps` of them in the upload.
    Trained {
        window: Window,
        steps: u32,
        #[serde(default)]
        planned_steps: u32,
        sent_steps: u32,
        /// Losses of the first and last step and their mean (`None` without a finite one).
        loss_first: Option<f32>,
        loss_last: Option<f32>,
        loss_mean: Option<f32>,
        /// Inner learning rates of the first and last step (`None` without a finite one).
        #[serde(default)]
        lr_first: Option<f64>,
        #[serde(default)]
        lr_last: Option<f64>,
        inner_ms: u64,
    },
    /// A miner's upload of a window is in its store.
    Uploaded { window: Window, bytes: u64 },
    /// A window's uploads as listed at its end of grace.
    Listed {
        window: Window,
        uploads: usize,
        gather: Vec<Uid>,
    },
    /// The canonical model took window `window`'s outer step.
    OuterStep {
        window: Window,
        peers: Vec<Uid>,
        #[serde(with = "uid_map")]
        rejected: BTreeMap<Uid, RejectionNote>,
        lr: f64,
        hash: String,
        source: StepSource,
        /// Validators: validation loss after the step.
        val_loss: Option<f64>,
        /// The node's running totals as of this step (what `Finished` reports at the end).
        #[serde(default)]
        stats: NodeStats,
    },
    /// A validator's Gauntlet outcome of a window.
    Report {
        window: Window,
        aggregated: Vec<Uid>,
        copies: Vec<Copy>,
        #[serde(with = "uid_map")]
        peers: BTreeMap<Uid, PeerLine>,
        #[serde(with = "uid_map")]
        eval: BTreeMap<Uid, ProbeLine>,
        /// The screens' loss scores (see [`crate::gauntlet::Observations::screens`]).
        #[serde(default, with = "uid_map")]
        screens: BTreeMap<Uid, f64>,
        #[serde(with = "uid_map")]
        rejected: BTreeMap<Uid, RejectionNote>,
    },
    /// A validator published a checkpoint of the model after `window`.
    Checkpoint { window: Window },
    /// Something went wrong; the node carries on.
    Error {
        window: Option<Window>,
        message: String,
    },
    /// The process's peak resident memory in bytes, reported by the real executor as the node
    /// stops (Linux `VmHWM`).
    Memory { peak_rss: u64 },
    /// The node stopped.
    Finished {
        applied: Option<Window>,
        hash: String,
        stats: NodeStats,
    },
}

/// (De)serialises a map keyed by uid with the keys as JSON strings. Needed because events are
/// internally tagged: serde reads them through a buffer that cannot turn `"7"` into a number
/// by itself.
mod uid_map {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::Uid;

    pub fn serialize<S: Serializer, T: Serialize>(
        m: &BTreeMap<Uid, T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let named: BTreeMap<String, &T> = m.iter().map(|(k, v)| (k.to_string(), v)).collect();
        named.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<Uid, T>, D::Error> {
        let named = BTreeMap::<String, T>::deserialize(d)?;
        named
            .into_iter()
            .map(|(k, v)| {
                k.parse::<Uid>()
                    .map(|u| (u, v))
                    .map_err(|_| D::Error::custom(format!("uid key {k:?} is not a number")))
            })
            .collect()
    }
}

/// One line of a node's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// Node clock, ms since the Unix epoch.
    pub t: Millis,
    pub role: String,
    pub name: String,
    #[serde(flatten)]
    pub event: NodeEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_one_of_the_listed_kinds() {
        use crate::driver::StoreFault;
        let all = [
            Rejection::Unavailable {
                attempts: 3,
                fault: StoreFault::Server,
            },
            Rejection::NotFound,
            Rejection::Replaced {
                listed: 1,
                found: 2,
            },
            Rejection::OutOfTime { found: 1 },
            Rejection::TooLarge { size: 2, limit: 1 },
            Rejection::Invalid(covenant_codec::WireError::BadMagic([0; 8])),
            Rejection::NoCommitment,
        ];
        let kinds: Vec<String> = all.iter().map(|r| RejectionNote::from(r).kind).collect();
        assert_eq!(kinds, RejectionNote::KINDS);
    }

    #[test]
    fn an_outer_step_logged_before_its_running_totals_still_reads() {
        let old = r#"{"t":1,"role":"miner","name":"m","event":"outer_step","window":2,
            "peers":[1],"rejected":{},"lr":0.5,"hash":"ab","source":"live","val_loss":null}"#;
        let l: EventLine = serde_json::from_str(old).unwrap();
        assert!(
            matches!(l.event, NodeEvent::OuterStep { stats, .. } if stats == NodeStats::default())
        );
    }

    #[test]
    fn uid_maps_roundtrip_inside_tagged_events() {
        let l = EventLine {
            t: 1,
            role: "validator".into(),
            name: "v".into(),
            event: NodeEvent::Restored {
                peers: 2,
                last_window: Some(4),
                scores: [(3, 0.5), (10, 1.5)].into(),
            },
        };
        let s = serde_json::to_string(&l).unwrap();
        assert!(s.contains(r#""10":1.5"#), "{s}");
        assert_eq!(serde_json::from_str::<EventLine>(&s).unwrap(), l);
    }

    #[test]
    fn lines_roundtrip_as_tagged_json() {
        let l = EventLine {
            t: 5,
            role: "miner".into(),
            name: "m".into(),
            event: NodeEvent::Uploaded {
                window: 3,
                bytes: 10,
            },
        };
        let s = serde_json::to_string(&l).unwrap();
        assert!(s.contains(r#""event":"uploaded""#), "{s}");
        assert_eq!(serde_json::from_str::<EventLine>(&s).unwrap(), l);
    }
}
