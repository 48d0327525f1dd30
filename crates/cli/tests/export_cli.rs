//! `covenant export` and `covenant generate`: a trained checkpoint exported as a Hugging Face
//! model directory (sharded) that `transformers` loads, and whose greedy continuation, by
//! `model.generate` and by `pipeline("text-generation")`, is ours token for token.

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

/// The safetensors header of `path`, as JSON.
fn header(path: &Path) -> serde_json::Value {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&b[8..8 + n]).unwrap()
}

#[test]
fn an_exported_checkpoint_loads_in_transformers_and_continues_as_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = train_tiny(tmp.path(), 40);
    let hf = tmp.path().join("hf");
    let o = covenant(
        &["export", "--max-shard-mib", "4", "--checkpoint"],
        &[&ckpt, Path::new("--out"), &hf],
    );
    assert_success(&o);
    // Sharded: 9.5 MiB of weights in shards of at most 4 MiB, with the index.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    let shards: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(shards.len(), 3, "{index}");
    for s in &shards {
        let path = hf.join(s);
        assert!(std::fs::metadata(&path).unwrap().len() <= (4 << 20) + 4096);
        assert_eq!(header(&path)["__metadata__"]["format"], "pt");
    }
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(hf.join(f).is_file(), "{f}");
    }
    // Exporting into a directory that is not empty is refused by name.
    let o = covenant(
        &["export", "--checkpoint"],
        &[&ckpt, Path::new("--out"), &hf],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));

    let prompt = "And the king said unto";
    let n = "20";
    let ours = covenant(
        &[
            "generate",
            "--temperature",
            "0",
            "--max-new-tokens",
            n,
            "--threads",
            "1",
            "--device",
            "cpu",
            "--json",
            "--prompt",
            prompt,
            "--checkpoint",
        ],
        &[&ckpt],
    );
    assert_success(&ours);
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_generate.py");
    let o = Command::new(python())
        .arg(&script)
        .arg(&hf)
        .args([prompt, n])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "hf_generate.py failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(theirs["class"], "LlamaForCausalLM");
    assert_eq!(theirs["prompt_ids"], ours["prompt_tokens"]);
    assert_eq!(
        theirs["ids"], ours["tokens"],
        "ours {ours}\ntheirs {theirs}"
    );
    assert!(!ours["tokens"].as_array().unwrap().is_empty());
    let eot = "<|endoftext|>";
    assert_eq!(
        theirs["text"].as_str().unwrap().replace(eot, ""),
        ours["text"].as_str().unwrap().replace(eot, ""),
    );
}
