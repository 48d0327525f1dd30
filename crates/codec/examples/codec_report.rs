//! Prints the codec figures for docs/PERFORMANCE.md: payload sizes for the `small` preset and the
//! BASELINES.md shape list, compress and 20-peer aggregate throughput, and the memory-bandwidth
//! ceiling. Run: `cargo run --release -p covenant-codec --example codec_report`.
#[path = "../benches/common.rs"]
mod common;
#[path = "../benches/shapes.rs"]
mod shapes;

use std::time::Instant;

use covenant_codec::{
    aggregate_apply_model, decode, encode, DecodeLimits, EncodeOptions, ExpectedModel, IndexCoding,
    ModelLayout, Payload, PayloadHeader, TensorPayload,
};
use ed25519_dalek::SigningKey;

const REF_COMPRESS: f64 = 133.0; // M params/s, BASELINES.md
const REF_AGGREGATE: f64 = 76.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Process CPU time (user + system) in seconds, from /proc/self/stat (0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = s.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

thread_local! {
    static CPU: std::cell::RefCell<Vec<(String, f64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Median wall time of `runs` runs after a warm-up; also records CPU seconds per run.
fn time<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    f(); // warm-up
    let c0 = cpu_seconds();
    let m = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let cpu = (cpu_seconds() - c0) / runs as f64;
    CPU.with(|c| c.borrow_mut().push((String::new(), cpu)));
    m
}

fn last_cpu(i: usize) -> f64 {
    CPU.with(|c| c.borrow().get(i).map_or(0.0, |v| v.1))
}

fn header() -> PayloadHeader {
    PayloadHeader {
        run_id: [1; 32],
        window: 7,
        uid: 3,
    }
}

fn sizes(name: &str, layout: &ModelLayout, key: &SigningKey) {
    let mut st = common::miner_state(layout, 11);
    let tensors = common::compress_state(layout, &mut st);
    let p = Payload {
        header: header(),
        tensors,
    };
    let dense = layout.numel() * 4;
    let packed = encode(
        &p,
        layout,
        key,
        EncodeOptions {
            index_coding: IndexCoding::Packed,
        },
    )
    .unwrap();
    let rice = encode(
        &p,
        layout,
        key,
        EncodeOptions {
            index_coding: IndexCoding::Entropy,
        },
    )
    .unwrap();
    let sel: usize = layout.tensors.iter().map(|t| t.geom.n_selected()).sum();
    println!(
        "| {name} | {} | {:.2}% | {} | {} | {:.1}× | {} | {:.1}× | {:.2} ms | {:.2} ms |",
        layout.numel(),
        100.0 * sel as f64 / layout.numel() as f64,
        dense,
        packed.len(),
        dense as f64 / packed.len() as f64,
        rice.len(),
        dense as f64 / rice.len() as f64,
        1e3 * decode_secs(layout, key, &packed),
        1e3 * decode_secs(layout, key, &rice),
    );
}

/// Median wall time of decoding `bytes` on one thread (11 runs after a warm-up).
fn decode_secs(layout: &ModelLayout, key: &SigningKey, bytes: &[u8]) -> f64 {
    let h = header();
    let ex = ExpectedModel {
        layout,
        run_id: h.run_id,
        window: h.window,
        uid: h.uid,
    };
    let limits = DecodeLimits::for_layout(layout);
    let vk = key.verifying_key();
    let run = || {
        let t = Instant::now();
        std::hint::black_box(decode(bytes, &ex, &vk, &limits).unwrap());
        t.elapsed().as_secs_f64()
    };
    run();
    median((0..11).map(|_| run()).collect())
}

fn main() {
    let key = SigningKey::from_bytes(&[5; 32]);
    let small = common::layout(&shapes::small_preset());
    let base = common::layout(&shapes::baseline_shapes());
    println!("threads: {}", base.config.worker_threads());
    println!("\n| shapes | params | density | dense fp32 bytes | 2-bit payload | ratio | entropy-coded | ratio | decode, packed | decode, Rice |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    sizes("small preset", &small, &key);
    sizes("BASELINES list", &base, &key);

    let n = base.numel() as f64;
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", l.trim());
    }
    // Compress: EF from θ0, θ + top-k + quantise + subtract (+ pack/hash/sign).
    let mut st = common::miner_state(&base, 1);
    let t_compress = time(runs, || {
        std::hint::black_box(common::compress_state(&base, &mut st));
    });
    let t_compress_encode = time(runs, || {
        let tensors = common::compress_state(&base, &mut st);
        let p = Payload {
            header: header(),
            tensors,
        };
        std::hint::black_box(encode(&p, &base, &key, EncodeOptions::default()).unwrap());
    });

    // Aggregate 20 peers.
    let peers: Vec<Vec<TensorPayload>> = common::peer_payloads(&base, 20);
    let peer_refs: Vec<&[TensorPayload]> = peers.iter().map(|p| p.as_slice()).collect();
    let mut theta: Vec<Vec<f32>> = base
        .tensors
        .iter()
        .map(|t| vec![0.01f32; t.geom.numel()])
        .collect();
    let t_agg = time(runs, || {
        let mut th: Vec<&mut [f32]> = theta.iter_mut().map(|v| v.as_mut_slice()).collect();
        std::hint::black_box(aggregate_apply_model(&base, &peer_refs, &mut th, Some(0.5)).unwrap());
    });
    // Wire decode (validate + unpack + hash + signature) of the 20 payloads, 2 threads.
    let keys: Vec<SigningKey> = (0..20)
        .map(|r| SigningKey::from_bytes(&[r as u8 + 10; 32]))
        .collect();
    let blobs: Vec<Vec<u8>> = peers
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(r, (p, k))| {
            let pl = Payload {
                header: PayloadHeader {
                    uid: r as u32,
                    ..header()
                },
                tensors: p.clone(),
            };
            encode(&pl, &base, k, EncodeOptions::default()).unwrap()
        })
        .collect();
    let limits = DecodeLimits::for_layout(&base);
    let threads = base.config.worker_threads();
    let t_decode = time(runs, || {
        std::thread::scope(|s| {
            for t in 0..threads {
                let (blobs, keys, base, limits) = (&blobs, &keys, &base, &limits);
                s.spawn(move || {
                    for r in (t..20).step_by(threads) {
                        let ex = ExpectedModel {
                            layout: base,
                            run_id: [1; 32],
                            window: 7,
                            uid: r as u32,
                        };
                        std::hint::black_box(
                            decode(&blobs[r], &ex, &keys[r].verifying_key(), limits).unwrap(),
                        );
                    }
                });
            }
        });
    });

    let copy1 = common::copy_bandwidth(1);
    let copy2 = common::copy_bandwidth(threads);
    let triad1 = common::triad_bandwidth(1);
    let triad2 = common::triad_bandwidth(threads);
    let payload_bytes: usize = blobs.iter().map(|b| b.len()).sum();
    // Bytes each step must touch (BASELINES.md): compress reads θ0, θ, e and writes e (16 B/param);
    // aggregate writes the update and reads/writes θ (12 B/param) plus the 20 payloads.
    let ceil_compress = copy2 / 16.0 / 1e6;
    let ceil_agg = copy2 / (12.0 + payload_bytes as f64 / n) / 1e6;
    let mps = |t: f64| n / t / 1e6;
    println!("\nmemory bandwidth (read+write bytes/s): copy 1 thread {:.1} GB/s, {threads} threads {:.1} GB/s; triad 1 thread {:.1} GB/s, {threads} threads {:.1} GB/s",
        copy1 / 1e9, copy2 / 1e9, triad1 / 1e9, triad2 / 1e9);
    println!("\n| step (BASELINES shapes, {} params) | wall (median) | CPU per run | M params/s (wall) | vs reference | bandwidth ceiling | fraction of ceiling |", base.numel());
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, t: f64, cpu: f64, reference: Option<f64>, ceil: Option<f64>| {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.0} | {} | {} | {} |",
            t * 1e3,
            cpu * 1e3,
            mps(t),
            reference.map_or("".into(), |r| format!("{:.1}× ({r:.0})", mps(t) / r)),
            ceil.map_or("".into(), |c| format!("{c:.0} M/s")),
            ceil.map_or("".into(), |c| format!("{:.2}", mps(t) / c)),
        )
    };
    row(
        "compress (EF from θ0−θ, top-k, quantise, EF subtract)",
        t_compress,
        last_cpu(0),
        Some(REF_COMPRESS),
        Some(ceil_compress),
    );
    row(
        "compress + 12-bit/2-bit pack + blake3 + ed25519 sign",
        t_compress_encode,
        last_cpu(1),
        Some(REF_COMPRESS),
        Some(ceil_compress),
    );
    row(
        "aggregate 20 peers (norms, clip, mean, SGD apply)",
        t_agg,
        last_cpu(2),
        Some(REF_AGGREGATE),
        Some(ceil_agg),
    );
    row(
        "wire decode + validate 20 payloads (signature, hash, unpack)",
        t_decode,
        last_cpu(3),
        None,
        None,
    );
    row(
        "wire decode 20 + aggregate + SGD",
        t_decode + t_agg,
        last_cpu(2) + last_cpu(3),
        Some(REF_AGGREGATE),
        Some(ceil_agg),
    );
}
