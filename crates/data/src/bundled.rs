//! The corpus and tokenizer shipped in the repository's `data/` directory (docs/DATA.md).
//!
//! The directory is `$COVENANT_DATA_DIR` when that is set, else `<repo>/data`, located at build
//! time from this crate's manifest directory.

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::prepare::{
    prepare, PrepareOptions, TokenizerSource, DEFAULT_SHARD_TOKENS, DEFAULT_VAL_FRACTION,
};
use crate::tokenizer::Tokenizer;

/// Environment variable that overrides the bundled data directory.
pub const DATA_DIR_ENV: &str = "COVENANT_DATA_DIR";
/// File name of the bundled tokenizer inside the data directory.
pub const BUNDLED_TOKENIZER: &str = "tokenizer-8192.json";

/// The bundled data directory.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("..")
            .join("data"),
    }
}

/// The bundled corpus directory (`data/corpus`, zstd-compressed JSONL).
pub fn corpus_dir() -> PathBuf {
    data_dir().join("corpus")
}

/// The bundled tokenizer (`data/tokenizer-8192.json`, trained on the bundled corpus).
pub fn tokenizer_path() -> PathBuf {
    data_dir().join(BUNDLED_TOKENIZER)
}

/// BLAKE3 over the bundled corpus files (names and bytes, in name order), as a "bundled:<hex>"
/// string recorded in the manifest's `source`.
pub fn corpus_fingerprint() -> Result<String> {
    let dir = corpus_dir();
    let inputs = crate::input::list_inputs(&dir)?;
    let mut h = blake3::Hasher::new();
    for f in &inputs {
        let name = f
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        h.update(name.as_bytes());
        h.update(&[0]);
        let bytes = std::fs::read(&f.path).map_err(|e| DataError::io(&f.path, e))?;
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(format!("bundled:{}", h.finalize().to_hex()))
}

/// Prepares the bundled corpus with the bundled tokenizer into `out_dir` (samples of `seq_len`),
/// unless `out_dir` already holds a dataset of that corpus and tokenizer, in which case it only
/// checks it and, if `seq_len` differs, rewrites the manifest's `seq_len` (fast: the shards do not
/// depend on it). Returns `out_dir`.
pub fn prepare_bundled(out_dir: &Path, seq_len: u32) -> Result<PathBuf> {
    let tokenizer = Tokenizer::load(&tokenizer_path())?;
    let source = corpus_fingerprint()?;
    if seq_len == 0 {
        return Err(DataError::InvalidArgument("seq_len must be > 0".into()));
    }
    if out_dir.join("manifest.json").exists() {
        if let Ok(ds) = Dataset::open(out_dir) {
            let m = ds.manifest();
            if ds.tokenizer_hash() == tokenizer.hash() && m.source.as_deref() == Some(&source) {
                if m.seq_len != seq_len {
                    // The shards do not depend on seq_len: only the manifest changes.
                    let mut m = m.clone();
                    m.seq_len = seq_len;
                    m.write(&out_dir.join("manifest.json"))?;
                }
                return Ok(out_dir.to_path_buf());
            }
        }
    }
    let opts = PrepareOptions {
        tokenizer: TokenizerSource::File(tokenizer_path()),
        seq_len,
        val_fraction: DEFAULT_VAL_FRACTION,
        shard_tokens: DEFAULT_SHARD_TOKENS,
        progress: true,
        source: Some(source),
    };
    prepare(&corpus_dir(), out_dir, &opts)?;
    Ok(out_dir.to_path_buf())
}
