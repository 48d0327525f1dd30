//! The simulator shows the rules at work: honest peers end with the weight, free-riders and
//! copycats with about none, and miners agree with validators on every gather set.

use covenant_core::sim::{run, Behaviour, Mix, SimConfig};
use covenant_core::RunParams;

fn small(seed: u64, validators: usize) -> SimConfig {
    SimConfig {
        peers: 150,
        windows: 60,
        seed,
        validators,
        ..Default::default()
    }
}

#[test]
fn honest_peers_earn_and_free_riders_and_copycats_do_not() {
    for seed in [1, 2] {
        let r = run(&small(seed, 1)).unwrap();
        let honest = r.row(Behaviour::Honest).unwrap();
        let free = r.row(Behaviour::FreeRider).unwrap();
        let copy = r.row(Behaviour::Copycat).unwrap();
        let late = r.row(Behaviour::Late).unwrap();
        // Peers that leave did honest work while online: with them, the honest are paid
        // nearly everything (0.997 and 0.999 on these seeds).
        let offline = r.row(Behaviour::Offline).unwrap();
        assert!(
            honest.paid_share + offline.paid_share > 0.99,
            "seed {seed}\n{r}"
        );
        assert!(honest.final_weight_share > 0.95, "seed {seed}\n{r}");
        assert_eq!(honest.final_top, 20, "seed {seed}\n{r}");
        for row in [free, copy, late] {
            assert!(
                row.paid_share < 0.02,
                "{:?} seed {seed}\n{r}",
                row.behaviour
            );
            assert!(
                row.final_weight_share < 1e-9,
                "{:?} seed {seed}\n{r}",
                row.behaviour
            );
        }
        assert!(
            offline.final_weight_share < 1e-9,
            "peers that left stop being paid\n{r}"
        );
        assert!(copy.blamed_copies > 0, "copycats are caught\n{r}");
        assert_eq!(honest.blamed_copies, 0, "no honest peer is blamed\n{r}");
        assert!(r.loss_end < r.loss_start);
    }
}

#[test]
fn several_validators_reach_the_same_verdict() {
    let r = run(&small(3, 3)).unwrap();
    assert!(
        r.row(Behaviour::Honest).unwrap().final_weight_share > 0.95,
        "{r}"
    );
    assert!(
        r.row(Behaviour::FreeRider).unwrap().paid_share < 0.02,
        "{r}"
    );
}

#[test]
fn same_seed_same_report_other_seed_other_report() {
    let a = run(&small(5, 1)).unwrap();
    let b = run(&small(5, 1)).unwrap();
    let c = run(&small(6, 1)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.rows, c.rows);
}

#[test]
fn degenerate_networks_run() {
    // No peers at all.
    let r = run(&SimConfig {
        peers: 0,
        windows: 5,
        ..Default::default()
    })
    .unwrap();
    assert!(r.rows.iter().all(|x| x.peers == 0 && x.paid_share == 0.0));
    assert_eq!(r.empty_windows, 5);
    // One honest peer: aggregated every window after the first and paid everything.
    let one = SimConfig {
        peers: 1,
        windows: 10,
        mix: Mix {
            honest: 1.0,
            free_rider: 0.0,
            copycat: 0.0,
            late: 0.0,
            offline: 0.0,
        },
        ..Default::default()
    };
    let r = run(&one).unwrap();
    let h = r.row(Behaviour::Honest).unwrap();
    assert_eq!(h.aggregated_share, 1.0);
    assert!((h.final_weight_share - 1.0).abs() < 1e-12, "{r}");
    // Only free-riders: nobody is paid, nothing breaks.
    let bad = SimConfig {
        peers: 30,
        windows: 20,
        mix: Mix {
            honest: 0.0,
            free_rider: 1.0,
            copycat: 0.0,
            late: 0.0,
            offline: 0.0,
        },
        ..Default::default()
    };
    let r = run(&bad).unwrap();
    assert_eq!(
        r.row(Behaviour::FreeRider).unwrap().final_weight_share,
        0.0,
        "{r}"
    );
    // Zero windows.
    let r = run(&SimConfig {
        peers: 10,
        windows: 0,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.loss_end, r.loss_start);
}

#[test]
fn invalid_params_are_an_error_not_a_panic() {
    let mut cfg = small(1, 1);
    cfg.params = RunParams {
        blocks_per_window: 0,
        ..RunParams::reference()
    };
    assert!(run(&cfg).is_err());
}
