//! `manifest.json`: the description of a prepared token-shard directory (docs/DATA.md).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Value of [`Manifest::format`].
pub const FORMAT: &str = "covenant-token-shards";
/// The version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Value of [`Manifest::dtype`]: every token is a little-endian u32.
pub const DTYPE: &str = "u32le";
/// The largest manifest we read.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The manifest of a prepared dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for this code.
    pub version: u32,
    /// Always [`DTYPE`].
    pub dtype: String,
    /// Tokens per sample (non-overlapping windows inside each shard).
    pub seq_len: u32,
    /// Tokens in both splits.
    pub total_tokens: u64,
    /// The tokenizer that produced the ids.
    pub tokenizer: TokenizerInfo,
    /// The training split.
    pub train: SplitInfo,
    /// The validation split: documents disjoint from `train`'s.
    pub val: SplitInfo,
    /// Free-form description of where the data came from (e.g. a corpus fingerprint).
    #[serde(default)]
    pub source: Option<String>,
}

/// Which tokenizer produced the ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// BLAKE3 (hex) of the `tokenizer.json` bytes.
    pub blake3: String,
    /// Every id is below this.
    pub vocab_size: u32,
    /// The id appended after every document.
    pub eot_id: u32,
}

/// One split (train or val).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SplitInfo {
    /// Documents in this split.
    pub documents: u64,
    /// Tokens in this split (sum over shards).
    pub tokens: u64,
    /// Shards, in order.
    pub shards: Vec<ShardInfo>,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// File name inside the dataset directory (no directory part).
    pub file: String,
    /// Tokens in the file (file length = 4 × tokens).
    pub tokens: u64,
    /// BLAKE3 (hex) of the file bytes.
    pub blake3: String,
}

impl Manifest {
    /// Reads and checks a manifest (format, version, dtype and internal consistency; the shard
    /// files themselves are checked by [`crate::Dataset::open`]).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::read_limited(path, MAX_MANIFEST_BYTES)?;
        // The version first, so that a newer format gets a clear message rather than a field error.
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            version: Option<u32>,
        }
        if let Ok(head) = serde_json::from_slice::<Head>(&bytes) {
            if let (Some(FORMAT), Some(v)) = (head.format.as_deref(), head.version) {
                if v != FORMAT_VERSION {
                    return Err(DataError::manifest(
                        path,
                        format!("format version {v} is not supported (this code reads {FORMAT_VERSION})"),
                    ));
                }
            }
        }
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| DataError::manifest(path, e.to_string()))?;
        m.validate(path)?;
        Ok(m)
    }

    /// Writes the manifest atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| DataError::manifest(path, e.to_string()))?;
        crate::write_atomic(path, &json)
    }

    /// Internal consistency; `path` names the manifest in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |r: String| Err(DataError::manifest(path, r));
        if self.format != FORMAT {
            return bad(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.version != FORMAT_VERSION {
            return bad(format!(
                "format version {} is not supported (this code reads {FORMAT_VERSION})",
                self.version
            ));
        }
        if self.dtype != DTYPE {
            return bad(format!("dtype is {:?}, expected {DTYPE:?}", self.dtype));
        }
        if self.seq_len == 0 {
            return bad("seq_len is 0".into());
        }
        if self.tokenizer.vocab_size == 0 || self.tokenizer.eot_id >= self.tokenizer.vocab_size {
            return bad(format!(
                "tokenizer vocab_size {} / eot_id {} are inconsistent",
                self.tokenizer.vocab_size, self.tokenizer.eot_id
            ));
        }
        if parse_hash(&self.tokenizer.blake3).is_none() {
            return bad("tokenizer.blake3 is not 64 hex digits".into());
        }
        let mut total: u64 = 0;
        let mut names = std::collections::HashSet::new();
        for (name, split) in [("train", &self.train), ("val", &self.val)] {
            let mut sum: u64 = 0;
            for s in &split.shards {
                if s.file.is_empty()
                    || s.file.contains(['/', '\\'])
                    || s.file.starts_with('.')
                    || s.file == "manifest.json"
                    || s.file == "tokenizer.json"
                {
                    return bad(format!(
                        "{name}: shard file name {:?} is not a plain file name",
                        s.file
                    ));
                }
                if !names.insert(s.file.as_str()) {
                    return bad(format!("shard file {:?} is listed twice", s.file));
                }
                if s.tokens == 0 {
                    return bad(format!("{name}: shard {:?} has 0 tokens", s.file));
                }
                if parse_hash(&s.blake3).is_none() {
                    return bad(format!(
                        "{name}: shard {:?}: blake3 is not 64 hex digits",
                        s.file
                    ));
                }
                sum = sum
                    .checked_add(s.tokens)
                    .ok_or_else(|| DataError::manifest(path, "token count overflow"))?;
            }
            if sum != split.tokens {
                return bad(format!(
                    "{name}: shards hold {sum} tokens but the split says {}",
                    split.tokens
                ));
            }
            total = total
                .checked_add(sum)
                .ok_or_else(|| DataError::manifest(path, "token count overflow"))?;
        }
        if total != self.total_tokens {
            return bad(format!(
                "total_tokens is {} but the splits hold {total}",
                self.total_tokens
            ));
        }
        Ok(())
    }
}

/// Parses a 64-digit hex BLAKE3 hash.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}
