pub mod bench;
pub mod chain;
pub mod data;
pub mod demo;
pub mod keygen;
pub mod model;
pub mod simulate;
pub mod train;
