//! covenant-data: the corpus side of covenant (SPEC §7, docs/DATA.md).
//!
//! - [`tokenizer`]: byte-level BPE tokenizers (Hugging Face `tokenizers`), trained or loaded.
//! - [`input`]: documents from text, JSONL and Parquet files.
//! - [`prepare()`]: corpus → little-endian u32 token shards + `manifest.json`, train/val split by
//!   document.
//! - [`Dataset`]: memory-mapped, validated reader of prepared shards; samples are contiguous
//!   `seq_len` windows.
//! - [`sampler`]: the deterministic, platform-independent assignment of samples to peers.
//! - [`bundled`]: the public-domain corpus and tokenizer shipped in `data/`.

pub mod bundled;
pub mod dataset;
pub mod error;
pub mod eval_tasks;
pub mod input;
pub mod manifest;
pub mod prepare;
pub mod sampler;
pub mod tokenizer;

pub use bundled::prepare_bundled;
pub use dataset::{Dataset, OpenOptions, Split};
pub use error::{DataError, Result};
pub use manifest::Manifest;
pub use prepare::{prepare, train_tokenizer, PrepareOptions, TokenizerSource};
pub use sampler::{batch_order, pool, random_pool};
pub use tokenizer::Tokenizer;

use std::io::{Read, Write};
use std::path::Path;

/// Reads a whole file, refusing one larger than `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = f.metadata().map_err(|e| DataError::io(path, e))?.len();
    if len > limit {
        return Err(DataError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{len} bytes, more than the limit of {limit}"),
            ),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| DataError::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(DataError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("more than the limit of {limit} bytes"),
            ),
        ));
    }
    Ok(buf)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| DataError::io(&tmp, e))?;
    f.sync_all().map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}
