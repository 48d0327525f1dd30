//! Fuzzes the token-shard reader (covenant_data::Dataset) on a dataset directory written from the
//! input. Layout: `flags u8 | seq_len u32 LE | manifest_len u32 LE | manifest | shard bytes`.
//! The manifest bytes become `manifest.json`; every shard the manifest names (a plain file name)
//! is written with the next `4 × tokens` bytes of the shard bytes (fewer when they run out).
//! - bit 0: the shards' `blake3` fields are set to the hashes of the bytes written, so that
//!   `verify` gets past the hash check to the token-id check;
//! - bit 1: open with `OpenOptions::seq_len` = the input's seq_len instead of the manifest's;
//! - bit 2: `verify` the dataset.
//! Then samples at the edges of both splits are read. Nothing may panic or allocate more than
//! the data it reads justifies; an id in range of a verified dataset must read, one out of range
//! must be refused as such.
//!
//! Seeds: `cargo run --release -p covenant-data --example fuzz_seeds_data -- DIR`.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use covenant_data::{DataError, Dataset, OpenOptions, Split};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static DIR: OnceLock<PathBuf> = OnceLock::new();

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('.')
        && !s.contains(['/', '\\', '\0'])
        && s != "manifest.json"
        && s != "tokenizer.json"
}

/// Writes the dataset directory; returns the manifest bytes to write.
fn write_shards(dir: &Path, manifest: &[u8], mut blob: &[u8], fix_hashes: bool) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(manifest) else {
        return manifest.to_vec();
    };
    let mut written = std::collections::HashSet::new();
    for split in ["train", "val"] {
        let Some(shards) = v
            .get_mut(split)
            .and_then(|s| s.get_mut("shards"))
            .and_then(|s| s.as_array_mut())
        else {
            continue;
        };
        for s in shards.iter_mut() {
            let Some(file) = s.get("file").and_then(|f| f.as_str()).map(str::to_owned) else {
                continue;
            };
            if !plain_name(&file) || !written.insert(file.clone()) {
                continue;
            }
            let tokens = s.get("tokens").and_then(|t| t.as_u64()).unwrap_or(0);
            let n = (tokens.saturating_mul(4)).min(blob.len() as u64) as usize;
            let (chunk, tail) = blob.split_at(n);
            blob = tail;
            std::fs::write(dir.join(&file), chunk).expect("write shard");
            if fix_hashes {
                if let Some(o) = s.as_object_mut() {
                    o.insert(
                        "blake3".into(),
                        Value::String(blake3::hash(chunk).to_hex().to_string()),
                    );
                }
            }
        }
    }
    if fix_hashes {
        serde_json::to_vec(&v).expect("serialise manifest")
    } else {
        manifest.to_vec()
    }
}

fn check_split(ds: &Dataset, split: Split, verified: bool) {
    let n = ds.num_samples(split);
    let seq = u64::from(ds.seq_len());
    assert!(
        n.saturating_mul(seq) <= ds.num_tokens(split),
        "more samples than tokens"
    );
    for id in [
        0,
        1,
        n / 2,
        n.saturating_sub(1),
        n,
        n.saturating_add(1),
        u64::MAX,
    ] {
        match ds.sample(split, id) {
            Ok(s) => {
                assert!(id < n);
                assert_eq!(s.len() as u64, seq);
                assert!(s.iter().all(|&t| t < ds.vocab_size()));
            }
            Err(DataError::SampleOutOfRange { .. }) => assert!(id >= n, "id {id} of {n} refused"),
            Err(e) => {
                assert!(
                    id < n && !verified,
                    "sample {id} of a verified dataset: {e}"
                );
                let _ = e.to_string();
            }
        }
    }
    // A buffer of the wrong length is refused, never written past.
    let mut short = vec![0u32; (seq as usize).saturating_sub(1).min(16)];
    if seq > 1 {
        assert!(ds.sample_into(split, 0, &mut short).is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let flags = data[0];
    let seq_len = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let mlen = u32::from_le_bytes([data[5], data[6], data[7], data[8]]) as usize;
    let rest = &data[9..];
    let (manifest, blob) = rest.split_at(mlen.min(rest.len()));
    let dir = DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("covenant-fuzz-shard-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create dir");
    let m = write_shards(dir, manifest, blob, flags & 1 == 1);
    std::fs::write(dir.join("manifest.json"), m).expect("write manifest");
    let opened = if flags & 2 == 2 {
        Dataset::open_with(
            dir,
            &OpenOptions {
                seq_len: Some(seq_len),
                ..OpenOptions::default()
            },
        )
    } else {
        Dataset::open(dir)
    };
    let ds = match opened {
        Ok(ds) => ds,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let verified = flags & 4 == 4 && ds.verify().is_ok();
    check_split(&ds, Split::Train, verified);
    check_split(&ds, Split::Val, verified);
});
