//! The one error type of this crate: every variant names the file (and field or line) at fault.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What went wrong, and with which file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Jsonl {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{path}: parquet: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("{path}: a document of more than {limit} bytes (the limit on one document)")]
    DocumentTooLarge { path: PathBuf, limit: usize },
    #[error("{path}: not valid UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error(
        "{path}: unsupported input (expected .txt, .jsonl or .parquet, optionally .zst-compressed)"
    )]
    UnsupportedInput { path: PathBuf },
    #[error("{path}: no documents found")]
    NoDocuments { path: PathBuf },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("shard {path}: {reason}")]
    Shard { path: PathBuf, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Internal: a document callback asked to stop reading early (never returned to callers).
    #[doc(hidden)]
    #[error("stopped early")]
    Stopped,
    #[error("sample {id} out of range: split {split} has {num_samples} samples")]
    SampleOutOfRange {
        split: &'static str,
        id: u64,
        num_samples: u64,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn shard(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Shard {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn manifest(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Manifest {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn tokenizer(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Tokenizer {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
