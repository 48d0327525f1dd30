//! What nodes write to their buckets, and how it is read back.
//!
//! | key | writer | content |
//! |---|---|---|
//! | `grad/<w>.bin` | miner | window-`w` pseudo-gradient in the codec's signed wire format |
//! | `fp/<w>.json` | miner | signed fingerprint of the model it started window `w` from |
//! | `rec/<w>.json` | validator | signed record of window `w`'s outer step: aggregated uids, lr, hash and fingerprint after |
//! | `ckpt/<w>/model.safetensors`, `config.json` | validator | the model after window `w` (Hugging Face layout) |
//! | `ckpt/<w>/manifest` | validator | signed list of the files' sizes and hashes; written last |
//!
//! `<w>` is the window zero-padded to 8 digits so keys sort by window.

use bytes::Bytes;
use covenant_core::Fingerprint;
use covenant_net::{open, seal, EnvelopeError, Expected, Keypair, PublicKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::env::{ObjectInfo, ObjectStore, StoreError};

pub const KIND_FINGERPRINT: &str = "fingerprint";
pub const KIND_RECORD: &str = "record";
pub const KIND_CHECKPOINT: &str = "checkpoint";

/// Largest signed JSON document read (fingerprints, records, manifests).
pub const MAX_DOC_BYTES: u64 = 4 << 20;

pub fn grad_key(w: u64) -> String {
    format!("grad/{w:08}.bin")
}
pub fn fp_key(w: u64) -> String {
    format!("fp/{w:08}.json")
}
pub fn rec_key(w: u64) -> String {
    format!("rec/{w:08}.json")
}
/// A validator's copy of uid `uid`'s window-`w` upload, which it aggregated (kept for joiners
/// that replay its record after the peer deleted or replaced its own).
pub fn mirror_key(w: u64, uid: u32) -> String {
    format!("{}{uid}.bin", mirror_prefix(w))
}
pub fn mirror_prefix(w: u64) -> String {
    format!("agg/{w:08}/")
}
pub fn ckpt_prefix(w: u64) -> String {
    format!("ckpt/{w:08}/")
}
pub fn ckpt_manifest_key(w: u64) -> String {
    format!("ckpt/{w:08}/manifest")
}

/// Window number from a key like `grad/00000042.bin` or `ckpt/00000042/manifest`.
pub fn window_of_key(key: &str) -> Option<u64> {
    let rest = key.split_once('/')?.1;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 8 {
        return None;
    }
    digits.parse().ok()
}

/// A miner's fingerprint for a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintDoc {
    pub window: u64,
    pub fingerprint: Fingerprint,
}

/// A validator's record of one window's outer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRecord {
    pub window: u64,
    /// Uids whose uploads were aggregated, in aggregation order.
    pub aggregated: Vec<u32>,
    pub lr: f32,
    /// BLAKE3 (hex) of the canonical parameters after this window's outer step.
    pub hash_after: String,
    /// The validator's fingerprint of those parameters, at the run's positions (a miner's
    /// fingerprint is at positions of its own, `scoring::fingerprint_seed`, so this one cannot
    /// stand in for it).
    pub fingerprint: Fingerprint,
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CkptFile {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

/// A checkpoint's manifest: the model after window `window`'s outer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CkptManifest {
    pub window: u64,
    pub files: Vec<CkptFile>,
    /// BLAKE3 (hex) of the canonical parameters.
    pub model_hash: String,
}

/// Why a signed document could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("{key}: {source}")]
    Store { key: String, source: StoreError },
    #[error("{key}: {source}")]
    Envelope { key: String, source: EnvelopeError },
    #[error("{key}: bad {kind} document: {source}")]
    Json {
        key: String,
        kind: String,
        source: serde_json::Error,
    },
}

/// Who signed a document, for what.
#[derive(Debug, Clone, Copy)]
pub struct DocId<'a> {
    pub run_id: &'a str,
    pub uid: u32,
    pub window: u64,
    pub kind: &'a str,
}

/// Signs `doc` as JSON in an envelope for (run, uid, window, kind) and puts it at `key`.
pub fn put_doc<T: Serialize>(
    store: &dyn ObjectStore,
    key: &str,
    signer: &Keypair,
    id: DocId<'_>,
    doc: &T,
) -> Result<(), DocError> {
    let json = serde_json::to_vec(doc).map_err(|e| DocError::Json {
        key: key.into(),
        kind: id.kind.into(),
        source: e,
    })?;
    let sealed = seal(signer, id.run_id, id.uid, id.window, id.kind, &json).map_err(|e| {
        DocError::Envelope {
            key: key.into(),
            source: e,
        }
    })?;
    store
        .put(key, Bytes::from(sealed))
        .map_err(|e| DocError::Store {
            key: key.into(),
            source: e,
        })
}

/// Reads and verifies a signed JSON document, with the store's info about it.
pub fn get_doc<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
    id: DocId<'_>,
    signer: PublicKey,
) -> Result<(ObjectInfo, T), DocError> {
    let (info, sealed) = store.get(key, MAX_DOC_BYTES).map_err(|e| DocError::Store {
        key: key.into(),
        source: e,
    })?;
    let expect = Expected {
        run_id: id.run_id,
        uid: id.uid,
        window: id.window,
        kind: id.kind,
        signer,
    };
    let (_, content) = open(&sealed, &expect, MAX_DOC_BYTES).map_err(|e| DocError::Envelope {
        key: key.into(),
        source: e,
    })?;
    let doc = serde_json::from_slice(content).map_err(|e| DocError::Json {
        key: key.into(),
        kind: id.kind.into(),
        source: e,
    })?;
    Ok((info, doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_and_parse() {
        assert_eq!(grad_key(42), "grad/00000042.bin");
        assert_eq!(window_of_key(&grad_key(42)), Some(42));
        assert_eq!(window_of_key(&ckpt_manifest_key(7)), Some(7));
        assert_eq!(window_of_key("grad/42.bin"), None);
        assert_eq!(window_of_key("nothing"), None);
        assert!(grad_key(9) < grad_key(10));
    }

    #[test]
    fn signed_docs_roundtrip_and_refuse_other_signers_and_windows() {
        let d = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = crate::env::NetStore::new(
            covenant_net::Store::local(d.path()).unwrap(),
            rt.handle().clone(),
        );
        let k = Keypair::from_seed([3; 32]);
        let other = Keypair::from_seed([4; 32]);
        let rec = WindowRecord {
            window: 5,
            aggregated: vec![1, 2],
            lr: 1.0,
            hash_after: "ab".into(),
            fingerprint: Fingerprint {
                tensors: vec![vec![1.0, 2.0]],
            },
        };
        let id = |window| DocId {
            run_id: "run",
            uid: 9,
            window,
            kind: KIND_RECORD,
        };
        put_doc(&store, &rec_key(5), &k, id(5), &rec).unwrap();
        let (_, back): (_, WindowRecord) = get_doc(&store, &rec_key(5), id(5), k.public()).unwrap();
        assert_eq!(back, rec);
        let e = get_doc::<WindowRecord>(&store, &rec_key(5), id(5), other.public()).unwrap_err();
        assert!(e.to_string().contains("signed by"), "{e}");
        let e = get_doc::<WindowRecord>(&store, &rec_key(5), id(6), k.public()).unwrap_err();
        assert!(e.to_string().contains("window"), "{e}");
    }
}
