//! Signed chain transactions.
//!
//! The signature covers `"covenant/tx/v1\0"` followed by the canonical JSON of
//! `{run_id, signer, nonce, body}` (fields in that order, as serde writes this struct), so a
//! transaction is bound to one chain (run id) and, through the nonce, accepted at most once.

use serde::{Deserialize, Serialize};

use super::{Rejection, MAX_CREDENTIALS, MAX_URL};
use crate::hex;
use crate::identity::{Keypair, PublicKey};

const DOMAIN: &[u8] = b"covenant/tx/v1\0";
/// The largest nonce accepted (`i64::MAX`: ledgers store nonces as SQLite integers).
pub const MAX_NONCE: u64 = i64::MAX as u64;

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxBody {
    /// Register the signer's key for a uid.
    Register,
    /// Publish where the signer's bucket is and how to read it.
    Commit {
        bucket_url: String,
        read_credentials: String,
    },
    /// A validator's weights: (uid, weight), normalised by the chain.
    SetWeights { weights: Vec<(u32, u16)> },
    /// Moves `amount` (> 0) of the signer's balance to `to`.
    Transfer { to: PublicKey, amount: u64 },
}

impl TxBody {
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::Register => "register",
            TxBody::Commit { .. } => "commit",
            TxBody::SetWeights { .. } => "set_weights",
            TxBody::Transfer { .. } => "transfer",
        }
    }
}

#[derive(Serialize)]
struct Signed<'a> {
    run_id: &'a str,
    signer: &'a PublicKey,
    nonce: u64,
    body: &'a TxBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub run_id: String,
    pub signer: PublicKey,
    pub nonce: u64,
    pub body: TxBody,
    /// 128 hex digits.
    pub signature: String,
}

impl Transaction {
    pub fn sign(key: &Keypair, run_id: &str, nonce: u64, body: TxBody) -> Transaction {
        let signer = key.public();
        let msg = signed_message(run_id, &signer, nonce, &body);
        Transaction {
            run_id: run_id.into(),
            signer,
            nonce,
            body,
            signature: hex::encode(&key.sign(&msg)),
        }
    }

    /// Checks sizes and the signature (not chain state).
    pub fn check(&self) -> Result<(), Rejection> {
        // Ledgers store nonces as signed 64-bit integers (SQLite's INTEGER).
        if self.nonce > MAX_NONCE {
            return Err(Rejection::Malformed(format!(
                "nonce {} is above the largest nonce {MAX_NONCE}",
                self.nonce
            )));
        }
        match &self.body {
            TxBody::Commit {
                bucket_url,
                read_credentials,
            } => {
                if bucket_url.is_empty() || bucket_url.len() > MAX_URL {
                    return Err(Rejection::Malformed(format!(
                        "bucket URL must be 1..={MAX_URL} bytes"
                    )));
                }
                if read_credentials.len() > MAX_CREDENTIALS {
                    return Err(Rejection::Malformed(format!(
                        "read credentials over {MAX_CREDENTIALS} bytes"
                    )));
                }
            }
            TxBody::Transfer { amount, .. } if *amount == 0 || *amount > i64::MAX as u64 => {
                return Err(Rejection::Malformed(format!(
                    "transfer amount {amount} is not in 1..={}",
                    i64::MAX
                )));
            }
            TxBody::SetWeights { weights } if weights.len() > 65_536 => {
                return Err(Rejection::Malformed("more than 65536 weights".into()));
            }
            _ => {}
        }
        let sig = hex::decode_array::<64>(&self.signature)
            .ok_or_else(|| Rejection::Malformed("signature is not 128 hex digits".into()))?;
        let msg = signed_message(&self.run_id, &self.signer, self.nonce, &self.body);
        if !self.signer.verify(&msg, &sig) {
            return Err(Rejection::BadSignature(self.signer));
        }
        Ok(())
    }
}

fn signed_message(run_id: &str, signer: &PublicKey, nonce: u64, body: &TxBody) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    // Serialising this plain struct cannot fail (no maps with non-string keys, no floats).
    let json = serde_json::to_vec(&Signed {
        run_id,
        signer,
        nonce,
        body,
    })
    .unwrap_or_default();
    m.extend_from_slice(&json);
    m
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chain::{Chain, ChainError, Genesis, Ledger};
    use crate::clock::VirtualClock;

    /// A validly signed transaction with a nonce above `i64::MAX` used to reach the ledger and
    /// fail there as a storage error (the nonce does not fit SQLite's INTEGER) instead of being
    /// refused as malformed.
    #[test]
    fn nonce_above_i64_max_is_malformed_not_a_storage_error() {
        let key = Keypair::from_seed([1; 32]);
        let tx = Transaction::sign(&key, "run", MAX_NONCE + 1, TxBody::Register);
        assert!(matches!(tx.check(), Err(Rejection::Malformed(_))));
        Transaction::sign(&key, "run", MAX_NONCE, TxBody::Register)
            .check()
            .expect("largest nonce");
        let tmp = tempfile::tempdir().expect("tempdir");
        let genesis = Genesis {
            run_id: "run".into(),
            genesis_time_ms: 0,
            block_time_ms: 1000,
            blocks_per_window: 2,
            max_uids: 4,
            immunity_blocks: 0,
            validators: vec![],
            kappa: 0.5,
            registration_burn: 0,
            balances: vec![],
        };
        Ledger::init(tmp.path(), &genesis).expect("init");
        let ledger =
            Ledger::open_with_clock(tmp.path(), Arc::new(VirtualClock::new(5000))).expect("open");
        assert!(matches!(
            ledger.submit(&tx),
            Err(ChainError::Rejected(Rejection::Malformed(_)))
        ));
        let ok = Transaction::sign(&key, "run", MAX_NONCE, TxBody::Register);
        assert_eq!(ledger.submit(&ok).expect("register").uid, Some(0));
    }
}
