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
