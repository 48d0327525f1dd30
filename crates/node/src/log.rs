//! Event sinks: a node's JSON-lines event log (`events.jsonl`, also printed on stderr) for real
//! runs, and an in-memory one for the simulator and tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use covenant_core::driver::events::EventLine;
use covenant_core::driver::NodeEvent;
use covenant_core::Millis;

use crate::env::EventSink;

/// JSON lines of what a node did, for the demo's live view and the tests: one [`EventLine`]
/// per event. Every event is also printed on stderr. A write to the file that fails (full
/// disk, lost permission) does not stop the node: the first failure prints one warning on
/// stderr naming the file and the OS error, and later events are still tried (and printed).
pub struct EventLog {
    file: Mutex<std::fs::File>,
    path: PathBuf,
    failed: AtomicBool,
    role: String,
    name: String,
    /// A joining node's bar on a terminal (the lines are printed around it).
    progress: Option<crate::progress::JoinProgress>,
}

impl EventLog {
    /// Shows the node's join (checkpoint, replayed windows) as progress on stderr when it is a
    /// terminal, on the chain's clock `schedule`.
    pub fn with_join_progress(mut self, schedule: covenant_core::window::Schedule) -> Self {
        self.progress = Some(crate::progress::JoinProgress::new(schedule));
        self
    }

    pub fn open(path: &Path, role: &str, name: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
            role: role.into(),
            name: name.into(),
            progress: None,
        })
    }
}

impl EventSink for EventLog {
    fn emit(&self, t: Millis, event: &NodeEvent) {
        let line = EventLine {
            t,
            role: self.role.clone(),
            name: self.name.clone(),
            event: event.clone(),
        };
        let text = match serde_json::to_string(&line) {
            Ok(s) => s + "\n",
            Err(e) => format!("{{\"event\":\"error\",\"message\":\"unprintable event: {e}\"}}\n"),
        };
        let written = match self.file.lock() {
            Ok(mut f) => f.write_all(text.as_bytes()),
            Err(_) => Err(std::io::Error::other("event log lock poisoned")),
        };
        if let Err(e) = written {
            if !self.failed.swap(true, Ordering::Relaxed) {
                stderr_line(&format!(
                    "[{} {}] warning: writing the event log {} failed: {e}; the node carries on \
                     and prints its events here only",
                    self.role,
                    self.name,
                    self.path.display()
                ));
            }
        }
        let print = || {
            stderr_line(&format!(
                "[{} {}] {}",
                self.role,
                self.name,
                text.trim_end()
            ))
        };
        match &self.progress {
            Some(p) => p.on_event(t, event, print),
            None => print(),
        }
    }
}

/// Every event to each of several sinks, in order (the event log and the metrics).
pub struct Fanout(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn emit(&self, t: Millis, event: &NodeEvent) {
        for s in &self.0 {
            s.emit(t, event);
        }
    }
}

/// Events kept in memory (the simulator's nodes, tests).
#[derive(Default, Clone)]
pub struct Memory {
    pub events: Arc<Mutex<Vec<(Millis, NodeEvent)>>>,
}

impl EventSink for Memory {
    fn emit(&self, t: Millis, event: &NodeEvent) {
        if let Ok(mut e) = self.events.lock() {
            e.push((t, event.clone()));
        }
    }
}

/// Reads a node's event log; lines that do not parse (a torn last line) are skipped.
pub fn read_events(path: &Path) -> Vec<EventLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Prints a line on stderr, ignoring a failure (`eprintln!` panics when stderr cannot be
/// written, e.g. when it is a log file on a full disk).
pub fn stderr_line(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes()).and_then(|_| e.write_all(b"\n"));
}
