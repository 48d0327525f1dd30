//! `covenant chain` by hand, as a user runs it: a ledger whose registrations burn, a key that
//! cannot pay refused with a clear error, a transfer, and a registration that then succeeds.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{assert_success, bin};

fn covenant(args: &[&str], dir: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run covenant")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn registering_burns_and_an_unfunded_key_is_told_how_to_pay() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for k in ["v.key", "rich.key", "poor.key"] {
        assert_success(&covenant(&["keygen", "--out", k], d));
    }
    let init = covenant(
        &[
            "chain",
            "init",
            "--dir",
            "chain",
            "--run-id",
            "t",
            "--validator",
            "v.key:1000",
            "--registration-burn",
            "100",
            "--fund",
            "rich.key:250",
        ],
        d,
    );
    assert_success(&init);
    let reg = |k: &str| covenant(&["chain", "register", "--dir", "chain", "--key", k], d);
    let balance = |k: &str| {
        stdout(&covenant(
            &["chain", "balance", "--dir", "chain", "--key", k],
            d,
        ))
    };

    let refused = reg("poor.key");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("balance 0 is below the 100 this needs"),
        "{err}"
    );

    assert_success(&reg("rich.key"));
    assert_eq!(balance("rich.key"), "150");
    let pay = covenant(
        &[
            "chain", "transfer", "--dir", "chain", "--key", "rich.key", "--to", "poor.key",
            "--amount", "100",
        ],
        d,
    );
    assert_success(&pay);
    let r = reg("poor.key");
    assert_success(&r);
    assert!(stdout(&r).contains("registered as uid 1"), "{}", stdout(&r));
    assert_eq!(
        (balance("rich.key"), balance("poor.key")),
        ("50".into(), "0".into())
    );
}
