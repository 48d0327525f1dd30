//! The one error type of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong in the model crate. Each variant names the offending input.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model preset `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    #[error("invalid optimizer config: {0}")]
    InvalidOptim(String),
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("token id {token} at position {position} is out of range for vocab size {vocab_size}")]
    TokenOutOfRange {
        token: u32,
        position: usize,
        vocab_size: usize,
    },
    #[error("parameter mismatch: {0}")]
    ParamMismatch(String),
    #[error("device {0} is not available")]
    DeviceUnavailable(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid checkpoint file {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("non-finite loss {0} (training diverged or input is degenerate)")]
    NonFiniteLoss(f32),
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn ckpt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
