use crate::error::CodecError;

/// SparseLoCo hyper-parameters; `Default` gives the SPEC §3 / reference values.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecConfig {
    /// Values kept per chunk before clamping to the chunk length (ref 64).
    pub topk: usize,
    /// Target chunk edge: chunk size per dimension = largest divisor ≤ `chunk` (ref 64).
    pub chunk: usize,
    /// Quantisation bins; codes are packed at 2 bits so 2..=4 (ref 4).
    pub bins: usize,
    /// Quantisation range in σ: scale = range·σ / bins (ref 6).
    pub range_sigma: f32,
    /// Error-feedback decay β in `e ← β·e + Δ` (ref 0.95).
    pub ef_decay: f32,
    /// Outer SGD learning rate α in `θ ← θ − α·update` (ref schedule 1.0 → 0.4).
    pub outer_lr: f32,
    /// ε in the clip factor `min(1, M / (n + ε))` (ref 1e-8).
    pub clip_eps: f32,
    /// Worker threads for whole-model calls; 0 = all available cores.
    pub threads: usize,
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            topk: 64,
            chunk: 64,
            bins: 4,
            range_sigma: 6.0,
            ef_decay: 0.95,
            outer_lr: 1.0,
            clip_eps: 1e-8,
            threads: 0,
        }
    }
}

impl CodecConfig {
    /// Largest supported chunk edge: a chunk holds at most 65536 values so in-chunk indices fit u16.
    pub const MAX_CHUNK: usize = 256;

    pub fn validate(&self) -> Result<(), CodecError> {
        let bad = |field, value: String, reason| {
            Err(CodecError::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if self.topk == 0 {
            return bad("topk", self.topk.to_string(), "must be at least 1");
        }
        if self.chunk == 0 || self.chunk > Self::MAX_CHUNK {
            return bad("chunk", self.chunk.to_string(), "must be in 1..=256");
        }
        if !(2..=4).contains(&self.bins) {
            return bad(
                "bins",
                self.bins.to_string(),
                "must be in 2..=4 (2-bit codes)",
            );
        }
        if !(self.range_sigma.is_finite() && self.range_sigma > 0.0) {
            return bad(
                "range_sigma",
                self.range_sigma.to_string(),
                "must be finite and > 0",
            );
        }
        if !self.ef_decay.is_finite() {
            return bad("ef_decay", self.ef_decay.to_string(), "must be finite");
        }
        if !self.outer_lr.is_finite() {
            return bad("outer_lr", self.outer_lr.to_string(), "must be finite");
        }
        if !(self.clip_eps.is_finite() && self.clip_eps >= 0.0) {
            return bad(
                "clip_eps",
                self.clip_eps.to_string(),
                "must be finite and >= 0",
            );
        }
        Ok(())
    }

    /// Number of worker threads to use.
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The quantisation offset (bins / 2).
    pub fn offset(&self) -> f32 {
        (self.bins / 2) as f32
    }
}
