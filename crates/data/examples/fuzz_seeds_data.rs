//! Writes valid seed inputs for the cargo-fuzz target `token_shard` (fuzz/fuzz_targets/; used by
//! scripts/fuzz.sh): `cargo run -p covenant-data --example fuzz_seeds_data -- DIR`.
//! Each seed is a tiny dataset prepared with the bundled tokenizer, laid out as the target reads
//! it: `flags u8 | seq_len u32 LE | manifest_len u32 LE | manifest.json | shard bytes in order`.
use covenant_data::prepare::{PrepareOptions, TokenizerSource};
use covenant_data::{bundled, prepare, Manifest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/token_shard".into());
    std::fs::create_dir_all(&dir)?;
    let tmp = std::env::temp_dir().join(format!("covenant-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let input = tmp.join("docs.jsonl");
    let mut text = String::new();
    for i in 0..12 {
        let doc = format!("Document {i}: the quick brown fox jumps over the lazy dog {i} times.");
        text.push_str(&serde_json::json!({ "text": doc }).to_string());
        text.push('\n');
    }
    std::fs::write(&input, text)?;
    let mut n = 0;
    for (k, (seq_len, shard_tokens)) in [(8u32, 48u64), (4, 1000)].into_iter().enumerate() {
        let out = tmp.join(format!("out{k}"));
        let opts = PrepareOptions {
            tokenizer: TokenizerSource::File(bundled::tokenizer_path()),
            seq_len,
            val_fraction: 0.25,
            shard_tokens,
            progress: false,
            source: Some("fuzz seeds".into()),
        };
        let m: Manifest = prepare(&input, &out, &opts)?;
        let manifest = std::fs::read(out.join("manifest.json"))?;
        let mut shards = Vec::new();
        for s in m.train.shards.iter().chain(&m.val.shards) {
            shards.extend(std::fs::read(out.join(&s.file))?);
        }
        for (flags, seq) in [(0u8, 0u32), (4, 0), (5, 0), (6, 3), (7, 16)] {
            let mut v = vec![flags];
            v.extend_from_slice(&seq.to_le_bytes());
            v.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
            v.extend_from_slice(&manifest);
            v.extend_from_slice(&shards);
            std::fs::write(format!("{dir}/seed-{n:02}"), v)?;
            n += 1;
        }
    }
    std::fs::remove_dir_all(&tmp)?;
    println!("wrote {n} seeds to {dir}");
    Ok(())
}
