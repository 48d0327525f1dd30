//! What a run looks like from outside: the facts `covenant demo`'s live lines, `covenant watch`
//! and `covenant report` show, gathered from the nodes' event logs (`<run>/nodes/*/events.jsonl`)
//! and the chain. The one home of how events become per-window and per-peer facts.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use covenant_core::driver::events::{EventLine, PeerLine};
use covenant_core::driver::{NodeEvent, NodeStats};
use covenant_core::gauntlet::Verdict;
use covenant_core::Uid;

/// A line longer than this is not an event of ours: skipped, not buffered.
const MAX_LINE: u64 = 16 << 20;

/// Per-window facts.
#[derive(Default, Debug, Clone)]
pub struct WindowFacts {
    /// The reference validator's validation loss after the window's outer step.
    pub val_loss: Option<f64>,
    /// The peers the reference validator's outer step aggregated.
    pub peers: Vec<Uid>,
    /// Each miner's mean inner-step loss.
    pub train_losses: Vec<f64>,
    /// Inner steps taken by all miners.
    pub inner_steps: u64,
    /// Each miner's compute utilisation since its previous outer step: inner-step time ÷
    /// (inner + outer-step + waiting time), docs/NODES.md's measure.
    pub utilisation: BTreeMap<String, f64>,
    /// Each node's model hash after the outer step.
    pub hashes: BTreeMap<String, String>,
    pub bytes_up: u64,
    /// The reference validator's Gauntlet outcome.
    pub report: Option<BTreeMap<Uid, PeerLine>>,
}

impl WindowFacts {
    pub fn mean_train_loss(&self) -> Option<f64> {
        (!self.train_losses.is_empty())
            .then(|| self.train_losses.iter().sum::<f64>() / self.train_losses.len() as f64)
    }

    /// `Some(true)` when every node that stepped holds the same model.
    pub fn agree(&self) -> Option<bool> {
        let mut hs = self.hashes.values();
        let first = hs.next()?;
        Some(hs.all(|h| h == first))
    }

    /// The miners' mean compute utilisation over the window.
    pub fn utilisation(&self) -> Option<f64> {
        let u = &self.utilisation;
        (!u.is_empty()).then(|| u.values().sum::<f64>() / u.len() as f64)
    }
}

/// One node of the run (from its own log).
#[derive(Default, Debug, Clone)]
pub struct NodeFacts {
    pub role: String,
    pub uid: Option<Uid>,
    pub finished: Option<NodeStats>,
    /// Its running totals as of its last outer step.
    pub stats: NodeStats,
    pub peak_rss: Option<u64>,
}

/// Something that went wrong, or a node joining.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub node: String,
    pub window: Option<u64>,
    pub kind: IncidentKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    Join,
    Fault,
}

/// The reference validator's latest view of one peer.
#[derive(Debug, Clone)]
pub struct PeerFacts {
    pub line: PeerLine,
    pub aggregated: bool,
}

/// Everything read so far.
#[derive(Default)]
pub struct RunView {
    pub windows: BTreeMap<u64, WindowFacts>,
    pub nodes: BTreeMap<String, NodeFacts>,
    /// Per peer, by window: the reference validator's line (score, weight, verdict).
    pub peer_history: BTreeMap<Uid, BTreeMap<u64, PeerLine>>,
    pub incidents: Vec<Incident>,
    /// The size of every upload after window 0 (window 0's are the null window's zero updates).
    pub uploads: Vec<u64>,
    offsets: BTreeMap<PathBuf, u64>,
}

impl RunView {
    /// The validator whose view of the network is shown: the first by name.
    pub fn reference_validator(&self) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, n)| n.role == "validator")
            .map(|(name, _)| name.as_str())
    }

    /// How many miners and validators have logs in the run directory.
    pub fn role_counts(&self) -> (usize, usize) {
        let count = |role: &str| self.nodes.values().filter(|n| n.role == role).count();
        (count("miner"), count("validator"))
    }

    /// The node that registered `uid`, if its log is in the run directory.
    pub fn name_of(&self, uid: Uid) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, n)| n.uid == Some(uid))
            .map(|(name, _)| name.as_str())
    }

    /// Each peer's latest line from the reference validator.
    pub fn peers(&self) -> BTreeMap<Uid, PeerFacts> {
        self.peer_history
            .iter()
            .filter_map(|(uid, h)| {
                let (w, line) = h.iter().next_back()?;
                let aggregated = self.windows.get(w).is_some_and(|f| f.peers.contains(uid));
                Some((
                    *uid,
                    PeerFacts {
                        line: line.clone(),
                        aggregated,
                    },
                ))
            })
            .collect()
    }

    /// Reads what the nodes under `<run>/nodes` appended since the last call; returns the new
    /// event lines (node name, line) in the order read. Nodes that appear later are picked up.
    pub fn poll(&mut self, run: &Path) -> Result<Vec<EventLine>> {
        let dir = run.join("nodes");
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("events.jsonl").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        names.sort();
        let mut new = Vec::new();
        for name in names {
            let path = dir.join(&name).join("events.jsonl");
            let offset = self.offsets.entry(path.clone()).or_insert(0);
            for line in read_new(&path, offset)? {
                self.take(&line);
                new.push(line);
            }
        }
        Ok(new)
    }

    /// Takes one event line into the view.
    pub fn take(&mut self, line: &EventLine) {
        let name = line.name.as_str();
        let node = self.nodes.entry(name.to_string()).or_default();
        node.role.clone_from(&line.role);
        let is_ref = line.role == "validator" && self.reference_validator() == Some(name);
        let incident = |window, kind, text: String| Incident {
            node: name.to_string(),
            window,
            kind,
            text,
        };
        match &line.event {
            NodeEvent::Started { uid } => {
                self.node(name).uid = Some(*uid);
            }
            NodeEvent::OuterStep {
                window,
                peers,
                hash,
                val_loss,
                stats,
                ..
            } => {
                let node = self.node(name);
                let before = std::mem::replace(&mut node.stats, *stats);
                let f = self.windows.entry(*window).or_default();
                f.hashes.insert(name.to_string(), hash.clone());
                match since(&before, stats).utilisation() {
                    Some(u) if line.role == "miner" => {
                        f.utilisation.insert(name.to_string(), u);
                    }
                    _ => {}
                }
                if is_ref {
                    f.val_loss = *val_loss;
                    f.peers.clone_from(peers);
                }
            }
            NodeEvent::Trained {
                window,
                steps,
                loss_mean,
                ..
            } => {
                let f = self.windows.entry(*window).or_default();
                if let Some(l) = loss_mean {
                    f.train_losses.push(f64::from(*l));
                }
                f.inner_steps += u64::from(*steps);
            }
            NodeEvent::Uploaded { window, bytes } => {
                self.windows.entry(*window).or_default().bytes_up += bytes;
                if *window > 0 {
                    self.uploads.push(*bytes);
                }
            }
            NodeEvent::Report { window, peers, .. } if is_ref => {
                self.windows.entry(*window).or_default().report = Some(peers.clone());
                for (uid, p) in peers {
                    self.peer_history
                        .entry(*uid)
                        .or_default()
                        .insert(*window, p.clone());
                }
            }
            NodeEvent::Joined {
                window,
                replayed,
                from_checkpoint,
                ..
            } => {
                let from = from_checkpoint.map_or("from genesis".to_string(), |c| {
                    format!("from the checkpoint of window {c}")
                });
                self.incidents.push(incident(
                    Some(*window),
                    IncidentKind::Join,
                    format!("joined at window {window} {from}, replayed {replayed} window(s)"),
                ));
            }
            NodeEvent::CheckpointRefused {
                window,
                validator,
                reason,
            } => self.incidents.push(incident(
                Some(*window),
                IncidentKind::Fault,
                format!("refused validator {validator}'s checkpoint: {reason}"),
            )),
            NodeEvent::Error { window, message } => {
                self.incidents
                    .push(incident(*window, IncidentKind::Fault, message.clone()))
            }
            NodeEvent::Finished { stats, .. } => {
                self.node(name).finished = Some(*stats);
            }
            NodeEvent::Memory { peak_rss } => {
                self.node(name).peak_rss = Some(*peak_rss);
            }
            _ => {}
        }
    }

    fn node(&mut self, name: &str) -> &mut NodeFacts {
        self.nodes.entry(name.to_string()).or_default()
    }

    /// The last window with a validator's report.
    pub fn last_reported(&self) -> Option<u64> {
        self.windows
            .iter()
            .rev()
            .find(|(_, f)| f.report.is_some())
            .map(|(w, _)| *w)
    }
}

/// The time a node spent between two of its running totals.
fn since(before: &NodeStats, now: &NodeStats) -> NodeStats {
    NodeStats {
        inner_ms: now.inner_ms.saturating_sub(before.inner_ms),
        outer_ms: now.outer_ms.saturating_sub(before.outer_ms),
        wait_ms: now.wait_ms.saturating_sub(before.wait_ms),
        ..NodeStats::default()
    }
}

/// Checks that `run` is a run directory, with an error that says what is wrong.
pub fn check_run_dir(run: &Path) -> Result<()> {
    let meta = std::fs::metadata(run)
        .with_context(|| format!("cannot read the run directory {}", run.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", run.display());
    anyhow::ensure!(
        run.join("run.json").is_file() || run.join("nodes").is_dir(),
        "{} is not a run directory: it has neither run.json nor nodes/ (make one with \
         `covenant demo` or `covenant network init`)",
        run.display()
    );
    Ok(())
}

/// A verdict in a word or two.
pub fn verdict_label(v: &Verdict) -> String {
    match v {
        Verdict::Evaluated { indicator, .. } => match indicator {
            1.. => "better".into(),
            0 => "no change".into(),
            _ => "worse".into(),
        },
        Verdict::Idle => "idle".into(),
        Verdict::Zero => "zero update".into(),
        Verdict::First => "first upload".into(),
        Verdict::Missing { streak } => format!("missing ×{streak}"),
        Verdict::Unavailable { streak } => format!("unavailable ×{streak}"),
        Verdict::Invalid => "invalid".into(),
        Verdict::Copied { original, .. } => format!("copied {original}"),
        Verdict::Inactive => "inactive".into(),
    }
}

/// A verdict's sync distance, when measured.
pub fn verdict_sync(v: &Verdict) -> Option<f64> {
    match v {
        Verdict::Evaluated { sync, .. } => Some(*sync),
        _ => None,
    }
}

/// The complete event lines appended to `path` since `offset` (a missing file has none yet).
/// Lines that are not events are skipped.
fn read_new(path: &Path, offset: &mut u64) -> Result<Vec<EventLine>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    f.seek(std::io::SeekFrom::Start(*offset))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut r = std::io::BufReader::new(f);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 || (buf.last() != Some(&b'\n') && (n as u64) < MAX_LINE) {
            break; // end, or a line still being written
        }
        *offset += n as u64;
        if let Ok(v) = serde_json::from_slice::<EventLine>(&buf) {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(name: &str, role: &str, event: NodeEvent) -> String {
        let l = EventLine {
            t: 1,
            role: role.into(),
            name: name.into(),
            event,
        };
        serde_json::to_string(&l).unwrap() + "\n"
    }

    fn append(run: &Path, name: &str, text: &str) {
        let d = run.join("nodes").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("events.jsonl"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn step(window: u64, peers: Vec<Uid>, hash: &str, val: Option<f64>) -> NodeEvent {
        stepped(window, peers, hash, val, NodeStats::default())
    }

    fn stepped(
        window: u64,
        peers: Vec<Uid>,
        hash: &str,
        val: Option<f64>,
        stats: NodeStats,
    ) -> NodeEvent {
        NodeEvent::OuterStep {
            window,
            peers,
            rejected: BTreeMap::new(),
            lr: 1.0,
            hash: hash.into(),
            source: covenant_core::driver::events::StepSource::Live,
            val_loss: val,
            stats,
        }
    }

    #[test]
    fn polling_reads_only_complete_new_lines_of_every_node() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        let mut v = RunView::default();
        assert!(v.poll(run).unwrap().is_empty(), "no nodes yet");
        append(
            run,
            "validator-1",
            &line("validator-1", "validator", NodeEvent::Started { uid: 0 }),
        );
        append(
            run,
            "miner-1",
            &line("miner-1", "miner", NodeEvent::Started { uid: 1 }),
        );
        let half = line("miner-1", "miner", step(0, vec![1], "h", None));
        append(run, "miner-1", &half[..half.len() / 2]);
        assert_eq!(v.poll(run).unwrap().len(), 2);
        assert_eq!(v.name_of(1), Some("miner-1"));
        append(run, "miner-1", &half[half.len() / 2..]);
        append(run, "validator-1", "not json\n");
        append(
            run,
            "validator-1",
            &line("validator-1", "validator", step(0, vec![1], "h", Some(5.0))),
        );
        assert_eq!(
            v.poll(run).unwrap().len(),
            2,
            "the finished line and the step"
        );
        let f = &v.windows[&0];
        assert_eq!(f.val_loss, Some(5.0));
        assert_eq!(f.peers, vec![1]);
        assert_eq!(f.agree(), Some(true));
    }

    #[test]
    fn replicas_that_differ_and_utilisation_are_seen() {
        let mut v = RunView::default();
        let mut take = |name: &str, role: &str, e| {
            v.take(&EventLine {
                t: 5,
                role: role.into(),
                name: name.into(),
                event: e,
            })
        };
        let totals = |inner_ms, outer_ms, wait_ms| NodeStats {
            inner_ms,
            outer_ms,
            wait_ms,
            ..NodeStats::default()
        };
        take("validator-1", "validator", step(3, vec![], "a", Some(4.0)));
        // miner-1: 10 s of inner steps and 10 s waiting before window 3, then 9 s and 1 s.
        take(
            "miner-1",
            "miner",
            stepped(2, vec![], "a", None, totals(10_000, 0, 10_000)),
        );
        take(
            "miner-1",
            "miner",
            stepped(3, vec![], "b", None, totals(19_000, 500, 10_500)),
        );
        take(
            "miner-2",
            "miner",
            stepped(3, vec![], "a", None, totals(5_000, 0, 5_000)),
        );
        for m in ["miner-1", "miner-2"] {
            take(
                m,
                "miner",
                NodeEvent::Trained {
                    window: 3,
                    steps: 10,
                    planned_steps: 10,
                    sent_steps: 10,
                    loss_first: Some(5.0),
                    loss_last: Some(4.0),
                    loss_mean: Some(4.5),
                    lr_first: None,
                    lr_last: None,
                    inner_ms: 1,
                },
            );
        }
        let f = &v.windows[&3];
        assert_eq!(f.agree(), Some(false));
        assert_eq!(
            f.utilisation["miner-1"], 0.9,
            "since its previous outer step"
        );
        assert_eq!(f.utilisation["miner-2"], 0.5);
        assert_eq!(f.utilisation(), Some(0.7));
        assert!(
            !f.utilisation.contains_key("validator-1"),
            "no time, no utilisation"
        );
        assert_eq!(f.inner_steps, 20);
        assert_eq!(f.mean_train_loss(), Some(4.5));
        assert_eq!(v.nodes["miner-1"].stats.inner_ms, 19_000);
    }

    #[test]
    fn a_missing_or_foreign_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_run_dir(&dir.path().join("nope")).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read the run directory"),
            "{err:#}"
        );
        let err = check_run_dir(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a run directory"),
            "{err:#}"
        );
    }

    #[test]
    fn an_unreadable_node_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nodes"), "a file, not a directory").unwrap();
        let err = RunView::default().poll(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("nodes"), "{err:#}");
    }
}
