// Shared helpers for the simulator tests (included with `mod common;`).

use std::path::Path;
use std::sync::Arc;

/// The bundled corpus at the tiny preset's sequence length (prepared once, cached).
pub fn tiny_data() -> Arc<covenant_data::Dataset> {
    covenant_model::set_num_threads(1);
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/covenant/data/bundled-seq128");
    let dir = covenant_data::prepare_bundled(&dir, 128).unwrap();
    Arc::new(covenant_data::Dataset::open(&dir).unwrap())
}
