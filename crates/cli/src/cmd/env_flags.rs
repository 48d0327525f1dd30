//! Every flag is also an environment variable: `--window-secs` of `covenant demo` is
//! `COVENANT_DEMO_WINDOW_SECS`, `--contract` of `covenant chain status` is
//! `COVENANT_CHAIN_STATUS_CONTRACT` (`COVENANT_`, the subcommand path, the flag, in upper case
//! with `_` for `-`). A flag on the command line wins over the variable; `--help` and
//! docs/CLI.md name each variable.

use clap::{Arg, Command};

/// `root` with an environment variable on every long option of every subcommand.
pub fn with_env(root: Command) -> Command {
    name_vars(root, "COVENANT", true)
}

/// The variable of flag `--long` of the subcommand at `path` (`["chain", "status"]`).
pub fn var_name(path: &[String], long: &str) -> String {
    let mut name = String::from("COVENANT");
    for p in path {
        name.push('_');
        name.push_str(&upper(p));
    }
    format!("{name}_{}", upper(long))
}

fn name_vars(cmd: Command, prefix: &str, root: bool) -> Command {
    let prefix = if root {
        prefix.to_string()
    } else {
        format!("{prefix}_{}", upper(cmd.get_name()))
    };
    let mut cmd = cmd.mut_args(|a| with_var(a, &prefix));
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for s in subs {
        cmd = cmd.mut_subcommand(s, |sc| name_vars(sc, &prefix, false));
    }
    cmd
}

fn with_var(a: Arg, prefix: &str) -> Arg {
    match a.get_long() {
        Some(long) if a.get_env().is_none() && long != "help" && long != "version" => {
            // Built once per process, at start-up: clap wants `'static` names.
            let name: &'static str =
                Box::leak(format!("{prefix}_{}", upper(long)).into_boxed_str());
            a.env(name)
        }
        _ => a,
    }
}

fn upper(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}
