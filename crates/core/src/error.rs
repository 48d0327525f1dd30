//! The one error type of the core. Every variant says which input was wrong and how.

use crate::{Uid, Window};

/// What went wrong, with the offending values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// A run parameter is out of its allowed range.
    #[error("invalid run parameter `{field}`: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    /// An event arrived for a window other than the one the state machine is in.
    #[error("event for window {got} while the state machine is at window {expected}")]
    WrongWindow { expected: Window, got: Window },
    /// Windows must advance; this one went backwards or repeated.
    #[error("window {got} does not follow window {current}")]
    WindowNotAdvancing { current: Window, got: Window },
    /// An event that the state machine does not expect in its current phase.
    #[error("unexpected event {event} in phase {phase}")]
    UnexpectedEvent {
        event: &'static str,
        phase: &'static str,
    },
    /// A result names a uid that was not asked for.
    #[error("result for uid {uid}, which was not selected for evaluation in window {window}")]
    NotSelected { uid: Uid, window: Window },
    /// Fingerprints of miner and validator do not have the same shape.
    #[error("fingerprint shape mismatch: {reason}")]
    FingerprintShape { reason: String },
    /// A number that must be finite was not.
    #[error("non-finite value for {what}: {value}")]
    NonFinite { what: &'static str, value: f64 },
    /// Serialised state could not be read back.
    #[error("validator state: {0}")]
    State(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
