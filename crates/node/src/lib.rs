//! Miner and validator executors (SPEC §1, §3–§6): they carry out what the sans-I/O drivers of
//! `covenant-core` decide, against an environment of traits ([`env`]): the clock, the chain,
//! object stores, the model and an event sink.
//!
//! * [`real`]: OS threads and clock, the SQLite chain ledger, directory and S3 stores, tch.
//! * [`sim`]: the whole network in one process on a virtual clock, with in-memory chain and
//!   stores, the real `tiny` model or a stand-in, seeded faults and adversaries.
//!
//! Both run the same drivers and the same action code ([`exec`]). See docs/ARCHITECTURE.md.

// Store errors carry the store, key and cause they name (net's `StoreError`, 128 bytes); they
// are built on the rare failure path only.
#![allow(clippy::result_large_err)]

pub mod adversary;
pub mod analysis;
pub mod bench;
pub mod canon;
pub mod checkpoint;
pub mod cost;
pub mod env;
pub mod evm;
pub mod exec;
pub mod log;
pub mod metrics;
pub mod model_trainer;
pub mod network;
pub mod objects;
pub mod progress;
pub mod real;
pub mod setup;
pub mod sim;
pub mod spec;

pub use adversary::Behaviour;
pub use setup::{NodeOptions, Role};
pub use spec::{DataSpec, Indices, RunSpec};

/// Milliseconds since the Unix epoch on the OS clock (for the CLI's own timing).
pub fn now_ms() -> u64 {
    use env::Clock;
    env::SystemClock.now_ms()
}
