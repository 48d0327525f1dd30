//! `covenant train --algo ddp|diloco|sparseloco`: R replicas in one process on disjoint data,
//! to compare the optimizers on equal terms (same model, data, token budget and inner AdamW).
//!
//! * DDP: gradients averaged every step. With identical replicas this is exactly one model
//!   trained on the union of the replicas' batches, which is how it is run here; each replica
//!   would send its dense fp32 gradient every step.
//! * DiLoCo: every H inner steps the dense pseudo-gradients θ0 − θ_r are averaged and applied
//!   with outer SGD + Nesterov momentum; each replica sends its dense fp32 pseudo-gradient.
//! * SparseLoCo: every H inner steps each replica compresses its pseudo-gradient with error
//!   feedback (top-k + 2-bit, the `codec` crate), the signed wire payloads are decoded and
//!   aggregated (median-norm clipping, per-coordinate mean) and applied with outer SGD; each
//!   replica sends its encoded payload.
//!
//! Replica r's batch at inner step s is sequences `(s·R + r)·B .. +B` of the seeded epoch order,
//! so replicas never share data within an epoch and DDP sees exactly the same sequences.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use covenant_codec::{wire, CodecConfig, DeltaSource, ModelLayout};
use covenant_data::Split;
use covenant_model::{ParamView, Trainer};
use indicatif::{ProgressBar, ProgressStyle};

use super::train::{self, parse_device, DataOrder};
use crate::report::{self, LinePlot, Series};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// One model, no replicas (the plain baseline trainer).
    Single,
    /// Gradients averaged every step.
    Ddp,
    /// Dense pseudo-gradients averaged every H steps, outer SGD with Nesterov momentum.
    Diloco,
    /// Compressed pseudo-gradients (top-k + 2-bit, error feedback) every H steps, outer SGD.
    Sparseloco,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Single => "single",
            Algo::Ddp => "ddp",
            Algo::Diloco => "diloco",
            Algo::Sparseloco => "sparseloco",
        }
    }
}

/// One evaluation point of a replica run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub inner_step: u64,
    /// Tokens consumed by all replicas together.
    pub tokens: u64,
    pub val_loss: f32,
    /// Bytes one replica has sent so far.
    pub bytes_per_replica: u64,
    pub elapsed: f64,
    /// SparseLoCo diagnostics: mean over replicas of the error-feedback buffer's L2 norm after
    /// compression, the mean median-norm clip factor over tensors and peers, and the number of
    /// tensors skipped as non-finite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse: Option<SparseStats>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SparseStats {
    pub ef_norm: f32,
    pub mean_clip_factor: f32,
    pub skipped_tensors: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    pub algo: Algo,
    pub replicas: usize,
    pub inner_steps: u64,
    pub points: Vec<Point>,
}

impl RunResult {
    pub fn final_loss(&self) -> f32 {
        self.points.last().map(|p| p.val_loss).unwrap_or(f32::NAN)
    }
    pub fn bytes(&self) -> u64 {
        self.points.last().map(|p| p.bytes_per_replica).unwrap_or(0)
    }
}

/// Runs every algorithm in `algos` with the same settings into `out/<algo>/`, then writes
/// `out/compare.csv`, `out/compare.png` and `out/compare.md`, and prints the table.
pub fn run_all(args: &train::Args, algos: &[Algo]) -> Result<Vec<RunResult>> {
    let mut results = Vec::new();
    for &algo in algos {
        let saved = args.out.join(algo.name()).join("result.json");
        if args.reuse_results {
            let bytes = std::fs::read(&saved)
                .with_context(|| format!("--reuse-results: reading {}", saved.display()))?;
            let r: RunResult = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a result file", saved.display()))?;
            ensure!(
                r.algo == algo,
                "{} holds a {} run",
                saved.display(),
                r.algo.name()
            );
            results.push(r);
            continue;
        }
        let r = run_one(args, algo)?;
        eprintln!(
            "{}: final validation loss {:.4}, {} sent per replica",
            algo.name(),
            r.final_loss(),
            bytes_h(r.bytes())
        );
        results.push(r);
    }
    write_comparison(&args.out, &results)?;
    print!("{}", comparison_table(&results));
    Ok(results)
}

fn bytes_h(b: u64) -> String {
    format!("{}B", report::human(b as f64))
}

pub fn comparison_table(results: &[RunResult]) -> String {
    let dense = results
        .iter()
        .find(|r| r.algo == Algo::Diloco)
        .map(|r| r.bytes());
    let mut s = String::from(
        "| algorithm | final val loss | bytes sent per replica | DiLoCo's bytes ÷ these |\n|---|---|---|---|\n",
    );
    for r in results {
        let ratio = match dense {
            Some(d) if r.bytes() > 0 => format!("{:.2}", d as f64 / r.bytes() as f64),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {} | {:.4} | {} ({}) | {} |\n",
            r.algo.name(),
            r.final_loss(),
            r.bytes(),
            bytes_h(r.bytes()),
            ratio
        ));
    }
    s
}

fn write_comparison(out: &Path, results: &[RunResult]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut rows = Vec::new();
    for r in results {
        for p in &r.points {
            rows.push(vec![
                r.algo.name().to_string(),
                p.inner_step.to_string(),
                p.tokens.to_string(),
                format!("{:.5}", p.val_loss),
                p.bytes_per_replica.to_string(),
                format!("{:.1}", p.elapsed),
            ]);
        }
    }
    report::write_csv(
        &out.join("compare.csv"),
        &[
            "algo",
            "inner_step",
            "tokens",
            "val_loss",
            "bytes_per_replica",
            "elapsed_s",
        ],
        &rows,
    )?;
    report::write_atomic(
        &out.join("compare.md"),
        comparison_table(results).as_bytes(),
    )?;
    LinePlot {
        title: "validation loss vs tokens (all replicas together)",
        x_label: "tokens",
        y_label: "validation loss (nats)",
        series: results
            .iter()
            .map(|r| Series {
                label: format!("{} ({} sent/replica)", r.algo.name(), bytes_h(r.bytes())),
                points: r
                    .points
                    .iter()
                    .map(|p| (p.tokens as f64, p.val_loss as f64))
                    .collect(),
            })
            .collect(),
    }
    .write_png(&out.join("compare.png"))
}

/// Flat parameters of every tensor, in the model's order (moved out of the views, not copied).
fn flat(views: Vec<ParamView>) -> Vec<Vec<f32>> {
    views.into_iter().map(|v| v.data).collect()
}

fn views_from(template: &[ParamView], data: &[Vec<f32>]) -> Vec<ParamView> {
    template
        .iter()
        .zip(data)
        .map(|(t, d)| ParamView {
            name: t.name.clone(),
            shape: t.shape.clone(),
            data: d.clone(),
        })
        .collect()
}

/// Runs one algorithm with R replicas (or one model for DDP).
pub fn run_one(args: &train::Args, algo: Algo) -> Result<RunResult> {
    ensure!(algo != Algo::Single, "run_one is for replica algorithms");
    let r_count = args.replicas;
    let h = args.inner_steps;
    ensure!(r_count >= 1, "--replicas must be at least 1");
    ensure!(h >= 1, "--inner-steps must be at least 1");
    ensure!(
        (0.0..=1.0).contains(&args.ef_decay),
        "--ef-decay must be in 0..=1, not {}",
        args.ef_decay
    );
    ensure!(
        args.steps >= h,
        "--steps ({}) must be at least --inner-steps ({h})",
        args.steps
    );
    let device = parse_device(&args.device)?;
    covenant_model::set_num_threads(args.threads);
    let (ds, data_dir) = train::open_data(args)?;
    let seq = ds.seq_len() as usize;
    let n_train = ds.num_samples(Split::Train);
    let per_step = (r_count * args.batch) as u64;
    ensure!(
        n_train >= per_step,
        "{} holds {n_train} training sequences, fewer than one step of {r_count} replicas × {}",
        data_dir.display(),
        args.batch
    );
    let (cfg, opt) = train::configs(args, &ds)?;
    let val_ids = train::spread_ids(ds.num_samples(Split::Val), args.eval_batches * args.batch);
    let out = args.out.join(algo.name());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // DDP runs as one model over the union batch; the others as R replicas.
    let n_models = if algo == Algo::Ddp { 1 } else { r_count };
    let mut trainers = (0..n_models)
        .map(|_| Trainer::new(cfg.clone(), opt.clone(), args.seed, device))
        .collect::<Result<Vec<_>, _>>()?;
    let template = trainers[0].params();
    let n_params: u64 = template.iter().map(|v| v.data.len() as u64).sum();
    let mut global: Vec<Vec<f32>> = template.iter().map(|v| v.data.clone()).collect();
    let dense_bytes = 4 * n_params;

    // SparseLoCo state: the codec layout, one error-feedback buffer per replica, signing keys.
    let layout = ModelLayout::new(
        CodecConfig {
            threads: args.threads,
            topk: args.topk,
            ef_decay: args.ef_decay,
            ..CodecConfig::default()
        },
        template
            .iter()
            .map(|v| (v.name.clone(), v.shape.as_slice())),
    )?;
    let mut ef: Vec<Vec<Vec<f32>>> = if algo == Algo::Sparseloco {
        (0..r_count)
            .map(|_| template.iter().map(|v| vec![0.0; v.data.len()]).collect())
            .collect()
    } else {
        Vec::new()
    };
    let keys: Vec<ed25519_dalek::SigningKey> = (0..r_count)
        .map(|r| ed25519_dalek::SigningKey::from_bytes(&[r as u8 + 1; 32]))
        .collect();
    // DiLoCo's outer momentum buffer.
    let mut momentum: Vec<Vec<f32>> = Vec::new();

    let outer_lr = args.outer_lr.unwrap_or(match algo {
        Algo::Diloco => 0.7,
        _ => 1.0,
    });
    let codec = if algo == Algo::Sparseloco {
        format!(", top-{} of 4096, β {}", args.topk, args.ef_decay)
    } else {
        String::new()
    };
    eprintln!(
        "{}: {} replicas × batch {} × seq {seq}, H={h}, {} inner steps, {:.2}M params, outer lr {outer_lr}{codec}",
        algo.name(),
        r_count,
        args.batch,
        args.steps,
        n_params as f64 / 1e6
    );

    let pb = ProgressBar::new(args.steps);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} ETA {eta}",
        )
        .expect("static template"),
    );
    pb.set_message(algo.name());
    let mut order = DataOrder::new(args.seed, n_train);
    let mut points = Vec::new();
    let mut bytes: u64 = 0;
    let t0 = Instant::now();
    let eval0 = train::eval(&mut trainers[0], &ds, &val_ids, args.batch)?;
    points.push(Point {
        inner_step: 0,
        tokens: 0,
        val_loss: eval0,
        bytes_per_replica: 0,
        elapsed: 0.0,
        sparse: None,
    });
    let mut buf: Vec<u32> = Vec::with_capacity(per_step as usize * seq);

    for step in 0..args.steps {
        // Inner steps.
        for (m, t) in trainers.iter_mut().enumerate() {
            buf.clear();
            let (first, count) = if algo == Algo::Ddp {
                (step * per_step, per_step)
            } else {
                (
                    (step * r_count as u64 + m as u64) * args.batch as u64,
                    args.batch as u64,
                )
            };
            for i in 0..count {
                buf.extend_from_slice(&ds.sample(Split::Train, order.id(first + i))?);
            }
            let stats = t.step(&buf, count as usize)?;
            if !stats.loss.is_finite() {
                bail!(
                    "{}: training diverged at step {} (loss {})",
                    algo.name(),
                    step + 1,
                    stats.loss
                );
            }
        }
        if algo == Algo::Ddp {
            bytes += dense_bytes;
        }
        let done = step + 1;
        // Outer step.
        if done % h == 0 || done == args.steps {
            let mut sparse = None;
            match algo {
                Algo::Ddp | Algo::Single => {}
                Algo::Diloco => {
                    let replicas: Vec<Vec<Vec<f32>>> =
                        trainers.iter().map(|t| flat(t.params())).collect();
                    if momentum.is_empty() {
                        momentum = global.iter().map(|g| vec![0.0; g.len()]).collect();
                    }
                    let mu = args.outer_momentum;
                    for (i, g) in global.iter_mut().enumerate() {
                        for (j, gj) in g.iter_mut().enumerate() {
                            let mut d = 0.0f32;
                            for rep in &replicas {
                                d += *gj - rep[i][j];
                            }
                            d /= r_count as f32;
                            let b = &mut momentum[i][j];
                            *b = mu * *b + d;
                            *gj -= outer_lr * (d + mu * *b);
                        }
                    }
                    bytes += dense_bytes;
                }
                Algo::Sparseloco => {
                    let mut payloads = Vec::with_capacity(r_count);
                    let mut sent = 0u64;
                    for (r, t) in trainers.iter().enumerate() {
                        let after = flat(t.params());
                        let deltas = DeltaSource::diffs(&global, &after);
                        let mut efs: Vec<&mut [f32]> =
                            ef[r].iter_mut().map(|e| e.as_mut_slice()).collect();
                        let tensors = covenant_codec::compress_model(&layout, &mut efs, &deltas)?;
                        // Through the real wire format: what is counted is what would be uploaded,
                        // and what is aggregated is what a receiver decodes.
                        let header = wire::PayloadHeader {
                            run_id: [7; 32],
                            window: done / h,
                            uid: r as u32,
                        };
                        let bytes_r = wire::encode(
                            &wire::Payload { header, tensors },
                            &layout,
                            &keys[r],
                            wire::EncodeOptions::default(),
                        )?;
                        sent = sent.max(bytes_r.len() as u64);
                        let expected = wire::ExpectedModel {
                            layout: &layout,
                            run_id: header.run_id,
                            window: header.window,
                            uid: header.uid,
                        };
                        let decoded = wire::decode(
                            &bytes_r,
                            &expected,
                            &keys[r].verifying_key(),
                            &wire::DecodeLimits::for_layout(&layout),
                        )?;
                        payloads.push(decoded.tensors);
                    }
                    let peers: Vec<&[covenant_codec::TensorPayload]> =
                        payloads.iter().map(|p| p.as_slice()).collect();
                    let mut theta: Vec<&mut [f32]> =
                        global.iter_mut().map(|g| g.as_mut_slice()).collect();
                    let stats = covenant_codec::aggregate_apply_model(
                        &layout,
                        &peers,
                        &mut theta,
                        Some(outer_lr),
                    )?;
                    bytes += sent;
                    let factors: Vec<f32> = stats
                        .iter()
                        .flat_map(|st| st.factors.iter().copied())
                        .collect();
                    let ef_norm = ef
                        .iter()
                        .map(|rep| {
                            rep.iter()
                                .flatten()
                                .map(|x| (*x as f64) * (*x as f64))
                                .sum::<f64>()
                                .sqrt()
                        })
                        .sum::<f64>()
                        / r_count as f64;
                    sparse = Some(SparseStats {
                        ef_norm: ef_norm as f32,
                        mean_clip_factor: factors.iter().sum::<f32>() / factors.len().max(1) as f32,
                        skipped_tensors: stats.iter().filter(|st| st.skipped).count(),
                    });
                }
            }
            if algo != Algo::Ddp {
                let views = views_from(&template, &global);
                for t in trainers.iter_mut() {
                    t.set_params(&views)?;
                }
            }
            let v = train::eval(&mut trainers[0], &ds, &val_ids, args.batch)?;
            points.push(Point {
                inner_step: done,
                tokens: done * per_step * seq as u64,
                val_loss: v,
                bytes_per_replica: bytes,
                elapsed: t0.elapsed().as_secs_f64(),
                sparse: sparse.clone(),
            });
            pb.set_message(format!("{} val {v:.3}", algo.name()));
            if pb.is_hidden() {
                let diag = sparse
                    .as_ref()
                    .map(|d| format!("  |e| {:.3}  clip {:.3}", d.ef_norm, d.mean_clip_factor))
                    .unwrap_or_default();
                eprintln!(
                    "{} step {done}/{}  val loss {v:.4}  sent/replica {}{diag}",
                    algo.name(),
                    args.steps,
                    bytes_h(bytes)
                );
            }
        }
        pb.set_position(done);
    }
    pb.finish_and_clear();
    let result = RunResult {
        algo,
        replicas: r_count,
        inner_steps: h,
        points,
    };
    report::write_atomic(
        &out.join("result.json"),
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    Ok(result)
}
