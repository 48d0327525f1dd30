//! Conformance with a real peer implementation: Hugging Face `transformers` loads our checkpoint
//! and must produce the same logits.

use std::path::{Path, PathBuf};
use std::process::Command;

use covenant_model::{DeviceChoice, ModelConfig, OptimConfig, Trainer};

fn python() -> String {
    std::env::var("COVENANT_PYTHON")
        .expect("COVENANT_PYTHON must point at the project venv's python (run scripts/setup.sh)")
}

fn hf_logits(dir: &Path, tokens: &[u32], batch: usize) -> Vec<f32> {
    let tok_path = dir.join("tokens.json");
    std::fs::write(
        &tok_path,
        serde_json::json!({"batch": batch, "tokens": tokens}).to_string(),
    )
    .unwrap();
    let out: PathBuf = dir.join("hf_logits.bin");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_logits.py");
    let o = Command::new(python())
        .arg(&script)
        .arg(dir)
        .arg(&tok_path)
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .expect("cannot start python");
    assert!(
        o.status.success(),
        "hf_logits.py failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn check(preset: &str) {
    covenant_model::set_num_threads(1);
    let cfg = ModelConfig::preset(preset).unwrap();
    let mut t = Trainer::new(
        cfg.clone(),
        OptimConfig {
            warmup_steps: 1,
            ..Default::default()
        },
        7,
        DeviceChoice::Cpu,
    )
    .unwrap();
    // Train a few steps first so the weights are not just the initialisation (norms move off 1).
    let (batch, seq) = (2usize, 48usize);
    let mut s = 12345u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) % cfg.vocab_size as u64) as u32
    };
    for _ in 0..3 {
        let toks: Vec<u32> = (0..batch * seq).map(|_| next()).collect();
        t.step(&toks, batch).unwrap();
    }
    let toks: Vec<u32> = (0..batch * seq).map(|_| next()).collect();
    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path()).unwrap();
    let ours = t.logits(&toks, batch).unwrap();
    let theirs = hf_logits(dir.path(), &toks, batch);
    assert_eq!(ours.len(), batch * seq * cfg.vocab_size);
    assert_eq!(
        theirs.len(),
        ours.len(),
        "HF returned a different logits shape"
    );
    let max_diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let max_abs = theirs.iter().map(|x| x.abs()).fold(0f32, f32::max);
    eprintln!("{preset}: max |ours - HF| = {max_diff:e} (max |logit| {max_abs})");
    assert!(max_abs > 1e-3, "degenerate logits");
    assert!(
        max_diff <= 1e-4,
        "{preset}: logits differ from transformers by {max_diff}"
    );
}

#[test]
fn gqa_preset_matches_transformers() {
    check("tiny");
}

#[test]
fn tied_preset_matches_transformers() {
    check("tiny-tied");
}
