//! `cargo run -p covenant-core --release --example simulate -- [peers] [windows] [seed] [validators]`
//! (the same as `covenant simulate`).

fn main() {
    let a: Vec<u64> = std::env::args()
        .skip(1)
        .map(|x| x.parse().expect("numbers"))
        .collect();
    let cfg = covenant_core::sim::SimConfig {
        peers: a.first().copied().unwrap_or(1000) as usize,
        windows: a.get(1).copied().unwrap_or(100),
        seed: a.get(2).copied().unwrap_or(0),
        validators: a.get(3).copied().unwrap_or(1) as usize,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let report = covenant_core::sim::run(&cfg).expect("simulation");
    println!("{report}");
    println!("simulated in {:.2} s", t.elapsed().as_secs_f64());
}
