//! Issue 13: a network across machines. Every node runs in its own Linux network namespace
//! (a "host" with its own address, its own directory and a bandwidth-limited link: `tc` tbf),
//! and so do anvil (the chain) and the S3 server (the object store); the hosts reach each other
//! only through a bridge in one more namespace, and no traffic leaves them. The nodes share
//! nothing but the chain and the store: each joins from the contract's address alone, fetching
//! the run spec from where the contract says and preparing the bundled data in its own
//! directory. Two validators and four miners train; a fifth miner joins mid-run from its own
//! host; the replicas agree; rewards paid on the chain follow the consensus weights.
//!
//! Where namespaces cannot be created (not root, no iproute2) the test fails and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{bin, hashes, of, tail};

#[path = "../../net/tests/common_s3/mod.rs"]
mod common_s3;

const WINDOW_SECS: u64 = 12;
const LAST: u64 = 12;
const JOIN_AT: u64 = 6;
const SUBNET: &str = "10.213.0";
const RATE: &str = "40mbit";
const S3_KEY: &str = "multihost";
const S3_SECRET: &str = "multihost-secret";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Hosts on one bridged, bandwidth-limited network; removed (with their processes) on drop.
struct Lab {
    tag: String,
    switch: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Lab {
    fn new(dir: &Path) -> Lab {
        let tag = format!("cv{}", std::process::id() % 100_000);
        let switch = format!("{tag}-sw");
        let mut lab = Lab {
            tag,
            switch: switch.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: dir.to_path_buf(),
        };
        let made = ip(&["netns", "add", &switch]);
        if let Err(e) = made {
            panic!(
                "the multi-host test cannot create network namespaces ({e}): it needs root and \
                 iproute2's `ip netns`; it fails rather than skip"
            );
        }
        lab.namespaces.push(switch.clone());
        lab.run_in(&switch, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.run_in(&switch, &["ip", "link", "set", "br0", "up"]);
        lab
    }

    fn run_in(&self, ns: &str, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        ip(&args).unwrap_or_else(|e| panic!("setting up the lab: {e}"));
    }

    /// A host `name` at `SUBNET.n`, linked to the bridge at `RATE` each way.
    fn host(&mut self, name: &str, n: u8) -> String {
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns]).unwrap_or_else(|e| panic!("{e}"));
        self.namespaces.push(ns.clone());
        let (veth, peer) = (format!("{}h{n}", self.tag), format!("{}s{n}", self.tag));
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])
            .unwrap_or_else(|e| panic!("{e}"));
        ip(&["link", "set", &veth, "netns", &ns]).unwrap_or_else(|e| panic!("{e}"));
        ip(&["link", "set", &peer, "netns", &self.switch]).unwrap_or_else(|e| panic!("{e}"));
        let sw = self.switch.clone();
        self.run_in(&sw, &["ip", "link", "set", &peer, "master", "br0"]);
        self.run_in(&sw, &["ip", "link", "set", &peer, "up"]);
        let addr = format!("{SUBNET}.{n}");
        self.run_in(
            &ns,
            &["ip", "addr", "add", &format!("{addr}/24"), "dev", &veth],
        );
        self.run_in(&ns, &["ip", "link", "set", &veth, "up"]);
        self.run_in(&ns, &["ip", "link", "set", "lo", "up"]);
        let tbf = [
            "root", "tbf", "rate", RATE, "burst", "64kb", "latency", "200ms",
        ];
        let mut up = vec!["tc", "qdisc", "add", "dev", &veth];
        up.extend_from_slice(&tbf);
        self.run_in(&ns, &up);
        let mut down = vec!["tc", "qdisc", "add", "dev", &peer];
        down.extend_from_slice(&tbf);
        self.run_in(&sw, &down);
        addr
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    fn command(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Runs `covenant ARGS` on `host` to completion; its stdout.
    fn covenant(&self, host: &str, env: &[(String, String)], args: &[&str]) -> String {
        let out = self
            .command(host, bin())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "covenant {} on {host}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `program ARGS` on `host` in the background, logging to `<dir>/<name>.log`.
    fn spawn(&mut self, host: &str, name: &str, mut c: Command) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let _ = host;
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child));
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits until something on `host` accepts TCP connections at `addr:port`.
    fn wait_listening(&self, host: &str, addr: &str, port: u16) {
        let end = Instant::now() + Duration::from_secs(30);
        let probe = format!("echo > /dev/tcp/{addr}/{port}");
        while !self
            .command(host, "bash")
            .args(["-c", &probe])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            assert!(Instant::now() < end, "nothing listens on {addr}:{port}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the named process to exit successfully.
    fn wait(&mut self, name: &str, end: Instant) {
        let i = self.children.iter().position(|(n, _)| n == name).unwrap();
        loop {
            if let Some(st) = self.children[i].1.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "{name} exited with {st}:\n{}",
                    tail(&self.log(name))
                );
                return;
            }
            if Instant::now() > end {
                panic!("{name} did not finish in time:\n{}", tail(&self.log(name)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A node's typed events (the lines of its log after the `[role name] ` prefix).
fn events(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| l.split_once("] ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

#[test]
fn a_network_spans_hosts_that_share_only_the_chain_and_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lab = Lab::new(dir);
    let chain_ip = lab.host("chain", 2);
    let s3_ip = lab.host("s3", 3);
    let validators = ["v1", "v2"];
    let miners = ["m1", "m2", "m3", "m4", "m5"];
    for (i, n) in validators.iter().chain(&miners).enumerate() {
        lab.host(n, 10 + i as u8);
    }
    let anvil = covenant_evm::tools::anvil().unwrap_or_else(|e| panic!("{e}"));
    let mut c = lab.command("chain", anvil.to_str().unwrap());
    c.args([
        "--host",
        &chain_ip,
        "--port",
        "8545",
        "--block-time",
        "1",
        "--silent",
    ]);
    lab.spawn("chain", "anvil", c);
    let s3_root = dir.join("s3");
    std::fs::create_dir_all(s3_root.join("covenant")).unwrap();
    let mut c = lab.command("s3", common_s3::server_bin().to_str().unwrap());
    c.args(["--host", &s3_ip, "--port", "9000"])
        .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
        .arg(&s3_root);
    lab.spawn("s3", "s3", c);
    lab.wait_listening("v1", &chain_ip, 8545);
    lab.wait_listening("v1", &s3_ip, 9000);
    let url = format!("http://{chain_ip}:8545");
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", format!("http://{s3_ip}:9000")),
        ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET.into()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // The creator publishes the spec and deploys the contract; nodes learn only its address.
    let creator = dir.join("creator");
    let deployer = creator.join("deployer.key");
    let w = WINDOW_SECS.to_string();
    lab.covenant(
        "v1",
        &env,
        &[
            "network",
            "create",
            "--chain",
            &url,
            "--out",
            creator.to_str().unwrap(),
            "--spec-store",
            "s3://covenant/spec",
            "--key",
            deployer.to_str().unwrap(),
            "--dev-fund",
            "100",
            "--name",
            "multihost",
            "--window-secs",
            &w,
            "--grace-secs",
            "3",
            "--inner-steps",
            "4",
            "--batch",
            "4",
            "--checkpoint-every",
            "3",
            "--emission",
            "1",
        ],
    );
    let network: Value =
        serde_json::from_slice(&std::fs::read(creator.join("network.json")).unwrap()).unwrap();
    let contract = network["contract"].as_str().unwrap().to_string();
    lab.covenant(
        "v1",
        &env,
        &[
            "chain",
            "fund-pool",
            "--chain",
            &url,
            "--contract",
            &contract,
            "--key",
            deployer.to_str().unwrap(),
            "--eth",
            "50",
        ],
    );

    let node_dir = |n: &str| dir.join("hosts").join(n);
    let start_node = |lab: &mut Lab, n: &str| {
        let home = node_dir(n);
        std::fs::create_dir_all(&home).unwrap();
        let key = home.join("node.key");
        lab.covenant(n, &env, &["keygen", "--out", key.to_str().unwrap()]);
        lab.covenant(
            n,
            &env,
            &[
                "chain",
                "fund",
                "--chain",
                &url,
                "--to",
                key.to_str().unwrap(),
                "--eth",
                "10",
            ],
        );
        let role = if n.starts_with('v') {
            "validator"
        } else {
            "miner"
        };
        let mut c = lab.command(n, bin());
        c.envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("COVENANT_CACHE")
            .arg(role)
            .args(["--key", key.to_str().unwrap()])
            .args(["--chain", &url, "--contract", &contract])
            .args(["--store", &format!("s3://covenant/{n}")])
            .args(["--until-window", &LAST.to_string(), "--threads", "1"]);
        if role == "validator" {
            c.args(["--stake", "2"]);
        }
        // The joiner is given nothing but the chain, the contract, its key and its store: its
        // working directory is where it is started.
        if n == "m5" {
            c.current_dir(&home);
        } else {
            c.args(["--run", home.to_str().unwrap(), "--name", n]);
        }
        lab.spawn(n, n, c);
    };
    for n in validators.iter().chain(&miners[..4]) {
        start_node(&mut lab, n);
    }
    // The fifth miner joins mid-run.
    let window_now = |lab: &Lab| -> u64 {
        let out = lab.covenant(
            "m5",
            &env,
            &[
                "chain",
                "status",
                "--chain",
                &url,
                "--contract",
                &contract,
                "--json",
            ],
        );
        let m: Value = serde_json::from_str(&out).unwrap();
        m["window"].as_u64().unwrap()
    };
    let end = Instant::now() + Duration::from_secs(WINDOW_SECS * (LAST + 4) + 180);
    while window_now(&lab) < JOIN_AT {
        assert!(
            Instant::now() < end,
            "the chain never reached window {JOIN_AT}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let joined_at = Instant::now();
    start_node(&mut lab, "m5");
    for n in validators.iter().chain(&miners) {
        lab.wait(n, end);
    }

    let logs: BTreeMap<&str, Vec<Value>> = validators
        .iter()
        .chain(&miners)
        .map(|n| (*n, events(&lab.log(n))))
        .collect();
    let all = || {
        logs.keys()
            .map(|n| format!("== {n}\n{}", tail(&lab.log(n))))
            .collect::<String>()
    };
    // Training: each validator stepped at least 10 windows, the last ones with all four
    // miners, and the model learned.
    for v in validators {
        let steps = of(&logs[v], "outer_step");
        assert!(
            steps.len() >= 10,
            "{v}: {} outer steps\n{}",
            steps.len(),
            all()
        );
        let last = steps.last().unwrap();
        assert!(
            last["peers"].as_array().unwrap().len() >= 4,
            "{v} aggregated {} in its last window\n{}",
            last["peers"],
            all()
        );
    }
    // The replicas agree, the joiner's too.
    let reference = hashes(&logs["v1"]);
    for (n, ev) in &logs {
        let hs = hashes(ev);
        assert!(hs.len() >= 3, "{n} stepped {} windows\n{}", hs.len(), all());
        for (w, h) in hs {
            if let Some(r) = reference.get(&w) {
                assert_eq!(&h, r, "{n} agrees with v1 after window {w}");
            }
        }
    }
    assert!(
        node_dir("m5").join("nodes/node/events.jsonl").is_file(),
        "the joiner works in the directory it was started in"
    );
    let first = of(&logs["m5"], "outer_step");
    let join_s = first
        .first()
        .and_then(|e| e["t"].as_u64())
        .map(|t| t.saturating_sub(common::now_ms() - joined_at.elapsed().as_millis() as u64))
        .unwrap_or(0) as f64
        / 1000.0;
    let bytes: Vec<u64> = of(&logs["m1"], "uploaded")
        .iter()
        .filter_map(|e| e["bytes"].as_u64())
        .collect();
    println!(
        "multi-host: joiner's first outer step {join_s:.1} s after it started; miner upload \
         {} bytes per window; {} windows",
        bytes.iter().sum::<u64>() / bytes.len().max(1) as u64,
        reference.len()
    );

    // Rewards paid on the chain follow the consensus weights.
    let out = lab.covenant(
        "m5",
        &env,
        &[
            "chain",
            "pay-epoch",
            "--chain",
            &url,
            "--contract",
            &contract,
            "--key",
            deployer.to_str().unwrap(),
        ],
    );
    let paid: Value = serde_json::from_str(out.trim()).unwrap();
    let credited: BTreeMap<String, f64> = paid["credited"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(u, v)| (u.clone(), v.as_f64().unwrap() / 1e18))
        .collect();
    assert!(credited.len() >= 2, "rewards paid to {credited:?}");
    let follows = |weights: &Value| {
        weights.as_object().unwrap().iter().all(|(u, w)| {
            let got = credited.get(u).copied().unwrap_or(0.0);
            (got - w.as_f64().unwrap()).abs() < 1e-9
        })
    };
    assert!(
        follows(&paid["weights_before"]) || follows(&paid["weights_after"]),
        "paid {credited:?} for weights {} / {}",
        paid["weights_before"],
        paid["weights_after"]
    );
}
