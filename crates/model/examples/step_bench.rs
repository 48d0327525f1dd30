//! Quick training-step timing without the CLI: `cargo run --release -p covenant-model --example
//! step_bench -- [preset] [batch] [threads] [steps]`. `covenant bench train` is the real command.

use std::time::Instant;

use covenant_model::{DeviceChoice, ModelConfig, OptimConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map(String::as_str).unwrap_or("small");
    let batch: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let threads: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let steps: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(10);
    covenant_model::set_num_threads(threads);
    let cfg = ModelConfig::preset(preset)?;
    let seq = cfg.max_seq_len;
    let opt = OptimConfig {
        warmup_steps: 1,
        ..Default::default()
    };
    let mut t = Trainer::new(cfg.clone(), opt, 0, DeviceChoice::Cpu)?;
    let mut s = 88172645463325252u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % cfg.vocab_size as u64) as u32
    };
    let mut times = vec![];
    for i in 0..steps + 2 {
        let b: Vec<u32> = (0..batch * seq).map(|_| next()).collect();
        let t0 = Instant::now();
        let st = t.step(&b, batch)?;
        let dt = t0.elapsed().as_secs_f64();
        if i >= 2 {
            times.push(dt);
        }
        eprintln!("step {i}: {dt:.3} s loss {:.3}", st.loss);
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{preset}: {:.0} tokens/s (mean step {mean:.3} s)",
        (batch * seq) as f64 / mean
    );
    Ok(())
}
