pub mod bench;
pub mod data;
pub mod demo;
pub mod model;
pub mod simulate;
pub mod train;
