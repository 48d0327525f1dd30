//! SparseLoCo on flat `f32` buffers (SPEC §3, §8).
//!
//! * [`CodecConfig`]: every constant (top-k, chunk, bins, range, β, α) with the SPEC defaults.
//! * [`TensorGeometry`] / [`ModelLayout`]: chunking of each parameter tensor (largest divisor ≤ chunk,
//!   64×64 tiles for 2-D tensors, runs for 1-D ones, dense mode for a chunk length of 1).
//! * [`compress_tensor`] / [`compress_model`]: error feedback, per-chunk top-k, 2-bit quantisation,
//!   error-feedback subtraction of exactly what is sent.
//! * [`aggregate_tensor`] / [`aggregate_apply_model`]: lower-median norm clipping, per-coordinate
//!   mean over the peers that selected a coordinate, outer SGD step. A peer whose values or norm
//!   are not finite, or that could make a sum overflow, is dropped ([`DropReason`]), never the
//!   tensor.
//! * [`wire`]: the signed, versioned byte format (docs/WIRE.md) and its validating decoder.
//!
//! No tensor library, no panics on peer input: every error is a typed value naming what was wrong.

mod aggregate;
mod compress;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod geometry;
pub mod pack;
mod par;
pub mod rice;
pub mod wire;

pub use aggregate::{
    aggregate_apply_model, aggregate_tensor, aggregate_tensor_apply, aggregate_tensor_clipped_to,
    apply_outer_step, decode_dense, tensor_stats, AggregateStats, DropReason, DroppedPeer,
    TensorAggregate,
};
pub use compress::{
    compress_model, compress_tensor, quant_params, DeltaSource, QuantParams, TensorPayload,
};
pub use config::CodecConfig;
pub use error::CodecError;
pub use geometry::{largest_divisor_at_most, Layout, ModelLayout, TensorGeometry, TensorLayout};
pub use wire::{
    decode, encode, expected_encoded_len, max_encoded_len, DecodeLimits, EncodeOptions,
    ExpectedModel, IndexCoding, Payload, PayloadHeader, WireError,
};
