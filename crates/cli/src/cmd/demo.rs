//! `covenant demo`: the README's first command. Creates a run directory with the embedded chain
//! and directory stores, prepares the bundled corpus if needed, starts the validators and miners
//! as separate processes, shows per-window progress, stops after a set number of windows and
//! writes a summary with a loss plot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use covenant_core::driver::{NodeEvent, NodeStats};
use covenant_net::Chain;
use covenant_node::network::{self, NetworkTiming};
use serde_json::{json, Value};

use crate::report::{self, LinePlot, Series};
use crate::run_view::{IncidentKind, RunView, WindowFacts};

#[derive(clap::Args)]
pub struct Args {
    /// Run directory (replaced if it holds an earlier demo).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Model preset.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Miner processes.
    #[arg(long, default_value_t = 4)]
    pub miners: usize,
    /// Validator processes.
    #[arg(long, default_value_t = 2)]
    pub validators: usize,
    /// Windows to train (the run stops after window N − 1).
    #[arg(long, default_value_t = 20)]
    pub windows: u64,
    /// Window length in seconds.
    #[arg(long, default_value_t = 20)]
    pub window_secs: u64,
    /// Inner steps per window (H).
    #[arg(long, default_value_t = 30)]
    pub inner_steps: u32,
    /// Sequences per inner step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Miners train the next window while the last one is gathered (docs/NODES.md, "Overlap").
    #[arg(long)]
    pub overlap: bool,
    /// Switch off the validators' own-data check (docs/NODES.md).
    #[arg(long)]
    pub no_own_data_check: bool,
    /// Miners send 12-bit packed indices, as the reference, instead of Rice-coded ones
    /// (docs/WIRE.md).
    #[arg(long)]
    pub packed_indices: bool,
    /// Upload grace period in seconds (default: a quarter of the window, 2..=10).
    #[arg(long)]
    pub grace_secs: Option<u64>,
    /// Behaviour of each miner, in order (the rest are honest); set by `covenant scenario`.
    #[arg(skip)]
    pub behaviours: Vec<covenant_node::Behaviour>,
    /// Store all buckets under this prefix instead of <out>/store: s3://bucket/prefix (connection
    /// from COVENANT_S3_CONFIG / AWS_* variables) or a directory.
    #[arg(long)]
    pub store: Option<String>,
    /// The chain: `embedded` (the run directory's ledger) or `anvil` (a local EVM node started
    /// for the demo, with the `Subnet` contract deployed on it; nodes join by its address).
    #[arg(long, value_enum, default_value_t = DemoChain::Embedded)]
    pub chain: DemoChain,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoChain {
    Embedded,
    Anvil,
}

/// `$COVENANT_CACHE`, else `.cache/covenant` under the current directory.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("COVENANT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache/covenant"))
}

/// The bundled corpus prepared at sequence length `seq` (cached; prepared on first use).
pub fn bundled_data_for(seq: usize) -> Result<PathBuf> {
    let dir = cache_dir().join(format!("data/bundled-seq{seq}"));
    covenant_data::prepare_bundled(&dir, seq as u32)
        .with_context(|| format!("preparing the bundled corpus in {}", dir.display()))?;
    Ok(dir)
}

pub fn run(a: Args) -> Result<()> {
    run_network(&a).map(|_| ())
}

/// Runs the network described by `a` and returns its summary (also written to summary.json).
pub fn run_network(a: &Args) -> Result<Value> {
    ensure!(a.windows >= 1, "--windows must be at least 1");
    ensure!(
        a.miners >= 1 && a.miners <= 32,
        "--miners must be in 1..=32"
    );
    ensure!(
        a.validators >= 1 && a.validators <= 8,
        "--validators must be in 1..=8"
    );
    ensure!(a.window_secs >= 4, "--window-secs must be at least 4");
    let t0 = Instant::now();
    let seq = covenant_model::ModelConfig::preset(&a.preset)?.max_seq_len;
    eprintln!("preparing the bundled corpus (sequence length {seq}) …");
    bundled_data_for(seq)?;
    let cache = std::fs::canonicalize(cache_dir()).context("resolving the cache directory")?;
    if a.out.exists() {
        ensure!(
            a.out.join("run.json").is_file()
                || std::fs::read_dir(&a.out)
                    .with_context(|| format!("reading {}", a.out.display()))?
                    .next()
                    .is_none(),
            "{} exists and is not a network demo run directory (an older single-process demo wrote there too): remove it or choose another --out",
            a.out.display()
        );
        std::fs::remove_dir_all(&a.out)
            .with_context(|| format!("removing the old {}", a.out.display()))?;
    }
    let init = super::node::InitArgs {
        run: a.out.clone(),
        validators: a.validators,
        start_in: 20,
        spec: super::node::SpecArgs {
            name: "demo".into(),
            preset: a.preset.clone(),
            window_secs: a.window_secs,
            grace_secs: a.grace_secs.unwrap_or((a.window_secs / 4).clamp(2, 10)),
            inner_steps: a.inner_steps,
            batch: a.batch,
            checkpoint_every: 5,
            overlap: a.overlap,
            no_own_data_check: a.no_own_data_check,
            packed_indices: a.packed_indices,
        },
    };
    let mut spec = super::node::spec_of(&init.spec);
    let start_in = Duration::from_secs(init.start_in);
    let names: Vec<(String, &str)> = (0..a.validators)
        .map(|i| (network::validator_name(i), "validator"))
        .chain((0..a.miners).map(|i| (network::miner_name(i), "miner")))
        .collect();
    let store_of = |name: &str| match &a.store {
        Some(prefix) => format!("{}/{name}", prefix.trim_end_matches('/')),
        None => network::default_store_url(&a.out, name),
    };
    // Uids in name order (validators, then miner-1, miner-2, …), not in start-up order: the
    // same miner trains the same data pools in every run (the scenario's two runs compare).
    let stores: Vec<(String, String)> = names
        .iter()
        .map(|(n, _)| (n.clone(), store_of(n)))
        .collect();
    let (genesis, chain, local_chain) = match a.chain {
        DemoChain::Embedded => {
            let genesis = network::init(
                &a.out,
                &spec,
                a.validators,
                &NetworkTiming {
                    block_ms: 1000,
                    blocks_per_window: a.window_secs,
                    start_in_ms: start_in.as_millis() as u64,
                },
            )?;
            network::preregister(&a.out, &stores)?;
            let ledger = covenant_net::Ledger::open(&a.out.join("chain"))?;
            let chain: std::sync::Arc<dyn Chain> = std::sync::Arc::new(ledger);
            (genesis, chain, None)
        }
        DemoChain::Anvil => {
            spec.params.block_time_ms = 1_000;
            spec.params.blocks_per_window = a.window_secs;
            let roles: Vec<_> = names
                .iter()
                .zip(&stores)
                .map(|((n, role), (_, store))| {
                    let role = match *role {
                        "validator" => covenant_node::Role::Validator,
                        _ => covenant_node::Role::Miner,
                    };
                    (n.clone(), store.clone(), role)
                })
                .collect();
            let pb = crate::progress::spinner("starting anvil and deploying the run's contract");
            let c = super::demo_anvil::start(&a.out, &spec, &roles);
            pb.finish_and_clear();
            let c = c?;
            eprintln!(
                "contract {} on {} (anvil, 1-s blocks)",
                c.endpoint.contract, c.endpoint.url
            );
            (c.genesis.clone(), c.chain.clone(), Some(c))
        }
    };
    let chain_args = local_chain
        .as_ref()
        .map(|c| c.node_args())
        .unwrap_or_default();
    let last_window = a.windows - 1;
    eprintln!(
        "run directory {} · chain genesis {} · {} validators, {} miners · preset {} · {} windows of {} s (H = {}, batch {})",
        a.out.display(),
        {
            let (g, now) = (genesis.genesis_time_ms, covenant_node::now_ms());
            if g >= now {
                format!("in {} s", (g - now).div_ceil(1000))
            } else {
                format!("{} s ago", (now - g) / 1000)
            }
        },
        a.validators,
        a.miners,
        a.preset,
        a.windows,
        a.window_secs,
        a.inner_steps,
        a.batch
    );
    let exe = std::env::current_exe().context("locating the covenant binary")?;
    let mut nodes = Vec::new();
    for (name, role) in &names {
        let dir = a.out.join("nodes").join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_path = dir.join("log.txt");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg(role)
            .arg("--run")
            .arg(&a.out)
            .arg("--name")
            .arg(name)
            .arg("--until-window")
            .arg(last_window.to_string())
            .arg("--threads")
            .arg("1")
            .env("COVENANT_CACHE", &cache)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if *role == "miner" {
            let i: usize = name.trim_start_matches("miner-").parse().unwrap_or(1);
            let b = a
                .behaviours
                .get(i - 1)
                .copied()
                .unwrap_or(covenant_node::Behaviour::Honest);
            cmd.arg("--behaviour").arg(b.name());
        }
        if a.store.is_some() || local_chain.is_some() {
            cmd.arg("--store").arg(store_of(name));
        }
        cmd.args(&chain_args);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        nodes.push(child);
    }
    // What `covenant model info --roles` says each role needs, beside what each node used.
    let predicted = covenant_model::ModelConfig::preset(&a.preset)
        .ok()
        .and_then(|m| covenant_node::cost::roles(&spec, &m, a.miners as u64).ok())
        .map(|c| (c.miner.memory_total(), c.validator.memory_total()));
    let result = watch(a, chain.as_ref(), &mut nodes, last_window, predicted);
    for n in &mut nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    drop(local_chain);
    let mut summary = result?;
    summary["seconds"] = json!(t0.elapsed().as_secs_f64());
    let path = a.out.join("summary.json");
    report::write_atomic(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    eprintln!(
        "\nsummary: {}  loss plot: {}",
        path.display(),
        a.out.join("loss.png").display()
    );
    Ok(summary)
}

fn watch(
    a: &Args,
    chain: &dyn Chain,
    nodes: &mut [Child],
    last_window: u64,
    predicted: Option<(u64, u64)>,
) -> Result<Value> {
    let genesis = chain.genesis();
    let schedule = genesis.schedule();
    let deadline = Instant::now()
        + Duration::from_millis(
            schedule
                .window_start_ms(last_window + 2)
                .saturating_sub(covenant_node::now_ms()),
        )
        + Duration::from_secs(90);
    let mut seen = RunView::default();
    let mut printed: Option<u64> = None;
    let n_nodes = a.miners + a.validators;
    let waiting = crate::progress::spinner("nodes starting; waiting for window 0's outer step");
    eprintln!("window │ aggregated │ val loss │ train loss │ uploaded  │ replicas │ scores (uid: score / weight)");
    loop {
        for line in seen.poll(&a.out)? {
            if let NodeEvent::Error { message, .. } = &line.event {
                waiting.suspend(|| eprintln!("  ! {}: {message}", line.name));
            }
        }
        // Print windows whose validator report and all replicas' outer steps are in (or that
        // are old enough that stragglers will not come).
        let now_w = schedule.window_of_time(covenant_node::now_ms());
        loop {
            let next = printed.map(|p| p + 1).unwrap_or(0);
            let Some(f) = seen.windows.get(&next) else {
                break;
            };
            let complete = f.report.is_some() && f.hashes.len() >= n_nodes;
            if !(complete || (f.report.is_some() && now_w >= next + 3)) {
                break;
            }
            waiting.finish_and_clear();
            print_window(next, f);
            printed = Some(next);
        }
        let all_done = nodes
            .iter_mut()
            .all(|n| matches!(n.try_wait(), Ok(Some(_))));
        if all_done || Instant::now() > deadline {
            if !all_done {
                waiting.suspend(|| eprintln!("  ! stopping nodes that did not finish in time"));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    waiting.finish_and_clear();
    seen.poll(&a.out)?;
    for (w, f) in &seen.windows {
        if printed.is_none_or(|p| *w > p) && f.report.is_some() {
            print_window(*w, f);
        }
    }
    summarize(a, chain, &seen, predicted)
}

fn print_window(w: u64, f: &WindowFacts) {
    let train = f
        .mean_train_loss()
        .map_or("    —    ".to_string(), |l| format!("{l:9.4}"));
    let mut scores = String::new();
    for (uid, p) in f.report.iter().flatten() {
        scores.push_str(&format!("{uid}: {:.2}/{:.2}  ", p.score, p.weight));
    }
    let agree = match f.agree() {
        Some(true) => format!("{} agree", f.hashes.len()),
        Some(false) => "DIFFER".to_string(),
        None => "—".to_string(),
    };
    eprintln!(
        "{w:6} │ {:>10} │ {:8.4} │ {train} │ {:>9} │ {agree:>8} │ {scores}",
        format!("{:?}", f.peers),
        f.val_loss.unwrap_or(f64::NAN),
        report::human(f.bytes_up as f64) + "B",
    );
}

fn summarize(
    a: &Args,
    chain: &dyn Chain,
    seen: &RunView,
    predicted: Option<(u64, u64)>,
) -> Result<Value> {
    let genesis = chain.genesis();
    let facts = &seen.windows;
    let finished: BTreeMap<String, NodeStats> = seen
        .nodes
        .iter()
        .filter_map(|(n, f)| Some((n.clone(), f.finished?)))
        .collect();
    let memory: BTreeMap<String, u64> = seen
        .nodes
        .iter()
        .filter_map(|(n, f)| Some((n.clone(), f.peak_rss?)))
        .collect();
    let errors: Vec<String> = seen
        .incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::Fault)
        .map(|i| format!("{}: {}", i.node, i.text))
        .collect();
    let rows: Vec<(u64, f64)> = facts
        .iter()
        .filter_map(|(w, f)| f.val_loss.map(|v| (*w, v)))
        .collect();
    if rows.is_empty() {
        bail!(
            "no window completed; see the node logs under {}",
            a.out.join("nodes").display()
        );
    }
    let train: Vec<(f64, f64)> = facts
        .iter()
        .filter_map(|(w, f)| Some((*w as f64, f.mean_train_loss()?)))
        .collect();
    let val: Vec<(f64, f64)> = rows.iter().map(|(w, v)| (*w as f64, *v)).collect();
    LinePlot {
        title: &format!(
            "covenant demo: {} miners, {} validators, {}",
            a.miners, a.validators, a.preset
        ),
        x_label: "window",
        y_label: "loss",
        series: vec![
            Series {
                label: "validation loss (validator-1, after the window's outer step)".into(),
                points: val,
            },
            Series {
                label: "mean train loss of the miners' inner steps".into(),
                points: train,
            },
        ],
    }
    .write_png(&a.out.join("loss.png"))?;
    let mut csv = Vec::new();
    for (w, f) in facts {
        csv.push(vec![
            w.to_string(),
            f.val_loss.map(|v| format!("{v:.5}")).unwrap_or_default(),
            format!("{:?}", f.peers).replace(',', " "),
            f.bytes_up.to_string(),
            f.agree().map(|b| b.to_string()).unwrap_or_default(),
        ]);
    }
    report::write_csv(
        &a.out.join("windows.csv"),
        &[
            "window",
            "val_loss",
            "aggregated",
            "bytes_uploaded",
            "replicas_agree",
        ],
        &csv,
    )?;
    // Final weights from the chain.
    let m = chain.metagraph()?;
    let weights: BTreeMap<String, f64> = m
        .neurons
        .iter()
        .map(|n| (n.uid.to_string(), n.consensus_weight))
        .collect();
    let mut util = BTreeMap::new();
    for (name, st) in finished.iter().filter(|(_, st)| st.inner_steps > 0) {
        let secs = |ms: u64| ms as f64 / 1000.0;
        let (inner, outer, wait, wall) = (
            secs(st.inner_ms),
            secs(st.outer_ms),
            secs(st.wait_ms),
            secs(st.wall_ms),
        );
        util.insert(
            name.clone(),
            json!({ "inner_secs": inner, "outer_secs": outer, "wait_secs": wait, "wall_secs": wall,
                    "utilisation": st.utilisation().unwrap_or(0.0),
                    "wall_share": inner / wall.max(1e-9) }),
        );
    }
    let all_agree = facts.values().filter_map(WindowFacts::agree).all(|b| b);
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    eprintln!(
        "\nvalidation loss {:.4} (window {}) → {:.4} (window {}); replicas {}; consensus weights {:?}",
        first.1,
        first.0,
        last.1,
        last.0,
        if all_agree { "agreed after every outer step" } else { "DIFFERED in some window" },
        weights
    );
    for (name, u) in &util {
        eprintln!(
            "{name}: inner steps {:.1} s, outer steps + compression {:.2} s, waiting for outer steps {:.1} s → \
             compute utilisation {:.1}% (inner ÷ inner + outer + wait), {:.1}% of wall time",
            u["inner_secs"].as_f64().unwrap_or(0.0),
            u["outer_secs"].as_f64().unwrap_or(0.0),
            u["wait_secs"].as_f64().unwrap_or(0.0),
            100.0 * u["utilisation"].as_f64().unwrap_or(0.0),
            100.0 * u["wall_share"].as_f64().unwrap_or(0.0),
        );
    }
    let upload = upload_size(a, &seen.uploads);
    if let Some(u) = &upload {
        eprintln!(
            "uploads: {} a miner a window (median), {:.0}× below dense fp32 ({}, {})",
            report::human(u["median_bytes"].as_f64().unwrap_or(0.0)) + "B",
            u["below_dense"].as_f64().unwrap_or(0.0),
            report::human(u["dense_bytes"].as_f64().unwrap_or(0.0)) + "B",
            u["indices"].as_str().unwrap_or("?"),
        );
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    if !memory.is_empty() {
        let line: Vec<String> = memory
            .iter()
            .map(|(n, b)| format!("{n} {:.0} MiB", mib(*b)))
            .collect();
        let calc = predicted.map_or(String::new(), |(m, v)| {
            format!(
                " (model info --roles: miner {:.0} MiB, validator {:.0} MiB)",
                mib(m),
                mib(v)
            )
        });
        eprintln!("peak memory: {}{calc}", line.join(", "));
    }
    if !errors.is_empty() {
        eprintln!("{} error event(s); see the node logs", errors.len());
    }
    Ok(json!({
        "run": a.out,
        "preset": a.preset,
        "miners": a.miners,
        "validators": a.validators,
        "windows": a.windows,
        "window_secs": genesis.blocks_per_window * genesis.block_time_ms / 1000,
        "first_val_loss": first.1,
        "final_val_loss": last.1,
        "replicas_agree": all_agree,
        "consensus_weights": weights,
        "utilisation": util,
        "upload": upload,
        "peak_rss_mib": memory.iter().map(|(n, b)| (n.clone(), mib(*b))).collect::<BTreeMap<_, _>>(),
        "predicted_memory_mib": predicted.map(|(m, v)| json!({ "miner": mib(m), "validator": mib(v) })),
        "errors": errors,
    }))
}

/// The median upload after window 0 against the model's dense fp32 size.
fn upload_size(a: &Args, uploads: &[u64]) -> Option<Value> {
    let mut sizes = uploads.to_vec();
    sizes.sort_unstable();
    let median = *sizes.get(sizes.len() / 2)?;
    let dense = 4 * covenant_model::ModelConfig::preset(&a.preset)
        .ok()?
        .num_params();
    Some(json!({
        "median_bytes": median,
        "dense_bytes": dense,
        "below_dense": dense as f64 / median.max(1) as f64,
        "indices": if a.packed_indices { "12-bit packed indices" } else { "Rice-coded indices" },
    }))
}
