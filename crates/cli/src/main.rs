//! `covenant`: the command-line front of the system. `covenant --help` is the manual.
//!
//! Each subcommand lives in `cmd/<name>.rs` with its own `Args` and `run`.

mod cmd;
mod progress;
mod report;
mod run_view;

use clap::{Parser, Subcommand};

/// Permissionless, trustless distributed pre-training of LLaMA-style models with SparseLoCo.
#[derive(Parser)]
#[command(name = "covenant", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// A TOML file of flag values, a table per command (`[demo]`, `[network.init]`, …; keys are
    /// flag names): used where neither the command line nor the environment sets the flag.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: a local network (chain, 2 validators, 4 miners as processes) training a model.
    Demo(cmd::demo::Args),
    /// Train a model on one process (the baseline trainer).
    Train(cmd::train::Args),
    /// Model presets and parameter counts.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Corpus preparation and tokenizers.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Benchmarks that print figures (training throughput, ...).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Create a participant key (ed25519; the file is readable by its owner only).
    Keygen(cmd::keygen::Args),
    /// The embedded chain ledger: init, status, register, commit, set-weights.
    #[command(subcommand)]
    Chain(cmd::chain::ChainCommand),
    /// Run a miner: train, compress, upload, gather, aggregate (see docs/NODES.md).
    Miner(cmd::node::MinerArgs),
    /// Run a validator: gather, evaluate, rate, set weights, publish records and checkpoints.
    Validator(cmd::node::NodeArgs),
    /// Local networks: create a run directory (run spec, chain, validator keys).
    #[command(subcommand)]
    Network(cmd::node::NetworkCommand),
    /// Honest and adversarial miners on loopback: what each attack earns and does to the model.
    Scenario(cmd::scenario::Args),
    /// Simulate the protocol with synthetic peers on a virtual clock (who gets aggregated and paid).
    Simulate(cmd::simulate::Args),
    /// A checkpoint as a Hugging Face model directory (weights, config, tokenizer).
    Export(cmd::export::ExportArgs),
    /// A checkpoint's held-out perplexity, bits per byte and multiple-choice accuracy.
    Eval(cmd::eval::Args),
    /// Print docs/CLI.md (every command's help, as Markdown).
    #[command(hide = true)]
    CliDoc,
    /// Continue a prompt with a checkpoint's model (greedy or sampled, with a key/value cache).
    Generate(cmd::generate::Args),
    /// A live terminal dashboard of a network: windows, losses, peers, rewards, joins and faults.
    Watch(cmd::watch::Args),
    /// One self-contained HTML report of a run: loss, bytes, scores, weights, utilisation, faults.
    Report(cmd::report::Args),
}

fn main() {
    let cli = {
        use clap::{CommandFactory, FromArgMatches};
        // The file's values go into the environment first: clap reads a flag's variable when
        // `with_env` attaches it.
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if let Some(path) = cmd::config_file::path_in(&args[1..]) {
            if let Err(e) = cmd::config_file::apply(std::path::Path::new(&path), &Cli::command()) {
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "error: {e:#}");
                std::process::exit(2);
            }
        }
        let matches = cmd::env_flags::with_env(Cli::command()).get_matches_from(args);
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    };
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Model(c) => cmd::model::run(c),
        Command::Data(c) => cmd::data::run(c),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Chain(c) => cmd::chain::run(c),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Miner(a) => cmd::node::miner(a),
        Command::Scenario(a) => cmd::scenario::run(a),
        Command::Validator(a) => cmd::node::validator(a),
        Command::Network(c) => cmd::node::network(c),
        Command::Export(a) => cmd::export::export(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::CliDoc => {
            use clap::CommandFactory;
            use std::io::Write;
            let md = cmd::cli_doc::markdown(&mut cmd::env_flags::with_env(Cli::command()));
            let _ = std::io::stdout().lock().write_all(md.as_bytes());
            Ok(())
        }
        Command::Generate(a) => cmd::generate::run(a),
        Command::Watch(a) => cmd::watch::run(a),
        Command::Report(a) => cmd::report::run(a),
    };
    if let Err(e) = result {
        // Not `eprintln!`: it panics when stderr cannot be written (a log file on a full disk).
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "error: {e:#}");
        std::process::exit(1);
    }
}
