//! `covenant eval` against lm-evaluation-harness: the same tasks (data/eval, with lm-eval's task
//! files), the same exported checkpoint, the same accuracies; and `covenant data eval-tasks`
//! rebuilds the shipped tasks byte for byte from the bundled corpus.

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_shipped_tasks_are_what_the_corpus_gives() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    let o = Command::new(bin())
        .current_dir(tmp.path())
        .args(["data", "eval-tasks", "--out", "data/eval"])
        .output()
        .unwrap();
    assert_success(&o);
    for f in [
        "covenant_next_verse.jsonl",
        "covenant_next_line.jsonl",
        "lm_eval/covenant_next_verse.yaml",
        "lm_eval/covenant_next_line.yaml",
    ] {
        let built = std::fs::read(tmp.path().join("data/eval").join(f)).unwrap();
        let shipped = std::fs::read(repo().join("data/eval").join(f)).unwrap();
        assert!(
            built == shipped,
            "data/eval/{f} differs from what the corpus gives"
        );
    }
}

#[test]
fn our_accuracies_are_lm_evaluation_harness_s() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = train_tiny(tmp.path(), 60);
    let hf = tmp.path().join("hf");
    assert_success(&covenant(
        &["export", "--checkpoint"],
        &[&ckpt, Path::new("--out"), &hf],
    ));
    let ours = covenant(
        &[
            "eval",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--val-sequences",
            "16",
            "--json",
            "--checkpoint",
        ],
        &[&ckpt],
    );
    assert_success(&ours);
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let h = &ours["held_out"];
    let (loss, bpb) = (
        h["loss"].as_f64().unwrap(),
        h["bits_per_byte"].as_f64().unwrap(),
    );
    assert!(loss > 3.0 && loss < 9.0, "{h}");
    // bits per byte = loss / ln 2 × tokens / bytes: a token is a few bytes.
    let per_token = loss / std::f64::consts::LN_2;
    assert!(bpb < per_token / 2.0 && bpb > per_token / 8.0, "{h}");
    let o = Command::new(python())
        .current_dir(repo())
        .args(["-m", "lm_eval", "--model", "hf", "--model_args"])
        .arg(format!("pretrained={},dtype=float32", hf.display()))
        .args([
            "--tasks",
            "covenant_next_verse,covenant_next_line",
            "--include_path",
            "data/eval/lm_eval",
            "--device",
            "cpu",
            "--batch_size",
            "1",
            "--output_path",
        ])
        .arg(tmp.path().join("lm_eval"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_DATASETS_CACHE", tmp.path().join("hf-datasets"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lm_eval failed:\n{}",
        tail(&String::from_utf8_lossy(&o.stderr))
    );
    let results = find_results(&tmp.path().join("lm_eval"));
    for task in ["covenant_next_verse", "covenant_next_line"] {
        let theirs = &results["results"][task];
        let mine = &ours["tasks"][task];
        assert_eq!(mine["items"], 100);
        for m in ["acc", "acc_norm"] {
            let t = theirs[format!("{m},none")].as_f64().unwrap();
            let o = mine[m].as_f64().unwrap();
            assert!((t - o).abs() < 1e-9, "{task} {m}: lm-eval {t}, ours {o}");
        }
    }
}

/// lm-eval writes `<output>/<model>/results_<time>.json`.
fn find_results(dir: &Path) -> serde_json::Value {
    for e in walk(dir) {
        let name = e.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("results") && name.ends_with(".json") {
            return serde_json::from_slice(&std::fs::read(&e).unwrap()).unwrap();
        }
    }
    panic!("no results file under {}", dir.display());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
