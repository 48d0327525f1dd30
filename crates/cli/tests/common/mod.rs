//! Helpers for the end-to-end network tests: a run directory from `covenant network init`, real
//! `covenant miner` / `covenant validator` processes started, killed (SIGKILL) and restarted,
//! and their event logs read back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub mod screens;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_covenant")
}

pub fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/covenant")
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Panics with the command's stderr unless it succeeded.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prepares the bundled corpus at sequence length 128 in the shared cache (the nodes only read
/// it afterwards).
pub fn prepare_data() {
    let out = Command::new(bin())
        .args(["data", "bundled", "--seq-len", "128", "--out"])
        .arg(cache().join("data/bundled-seq128"))
        .output()
        .unwrap();
    assert_success(&out);
}

/// `covenant network init` arguments the tests vary.
pub struct NetConfig {
    pub window_secs: u64,
    pub start_in: u64,
    pub validators: usize,
    pub checkpoint_every: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            window_secs: 7,
            start_in: 10,
            validators: 1,
            checkpoint_every: 3,
        }
    }
}

pub struct Net {
    pub run: PathBuf,
    pub genesis_ms: u64,
    pub window_secs: u64,
    /// Environment for every node started from now on (e.g. the S3 connection).
    pub env: Vec<(String, String)>,
    pub children: Vec<(String, Child)>,
}

impl Net {
    /// A 7-second-window network with one validator, window 0 `start_in` seconds from now.
    pub fn init(run: &Path, start_in: u64) -> Net {
        Net::init_with(
            run,
            &NetConfig {
                start_in,
                ..NetConfig::default()
            },
        )
    }

    pub fn init_with(run: &Path, c: &NetConfig) -> Net {
        // Prepare the data once, before the clock starts.
        prepare_data();
        let st = Command::new(bin())
            .args(["network", "init", "--run"])
            .arg(run)
            .args([
                "--window-secs",
                &c.window_secs.to_string(),
                "--grace-secs",
                "2",
            ])
            .args(["--start-in", &c.start_in.to_string()])
            .args(["--inner-steps", "6", "--batch", "4"])
            .args(["--validators", &c.validators.to_string()])
            .args(["--checkpoint-every", &c.checkpoint_every.to_string()])
            .output()
            .unwrap();
        assert_success(&st);
        let spec: Value =
            serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
        assert_eq!(spec["params"]["inner_steps"], 6);
        let genesis_ms = now_ms() + c.start_in * 1000; // within a few ms of the chain's
        Net {
            run: run.to_path_buf(),
            genesis_ms,
            window_secs: c.window_secs,
            env: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn window_start(&self, w: u64) -> u64 {
        self.genesis_ms + w * self.window_secs * 1000
    }

    pub fn wait_until_window(&self, w: u64, offset_ms: u64) {
        let t = self.window_start(w) + offset_ms;
        let now = now_ms();
        if t > now {
            std::thread::sleep(Duration::from_millis(t - now));
        }
    }

    /// Starts `covenant <role> --run <run> --name <name> --until-window <until>`; its output is
    /// appended to nodes/<name>/log.txt (so a restarted node keeps its earlier log).
    pub fn start(&mut self, role: &str, name: &str, until: u64, extra: &[&str]) {
        let dir = self.run.join("nodes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("log.txt"))
            .unwrap();
        let child = Command::new(bin())
            .env("COVENANT_CACHE", cache())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg(role)
            .arg("--run")
            .arg(&self.run)
            .args([
                "--name",
                name,
                "--until-window",
                &until.to_string(),
                "--threads",
                "1",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child));
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self, name: &str) {
        let i = self.children.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut c) = self.children.remove(i);
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Waits for every node to exit successfully; panics with its log otherwise.
    pub fn wait_all(&mut self, timeout: Duration) {
        let end = std::time::Instant::now() + timeout;
        let run = self.run.clone();
        let log = |name: &str| {
            std::fs::read_to_string(run.join("nodes").join(name).join("log.txt"))
                .unwrap_or_default()
        };
        for (name, c) in &mut self.children {
            loop {
                if let Some(st) = c.try_wait().unwrap() {
                    assert!(
                        st.success(),
                        "{name} exited with {st}; log:\n{}",
                        tail(&log(name))
                    );
                    break;
                }
                if std::time::Instant::now() > end {
                    let _ = c.kill();
                    panic!("{name} did not finish in time; log:\n{}", tail(&log(name)));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.join("nodes").join(name).join("log.txt"))
            .unwrap_or_default()
    }

    pub fn events(&self, name: &str) -> Vec<Value> {
        let p = self.run.join("nodes").join(name).join("events.jsonl");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn all_logs(&self) -> String {
        let mut s = String::new();
        for (n, _) in &self.children {
            s.push_str(&format!("==== {n}\n{}\n", tail(&self.log(n))));
        }
        s
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub fn of(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .cloned()
        .collect()
}

/// window → hash of the model after that window's outer step.
pub fn hashes(events: &[Value]) -> BTreeMap<u64, String> {
    of(events, "outer_step")
        .iter()
        .map(|e| {
            (
                e["window"].as_u64().unwrap(),
                e["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The uid a node reported when it started.
pub fn uid_of(events: &[Value]) -> u64 {
    of(events, "started")[0]["uid"].as_u64().unwrap()
}

/// uid → consensus weight, from `covenant chain status --json`.
pub fn consensus_weights(run: &Path) -> BTreeMap<u64, f64> {
    let out = Command::new(bin())
        .args(["chain", "status", "--json", "--dir"])
        .arg(run.join("chain"))
        .output()
        .unwrap();
    assert_success(&out);
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    m["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["uid"].as_u64().unwrap(),
                n["consensus_weight"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The project venv's python (`COVENANT_PYTHON`, set by scripts/setup.sh's cargo config).
pub fn python() -> String {
    std::env::var("COVENANT_PYTHON")
        .expect("COVENANT_PYTHON must point at the project venv's python (run scripts/setup.sh)")
}

/// `covenant ARGS EXTRA…` with the shared cache, run to its end.
pub fn covenant(args: &[&str], extra: &[&Path]) -> std::process::Output {
    Command::new(bin())
        .env("COVENANT_CACHE", cache())
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

/// Trains `tiny` for `steps` steps on one CPU thread under `dir` and returns its final
/// checkpoint directory.
pub fn train_tiny(dir: &Path, steps: u32) -> PathBuf {
    prepare_data();
    let steps = steps.to_string();
    let out = dir.join("train");
    let o = covenant(
        &[
            "train",
            "--preset",
            "tiny",
            "--steps",
            &steps,
            "--batch",
            "4",
            "--lr",
            "3e-3",
            "--eval-every",
            &steps,
            "--ckpt-every",
            &steps,
            "--threads",
            "1",
            "--device",
            "cpu",
            "--out",
        ],
        &[&out],
    );
    assert_success(&o);
    out.join(format!("checkpoints/step-{steps:0>8}"))
}
