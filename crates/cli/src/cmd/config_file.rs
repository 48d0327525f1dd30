//! `--config FILE` (or `COVENANT_CONFIG`): flag values from a TOML file, a table per command,
//! e.g.
//! ```toml
//! [demo]
//! miners = 8
//! window-secs = 30
//! [network.init]
//! validators = 2
//! ```
//! A value in the file becomes the flag's environment variable (`env_flags`) unless that is
//! already set, so the command line wins over the environment, which wins over the file. Every
//! table must name a command and every key one of its flags.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use clap::Command;

/// Largest config file read.
const MAX_BYTES: u64 = 1 << 20;

/// The `--config` value in `args` (`--config F` or `--config=F`), else `COVENANT_CONFIG`.
pub fn path_in(args: &[OsString]) -> Option<OsString> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(v.into());
        }
    }
    std::env::var_os("COVENANT_CONFIG").filter(|v| !v.is_empty())
}

/// Sets the environment variables `path` gives for the commands of `root`. Before
/// `env_flags::with_env`: clap reads a variable when it is attached to its flag.
pub fn apply(path: &Path, root: &Command) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        meta.len() <= MAX_BYTES,
        "{} is larger than {MAX_BYTES} bytes",
        path.display()
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut vars = Vec::new();
    collect(root, doc.as_table(), &mut Vec::new(), &mut vars)
        .with_context(|| format!("in {}", path.display()))?;
    for (name, value) in vars {
        if std::env::var_os(&name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

fn collect(
    cmd: &Command,
    table: &toml_edit::Table,
    path: &mut Vec<String>,
    out: &mut Vec<(String, String)>,
) -> Result<()> {
    for (key, item) in table.iter() {
        if let Some(sub) = item.as_table() {
            let Some(c) = cmd.find_subcommand(key) else {
                bail!("[{}]: no command `{}`", dotted(path, key), words(path, key));
            };
            path.push(key.to_string());
            collect(c, sub, path, out)?;
            path.pop();
            continue;
        }
        ensure!(!path.is_empty(), "`{key}` is outside a [command] table");
        let flag = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .with_context(|| {
                format!(
                    "[{}]: `{}` has no flag --{flag}",
                    path.join("."),
                    words(path, "")
                )
            })?;
        let long = arg.get_long().unwrap_or(&flag);
        let value = match item.as_value() {
            Some(toml_edit::Value::String(s)) => s.value().clone(),
            Some(toml_edit::Value::Integer(i)) => i.value().to_string(),
            Some(toml_edit::Value::Float(f)) => f.value().to_string(),
            Some(toml_edit::Value::Boolean(b)) => b.value().to_string(),
            _ => bail!(
                "[{}] {key}: give a string, number or boolean",
                path.join(".")
            ),
        };
        out.push((super::env_flags::var_name(path, long), value));
    }
    Ok(())
}

fn dotted(path: &[String], key: &str) -> String {
    path.iter()
        .map(String::as_str)
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

fn words(path: &[String], key: &str) -> String {
    let mut w = vec!["covenant"];
    w.extend(path.iter().map(String::as_str));
    if !key.is_empty() {
        w.push(key);
    }
    w.join(" ")
}
