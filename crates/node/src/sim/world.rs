//! The simulator's event loop: one queue of timed events for every node, executed in
//! (time, node, sequence) order on a single thread, so that a seed replays exactly.
//!
//! A node handles one input at a time. A model action keeps it busy for a modelled time
//! ([`SimConfig::step_ms`] for an inner step); inputs that arrive meanwhile wait, as they wait
//! for the real executor's driver thread. An I/O action completes after the time its store and
//! chain calls took on the node's clock ([`super::mem::NodeClock`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use covenant_core::driver::{Action, Input, NodeEvent, Output};
use covenant_core::rng::derive_seed;
use covenant_core::{Millis, RunParams, Uid, Window};
use covenant_net::chain::ValidatorStake;
use covenant_net::{Chain, Genesis, Keypair, Ledger};

use super::faults::{DelayedChain, FaultPlan};
use super::invariants::Checker;
use super::mem::{MemBucket, MemDisk, MemStores, MemWorld, NodeClock, WorldClock};
use super::standin::Standin;
use super::{Sabotage, SimConfig, SimError, SimModel, SimSummary};
use crate::adversary::Behaviour;
use crate::env::{Env, Trainer};
use crate::exec::{io, Compute, Shared};
use crate::log::Memory;
use crate::setup::{self, Parts, Role};
use crate::spec::RunSpec;

/// Block 0 of every simulated chain: 2027-01-15, on a whole second.
const GENESIS_MS: Millis = 1_800_000_000_000;
/// Stand-in data set sizes.
const STANDIN_TRAIN: u64 = 50_000;
const STANDIN_VAL: u64 = 1_000;

/// A node of the simulated network.
pub struct SimNode {
    pub name: String,
    pub role: Role,
    pub behaviour: Behaviour,
    pub key: Keypair,
    pub uid: Uid,
    pub clock: Arc<NodeClock>,
    disk: Arc<MemDisk>,
    pub sink: Memory,
    running: Option<Running>,
    /// Its driver stopped (reached the last window).
    pub stopped: bool,
    gen: u32,
    busy_until: Millis,
    timer_at: Option<Millis>,
    /// When it last started (`None` while it is down).
    pub up_since: Option<Millis>,
}

struct Running {
    driver: Box<dyn covenant_core::driver::Driver + Send>,
    compute: Compute,
    shared: Arc<Shared>,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        node: usize,
        gen: u32,
        input: Input,
    },
    Timer {
        node: usize,
        gen: u32,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// The node is gone for good (it counts as stopped).
    Retire {
        node: usize,
    },
    Check {
        window: Window,
    },
}

struct Queued {
    at: Millis,
    order: usize,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order, self.seq) == (o.at, o.order, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order, self.seq).cmp(&(o.at, o.order, o.seq))
    }
}

/// The simulated network.
pub struct World {
    pub cfg: SimConfig,
    pub plan: FaultPlan,
    pub spec: RunSpec,
    pub params: RunParams,
    pub clock: Arc<WorldClock>,
    pub stores: Arc<MemWorld>,
    pub ledger: Arc<Ledger>,
    pub chain: Arc<DelayedChain>,
    pub nodes: Vec<SimNode>,
    pub checker: Checker,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    end: Millis,
    crashes: usize,
}

fn spec_for(cfg: &SimConfig) -> RunSpec {
    let mut s = RunSpec::local("sim", "tiny");
    s.params.inner_steps = cfg.inner_steps;
    s.params.own_data_check = cfg.own_data_check;
    if let Some(n) = cfg.eval_sequences {
        s.params.eval_sequences = n;
    }
    s.params.grace_ms = cfg.grace_secs * 1000;
    s.overlap = cfg.overlap;
    s.keep_windows = s.keep_windows.max(s.checkpoint_every + 3);
    s
}

impl World {
    pub fn new(cfg: SimConfig) -> Result<World, SimError> {
        if cfg.miners + cfg.adversaries.len() == 0 || cfg.validators == 0 {
            return Err(SimError::Config(
                "a network needs a validator and a miner".into(),
            ));
        }
        if cfg.windows == 0 {
            return Err(SimError::Config("a run needs at least one window".into()));
        }
        if cfg.model == SimModel::Tiny && cfg.data.is_none() {
            return Err(SimError::Config(
                "the tiny model needs the bundled corpus".into(),
            ));
        }
        let mut spec = spec_for(&cfg);
        let mut behaviours: Vec<Behaviour> = vec![Behaviour::Honest; cfg.miners];
        behaviours.extend(cfg.adversaries.iter().copied());
        let n_nodes = cfg.validators + behaviours.len();
        let key = |i: usize| {
            let mut seed = [0u8; 32];
            for (j, c) in seed.chunks_mut(8).enumerate() {
                c.copy_from_slice(
                    &derive_seed(cfg.seed, &[0x4E7, i as u64, j as u64]).to_le_bytes(),
                );
            }
            Keypair::from_seed(seed)
        };
        let keys: Vec<Keypair> = (0..n_nodes).map(key).collect();
        let faucet = key(usize::MAX);
        let genesis = Genesis {
            run_id: spec.name.clone(),
            genesis_time_ms: GENESIS_MS,
            block_time_ms: 1000,
            blocks_per_window: cfg.window_secs,
            max_uids: 256,
            immunity_blocks: 100 * cfg.window_secs,
            validators: keys[..cfg.validators]
                .iter()
                .map(|k| ValidatorStake {
                    key: k.public(),
                    stake: 1_000,
                })
                .collect(),
            kappa: 0.5,
            // Registering burns, as on a local network, paid from its faucet.
            registration_burn: crate::network::LOCAL_REGISTRATION_BURN,
            balances: vec![covenant_net::Balance {
                key: faucet.public(),
                amount: crate::network::LOCAL_FAUCET,
            }],
        };
        let params = spec
            .params_for(&genesis)
            .map_err(|e| SimError::Config(format!("{e:#}")))?;
        spec.params = params.clone();
        let plan = if cfg.faults {
            FaultPlan::draw(cfg.seed, &params, n_nodes, cfg.validators, cfg.windows)
        } else {
            FaultPlan::none(n_nodes)
        };
        if let Some(b) = plan.adversary {
            behaviours.push(b);
        }
        let clock = Arc::new(WorldClock::new(GENESIS_MS - 10_000));
        let ledger = Arc::new(Ledger::in_memory(&genesis, clock.clone())?);
        let chain = Arc::new(DelayedChain::new(
            ledger.clone(),
            cfg.seed,
            plan.tx_delay_chance,
            plan.tx_delay_blocks,
        ));
        let stores = Arc::new(MemWorld::new(
            plan.stores.clone(),
            derive_seed(cfg.seed, &[0x1A6]),
        ));
        let mut keys = keys;
        while keys.len() < cfg.validators + behaviours.len() {
            keys.push(key(keys.len()));
        }
        let mut nodes = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let (name, role, behaviour) = if i < cfg.validators {
                (
                    crate::network::validator_name(i),
                    Role::Validator,
                    Behaviour::Honest,
                )
            } else {
                let m = i - cfg.validators;
                (crate::network::miner_name(m), Role::Miner, behaviours[m])
            };
            let skew = plan.skew.get(i).copied().unwrap_or(0);
            let node_clock = Arc::new(NodeClock::new(
                clock.clone(),
                skew,
                derive_seed(cfg.seed, &[0xC10C, i as u64]),
            ));
            let uid = setup::register(
                ledger.as_ref(),
                &key,
                &format!("mem://{name}"),
                Some(&faucet),
            )
            .map_err(|e| SimError::Config(format!("registering {name}: {e:#}")))?;
            nodes.push(SimNode {
                name,
                role,
                behaviour,
                key,
                uid,
                clock: node_clock,
                disk: Arc::new(MemDisk::default()),
                sink: Memory::default(),
                running: None,
                stopped: false,
                gen: 0,
                busy_until: 0,
                timer_at: None,
                up_since: None,
            });
        }
        let end = params.window_start_ms(cfg.windows + 4);
        let mut w = World {
            checker: Checker::new(&cfg, &params),
            cfg,
            plan,
            spec,
            params,
            clock,
            stores,
            ledger,
            chain,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            end,
            crashes: 0,
        };
        let start = w.params.window_start_ms(0) - 5_000;
        let mid = |p: &RunParams, win: Window| p.window_start_ms(win) + p.window_ms() / 2;
        for i in 0..w.nodes.len() {
            let late = w.cfg.script.iter().find_map(|s| match s {
                super::Scripted::StartAt { node, window } if *node == w.nodes[i].name => {
                    Some(*window)
                }
                _ => None,
            });
            let at = late.map_or(start, |win| mid(&w.params, win));
            w.push(at, i, Ev::Restart { node: i });
        }
        for s in w.cfg.script.clone() {
            match s {
                super::Scripted::StartAt { .. } => {}
                super::Scripted::KillAt { ref node, window }
                | super::Scripted::RestartAt { ref node, window } => {
                    let i = w
                        .node_index(node)
                        .ok_or_else(|| SimError::Config(format!("no node {node:?}")))?;
                    let at = mid(&w.params, window);
                    w.push(at, i, Ev::Crash { node: i });
                    if matches!(s, super::Scripted::RestartAt { .. }) {
                        w.push(at + 1, i, Ev::Restart { node: i });
                    } else {
                        w.push(at, i, Ev::Retire { node: i });
                    }
                }
            }
        }
        for c in w.plan.crashes.clone() {
            w.push(c.at, c.node, Ev::Crash { node: c.node });
            w.push(c.restart_at, c.node, Ev::Restart { node: c.node });
        }
        for win in 1..=w.cfg.windows + 1 {
            let at = w.params.window_start_ms(win) + w.params.window_ms() / 2;
            w.push(at, usize::MAX, Ev::Check { window: win });
        }
        Ok(w)
    }

    fn push(&mut self, at: Millis, order: usize, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            order,
            seq: self.seq,
            ev,
        }));
    }

    /// Runs until every node has stopped or the time is up.
    pub fn run(&mut self) {
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.end {
                break;
            }
            self.clock.set(q.at.max(self.clock.now()));
            self.chain.flush(self.clock.now());
            match q.ev {
                Ev::Deliver { node, gen, input } => self.deliver(q.order, node, gen, Some(input)),
                Ev::Timer { node, gen } => {
                    if self.nodes[node].timer_at == Some(q.at) {
                        self.deliver(q.order, node, gen, None)
                    }
                }
                Ev::Crash { node } => self.crash(node),
                Ev::Retire { node } => self.nodes[node].stopped = true,
                Ev::Restart { node } => self.start(node),
                Ev::Check { window } => {
                    let now = self.clock.now();
                    let mut checker = std::mem::take(&mut self.checker);
                    checker.check_window(self, window, now);
                    self.checker = checker;
                }
            }
            if self.nodes.iter().all(|n| n.stopped) {
                break;
            }
        }
        let now = self.clock.now();
        let mut checker = std::mem::take(&mut self.checker);
        checker.finish(self, now);
        self.checker = checker;
    }

    fn trainer(&self) -> Result<Box<dyn Trainer>, SimError> {
        Ok(match self.cfg.model {
            SimModel::Standin => Box::new(Standin::new(self.spec.seed, STANDIN_TRAIN, STANDIN_VAL)),
            SimModel::Tiny => {
                let data = self
                    .cfg
                    .data
                    .clone()
                    .ok_or_else(|| SimError::Config("no data".into()))?;
                let cfg = self
                    .spec
                    .model_config(data.vocab_size() as usize)
                    .map_err(|e| SimError::Config(format!("{e:#}")))?;
                let model = covenant_model::Trainer::new(
                    cfg,
                    self.spec.optim_config(),
                    self.spec.seed,
                    covenant_model::DeviceChoice::Auto,
                )?;
                Box::new(crate::model_trainer::ModelTrainer::new(
                    model,
                    data,
                    self.spec.batch,
                ))
            }
        })
    }

    /// Starts (or restarts) node `i`: a fresh process with its key, bucket and disk.
    fn start(&mut self, i: usize) {
        if self.nodes[i].running.is_some() || self.nodes[i].stopped {
            return;
        }
        let now = self.clock.now();
        let n = &self.nodes[i];
        let env = Env {
            clock: n.clock.clone(),
            chain: self.chain.clone(),
            stores: Arc::new(MemStores {
                world: self.stores.clone(),
                clock: n.clock.clone(),
            }),
            own: Arc::new(MemBucket::new(
                self.stores.clone(),
                n.clock.clone(),
                &n.name,
            )),
            local: n.disk.clone(),
            sink: Arc::new(n.sink.clone()),
        };
        let trainer = match self.trainer() {
            Ok(t) => t,
            Err(e) => {
                self.checker
                    .violation(now, None, format!("starting {}: {e}", n.name));
                return;
            }
        };
        let parts = Parts {
            spec: &self.spec,
            params: self.params.clone(),
            role: n.role,
            key: n.key.clone(),
            uid: n.uid,
            env,
            trainer,
            behaviour: n.behaviour,
            until_window: Some(self.cfg.windows - 1),
            parallel_io: false,
        };
        match setup::assemble(parts) {
            Ok(node) => {
                let n = &mut self.nodes[i];
                n.gen += 1;
                n.busy_until = now;
                n.timer_at = None;
                n.up_since = Some(now);
                self.checker.started(&n.name);
                n.running = Some(Running {
                    driver: node.driver,
                    compute: node.compute,
                    shared: node.shared,
                });
                let gen = n.gen;
                self.push(
                    now,
                    i,
                    Ev::Deliver {
                        node: i,
                        gen,
                        input: Input::Start,
                    },
                );
            }
            Err(e) => {
                self.checker
                    .violation(now, None, format!("starting {}: {e}", self.nodes[i].name))
            }
        }
    }

    fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.running.take().is_some() {
            n.gen += 1;
            n.up_since = None;
            n.timer_at = None;
            self.crashes += 1;
        }
    }

    /// Hands node `i` its input (`None`: a timer tick), then carries out what it asks.
    fn deliver(&mut self, order: usize, i: usize, gen: u32, input: Option<Input>) {
        let now = self.clock.now();
        let n = &mut self.nodes[i];
        if n.gen != gen || n.running.is_none() || n.stopped {
            return;
        }
        if now < n.busy_until {
            // The node is busy with a model action: the input waits.
            let at = n.busy_until;
            let ev = match input {
                Some(input) => Ev::Deliver {
                    node: i,
                    gen,
                    input,
                },
                None => Ev::Timer { node: i, gen },
            };
            if matches!(ev, Ev::Timer { .. }) {
                n.timer_at = Some(at);
            }
            self.push(at, order, ev);
            return;
        }
        let input = input.unwrap_or(Input::Tick);
        if let Input::Applied {
            window,
            result: Ok(a),
        } = &input
        {
            if a.committed {
                let name = n.name.clone();
                self.checker.applied(now, &name, *window, a.hash);
            }
        }
        let view = n.clock.view(now);
        let Some(run) = n.running.as_mut() else {
            return;
        };
        let handled =
            std::panic::catch_unwind(AssertUnwindSafe(|| run.driver.handle(view, input.clone())));
        let outputs = match handled {
            Ok(o) => o,
            Err(_) => {
                let name = n.name.clone();
                self.checker
                    .violation(now, None, format!("{name} panicked handling {input:?}"));
                self.crash(i);
                return;
            }
        };
        self.sabotage(i, &input);
        for out in outputs {
            self.output(i, gen, now, out);
        }
        self.schedule_timer(i, gen);
    }

    fn output(&mut self, i: usize, gen: u32, now: Millis, out: Output) {
        let n = &mut self.nodes[i];
        match out {
            Output::Emit(ev) => {
                self.checker.emitted(now, &n.name, n.role, &ev);
                let view = n.clock.view(now);
                crate::env::EventSink::emit(&n.sink, view, &ev);
            }
            Output::Stop => n.stopped = true,
            Output::Do(a) => {
                let Some(run) = n.running.as_mut() else {
                    return;
                };
                n.clock.begin();
                let compute = a.is_compute();
                let cost = model_cost(&self.cfg, &n.name, &a);
                let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    if compute {
                        run.compute.run(a)
                    } else {
                        io::run(&run.shared, a)
                    }
                }));
                let input = match handled {
                    Ok(inp) => inp,
                    Err(_) => {
                        let name = n.name.clone();
                        self.checker
                            .violation(now, None, format!("{name}'s executor panicked"));
                        self.crash(i);
                        return;
                    }
                };
                let done = if compute {
                    n.busy_until = now + cost;
                    n.busy_until
                } else {
                    now + n.clock.spent()
                };
                let input = with_elapsed(input, cost);
                self.push(
                    done,
                    i,
                    Ev::Deliver {
                        node: i,
                        gen,
                        input,
                    },
                );
            }
        }
    }

    fn schedule_timer(&mut self, i: usize, gen: u32) {
        let now = self.clock.now();
        let n = &mut self.nodes[i];
        let Some(run) = n.running.as_ref() else {
            return;
        };
        let at = run
            .driver
            .poll_timeout()
            .map(|t| n.clock.world_time_of(t).max(now));
        if at == n.timer_at {
            return;
        }
        n.timer_at = at;
        if let Some(at) = at {
            self.push(at, i, Ev::Timer { node: i, gen });
        }
    }

    /// A deliberate defect ([`Sabotage`]).
    fn sabotage(&mut self, i: usize, input: &Input) {
        let Some(Sabotage::Diverge { node, window }) = self.cfg.sabotage else {
            return;
        };
        let hit = matches!(input, Input::Applied { window: w, result: Ok(a) } if *w == window && a.committed);
        if node != i || !hit {
            return;
        }
        if let Some(run) = self.nodes[i].running.as_ref() {
            if let Ok(mut c) = run.shared.canon.write() {
                if let Some(x) = c.theta.first_mut().and_then(|t| t.first_mut()) {
                    *x += 1.0;
                }
            }
        }
    }

    /// The events a node reported (over all its runs).
    pub fn events(&self, i: usize) -> Vec<NodeEvent> {
        self.nodes[i]
            .sink
            .events
            .lock()
            .map(|e| e.iter().map(|(_, ev)| ev.clone()).collect())
            .unwrap_or_default()
    }

    /// Writes every node's events as `DIR/<node>/events.jsonl` (the real nodes' format).
    pub fn write_events(&self, dir: &std::path::Path) -> std::io::Result<()> {
        for n in &self.nodes {
            let d = dir.join(&n.name);
            std::fs::create_dir_all(&d)?;
            let events = n.sink.events.lock().map(|e| e.clone()).unwrap_or_default();
            let mut text = String::new();
            for (t, event) in events {
                let line = covenant_core::driver::events::EventLine {
                    t,
                    role: n.role.name().into(),
                    name: n.name.clone(),
                    event,
                };
                text.push_str(&serde_json::to_string(&line).map_err(std::io::Error::other)?);
                text.push('\n');
            }
            std::fs::write(d.join("events.jsonl"), text)?;
        }
        Ok(())
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Consensus weights on the chain now.
    pub fn consensus(&self) -> BTreeMap<Uid, f64> {
        self.ledger
            .metagraph()
            .map(|m| {
                m.neurons
                    .iter()
                    .map(|n| (n.uid, n.consensus_weight))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn summary(&self) -> SimSummary {
        let v1 = self.events(0);
        let vals: Vec<f64> = v1
            .iter()
            .filter_map(|e| match e {
                NodeEvent::OuterStep { val_loss, .. } => *val_loss,
                _ => None,
            })
            .collect();
        SimSummary {
            seed: self.cfg.seed,
            windows: self.cfg.windows,
            windows_applied: self.checker.windows_applied(),
            replicas_agree: self.checker.replicas_agree(),
            first_val_loss: vals.first().copied(),
            final_val_loss: vals.last().copied(),
            crashes: self.crashes,
            violations: self.checker.violations.clone(),
            virtual_ms: self
                .clock
                .now()
                .saturating_sub(self.params.window_start_ms(0)),
            adversaries: self
                .nodes
                .iter()
                .filter(|n| n.behaviour != Behaviour::Honest)
                .map(|n| format!("{} ({})", n.name, n.behaviour.name()))
                .collect(),
        }
    }
}

/// Virtual time a model action of node `name` takes.
fn model_cost(cfg: &SimConfig, name: &str, a: &Action) -> Millis {
    let slow = |n: &(String, u64)| Some(n.1).filter(|_| n.0 == name);
    let factor = cfg.slow_steps.iter().find_map(slow).unwrap_or(1);
    match a {
        Action::TrainStep { .. } => cfg.step_ms.saturating_mul(factor),
        Action::Compress { .. } | Action::Apply { .. } => 100,
        Action::Evaluate { .. } => 3 * cfg.step_ms / 2,
        // A screen measures a quarter of the sequences of one of an evaluation's three
        // losses (local runs: 8 of 32) per peer.
        Action::Screen { peers, .. } => peers.len() as u64 * (cfg.step_ms / 8).max(1),
        Action::MeasureValLoss { .. } | Action::LoadCheckpoint { .. } => cfg.step_ms,
        Action::ResetTrainer | Action::Fingerprint { .. } => 1,
        _ => 0,
    }
}

/// The result with the modelled time as the time it took.
fn with_elapsed(input: Input, ms: u64) -> Input {
    match input {
        Input::Stepped {
            window,
            step,
            result: Ok(mut s),
        } => {
            s.elapsed_ms = ms;
            Input::Stepped {
                window,
                step,
                result: Ok(s),
            }
        }
        Input::Compressed {
            window,
            result: Ok(mut c),
        } => {
            c.elapsed_ms = ms;
            Input::Compressed {
                window,
                result: Ok(c),
            }
        }
        Input::Applied {
            window,
            result: Ok(mut a),
        } => {
            a.elapsed_ms = ms;
            Input::Applied {
                window,
                result: Ok(a),
            }
        }
        other => other,
    }
}
