//! A full disk or a missing permission in the run directory is a clear error, never a panic
//! (docs/SECURITY.md, "Disk full and permission errors"). Real `covenant` processes:
//! * start-up (`network init`, `demo`, a miner whose chain, keys/, nodes/, store/ or event log
//!   cannot be written): exit status 1, and stderr names the file or directory and the OS error;
//! * during a run (the validator's state file on a full disk, a miner's store it may not write,
//!   a miner's event log on a full disk, a miner whose stderr is a full disk): every node logs
//!   the error, carries on and finishes its windows;
//! * the demo's summary.json on a full disk: exit status 1 with the file and the OS error.
//!
//! A full disk is `/dev/full` (writes fail with ENOSPC) put where a node writes: a symbolic link
//! at a file's path. Permission bits do not stop root, so when the tests run as root the
//! `covenant` processes run as uid/gid 65534 (`nobody`) on directories that user owns; as any
//! other user, `chmod` alone does it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{bin, cache, prepare_data};

const NOBODY: u32 = 65534;
const ENOSPC: &str = "No space left on device";
const EACCES: &str = "Permission denied";

fn is_root() -> bool {
    // /proc/self belongs to the effective uid of the process looking at it.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `covenant` as the user the tests can take permissions from (nobody when root).
fn covenant() -> Command {
    let mut c = Command::new(bin());
    c.env("COVENANT_CACHE", cache()).stdin(Stdio::null());
    if is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    c
}

/// Hands `p` to the user `covenant()` runs as.
fn give(p: &Path) {
    if is_root() {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A temporary directory the `covenant` processes may write to. Checks once that they can run
/// at all: as nobody, the binary and libtorch must be readable by everybody.
fn workdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    give(d.path());
    let out = covenant().arg("--version").output().unwrap();
    assert!(
        out.status.success(),
        "`covenant --version` as uid {NOBODY} failed ({}): when the tests run as root, the \
         binary, libtorch and {} must be readable by other users\n{}",
        out.status,
        cache().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn init(run: &Path, window_secs: u64, start_in: u64) {
    let out = covenant()
        .args(["network", "init", "--run"])
        .arg(run)
        .args([
            "--window-secs",
            &window_secs.to_string(),
            "--grace-secs",
            "2",
        ])
        .args(["--start-in", &start_in.to_string()])
        .args(["--inner-steps", "2", "--batch", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 1 (an error returned to main, not a panic: that is 101) and a message on stderr
/// holding `path` and the OS error text `os`.
fn assert_clear_error(what: &str, out: &Output, path: &Path, os: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {}\n{err}", out.status);
    assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{what}: no error line:\n{err}"));
    assert!(
        line.contains(&path.display().to_string()) && line.contains(os),
        "{what}: the error does not name {} and {os:?}:\n{err}",
        path.display()
    );
    eprintln!("{what}: {line}");
}

fn miner(run: &Path, name: &str) -> Command {
    let mut c = covenant();
    c.arg("miner").arg("--run").arg(run).args([
        "--name",
        name,
        "--until-window",
        "0",
        "--threads",
        "1",
    ]);
    c
}

#[test]
fn init_and_demo_in_a_directory_without_write_permission_fail_clearly() {
    prepare_data();
    let d = workdir();
    let ro = d.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    give(&ro);
    chmod(&ro, 0o555);

    let run = ro.join("run");
    let out = covenant()
        .args(["network", "init", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_clear_error("network init", &out, &run.join("keys"), EACCES);
    assert!(!run.exists());

    let out = covenant()
        .args(["demo", "--windows", "1", "--window-secs", "4", "--out"])
        .arg(ro.join("demo"))
        .output()
        .unwrap();
    assert_clear_error("demo", &out, &ro.join("demo").join("keys"), EACCES);
    chmod(&ro, 0o755);
}

#[test]
fn node_start_up_without_write_permission_fails_clearly() {
    prepare_data();
    let d = workdir();
    let run = d.path().join("run");
    init(&run, 5, 600);

    // The chain ledger's directory (SQLite needs to create its journal files there).
    let chain = run.join("chain");
    chmod(&chain, 0o555);
    let out = miner(&run, "m-chain").output().unwrap();
    assert_clear_error("read-only chain/", &out, &chain, EACCES);
    chmod(&chain, 0o755);

    // keys/: the node's key is created at start-up.
    let keys = run.join("keys");
    chmod(&keys, 0o555);
    let out = miner(&run, "m-keys").output().unwrap();
    assert_clear_error("read-only keys/", &out, &keys.join("m-keys.key"), EACCES);
    // The same with stderr on a full disk: still exit status 1, not a panic printing the error.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let st = miner(&run, "m-quiet").stderr(full).status().unwrap();
    assert_eq!(st.code(), Some(1), "{st}");
    chmod(&keys, 0o755);

    // nodes/: where the node's event log and state live.
    let nodes = run.join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    give(&nodes);
    chmod(&nodes, 0o555);
    let out = miner(&run, "m-nodes").output().unwrap();
    assert_clear_error("read-only nodes/", &out, &nodes.join("m-nodes"), EACCES);
    chmod(&nodes, 0o755);

    // The event log's directory.
    let own = nodes.join("m-events");
    std::fs::create_dir(&own).unwrap();
    give(&own);
    chmod(&own, 0o555);
    let out = miner(&run, "m-events").output().unwrap();
    assert_clear_error(
        "read-only nodes/<name>/",
        &out,
        &own.join("events.jsonl"),
        EACCES,
    );
    chmod(&own, 0o755);

    // store/: the default directory store is created at start-up.
    let store = run.join("store");
    std::fs::create_dir(&store).unwrap();
    give(&store);
    chmod(&store, 0o555);
    let out = miner(&run, "m-store").output().unwrap();
    assert_clear_error("read-only store/", &out, &store.join("m-store"), EACCES);
    chmod(&store, 0o755);
}

struct Node {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(run: &Path, role: &str, name: &str, until: u64, stderr_to: Option<&Path>) -> Node {
    let dir = run.join("nodes").join(name);
    let log = dir.join("log.txt");
    let out = std::fs::File::create(&log).unwrap();
    let err = match stderr_to {
        Some(p) => std::fs::OpenOptions::new().write(true).open(p).unwrap(),
        None => out.try_clone().unwrap(),
    };
    let child = covenant()
        .arg(role)
        .arg("--run")
        .arg(run)
        .args(["--name", name, "--until-window", &until.to_string()])
        .args(["--threads", "1"])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    Node {
        name: name.to_string(),
        child,
        log,
    }
}

impl Node {
    fn wait(&mut self, end: Instant) -> ExitStatus {
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "{} did not finish in time:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The events a node printed on stderr (`[role name] {json}` lines).
fn printed_events(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| l.split_once("] ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn full_disk_and_unwritable_store_during_a_run_are_logged_and_survived() {
    prepare_data();
    let d = workdir();
    let run = d.path().join("run");
    const UNTIL: u64 = 2;
    init(&run, 5, 6);
    let nodes = run.join("nodes");
    let store = run.join("store");
    for p in [&nodes, &store] {
        std::fs::create_dir(p).unwrap();
        give(p);
    }
    for n in ["validator-1", "miner-1", "miner-2", "miner-3"] {
        let p = nodes.join(n);
        std::fs::create_dir(&p).unwrap();
        give(&p);
    }
    // miner-1 may not write its store.
    let m1_store = store.join("miner-1");
    std::fs::create_dir(&m1_store).unwrap();
    give(&m1_store);
    chmod(&m1_store, 0o555);
    // miner-2's event log is on a full disk.
    let m2_events = nodes.join("miner-2").join("events.jsonl");
    std::os::unix::fs::symlink("/dev/full", &m2_events).unwrap();

    let mut all = vec![start(&run, "validator", "validator-1", UNTIL, None)];
    // The validator's state file goes through state.tmp<pid>: on a full disk.
    let v_tmp = nodes
        .join("validator-1")
        .join(format!("state.tmp{}", all[0].child.id()));
    std::os::unix::fs::symlink("/dev/full", &v_tmp).unwrap();
    all.push(start(&run, "miner", "miner-1", UNTIL, None));
    all.push(start(&run, "miner", "miner-2", UNTIL, None));
    // miner-3 prints on a full disk.
    all.push(start(
        &run,
        "miner",
        "miner-3",
        UNTIL,
        Some(Path::new("/dev/full")),
    ));

    let end = Instant::now() + Duration::from_secs(6 + 5 * (UNTIL + 2) + 90);
    for n in &mut all {
        let st = n.wait(end);
        let log = n.log();
        assert!(st.success(), "{} exited with {st}:\n{log}", n.name);
        assert!(!log.contains("panicked"), "{} panicked:\n{log}", n.name);
    }
    let logs: Vec<String> = all.iter().map(Node::log).collect();
    let events: Vec<Vec<Value>> = logs.iter().map(|l| printed_events(l)).collect();
    let finished = |i: usize| {
        assert_eq!(
            of(&events[i], "finished").len(),
            1,
            "{} did not finish:\n{}",
            all[i].name,
            logs[i]
        );
    };

    // The validator: the failed save is an error event naming state.json and ENOSPC; the
    // window's report still follows, the next save (the temporary file is gone) succeeds, and
    // it steps every window.
    let state = nodes.join("validator-1").join("state.json");
    let errs = of(&events[0], "error");
    let save_err = errs
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("saving the validator state")
        })
        .unwrap_or_else(|| panic!("no state-save error:\n{}", logs[0]));
    let msg = save_err["message"].as_str().unwrap();
    assert!(
        msg.contains(&state.display().to_string()) && msg.contains(ENOSPC),
        "{msg}"
    );
    eprintln!("validator: {msg}");
    assert!(!v_tmp.exists(), "the temporary state file is left behind");
    assert!(state.is_file(), "a later window saved the state");
    let evaluated = save_err["window"].as_u64().unwrap().saturating_sub(1);
    assert!(
        of(&events[0], "report")
            .iter()
            .any(|r| r["window"].as_u64() == Some(evaluated)),
        "the report of window {evaluated} is missing:\n{}",
        logs[0]
    );
    let stepped: Vec<u64> = of(&events[0], "outer_step")
        .iter()
        .filter_map(|e| e["window"].as_u64())
        .collect();
    assert!(stepped.contains(&UNTIL), "{stepped:?}\n{}", logs[0]);
    finished(0);

    // miner-1: each upload is an error event naming its store and EACCES; it carries on.
    let up_errs: Vec<&str> = of(&events[1], "error")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with("uploading the update of window"))
        .collect();
    assert!(!up_errs.is_empty(), "no upload error:\n{}", logs[1]);
    for m in &up_errs {
        assert!(
            m.contains(&m1_store.display().to_string()) && m.contains(EACCES),
            "{m}"
        );
    }
    eprintln!("miner-1: {}", up_errs[0]);
    assert!(of(&events[1], "uploaded").is_empty());
    assert_eq!(
        of(&events[1], "finished")[0]["stats"]["bytes_up"],
        0,
        "{}",
        logs[1]
    );
    finished(1);

    // miner-2: one warning naming the event log and ENOSPC, then business as usual (events on
    // stderr only), its uploads aggregated.
    let warn: Vec<&str> = logs[2]
        .lines()
        .filter(|l| l.contains("writing the event log"))
        .collect();
    assert_eq!(warn.len(), 1, "{}", logs[2]);
    assert!(
        warn[0].contains(&m2_events.display().to_string()) && warn[0].contains(ENOSPC),
        "{}",
        warn[0]
    );
    eprintln!("miner-2: {}", warn[0]);
    assert!(!of(&events[2], "uploaded").is_empty(), "{}", logs[2]);
    finished(2);

    // miner-3: nothing on stderr, all in its event log.
    let m3: Vec<Value> = std::fs::read_to_string(nodes.join("miner-3").join("events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(of(&m3, "finished").len(), 1, "{m3:?}");
    assert!(!of(&m3, "uploaded").is_empty(), "{m3:?}");
}

#[test]
fn demo_summary_on_a_full_disk_is_a_clear_error() {
    prepare_data();
    let d = workdir();
    let out_dir = d.path().join("demo");
    let log = d.path().join("demo.log");
    let mut demo = covenant()
        .args([
            "demo",
            "--miners",
            "1",
            "--validators",
            "1",
            "--windows",
            "1",
        ])
        .args(["--window-secs", "4", "--inner-steps", "2", "--batch", "2"])
        .arg("--out")
        .arg(&out_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Once the run directory is complete (run.json is written last), put summary.json's
    // temporary file on a full disk.
    let end = Instant::now() + Duration::from_secs(60);
    while !out_dir.join("run.json").exists() {
        assert!(
            Instant::now() < end,
            "the demo did not create its run directory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tmp = out_dir.join("summary.tmp~");
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let out = wait_output(&mut demo, &log, Duration::from_secs(180));
    assert_clear_error("demo", &out, &out_dir.join("summary.json"), ENOSPC);
    assert!(!tmp.exists(), "the temporary summary is left behind");
    assert!(!out_dir.join("summary.json").exists());
    // What was written before is complete.
    let png = std::fs::read(out_dir.join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(out_dir.join("windows.csv").is_file());
}

fn wait_output(c: &mut Child, stderr: &Path, timeout: Duration) -> Output {
    let end = Instant::now() + timeout;
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Output {
        status: c.wait().unwrap(),
        stdout: Vec::new(),
        stderr: std::fs::read(stderr).unwrap_or_default(),
    }
}
