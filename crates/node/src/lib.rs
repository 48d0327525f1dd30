//! Miner and validator runtimes (SPEC §1, §3–§6): they put the protocol core (`covenant-core`),
//! the codec, the model, the data and the network shells together into processes that train one
//! model across untrusted peers. See docs/NODES.md.

pub mod adversary;
pub mod canon;
pub mod checkpoint;
pub mod join;
pub mod miner;
pub mod network;
pub mod objects;
pub mod runtime;
pub mod spec;
pub mod validator;

pub use runtime::{Behaviour, NodeOptions};
pub use spec::{DataSpec, RunSpec};
