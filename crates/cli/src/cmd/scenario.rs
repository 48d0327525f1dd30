//! `covenant scenario`: honest and adversarial miners with validators on loopback, then the
//! same honest miners alone, and per adversarial behaviour: windows until its weight falls to zero
//! (and stays there), its share of the total weight, whether it was ever aggregated, whether it
//! was caught copying, and the honest miners' validation loss against the all-honest run.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use covenant_node::Behaviour;
use serde_json::{json, Value};

use super::demo;
use crate::report;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Output directory: attack/ and baseline/ runs, report.json, report.md.
    #[arg(long, default_value = "runs/scenario")]
    pub out: PathBuf,
    /// Honest miners.
    #[arg(long, default_value_t = 4)]
    pub honest: usize,
    /// Adversarial miners by behaviour, comma-separated: noise, scaled, sign-flip, copycat,
    /// stale, free-rider, echo, wrong-data, late, early, malformed, truncated, oversized,
    /// bad-signature, wrong-shape, nan, bad-index, silent.
    #[arg(long, value_delimiter = ',', default_value = "noise,scaled,copycat")]
    pub adversaries: Vec<Behaviour>,
    #[arg(long, default_value_t = 20)]
    pub windows: u64,
    #[arg(long, default_value_t = 10)]
    pub window_secs: u64,
    #[arg(long, default_value_t = 2)]
    pub grace_secs: u64,
    #[arg(long, default_value_t = 8)]
    pub inner_steps: u32,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Switch on the validators' own-data check (BMA) in both runs.
    #[arg(long)]
    pub own_data_check: bool,
    /// Skip the all-honest comparison run.
    #[arg(long)]
    pub no_baseline: bool,
}

fn net(a: &Args, out: PathBuf, behaviours: Vec<Behaviour>) -> demo::Args {
    demo::Args {
        out,
        preset: a.preset.clone(),
        miners: behaviours.len(),
        validators: a.validators,
        windows: a.windows,
        window_secs: a.window_secs,
        inner_steps: a.inner_steps,
        batch: a.batch,
        overlap: false,
        own_data_check: a.own_data_check,
        grace_secs: Some(a.grace_secs),
        behaviours,
        store: None,
    }
}

fn events(run: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("nodes").join(name).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn uid_of(run: &Path, name: &str) -> Option<u64> {
    events(run, name)
        .iter()
        .find(|e| e["event"] == "joined")
        .and_then(|e| e["uid"].as_u64())
}

/// Validation loss after the last outer step of validator-1.
fn final_val(run: &Path) -> Option<f64> {
    events(run, "validator-1")
        .iter()
        .filter(|e| e["event"] == "outer_step")
        .filter_map(|e| e["val_loss"].as_f64())
        .next_back()
}

pub fn run(a: Args) -> Result<()> {
    ensure!(a.honest >= 1, "--honest must be at least 1");
    ensure!(
        !a.adversaries.is_empty(),
        "name at least one adversarial behaviour"
    );
    ensure!(
        !a.adversaries.contains(&Behaviour::Honest),
        "`honest` is not an adversarial behaviour (use --honest)"
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut behaviours = vec![Behaviour::Honest; a.honest];
    behaviours.extend(a.adversaries.iter().copied());
    eprintln!(
        "== attack run: {} honest + {:?}",
        a.honest,
        a.adversaries.iter().map(|b| b.name()).collect::<Vec<_>>()
    );
    let attack_dir = a.out.join("attack");
    demo::run_network(&net(&a, attack_dir.clone(), behaviours.clone()))?;
    let baseline = if a.no_baseline {
        None
    } else {
        eprintln!("== baseline run: the {} honest miners alone", a.honest);
        let dir = a.out.join("baseline");
        demo::run_network(&net(&a, dir.clone(), vec![Behaviour::Honest; a.honest]))?;
        final_val(&dir)
    };
    let report = analyse(&attack_dir, &behaviours, a.honest, baseline)?;
    report::write_atomic(
        &a.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let md = markdown(&report);
    report::write_atomic(&a.out.join("report.md"), md.as_bytes())?;
    println!("{md}");
    Ok(())
}

/// Per-behaviour outcome of an attack run (from validator-1's reports and outer steps).
pub fn analyse(
    run: &Path,
    behaviours: &[Behaviour],
    honest: usize,
    baseline_val: Option<f64>,
) -> Result<Value> {
    let v = events(run, "validator-1");
    let reports: Vec<&Value> = v.iter().filter(|e| e["event"] == "report").collect();
    let steps: Vec<&Value> = v.iter().filter(|e| e["event"] == "outer_step").collect();
    let names: Vec<String> = (0..behaviours.len())
        .map(covenant_node::network::miner_name)
        .collect();
    let uids: Vec<Option<u64>> = names.iter().map(|n| uid_of(run, n)).collect();
    let weight = |r: &Value, uid: u64| {
        r["peers"][uid.to_string()]["weight"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let total = |r: &Value| -> f64 {
        r["peers"]
            .as_object()
            .map(|m| m.values().filter_map(|p| p["weight"].as_f64()).sum())
            .unwrap_or(0.0)
    };
    let adversary_uids: Vec<u64> = uids
        .iter()
        .zip(behaviours)
        .filter(|(_, b)| **b != Behaviour::Honest)
        .filter_map(|(u, _)| *u)
        .collect();
    let share_at = |w: u64| -> Option<f64> {
        let r = reports.iter().find(|r| r["window"] == w)?;
        let t = total(r);
        Some(if t > 0.0 {
            adversary_uids.iter().map(|&u| weight(r, u)).sum::<f64>() / t
        } else {
            0.0
        })
    };
    let last_window = reports
        .iter()
        .filter_map(|r| r["window"].as_u64())
        .max()
        .unwrap_or(0);
    let mut rows = Vec::new();
    for ((name, uid), b) in names.iter().zip(&uids).zip(behaviours) {
        if *b == Behaviour::Honest {
            continue;
        }
        let Some(uid) = *uid else {
            rows.push(json!({ "miner": name, "behaviour": b.name(), "error": "never joined" }));
            continue;
        };
        let ws: Vec<(u64, f64)> = reports
            .iter()
            .map(|r| (r["window"].as_u64().unwrap_or(0), weight(r, uid)))
            .collect();
        // First window from which its weight is zero until the end.
        let zero_from = ws
            .iter()
            .rev()
            .take_while(|(_, w)| *w == 0.0)
            .last()
            .map(|(w, _)| *w);
        let final_share = reports.last().map(|r| {
            let t = total(r);
            if t > 0.0 {
                weight(r, uid) / t
            } else {
                0.0
            }
        });
        let aggregated: Vec<u64> = steps
            .iter()
            .filter(|s| {
                s["peers"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x.as_u64() == Some(uid)))
            })
            .filter_map(|s| s["window"].as_u64())
            .collect();
        let copy_detected = reports.iter().any(|r| {
            r["copies"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x["copier"].as_u64() == Some(uid)))
        });
        rows.push(json!({
            "miner": name, "uid": uid, "behaviour": b.name(),
            "weight_zero_from_window": zero_from,
            "final_weight_share": final_share,
            "max_weight": ws.iter().map(|(_, w)| *w).fold(0.0, f64::max),
            "aggregated_windows": aggregated,
            "copy_detected": copy_detected,
        }));
    }
    let attack_val = final_val(run);
    Ok(json!({
        "honest": honest,
        "windows": last_window + 1,
        "adversary_share_after_10": share_at(10.min(last_window)),
        "adversary_share_final": share_at(last_window),
        "honest_final_val_loss": attack_val,
        "all_honest_final_val_loss": baseline_val,
        "val_loss_ratio": match (attack_val, baseline_val) { (Some(x), Some(y)) => Some(x / y), _ => None },
        "adversaries": rows,
    }))
}

fn markdown(r: &Value) -> String {
    let mut s = String::new();
    s.push_str("| behaviour | weight 0 from window | final weight share | max weight | aggregated in windows | copy detected |\n|---|---|---|---|---|---|\n");
    for row in r["adversaries"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row["behaviour"].as_str().unwrap_or("?"),
            row["weight_zero_from_window"]
                .as_u64()
                .map(|w| w.to_string())
                .unwrap_or_else(|| "never".into()),
            row["final_weight_share"]
                .as_f64()
                .map(|x| format!("{:.3}", x))
                .unwrap_or_default(),
            row["max_weight"]
                .as_f64()
                .map(|x| format!("{:.3}", x))
                .unwrap_or_default(),
            row["aggregated_windows"]
                .as_array()
                .map(|a| if a.is_empty() {
                    "none".to_string()
                } else {
                    format!("{} (first {})", a.len(), a[0])
                })
                .unwrap_or_default(),
            row["copy_detected"],
        ));
    }
    s.push_str(&format!(
        "\nadversaries' weight share after window 10: {}; at the end: {}\nhonest validation loss {} vs all-honest {} (ratio {})\n",
        fmt(&r["adversary_share_after_10"]),
        fmt(&r["adversary_share_final"]),
        fmt(&r["honest_final_val_loss"]),
        fmt(&r["all_honest_final_val_loss"]),
        fmt(&r["val_loss_ratio"]),
    ));
    s
}

fn fmt(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.4}"))
        .unwrap_or_else(|| "—".into())
}
