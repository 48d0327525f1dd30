//! `covenant watch`: a live terminal dashboard of a network (ratatui; works over SSH). It reads
//! a run directory's event logs and chain, or a chain and contract alone, and refreshes every
//! `--refresh` seconds. What it shows is drawn in `watch/render.rs` from [`Dashboard`], which
//! holds no I/O: the loop here feeds it what it read and the keys pressed.

mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use covenant_core::params::RunParams;
use covenant_core::{Millis, Uid};
use covenant_net::Chain;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::run_view::RunView;

#[derive(clap::Args)]
pub struct Args {
    /// A run directory: its nodes' event logs (`nodes/*/events.jsonl`) and, unless --chain is
    /// given, its embedded chain.
    #[arg(value_name = "RUN_DIR", required_unless_present = "chain")]
    pub run: Option<PathBuf>,
    /// An EVM chain's JSON-RPC URL (with --contract): the network's chain state (height,
    /// window, registered peers and their rewards).
    #[arg(long, requires = "contract", value_name = "URL")]
    pub chain: Option<String>,
    /// The run's `Subnet` contract address on --chain.
    #[arg(long, requires = "chain", value_name = "ADDRESS")]
    pub contract: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub refresh: f64,
    /// Print one frame as plain text (COLUMNSxROWS, e.g. 120x40) and exit: no terminal needed.
    #[arg(long, value_name = "COLSxROWS")]
    pub once: Option<String>,
}

/// The pane shown below the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Windows,
    Peers,
    Events,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Windows, Pane::Peers, Pane::Events];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Windows => "Windows",
            Pane::Peers => "Peers",
            Pane::Events => "Joins & faults",
        }
    }
}

/// The chain as last read.
#[derive(Debug, Clone, Default)]
pub struct ChainFacts {
    pub height: u64,
    pub window: u64,
    /// Consensus weight (the reward share) of every registered uid.
    pub rewards: BTreeMap<Uid, f64>,
}

/// Where the current window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before window 0 starts.
    Starting { in_ms: u64 },
    /// The first `grace` of a window: the last window's uploads are gathered.
    Grace { left_ms: u64 },
    /// Inner steps until the window's end.
    Training { left_ms: u64 },
}

/// The window and phase at `now`.
pub fn phase_at(params: &RunParams, now: Millis) -> (u64, Phase) {
    let s = params.schedule();
    if now < s.genesis_ms {
        return (
            0,
            Phase::Starting {
                in_ms: s.genesis_ms - now,
            },
        );
    }
    let w = s.window_of_time(now);
    let start = s.window_start_ms(w);
    let end = s.window_start_ms(w + 1);
    if w > 0 && now < start + params.grace_ms {
        (
            w,
            Phase::Grace {
                left_ms: start + params.grace_ms - now,
            },
        )
    } else {
        (
            w,
            Phase::Training {
                left_ms: end.saturating_sub(now),
            },
        )
    }
}

/// Everything the dashboard shows, and where the user is in it.
pub struct Dashboard {
    pub title: String,
    pub view: RunView,
    pub params: Option<RunParams>,
    pub chain: Option<ChainFacts>,
    pub now: Millis,
    pub pane: Pane,
    /// Rows scrolled from the newest, per pane.
    pub scroll: BTreeMap<&'static str, usize>,
    /// The last failure to read the run or the chain (shown until a read succeeds).
    pub error: Option<String>,
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

impl Dashboard {
    pub fn new(title: String, params: Option<RunParams>) -> Self {
        Dashboard {
            title,
            view: RunView::default(),
            params,
            chain: None,
            now: 0,
            pane: Pane::Windows,
            scroll: BTreeMap::new(),
            error: None,
        }
    }

    pub fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> Action {
        let i = Pane::ALL.iter().position(|p| *p == self.pane).unwrap_or(0);
        let n = Pane::ALL.len();
        let scroll = self.scroll.entry(self.pane.title()).or_default();
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => return Action::Quit,
            KeyCode::Tab | KeyCode::Right => self.pane = Pane::ALL[(i + 1) % n],
            KeyCode::BackTab | KeyCode::Left => self.pane = Pane::ALL[(i + n - 1) % n],
            KeyCode::Char(c @ '1'..='3') => self.pane = Pane::ALL[(c as u8 - b'1') as usize],
            KeyCode::Up => *scroll += 1,
            KeyCode::Down => *scroll = scroll.saturating_sub(1),
            KeyCode::PageUp => *scroll += 10,
            KeyCode::PageDown => *scroll = scroll.saturating_sub(10),
            KeyCode::Home => *scroll = usize::MAX / 2,
            KeyCode::End => *scroll = 0,
            _ => {}
        }
        Action::Continue
    }
}

/// What the dashboard reads from.
struct Source {
    run: Option<PathBuf>,
    chain: Option<Arc<dyn Chain>>,
    /// Keeps the EVM client's runtime alive.
    _rt: Option<tokio::runtime::Runtime>,
}

pub fn run(a: Args) -> Result<()> {
    ensure!(
        a.refresh.is_finite() && (0.1..=3600.0).contains(&a.refresh),
        "--refresh must be between 0.1 and 3600 seconds, not {}",
        a.refresh
    );
    let once = a.once.as_deref().map(parse_size).transpose()?;
    let (source, mut dash) = open(&a)?;
    refresh(&source, &mut dash);
    if let Some((w, h)) = once {
        print!("{}", render::to_text(&dash, w, h)?);
        return match dash.error {
            Some(e) => bail!(e),
            None => Ok(()),
        };
    }
    interactive(&source, &mut dash, Duration::from_secs_f64(a.refresh))
}

fn parse_size(s: &str) -> Result<(u16, u16)> {
    let parsed = s
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u16>().ok()?, h.parse::<u16>().ok()?)));
    match parsed {
        Some((w, h)) if (40..=1000).contains(&w) && (10..=500).contains(&h) => Ok((w, h)),
        _ => bail!("--once wants COLUMNSxROWS with 40..=1000 columns and 10..=500 rows, e.g. 120x40, not {s:?}"),
    }
}

/// Opens the run directory and the chain, with errors that say what is wrong.
fn open(a: &Args) -> Result<(Source, Dashboard)> {
    if let Some(run) = &a.run {
        crate::run_view::check_run_dir(run)?;
    }
    let spec = match &a.run {
        Some(run) if run.join("run.json").is_file() => {
            Some(covenant_node::RunSpec::read(&run.join("run.json"))?)
        }
        _ => None,
    };
    let (chain, rt, spec) = match (&a.chain, &a.contract, &a.run) {
        (Some(url), Some(contract), _) => {
            let (c, rt, s) = connect_evm(url, contract)?;
            (Some(c), Some(rt), Some(s))
        }
        (_, _, Some(run)) if run.join("chain").is_dir() => {
            let ledger = covenant_net::Ledger::open(&run.join("chain"))
                .with_context(|| format!("opening the chain of {}", run.display()))?;
            (Some(Arc::new(ledger) as Arc<dyn Chain>), None, spec)
        }
        _ => (None, None, spec),
    };
    let params = match (&spec, &chain) {
        (Some(s), Some(c)) => Some(s.params_for(c.genesis())?),
        _ => None,
    };
    let place = match (&a.run, &a.chain) {
        (Some(r), _) => r.display().to_string(),
        (None, Some(url)) => url.clone(),
        (None, None) => String::new(),
    };
    let title = match &spec {
        Some(s) => format!("{place} · run {:?} · preset {}", s.name, s.preset),
        None => place,
    };
    let source = Source {
        run: a.run.clone(),
        chain,
        _rt: rt,
    };
    Ok((source, Dashboard::new(title, params)))
}

fn connect_evm(
    url: &str,
    contract: &str,
) -> Result<(
    Arc<dyn Chain>,
    tokio::runtime::Runtime,
    covenant_node::RunSpec,
)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    // Reading needs no account: a throwaway key, never funded and never used to sign.
    let key = covenant_net::Keypair::generate().context("making a read-only key")?;
    let ep = covenant_node::evm::Endpoint {
        url: url.to_string(),
        contract: contract.to_string(),
    };
    let (spec, chain) =
        covenant_node::evm::connect(&ep, &key, covenant_node::Role::Miner, None, rt.handle())?;
    Ok((chain, rt, spec))
}

/// Reads what is new; a failure is kept for the screen, not fatal.
fn refresh(source: &Source, dash: &mut Dashboard) {
    dash.now = covenant_node::now_ms();
    let mut errors = Vec::new();
    if let Some(run) = &source.run {
        if let Err(e) = dash.view.poll(run) {
            errors.push(format!("{e:#}"));
        }
    }
    if let Some(chain) = &source.chain {
        match read_chain(chain.as_ref()) {
            Ok(c) => dash.chain = Some(c),
            Err(e) => errors.push(format!("reading the chain: {e:#}")),
        }
    }
    dash.error = (!errors.is_empty()).then(|| errors.join("; "));
}

fn read_chain(chain: &dyn Chain) -> Result<ChainFacts> {
    let m = chain.metagraph()?;
    Ok(ChainFacts {
        height: m.block,
        window: m.window,
        rewards: m.rewards().into_iter().collect(),
    })
}

fn interactive(source: &Source, dash: &mut Dashboard, every: Duration) -> Result<()> {
    let mut term = ratatui::try_init().context(
        "starting the terminal dashboard (covenant watch needs a terminal; use --once COLSxROWS to print a frame)",
    )?;
    let result = (|| -> Result<()> {
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                refresh(source, dash);
                next = Instant::now() + every;
            }
            term.draw(|f| render::draw(f, dash))
                .context("drawing the dashboard")?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait).context("reading the keyboard")? {
                if let Event::Key(k) = event::read().context("reading the keyboard")? {
                    if k.kind == KeyEventKind::Press
                        && dash.key(k.code, k.modifiers) == Action::Quit
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_cycles_the_panes_and_q_quits() {
        let mut d = Dashboard::new("t".into(), None);
        let none = KeyModifiers::NONE;
        assert_eq!(d.key(KeyCode::Tab, none), Action::Continue);
        assert_eq!(d.pane, Pane::Peers);
        d.key(KeyCode::Tab, none);
        d.key(KeyCode::Tab, none);
        assert_eq!(d.pane, Pane::Windows, "wraps around");
        d.key(KeyCode::BackTab, none);
        assert_eq!(d.pane, Pane::Events);
        d.key(KeyCode::Char('2'), none);
        assert_eq!(d.pane, Pane::Peers);
        assert_eq!(d.key(KeyCode::Char('q'), none), Action::Quit);
        assert_eq!(
            d.key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Action::Quit
        );
    }

    #[test]
    fn phases_follow_the_schedule() {
        let mut p = RunParams::local();
        p.genesis_ms = 10_000;
        p.block_time_ms = 1_000;
        p.blocks_per_window = 20;
        p.grace_ms = 5_000;
        assert_eq!(phase_at(&p, 4_000), (0, Phase::Starting { in_ms: 6_000 }));
        assert_eq!(
            phase_at(&p, 12_000),
            (0, Phase::Training { left_ms: 18_000 })
        );
        assert_eq!(phase_at(&p, 31_000), (1, Phase::Grace { left_ms: 4_000 }));
        assert_eq!(
            phase_at(&p, 36_000),
            (1, Phase::Training { left_ms: 14_000 })
        );
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(parse_size("120x40").unwrap(), (120, 40));
        for bad in ["120", "x40", "10x40", "120x5", "axb"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
