//! Runs one codec step in a loop for profiling: `codec_profile compress|aggregate [iterations]`.
#[path = "../benches/common.rs"]
mod common;
#[path = "../benches/shapes.rs"]
mod shapes;

use covenant_codec::{aggregate_apply_model, TensorPayload};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("compress", |s| s.as_str());
    let iters: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut base = common::layout(&shapes::baseline_shapes());
    if let Ok(t) = std::env::var("THREADS") {
        base.config.threads = t.parse().unwrap_or(0);
    }
    match what {
        "aggregate" => {
            let peers: Vec<Vec<TensorPayload>> = common::peer_payloads(&base, 20);
            let refs: Vec<&[TensorPayload]> = peers.iter().map(|p| p.as_slice()).collect();
            let mut theta: Vec<Vec<f32>> = base
                .tensors
                .iter()
                .map(|t| vec![0.01f32; t.geom.numel()])
                .collect();
            let t0 = std::time::Instant::now();
            for _ in 0..iters {
                let mut th: Vec<&mut [f32]> = theta.iter_mut().map(|v| v.as_mut_slice()).collect();
                std::hint::black_box(
                    aggregate_apply_model(&base, &refs, &mut th, Some(0.5)).unwrap(),
                );
            }
            eprintln!(
                "aggregate: {:.1} ms/iter",
                t0.elapsed().as_secs_f64() * 1e3 / iters as f64
            );
        }
        _ => {
            let mut st = common::miner_state(&base, 1);
            let t0 = std::time::Instant::now();
            for _ in 0..iters {
                std::hint::black_box(common::compress_state(&base, &mut st));
            }
            eprintln!(
                "compress: {:.1} ms/iter",
                t0.elapsed().as_secs_f64() * 1e3 / iters as f64
            );
        }
    }
}
