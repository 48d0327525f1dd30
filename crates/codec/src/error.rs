use thiserror::Error;

/// Errors of the codec math (configuration, shapes, buffer lengths, non-finite results).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CodecError {
    #[error("invalid codec config: {field} = {value}: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("tensor {tensor:?}: unsupported shape {shape:?} ({reason})")]
    UnsupportedShape {
        tensor: String,
        shape: Vec<usize>,
        reason: &'static str,
    },
    #[error("tensor {tensor:?}: {what} has {got} elements, expected {expected}")]
    LengthMismatch {
        tensor: String,
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("tensor {tensor:?}: {what} is not finite ({value})")]
    NonFinite {
        tensor: String,
        what: &'static str,
        value: f32,
    },
    #[error("tensor {tensor:?}: payload of peer {peer} does not fit the geometry: {reason}")]
    MalformedPayload {
        tensor: String,
        peer: usize,
        reason: String,
    },
    #[error("model has {expected} tensors but {what} has {got}")]
    TensorCount {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("duplicate tensor name {0:?}")]
    DuplicateName(String),
}
