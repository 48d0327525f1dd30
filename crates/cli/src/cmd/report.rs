//! `covenant report RUN_DIR`: one self-contained HTML file (inline SVG plots, no scripts, no
//! outside files) about a run: loss against window and tokens, bytes, per-peer scores and
//! weights over time, utilisation, joins and faults by window, and tables of peers, nodes and
//! incidents.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use covenant_core::Uid;

use crate::report::{human, write_atomic, LinePlot, Series};
use crate::run_view::{self, verdict_label, IncidentKind, RunView};

#[derive(clap::Args)]
pub struct Args {
    /// The run directory (`covenant demo --out`, `covenant network init --run`).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Where to write the report. Default: RUN_DIR/report.html.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.run.join("report.html"));
    let html = build(&a.run)?;
    write_atomic(&out, html.as_bytes())?;
    eprintln!(
        "report: {} ({})",
        out.display(),
        human(html.len() as f64) + "B"
    );
    Ok(())
}

/// What the report is made of.
struct Facts {
    view: RunView,
    spec: Option<covenant_node::RunSpec>,
    /// The chain's consensus weight (reward share) per uid at the end, when the run has a chain.
    rewards: Option<BTreeMap<Uid, f64>>,
    /// Why the chain could not be read.
    chain_note: Option<String>,
}

/// The report of the run in `run` as an HTML document.
pub fn build(run: &Path) -> Result<String> {
    run_view::check_run_dir(run)?;
    let mut spec = match run.join("run.json") {
        p if p.is_file() => Some(covenant_node::RunSpec::read(&p)?),
        _ => None,
    };
    let mut view = RunView::default();
    view.poll(run)?;
    let (rewards, chain_note) = match read_chain(run) {
        Ok(Some((genesis, r))) => {
            // The chain's genesis holds the run's timing (window length, block time).
            if let Some(s) = spec.as_mut() {
                s.params = s.params_for(&genesis)?;
            }
            (Some(r), None)
        }
        Ok(None) => (None, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let f = Facts {
        view,
        spec,
        rewards,
        chain_note,
    };
    Ok(page(run, &f))
}

/// The embedded chain's genesis and its rewards (consensus weights) now, if the run has one.
fn read_chain(run: &Path) -> Result<Option<(covenant_net::Genesis, BTreeMap<Uid, f64>)>> {
    let dir = run.join("chain");
    if !dir.is_dir() {
        return Ok(None);
    }
    use covenant_net::Chain;
    let ledger = covenant_net::Ledger::open(&dir)
        .with_context(|| format!("opening the chain in {}", dir.display()))?;
    let m = ledger.metagraph().context("reading the chain")?;
    Ok(Some((
        ledger.genesis().clone(),
        m.rewards().into_iter().collect(),
    )))
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1100px;color:#222}\
h1{font-size:26px}h2{font-size:20px;margin-top:32px;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:14px;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}\
td.l,th.l{text-align:left}.plot{margin:12px 0}.fault{color:#b00}.join{color:#070}\
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}.note{color:#666}";

fn page(run: &Path, f: &Facts) -> String {
    let mut h = String::new();
    let name = f.spec.as_ref().map_or("?".into(), |s| s.name.clone());
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>covenant report: {}</title><style>{STYLE}</style></head><body>",
        esc(&name)
    );
    let _ = write!(h, "<h1>covenant run report: {}</h1>", esc(&name));
    h.push_str(&summary(run, f));
    h.push_str("<h2>Loss</h2><div class=\"grid\">");
    h.push_str(&plot(&loss_by_window(&f.view)));
    h.push_str(&plot(&loss_by_tokens(f)));
    h.push_str("</div><h2>Bytes and utilisation</h2><div class=\"grid\">");
    h.push_str(&plot(&bytes_by_window(&f.view)));
    h.push_str(&plot(&utilisation_by_window(&f.view)));
    h.push_str("</div><h2>Scores and weights per peer</h2><div class=\"grid\">");
    h.push_str(&plot(&per_peer(&f.view, "Score by window", "score", |l| {
        l.score
    })));
    h.push_str(&plot(&per_peer(
        &f.view,
        "Weight by window",
        "weight",
        |l| l.weight,
    )));
    h.push_str("</div><h2>Joins and faults by window</h2><div class=\"grid\">");
    h.push_str(&plot(&incidents_by_window(&f.view)));
    h.push_str("</div>");
    h.push_str(&peer_table(f));
    h.push_str(&node_table(&f.view));
    h.push_str(&incidents(&f.view));
    h.push_str("</body></html>\n");
    h
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn summary(run: &Path, f: &Facts) -> String {
    let v = &f.view;
    let vals: Vec<(u64, f64)> = v
        .windows
        .iter()
        .filter_map(|(w, x)| Some((*w, x.val_loss?)))
        .collect();
    let loss = match (vals.first(), vals.last()) {
        (Some(a), Some(b)) => format!(
            "{:.4} after window {} → {:.4} after window {}",
            a.1, a.0, b.1, b.0
        ),
        _ => "no validation loss reported".into(),
    };
    let differ: Vec<String> = v
        .windows
        .iter()
        .filter(|(_, x)| x.agree() == Some(false))
        .map(|(w, _)| w.to_string())
        .collect();
    let agree = if differ.is_empty() {
        "agreed after every outer step".to_string()
    } else {
        format!(
            "<b class=\"fault\">DIFFERED</b> after window(s) {}",
            differ.join(", ")
        )
    };
    let mut up = v.uploads.clone();
    up.sort_unstable();
    let upload = up
        .get(up.len() / 2)
        .map_or("—".into(), |b| human(*b as f64) + "B");
    let spec = f.spec.as_ref().map_or(String::new(), |s| {
        format!(
            "<tr><th class=\"l\">model</th><td class=\"l\">preset {}, H = {}, batch {}, windows of {} s</td></tr>",
            esc(&s.preset),
            s.params.inner_steps,
            s.batch,
            s.params.window_ms() / 1000
        )
    });
    let roles = v.role_counts();
    let mut s = format!(
        "<table><tr><th class=\"l\">run directory</th><td class=\"l\">{}</td></tr>{spec}\
         <tr><th class=\"l\">nodes</th><td class=\"l\">{} miners, {} validators</td></tr>\
         <tr><th class=\"l\">windows with an outer step</th><td class=\"l\">{}</td></tr>\
         <tr><th class=\"l\">validation loss ({})</th><td class=\"l\">{loss}</td></tr>\
         <tr><th class=\"l\">replicas</th><td class=\"l\">{agree}</td></tr>\
         <tr><th class=\"l\">median upload</th><td class=\"l\">{upload} a miner a window</td></tr>\
         <tr><th class=\"l\">joins / faults</th><td class=\"l\">{} / {}</td></tr></table>",
        esc(&run.display().to_string()),
        roles.0,
        roles.1,
        v.windows.values().filter(|x| !x.hashes.is_empty()).count(),
        esc(v.reference_validator().unwrap_or("no validator")),
        v.incidents
            .iter()
            .filter(|i| i.kind == IncidentKind::Join)
            .count(),
        v.incidents
            .iter()
            .filter(|i| i.kind == IncidentKind::Fault)
            .count(),
    );
    if let Some(n) = &f.chain_note {
        let _ = write!(
            s,
            "<p class=\"note\">The chain could not be read: {}</p>",
            esc(n)
        );
    }
    s
}

/// A plot as inline SVG, or a note when it has nothing to show.
fn plot(p: &LinePlot) -> String {
    match p.svg(540, 340) {
        Ok(svg) => format!("<div class=\"plot\">{svg}</div>"),
        Err(_) => format!("<p class=\"note\">{}: no data yet.</p>", esc(p.title)),
    }
}

fn loss_by_window(v: &RunView) -> LinePlot<'static> {
    let series = |label: &str, pick: &dyn Fn(&run_view::WindowFacts) -> Option<f64>| Series {
        label: label.into(),
        points: v
            .windows
            .iter()
            .filter_map(|(w, f)| Some((*w as f64, pick(f)?)))
            .collect(),
    };
    LinePlot {
        title: "Loss by window",
        x_label: "window",
        y_label: "loss",
        series: vec![
            series("validation", &|f| f.val_loss),
            series("train (miners' mean)", &|f| f.mean_train_loss()),
        ],
    }
}

fn loss_by_tokens(f: &Facts) -> LinePlot<'static> {
    let per_step = f.spec.as_ref().map_or(0, |s| {
        let seq = covenant_model::ModelConfig::preset(&s.preset).map_or(0, |m| m.max_seq_len);
        s.batch * seq
    }) as f64;
    let mut tokens = 0.0;
    let mut points = Vec::new();
    for x in f.view.windows.values() {
        tokens += x.inner_steps as f64 * per_step;
        if let Some(l) = x.val_loss {
            points.push((tokens, l));
        }
    }
    LinePlot {
        title: "Validation loss by tokens trained",
        x_label: "tokens (all miners' inner steps × batch × sequence length)",
        y_label: "loss",
        series: vec![Series {
            label: "validation".into(),
            points,
        }],
    }
}

fn bytes_by_window(v: &RunView) -> LinePlot<'static> {
    LinePlot {
        title: "Bytes uploaded per window (all miners)",
        x_label: "window",
        y_label: "bytes",
        series: vec![Series {
            label: "uploaded".into(),
            points: v
                .windows
                .iter()
                .filter(|(_, f)| f.bytes_up > 0)
                .map(|(w, f)| (*w as f64, f.bytes_up as f64))
                .collect(),
        }],
    }
}

fn utilisation_by_window(v: &RunView) -> LinePlot<'static> {
    let mut by_miner: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (w, f) in &v.windows {
        for (m, u) in &f.utilisation {
            by_miner.entry(m).or_default().push((*w as f64, *u));
        }
    }
    LinePlot {
        title: "Compute utilisation by window",
        x_label: "window",
        y_label: "inner ÷ (inner + outer + wait)",
        series: by_miner
            .into_iter()
            .map(|(m, points)| Series {
                label: m.into(),
                points,
            })
            .collect(),
    }
}

fn per_peer(
    v: &RunView,
    title: &'static str,
    y: &'static str,
    pick: fn(&covenant_core::driver::events::PeerLine) -> f64,
) -> LinePlot<'static> {
    LinePlot {
        title,
        x_label: "window",
        y_label: y,
        series: v
            .peer_history
            .iter()
            .map(|(uid, h)| Series {
                label: peer_label(v, *uid),
                points: h.iter().map(|(w, l)| (*w as f64, pick(l))).collect(),
            })
            .collect(),
    }
}

/// Joins and faults per window (every window with events, so that quiet windows show as zero).
fn incidents_by_window(v: &RunView) -> LinePlot<'static> {
    let count = |kind: IncidentKind, label: &str| Series {
        label: label.into(),
        points: v
            .windows
            .keys()
            .map(|w| {
                let n = v
                    .incidents
                    .iter()
                    .filter(|i| i.kind == kind && i.window == Some(*w))
                    .count();
                (*w as f64, n as f64)
            })
            .collect(),
    };
    LinePlot {
        title: "Joins and faults by window",
        x_label: "window",
        y_label: "events",
        series: vec![
            count(IncidentKind::Join, "joins"),
            count(IncidentKind::Fault, "faults"),
        ],
    }
}

fn peer_label(v: &RunView, uid: Uid) -> String {
    match v.name_of(uid) {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

fn peer_table(f: &Facts) -> String {
    let v = &f.view;
    let latest = v.peers();
    let mut uids: Vec<Uid> = latest.keys().copied().collect();
    if let Some(r) = &f.rewards {
        uids.extend(r.keys().filter(|u| !latest.contains_key(u)));
    }
    let mut s = String::from(
        "<h2>Peers</h2><table><tr><th>uid</th><th class=\"l\">name</th><th>windows aggregated</th>\
         <th>score</th><th>weight</th><th class=\"l\">last verdict</th><th>reward</th></tr>",
    );
    for uid in uids {
        let p = latest.get(&uid);
        let aggregated = v
            .windows
            .values()
            .filter(|w| w.peers.contains(&uid))
            .count();
        let num = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.4}"));
        let _ = write!(
            s,
            "<tr><td>{uid}</td><td class=\"l\">{}</td><td>{aggregated}</td><td>{}</td><td>{}</td>\
             <td class=\"l\">{}</td><td>{}</td></tr>",
            esc(v.name_of(uid).unwrap_or("")),
            num(p.map(|p| p.line.score)),
            num(p.map(|p| p.line.weight)),
            esc(&p.map_or("—".into(), |p| verdict_label(&p.line.verdict))),
            num(f.rewards.as_ref().and_then(|r| r.get(&uid).copied())),
        );
    }
    s.push_str(
        "</table><p class=\"note\">Score, weight and verdict: the reference validator's last \
         report; reward: the chain's consensus weight at the end.</p>",
    );
    s
}

fn node_table(v: &RunView) -> String {
    let mut s = String::from(
        "<h2>Nodes</h2><table><tr><th class=\"l\">node</th><th class=\"l\">role</th><th>uid</th>\
         <th>utilisation</th><th>inner s</th><th>outer s</th><th>wait s</th><th>bytes up</th>\
         <th>bytes down</th><th>peak memory</th></tr>",
    );
    for (name, n) in &v.nodes {
        let st = Some(n.finished.as_ref().unwrap_or(&n.stats))
            .filter(|s| s.wall_ms > 0 || s.inner_ms > 0 || s.outer_ms > 0);
        let secs =
            |ms: Option<u64>| ms.map_or("—".into(), |ms| format!("{:.1}", ms as f64 / 1e3));
        let util = st
            .filter(|s| s.inner_ms > 0)
            .and_then(|s| s.utilisation())
            .map_or("—".into(), |u| format!("{:.1}%", 100.0 * u));
        let _ = write!(
            s,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{util}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&n.role),
            n.uid.map_or("—".into(), |u| u.to_string()),
            secs(st.map(|s| s.inner_ms)),
            secs(st.map(|s| s.outer_ms)),
            secs(st.map(|s| s.wait_ms)),
            st.map_or("—".into(), |s| human(s.bytes_up as f64) + "B"),
            st.map_or("—".into(), |s| human(s.bytes_down as f64) + "B"),
            n.peak_rss
                .map_or("—".into(), |b| format!("{:.0} MiB", b as f64 / f64::from(1 << 20))),
        );
    }
    s.push_str(
        "</table><p class=\"note\">Utilisation: inner ÷ (inner + outer + wait), from the \
         node's final statistics, or its running totals at its last outer step while it runs.</p>",
    );
    s
}

fn incidents(v: &RunView) -> String {
    let mut s = format!("<h2>Joins and faults ({})</h2>", v.incidents.len());
    if v.incidents.is_empty() {
        s.push_str("<p class=\"note\">None.</p>");
        return s;
    }
    s.push_str(
        "<table><tr><th>window</th><th class=\"l\">node</th><th class=\"l\">kind</th>\
         <th class=\"l\">what</th></tr>",
    );
    for i in &v.incidents {
        let (class, kind) = match i.kind {
            IncidentKind::Join => ("join", "join"),
            IncidentKind::Fault => ("fault", "fault"),
        };
        let _ = write!(
            s,
            "<tr class=\"{class}\"><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{kind}</td>\
             <td class=\"l\">{}</td></tr>",
            i.window.map_or("—".into(), |w| w.to_string()),
            esc(&i.node),
            esc(&i.text),
        );
    }
    s.push_str("</table>");
    s
}
