//! The corpus and tokenizer shipped in the repository's `data/` directory (docs/DATA.md).
//!
//! The directory is `$COVENANT_DATA_DIR` when that is set, else `<repo>/data`, located at build
//! time from this crate's manifest directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    if seq_len == 0 {
        return Err(DataError::InvalidArgument("seq_len must be > 0".into()));
    }
    // Threads of one process (e.g. parallel tests) take turns; other processes are kept safe by
    // preparing into a private directory that is renamed into place when complete.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tokenizer = Tokenizer::load(&tokenizer_path())?;
    let source = corpus_fingerprint()?;
    if reuse_existing(out_dir, &tokenizer, &source, seq_len)? {
        return Ok(out_dir.to_path_buf());
    }
    if out_dir.exists() {
        check_only_dataset_files(out_dir)?;
    }
    let name = out_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            DataError::InvalidArgument(format!("{} has no directory name", out_dir.display()))
        })?;
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    let opts = PrepareOptions {
        tokenizer: TokenizerSource::File(tokenizer_path()),
        seq_len,
        val_fraction: DEFAULT_VAL_FRACTION,
        shard_tokens: DEFAULT_SHARD_TOKENS,
        progress: true,
        source: Some(source.clone()),
    };
    if let Err(e) = prepare(&corpus_dir(), &tmp, &opts) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Renaming onto a non-empty directory fails, so a dataset another process published while we
    // were preparing is never pulled from under its readers: if it is valid, it is kept.
    if std::fs::rename(&tmp, out_dir).is_err() {
        if reuse_existing(out_dir, &tokenizer, &source, seq_len)? {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(out_dir.to_path_buf());
        }
        std::fs::remove_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
        std::fs::rename(&tmp, out_dir).map_err(|e| DataError::io(out_dir, e))?;
    }
    Ok(out_dir.to_path_buf())
}

/// True when `out_dir` already holds the bundled corpus prepared with this tokenizer (its
/// manifest's `seq_len` is rewritten if it differs: the shards do not depend on it).
fn reuse_existing(
    out_dir: &Path,
    tokenizer: &Tokenizer,
    source: &str,
    seq_len: u32,
) -> Result<bool> {
    if !out_dir.join("manifest.json").exists() {
        return Ok(false);
    }
    let Ok(ds) = Dataset::open(out_dir) else {
        return Ok(false);
    };
    let m = ds.manifest();
    if ds.tokenizer_hash() != tokenizer.hash() || m.source.as_deref() != Some(source) {
        return Ok(false);
    }
    if m.seq_len != seq_len {
        let mut m = m.clone();
        m.seq_len = seq_len;
        m.write(&out_dir.join("manifest.json"))?;
    }
    Ok(true)
}

/// Refuses to replace a directory that holds anything but a prepared dataset's files.
fn check_only_dataset_files(dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name == "manifest.json"
            || name == "tokenizer.json"
            || name.ends_with(".tmp")
            || ((name.starts_with("train-") || name.starts_with("val-")) && name.ends_with(".bin"));
        if !ours {
            return Err(DataError::InvalidArgument(format!(
                "{} is not a prepared dataset directory (it holds {name}); choose another output directory",
                dir.display()
            )));
        }
    }
    Ok(())
}
