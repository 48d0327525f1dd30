//! `covenant scenario`: honest and adversarial miners with validators on loopback, then the
//! same honest miners alone, and per adversarial behaviour: windows until its weight falls to zero
//! (and stays there), its share of the total weight, whether it was ever aggregated, whether it
//! was caught copying, and the honest miners' validation loss against the all-honest run.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use covenant_core::driver::NodeEvent;
use covenant_node::analysis::{self, Participant};
use covenant_node::Behaviour;

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
    /// Switch off the validators' own-data check in both runs.
    #[arg(long)]
    pub no_own_data_check: bool,
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
        no_own_data_check: a.no_own_data_check,
        packed_indices: false,
        grace_secs: Some(a.grace_secs),
        behaviours,
        store: None,
        chain: demo::DemoChain::Embedded,
    }
}

/// A node's events from its log.
fn events(run: &Path, name: &str) -> Vec<NodeEvent> {
    covenant_node::log::read_events(&run.join("nodes").join(name).join("events.jsonl"))
        .into_iter()
        .map(|l| l.event)
        .collect()
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
        analysis::final_val(&events(&dir, "validator-1"))
    };
    let miners: Vec<Participant> = behaviours
        .iter()
        .enumerate()
        .map(|(i, &behaviour)| {
            let name = covenant_node::network::miner_name(i);
            Participant {
                uid: analysis::uid_of(&events(&attack_dir, &name)),
                name,
                behaviour,
            }
        })
        .collect();
    let report = analysis::analyse(&events(&attack_dir, "validator-1"), &miners, baseline);
    report::write_atomic(
        &a.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let md = analysis::markdown(&report);
    report::write_atomic(&a.out.join("report.md"), md.as_bytes())?;
    println!("{md}");
    Ok(())
}
