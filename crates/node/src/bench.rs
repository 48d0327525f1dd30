//! Figures measured on the production action code ([`crate::exec::Compute`]) with a real model:
//! a validator's evaluation throughput with synthetic uploads (`covenant bench eval`:
//! evaluations per second and peak memory, docs/SCALING.md), and where a window's time goes,
//! phase by phase (`covenant bench window`, docs/PERFORMANCE.md).

use std::sync::Arc;
use std::time::Instant;

use covenant_codec::{compress_model, DeltaSource, ModelLayout, TensorPayload};
use covenant_core::driver::{Action, Input};
use covenant_core::rng::{derive_seed, SplitMix64};
use covenant_core::{Uid, Window};
use covenant_data::Dataset;
use covenant_net::chain::ValidatorStake;
use covenant_net::{Genesis, Keypair, Ledger};

use crate::env::{Env, SystemClock, Trainer};
use crate::exec::{Compute, Identity, RunFacts, Shared};
use crate::sim::mem::{
    MemBucket, MemDisk, MemStores, MemWorld, NodeClock, StoreFaults, WorldClock,
};
use crate::RunSpec;

/// What to measure.
#[derive(Debug, Clone)]
pub struct EvalBench {
    /// Model preset (`tiny`, `small`, …).
    pub preset: String,
    /// Uploads evaluated per window.
    pub peers: usize,
    /// Windows measured (each screens and evaluates every peer).
    pub windows: u64,
}

/// What was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalBenchReport {
    pub preset: String,
    pub parameters: usize,
    pub peers: usize,
    /// Sequences per loss (`eval_sequences`) and per screen (`screen_sequences`).
    pub eval_sequences: usize,
    pub screen_sequences: usize,
    pub evaluations: usize,
    pub eval_secs: f64,
    pub screens: usize,
    pub screen_secs: f64,
    /// The process's peak resident memory (Linux `VmHWM`), bytes.
    pub peak_rss: Option<u64>,
}

impl EvalBenchReport {
    pub fn evaluations_per_sec(&self) -> f64 {
        self.evaluations as f64 / self.eval_secs.max(1e-9)
    }
    pub fn screens_per_sec(&self) -> f64 {
        self.screens as f64 / self.screen_secs.max(1e-9)
    }
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setting up the validator: {0}")]
    Setup(String),
    #[error("{what} failed: {message}")]
    Action { what: &'static str, message: String },
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// Runs the benchmark: a validator of a local run spec on `cfg.preset` screens and evaluates
/// `cfg.peers` uploads per window, `cfg.windows` times.
pub fn evaluations(cfg: &EvalBench, data: Arc<Dataset>) -> Result<EvalBenchReport, BenchError> {
    let BenchNode {
        shared,
        mut compute,
        layout,
        theta,
        params,
        parameters,
    } = bench_node("bench-eval", &cfg.preset, None, data)?;
    let peers: Vec<Uid> = (1..=cfg.peers as Uid).collect();
    let mut report = EvalBenchReport {
        preset: cfg.preset.clone(),
        parameters,
        peers: cfg.peers,
        eval_sequences: params.eval_sequences,
        screen_sequences: params.screen_sequences,
        evaluations: 0,
        eval_secs: 0.0,
        screens: 0,
        screen_secs: 0.0,
        peak_rss: None,
    };
    let lr = params.outer_lr_at(1) * params.eval_lr_factor;
    for window in 1..=cfg.windows {
        add_uploads(&shared, &layout, &theta, window, &peers)?;
        let t = Instant::now();
        let screened = compute.run(Action::Screen {
            window,
            peers: peers.clone(),
            lr,
            clip_to: peers.clone(),
        });
        report.screen_secs += t.elapsed().as_secs_f64();
        if let Input::Screened { result: Err(e), .. } = screened {
            return Err(action("a screen", e));
        }
        report.screens += peers.len();
        let t = Instant::now();
        for &uid in &peers {
            let evaluated = compute.run(Action::Evaluate {
                window,
                uid,
                lr,
                clip_to: peers.clone(),
            });
            if let Input::Evaluated { result: Err(e), .. } = evaluated {
                return Err(action("an evaluation", e));
            }
        }
        report.eval_secs += t.elapsed().as_secs_f64();
        report.evaluations += peers.len();
    }
    report.peak_rss = crate::env::peak_rss();
    Ok(report)
}

/// A node of a local run spec on `preset` with the real model, in-memory chain and stores,
/// and the production action code.
struct BenchNode {
    shared: Arc<Shared>,
    compute: Compute,
    layout: ModelLayout,
    /// The initial parameters.
    theta: Vec<Vec<f32>>,
    params: covenant_core::RunParams,
    parameters: usize,
}

fn bench_node(
    name: &str,
    preset: &str,
    inner_steps: Option<u32>,
    data: Arc<Dataset>,
) -> Result<BenchNode, BenchError> {
    let mut spec = RunSpec::local(name, preset);
    if let Some(h) = inner_steps {
        spec.params.inner_steps = h;
    }
    let key = Keypair::from_seed([7; 32]);
    let genesis = Genesis {
        run_id: spec.name.clone(),
        genesis_time_ms: 0,
        block_time_ms: 1000,
        blocks_per_window: 20,
        max_uids: 256,
        immunity_blocks: 100,
        validators: vec![ValidatorStake {
            key: key.public(),
            stake: 1,
        }],
        kappa: 0.5,
        registration_burn: 0,
        balances: Vec::new(),
    };
    let params = spec.params_for(&genesis).map_err(setup)?;
    let world_clock = Arc::new(WorldClock::new(0));
    let node_clock = Arc::new(NodeClock::new(world_clock.clone(), 0, 1));
    let stores = Arc::new(MemWorld::new(StoreFaults::default(), 1));
    let ledger = Arc::new(Ledger::in_memory(&genesis, world_clock).map_err(setup)?);
    let env = Env {
        clock: Arc::new(SystemClock),
        chain: ledger,
        stores: Arc::new(MemStores {
            world: stores.clone(),
            clock: node_clock.clone(),
        }),
        own: Arc::new(MemBucket::new(stores, node_clock, "validator")),
        local: Arc::new(MemDisk::default()),
        sink: Arc::new(crate::log::Memory::default()),
    };
    let model_cfg = spec
        .model_config(data.vocab_size() as usize)
        .map_err(setup)?;
    let model = covenant_model::Trainer::new(
        model_cfg,
        spec.optim_config(),
        spec.seed,
        covenant_model::DeviceChoice::Auto,
    )
    .map_err(setup)?;
    let trainer = crate::model_trainer::ModelTrainer::new(model, data, spec.batch);
    let shapes = trainer.shapes();
    let layout = ModelLayout::new(
        spec.codec_config(),
        shapes.iter().map(|(n, s)| (n.clone(), s.as_slice())),
    )
    .map_err(setup)?;
    let run = RunFacts {
        params: params.clone(),
        seed: spec.seed,
        batch: spec.batch,
        val_ids: vec![0],
        fingerprint_values: spec.fingerprint_values,
        checkpoint_every: spec.checkpoint_every,
        index_coding: spec.index_coding(),
    };
    let id = Identity {
        key,
        uid: 0,
        run_id: spec.name.clone(),
        run_hash: spec.hash(),
    };
    let shared =
        Arc::new(Shared::new(env, id, run, layout.clone(), &trainer, false).map_err(setup)?);
    let theta = trainer.params().map_err(setup)?;
    let parameters = theta.iter().map(Vec::len).sum();
    let compute = Compute::new(shared.clone(), Box::new(trainer));
    Ok(BenchNode {
        shared,
        compute,
        layout,
        theta,
        params,
        parameters,
    })
}

/// What [`window_phases`] measures.
#[derive(Debug, Clone)]
pub struct PhaseBench {
    pub preset: String,
    /// Uploads gathered, decoded, aggregated and evaluated per window (G).
    pub peers: usize,
    pub windows: u64,
    /// H (default: the local run spec's).
    pub inner_steps: Option<u32>,
}

/// Seconds per window of each phase, averaged over the windows measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PhaseReport {
    pub preset: String,
    pub parameters: usize,
    pub peers: usize,
    pub inner_steps: u32,
    pub upload_bytes: u64,
    /// H inner steps.
    pub inner: f64,
    /// The pseudo-gradient with error feedback compressed, encoded and signed.
    pub compress: f64,
    /// Verifying and decoding the G gathered payloads.
    pub decode: f64,
    /// Aggregating them and taking the outer step.
    pub outer_step: f64,
    /// A validator screening the G uploads and evaluating each in full.
    pub evaluate: f64,
}

/// A miner's window, phase by phase, with `cfg.peers` uploads gathered: H inner steps, the
/// compression, the decoding of G payloads (its own, signed, decoded G times) and the outer
/// step over them; and a validator's screens and evaluations of G uploads. The transfers
/// themselves depend on the link, not the node: [`PhaseReport::upload_bytes`] gives them.
pub fn window_phases(cfg: &PhaseBench, data: Arc<Dataset>) -> Result<PhaseReport, BenchError> {
    let BenchNode {
        shared,
        mut compute,
        layout,
        params,
        parameters,
        ..
    } = bench_node("bench-window", &cfg.preset, cfg.inner_steps, data.clone())?;
    let n = cfg.windows.max(1);
    let mut r = PhaseReport {
        preset: cfg.preset.clone(),
        parameters,
        peers: cfg.peers,
        inner_steps: params.inner_steps,
        ..PhaseReport::default()
    };
    let peers: Vec<Uid> = (1..=cfg.peers as Uid).collect();
    let lr = params.outer_lr_at(1);
    let time = |f: &mut dyn FnMut() -> Result<(), BenchError>| -> Result<f64, BenchError> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64() / n as f64)
    };
    for window in 1..=n {
        r.inner += time(&mut || {
            for step in 0..params.inner_steps {
                if let Input::Stepped { result: Err(e), .. } =
                    compute.run(Action::TrainStep { window, step })
                {
                    return Err(action("an inner step", e));
                }
            }
            Ok(())
        })?;
        r.compress += time(&mut || match compute.run(Action::Compress {
            window,
            zero: false,
            carry: false,
        }) {
            Input::Compressed { result: Err(e), .. } => Err(action("compression", e)),
            _ => Ok(()),
        })?;
        let bytes = shared
            .prepared
            .lock()
            .map_err(|_| setup("prepared lock poisoned"))?
            .get(&window)
            .cloned()
            .ok_or_else(|| setup("no prepared upload"))?;
        r.upload_bytes = bytes.len() as u64;
        let mut decoded = Vec::new();
        r.decode += time(&mut || {
            decoded = (0..cfg.peers)
                .map(|_| decode_own(&shared, &layout, window, &bytes))
                .collect::<Result<_, _>>()?;
            Ok(())
        })?;
        if let Ok(mut g) = shared.gathered.lock() {
            for (uid, p) in peers.iter().zip(decoded) {
                g.insert((window, *uid), Arc::new(p));
            }
        }
        r.outer_step += time(&mut || match compute.run(Action::Apply {
            window,
            peers: peers.clone(),
            lr,
            expect: None,
            live: covenant_core::driver::Live::Canon,
        }) {
            Input::Applied { result: Err(e), .. } => Err(action("the outer step", e)),
            _ => Ok(()),
        })?;
    }
    let evals = evaluations(
        &EvalBench {
            preset: cfg.preset.clone(),
            peers: cfg.peers,
            windows: n,
        },
        data,
    )?;
    r.evaluate = (evals.screen_secs + evals.eval_secs) / n as f64;
    Ok(r)
}

/// The node's own prepared upload of `window`, verified and decoded as a gathering node does.
fn decode_own(
    shared: &Shared,
    layout: &ModelLayout,
    window: Window,
    bytes: &[u8],
) -> Result<Vec<TensorPayload>, BenchError> {
    let expected = covenant_codec::wire::ExpectedModel {
        layout,
        run_id: shared.id.run_hash,
        window,
        uid: shared.id.uid,
    };
    let vk = shared
        .id
        .key
        .public()
        .verifying_key()
        .ok_or_else(|| setup("no verifying key"))?;
    let limits = covenant_codec::wire::DecodeLimits::for_layout(layout);
    covenant_codec::wire::decode(bytes, &expected, &vk, &limits)
        .map(|p| p.tensors)
        .map_err(|e| action("decoding", e))
}

fn action(what: &'static str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Action {
        what,
        message: e.to_string(),
    }
}

/// One synthetic upload per peer for `window`: θ moved by a small random step, compressed as a
/// miner compresses it (so each payload has the real geometry and density).
fn add_uploads(
    shared: &Shared,
    layout: &ModelLayout,
    theta: &[Vec<f32>],
    window: Window,
    peers: &[Uid],
) -> Result<(), BenchError> {
    for &uid in peers {
        let mut rng = SplitMix64::new(derive_seed(7, &[window, u64::from(uid)]));
        let after: Vec<Vec<f32>> = theta
            .iter()
            .map(|t| t.iter().map(|x| x + 1e-3 * rng.normal() as f32).collect())
            .collect();
        let mut ef: Vec<Vec<f32>> = theta.iter().map(|t| vec![0.0; t.len()]).collect();
        let mut efs: Vec<&mut [f32]> = ef.iter_mut().map(|e| e.as_mut_slice()).collect();
        let payload: Vec<TensorPayload> =
            compress_model(layout, &mut efs, &DeltaSource::diffs(theta, &after)).map_err(setup)?;
        shared
            .gathered
            .lock()
            .map_err(|_| setup("payloads lock poisoned"))?
            .insert((window, uid), Arc::new(payload));
    }
    Ok(())
}
