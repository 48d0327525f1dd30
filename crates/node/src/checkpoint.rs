//! Checkpoints for joiners (SPEC §6): validators publish the canonical model every C windows as
//! Hugging Face files (`model.safetensors`, `config.json`) plus a signed manifest written last;
//! readers verify the manifest's signature and every file's size and hash before loading, so a
//! torn or corrupt checkpoint is never used (the driver tries the next older one instead).

use bytes::Bytes;
use covenant_codec::ModelLayout;
use covenant_core::Window;
use covenant_model::{decode_safetensors, encode_safetensors, CONFIG_FILE, MODEL_FILE};
use covenant_net::{Keypair, PublicKey};

use crate::canon::{hex, Canon};
use crate::env::{ObjectStore, StoreError};
use crate::objects::{self, CkptFile, CkptManifest, DocError, DocId};

/// Why a checkpoint could not be published or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{key}: {source}")]
    Store { key: String, source: StoreError },
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error("{0}")]
    Refused(String),
}

fn store_err(key: &str) -> impl FnOnce(StoreError) -> CheckpointError + '_ {
    move |source| CheckpointError::Store {
        key: key.to_string(),
        source,
    }
}

/// The files of a checkpoint of `canon`: the parameters as safetensors (Hugging Face names,
/// fp32) and `config.json`.
pub fn files(
    canon: &Canon,
    config: &serde_json::Value,
) -> Result<[(String, Vec<u8>); 2], CheckpointError> {
    let tensors: Vec<(&str, &[usize], &[f32])> = canon
        .layout
        .tensors
        .iter()
        .zip(&canon.theta)
        .map(|(t, v)| (t.name.as_str(), t.geom.shape.as_slice(), v.as_slice()))
        .collect();
    let model = encode_safetensors(&tensors).map_err(CheckpointError::Refused)?;
    let cfg = serde_json::to_vec_pretty(config)
        .map_err(|e| CheckpointError::Refused(format!("config.json: {e}")))?;
    Ok([
        (MODEL_FILE.to_string(), model),
        (CONFIG_FILE.to_string(), cfg),
    ])
}

/// Publishes `canon` as the checkpoint of window `w` in `own` (manifest last), then removes
/// checkpoints older than the one before it.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    own: &dyn ObjectStore,
    key: &Keypair,
    run_id: &str,
    uid: u32,
    canon: &Canon,
    config: &serde_json::Value,
    w: Window,
    every: u64,
) -> Result<(), CheckpointError> {
    let mut listed = Vec::new();
    for (name, bytes) in files(canon, config)? {
        listed.push(CkptFile {
            name: name.clone(),
            size: bytes.len() as u64,
            blake3: hex(blake3::hash(&bytes).as_bytes()),
        });
        let k = format!("{}{name}", objects::ckpt_prefix(w));
        own.put(&k, Bytes::from(bytes)).map_err(store_err(&k))?;
    }
    let manifest = CkptManifest {
        window: w,
        files: listed,
        model_hash: hex(&canon.hash()),
    };
    let id = DocId {
        run_id,
        uid,
        window: w,
        kind: objects::KIND_CHECKPOINT,
    };
    objects::put_doc(own, &objects::ckpt_manifest_key(w), key, id, &manifest)?;
    for c in list(own)?.into_iter().filter(|&c| c + every < w) {
        for name in ["manifest", MODEL_FILE, CONFIG_FILE] {
            let _ = own.delete(&format!("{}{name}", objects::ckpt_prefix(c)));
        }
    }
    Ok(())
}

/// Windows of the checkpoints (with a manifest) in a store, oldest first.
pub fn list(store: &dyn ObjectStore) -> Result<Vec<Window>, CheckpointError> {
    let objs = store.list("ckpt/", 10_000).map_err(store_err("ckpt/"))?;
    Ok(windows(&objs))
}

/// Windows of the checkpoint manifests among listed objects, oldest first.
pub fn windows(objs: &[crate::env::ObjectInfo]) -> Vec<Window> {
    let mut ws: Vec<Window> = objs
        .iter()
        .filter(|o| o.key.ends_with("/manifest"))
        .filter_map(|o| objects::window_of_key(&o.key))
        .collect();
    ws.sort_unstable();
    ws.dedup();
    ws
}

/// What a loaded checkpoint must match.
pub struct Expect<'a> {
    pub run_id: &'a str,
    pub layout: &'a ModelLayout,
    /// The run's model `config.json`.
    pub config: &'a serde_json::Value,
}

/// Loads and verifies validator `vuid`'s checkpoint of window `w`.
pub fn load(
    store: &dyn ObjectStore,
    w: Window,
    vuid: u32,
    vkey: PublicKey,
    expect: &Expect<'_>,
) -> Result<Canon, CheckpointError> {
    let id = DocId {
        run_id: expect.run_id,
        uid: vuid,
        window: w,
        kind: objects::KIND_CHECKPOINT,
    };
    let (_, m): (_, CkptManifest) =
        objects::get_doc(store, &objects::ckpt_manifest_key(w), id, vkey)?;
    let refuse = |m: String| Err(CheckpointError::Refused(m));
    if m.window != w {
        return refuse(format!("the manifest names window {}", m.window));
    }
    let max_model = 4 * expect.layout.numel() as u64 + (1 << 20);
    let mut got = Vec::new();
    for name in [MODEL_FILE, CONFIG_FILE] {
        let Some(f) = m.files.iter().find(|f| f.name == name) else {
            return refuse(format!("the manifest lists no {name}"));
        };
        if f.size > max_model {
            return refuse(format!(
                "{name} of {} bytes is larger than the model can be",
                f.size
            ));
        }
        let k = format!("{}{name}", objects::ckpt_prefix(w));
        let (_, bytes) = store.get(&k, f.size).map_err(store_err(&k))?;
        if bytes.len() as u64 != f.size {
            return refuse(format!(
                "{name}: {} bytes, the manifest says {}",
                bytes.len(),
                f.size
            ));
        }
        let h = hex(blake3::hash(&bytes).as_bytes());
        if h != f.blake3 {
            return refuse(format!(
                "{name}: content hash {h} differs from the manifest's {}",
                f.blake3
            ));
        }
        got.push(bytes);
    }
    let config: serde_json::Value = serde_json::from_slice(&got[1])
        .map_err(|e| CheckpointError::Refused(format!("config.json: {e}")))?;
    if &config != expect.config {
        return refuse("the checkpoint's model config is not the run's".into());
    }
    let shapes: Vec<(String, Vec<usize>)> = expect
        .layout
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.geom.shape.clone()))
        .collect();
    let theta = decode_safetensors(&got[0], &shapes, &[]).map_err(CheckpointError::Refused)?;
    if let Some(t) = theta.iter().position(|v| v.iter().any(|x| !x.is_finite())) {
        return refuse(format!("tensor {} holds a non-finite value", shapes[t].0));
    }
    let canon = Canon::new(expect.layout.clone(), theta)
        .map_err(|e| CheckpointError::Refused(e.to_string()))?;
    let h = hex(&canon.hash());
    if h != m.model_hash {
        return refuse(format!(
            "the loaded model's hash {h} differs from the manifest's {}",
            m.model_hash
        ));
    }
    Ok(canon)
}
