//! docs/CLI.md is what `covenant cli-doc` prints from today's command definitions.

use std::process::Command;

mod common;
use common::*;

#[test]
fn docs_cli_md_is_current() {
    let out = Command::new(bin()).arg("cli-doc").output().unwrap();
    assert_success(&out);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CLI.md");
    let file = std::fs::read_to_string(path).unwrap_or_default();
    let now = String::from_utf8(out.stdout).unwrap();
    assert!(now.contains("## `covenant demo`") && now.contains("#### `covenant chain status`"));
    assert!(
        file == now,
        "docs/CLI.md is not current: run `target/release/covenant cli-doc > docs/CLI.md`"
    );
}

#[test]
fn every_flag_is_also_an_environment_variable() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // An option and a boolean flag from the environment.
    let o = run(
        &[
            ("COVENANT_MODEL_INFO_PRESET", "small"),
            ("COVENANT_MODEL_INFO_JSON", "true"),
        ],
        &["model", "info"],
    );
    assert_success(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hidden_size"], 512, "{v}");
    // The command line wins over the variable.
    let o = run(
        &[("COVENANT_MODEL_INFO_PRESET", "small")],
        &["model", "info", "--preset", "tiny", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hidden_size"], 128, "{v}");
    // A bad value from the environment is refused by its name.
    let o = run(&[("COVENANT_DEMO_MINERS", "many")], &["demo"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("many") && err.contains("--miners"), "{err}");
    // --help names the variables.
    let o = run(&[], &["demo", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("[env: COVENANT_DEMO_WINDOW_SECS="));
}

#[test]
fn a_toml_config_sets_flags_below_the_environment_and_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("covenant.toml");
    std::fs::write(&cfg, "[model.info]\npreset = \"small\"\njson = true\n").unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args).arg("--config").arg(&cfg);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let hidden = |o: &std::process::Output| {
        assert_success(o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["hidden_size"].as_u64().unwrap()
    };
    assert_eq!(hidden(&run(&[], &["model", "info"])), 512, "from the file");
    let env = [("COVENANT_MODEL_INFO_PRESET", "tiny")];
    assert_eq!(
        hidden(&run(&env, &["model", "info"])),
        128,
        "the environment wins"
    );
    let args = ["model", "info", "--preset", "tiny"];
    assert_eq!(hidden(&run(&[], &args)), 128, "the command line wins");
    // Unknown commands and flags, and bad TOML, are refused by name.
    for (text, want) in [
        (
            "[modle.info]\npreset = \"x\"\n",
            "no command `covenant modle`",
        ),
        ("[model.info]\npresets = \"x\"\n", "has no flag --presets"),
        ("[model.info\n", "not valid TOML"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let o = run(&[], &["model", "info"]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{text}: {err}");
    }
}
