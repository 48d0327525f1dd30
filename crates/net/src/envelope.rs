//! Signed envelopes: what a node publishes (payloads, fingerprints, checkpoint manifests,
//! peer-visible JSON) travels with a signature that binds it to a run, a uid, a window, a kind
//! and the blake3 hash of its content.
//!
//! Binary layout of a sealed object ([`seal`] / [`open`]), all integers little-endian:
//! ```text
//! "CVNE" | version u8 = 1 | header_len u16 | header | content
//! header = run_id_len u8 | run_id | uid u32 | window u64 | kind_len u8 | kind
//!        | content_len u64 | content_hash [32] | signer [32] | signature [64]
//! ```
//! The signature covers `"covenant/envelope/v1\0"` followed by the header up to (not including)
//! the signature, so every field is bound. Verification checks, in order: well-formedness, the
//! signer is the expected key, the signature, run, window, uid, kind, and finally the content hash,
//! and reports the first failure as a distinct [`EnvelopeError`].

use serde::{Deserialize, Serialize};

use crate::hex;
use crate::identity::{Keypair, PublicKey};

const MAGIC: &[u8; 4] = b"CVNE";
const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"covenant/envelope/v1\0";
/// Longest run id and kind accepted (bytes).
pub const MAX_RUN_ID: usize = 128;
pub const MAX_KIND: usize = 64;

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("signed by {found}, expected {expected}")]
    WrongKey {
        expected: PublicKey,
        found: PublicKey,
    },
    #[error("signature does not verify (the envelope header was changed or forged)")]
    BadSignature,
    #[error("content does not match the signed hash (changed or truncated content)")]
    ContentChanged,
    #[error("envelope is for run {found:?}, expected run {expected:?}")]
    WrongRun { expected: String, found: String },
    #[error("envelope is for window {found}, expected window {expected} (replay)")]
    WrongWindow { expected: u64, found: u64 },
    #[error("envelope is for uid {found}, expected uid {expected}")]
    WrongUid { expected: u32, found: u32 },
    #[error("envelope is of kind {found:?}, expected {expected:?}")]
    WrongKind { expected: String, found: String },
    #[error("content of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
}

/// The signed fields of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub run_id: String,
    pub uid: u32,
    pub window: u64,
    pub kind: String,
    pub content_len: u64,
    pub content_hash: [u8; 32],
    pub signer: PublicKey,
    pub signature: [u8; 64],
}

/// What a receiver expects of an envelope.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub run_id: &'a str,
    pub uid: u32,
    pub window: u64,
    pub kind: &'a str,
    pub signer: PublicKey,
}

impl Envelope {
    /// Signs `content` for (run, uid, window, kind). Run ids and kinds longer than
    /// [`MAX_RUN_ID`] / [`MAX_KIND`] bytes are rejected as malformed.
    pub fn sign(
        key: &Keypair,
        run_id: &str,
        uid: u32,
        window: u64,
        kind: &str,
        content: &[u8],
    ) -> Result<Envelope, EnvelopeError> {
        check_lengths(run_id, kind)?;
        let mut env = Envelope {
            run_id: run_id.to_string(),
            uid,
            window,
            kind: kind.to_string(),
            content_len: content.len() as u64,
            content_hash: *blake3::hash(content).as_bytes(),
            signer: key.public(),
            signature: [0; 64],
        };
        env.signature = key.sign(&env.signed_message());
        Ok(env)
    }

    fn unsigned_header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(200);
        h.push(self.run_id.len() as u8);
        h.extend_from_slice(self.run_id.as_bytes());
        h.extend_from_slice(&self.uid.to_le_bytes());
        h.extend_from_slice(&self.window.to_le_bytes());
        h.push(self.kind.len() as u8);
        h.extend_from_slice(self.kind.as_bytes());
        h.extend_from_slice(&self.content_len.to_le_bytes());
        h.extend_from_slice(&self.content_hash);
        h.extend_from_slice(&self.signer.0);
        h
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = DOMAIN.to_vec();
        m.extend_from_slice(&self.unsigned_header());
        m
    }

    /// Checks the envelope against what the receiver expects and the content it came with.
    pub fn verify(&self, expect: &Expected<'_>, content: &[u8]) -> Result<(), EnvelopeError> {
        check_lengths(&self.run_id, &self.kind)?;
        if self.signer != expect.signer {
            return Err(EnvelopeError::WrongKey {
                expected: expect.signer,
                found: self.signer,
            });
        }
        if !self.signer.verify(&self.signed_message(), &self.signature) {
            return Err(EnvelopeError::BadSignature);
        }
        if self.run_id != expect.run_id {
            return Err(EnvelopeError::WrongRun {
                expected: expect.run_id.into(),
                found: self.run_id.clone(),
            });
        }
        if self.window != expect.window {
            return Err(EnvelopeError::WrongWindow {
                expected: expect.window,
                found: self.window,
            });
        }
        if self.uid != expect.uid {
            return Err(EnvelopeError::WrongUid {
                expected: expect.uid,
                found: self.uid,
            });
        }
        if self.kind != expect.kind {
            return Err(EnvelopeError::WrongKind {
                expected: expect.kind.into(),
                found: self.kind.clone(),
            });
        }
        if content.len() as u64 != self.content_len
            || *blake3::hash(content).as_bytes() != self.content_hash
        {
            return Err(EnvelopeError::ContentChanged);
        }
        Ok(())
    }

    /// The header bytes (with signature) as laid out in a sealed object.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut h = self.unsigned_header();
        h.extend_from_slice(&self.signature);
        h
    }

    /// Parses a header produced by [`Envelope::header_bytes`]; the whole slice must be consumed.
    pub fn parse_header(h: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut r = Reader { buf: h, pos: 0 };
        let run_len = r.u8()? as usize;
        let run_id = r.string(run_len, "run id")?;
        let uid = u32::from_le_bytes(r.array()?);
        let window = u64::from_le_bytes(r.array()?);
        let kind_len = r.u8()? as usize;
        let kind = r.string(kind_len, "kind")?;
        let content_len = u64::from_le_bytes(r.array()?);
        let content_hash = r.array()?;
        let signer = PublicKey(r.array()?);
        let signature = r.array()?;
        if r.pos != h.len() {
            return Err(EnvelopeError::Malformed(format!(
                "{} trailing header bytes",
                h.len() - r.pos
            )));
        }
        check_lengths(&run_id, &kind)?;
        Ok(Envelope {
            run_id,
            uid,
            window,
            kind,
            content_len,
            content_hash,
            signer,
            signature,
        })
    }
}

fn check_lengths(run_id: &str, kind: &str) -> Result<(), EnvelopeError> {
    if run_id.is_empty() || run_id.len() > MAX_RUN_ID {
        return Err(EnvelopeError::Malformed(format!(
            "run id must be 1..={MAX_RUN_ID} bytes"
        )));
    }
    if kind.is_empty() || kind.len() > MAX_KIND {
        return Err(EnvelopeError::Malformed(format!(
            "kind must be 1..={MAX_KIND} bytes"
        )));
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}
impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                EnvelopeError::Malformed(format!(
                    "header truncated at byte {} (need {n} more)",
                    self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn string(&mut self, n: usize, what: &str) -> Result<String, EnvelopeError> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| EnvelopeError::Malformed(format!("{what} is not UTF-8")))
    }
}

/// Signs `content` and returns the sealed object (header followed by content).
pub fn seal(
    key: &Keypair,
    run_id: &str,
    uid: u32,
    window: u64,
    kind: &str,
    content: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let env = Envelope::sign(key, run_id, uid, window, kind, content)?;
    let header = env.header_bytes();
    let mut out = Vec::with_capacity(7 + header.len() + content.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    Ok(out)
}

/// Parses and verifies a sealed object; returns the envelope and its content.
/// Content longer than `max_content` bytes is rejected before it is hashed.
pub fn open<'a>(
    sealed: &'a [u8],
    expect: &Expected<'_>,
    max_content: u64,
) -> Result<(Envelope, &'a [u8]), EnvelopeError> {
    if sealed.len() < 7 || &sealed[..4] != MAGIC {
        return Err(EnvelopeError::Malformed("missing CVNE magic".into()));
    }
    if sealed[4] != VERSION {
        return Err(EnvelopeError::Malformed(format!(
            "unsupported envelope version {}",
            sealed[4]
        )));
    }
    let hlen = u16::from_le_bytes([sealed[5], sealed[6]]) as usize;
    let rest = &sealed[7..];
    if rest.len() < hlen {
        return Err(EnvelopeError::Malformed(format!(
            "header of {hlen} bytes but only {} present",
            rest.len()
        )));
    }
    let env = Envelope::parse_header(&rest[..hlen])?;
    let content = &rest[hlen..];
    if env.content_len > max_content {
        return Err(EnvelopeError::TooLarge {
            len: env.content_len,
            limit: max_content,
        });
    }
    if content.len() as u64 > max_content {
        return Err(EnvelopeError::TooLarge {
            len: content.len() as u64,
            limit: max_content,
        });
    }
    env.verify(expect, content)?;
    Ok((env, content))
}

/// JSON form of an envelope, for peer-visible JSON documents (hex for binary fields).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    run_id: String,
    uid: u32,
    window: u64,
    kind: String,
    content_len: u64,
    content_hash: String,
    signer: PublicKey,
    signature: String,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EnvelopeJson {
            run_id: self.run_id.clone(),
            uid: self.uid,
            window: self.window,
            kind: self.kind.clone(),
            content_len: self.content_len,
            content_hash: hex::encode(&self.content_hash),
            signer: self.signer,
            signature: hex::encode(&self.signature),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let j = EnvelopeJson::deserialize(d)?;
        let content_hash = hex::decode_array::<32>(&j.content_hash)
            .ok_or_else(|| D::Error::custom("content_hash: need 64 hex digits"))?;
        let signature = hex::decode_array::<64>(&j.signature)
            .ok_or_else(|| D::Error::custom("signature: need 128 hex digits"))?;
        check_lengths(&j.run_id, &j.kind).map_err(D::Error::custom)?;
        Ok(Envelope {
            run_id: j.run_id,
            uid: j.uid,
            window: j.window,
            kind: j.kind,
            content_len: j.content_len,
            content_hash,
            signer: j.signer,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Keypair, Vec<u8>, Vec<u8>) {
        let key = Keypair::from_seed([3; 32]);
        let content = b"pseudo-gradient payload".to_vec();
        let sealed = seal(&key, "run-a", 7, 42, "payload", &content).unwrap();
        (key, content, sealed)
    }
    fn expect(key: &Keypair) -> Expected<'static> {
        Expected {
            run_id: "run-a",
            uid: 7,
            window: 42,
            kind: "payload",
            signer: key.public(),
        }
    }

    #[test]
    fn valid_roundtrip() {
        let (key, content, sealed) = setup();
        let (env, got) = open(&sealed, &expect(&key), 1 << 20).unwrap();
        assert_eq!(got, &content[..]);
        assert_eq!(env.window, 42);
        // JSON form round-trips and still verifies.
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, env);
        back.verify(&expect(&key), &content).unwrap();
    }

    #[test]
    fn wrong_key() {
        let (_, _, sealed) = setup();
        let other = Keypair::from_seed([4; 32]);
        assert!(matches!(
            open(&sealed, &expect(&other), 1 << 20),
            Err(EnvelopeError::WrongKey { .. })
        ));
        // A forger who puts the victim's key as signer but signs with its own key.
        let victim = Keypair::from_seed([3; 32]);
        let mut env = Envelope::sign(&other, "run-a", 7, 42, "payload", b"x").unwrap();
        env.signer = victim.public();
        assert_eq!(
            env.verify(&expect(&victim), b"x"),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn changed_content_byte_and_truncation() {
        let (key, _, sealed) = setup();
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open(&bad, &expect(&key), 1 << 20).unwrap_err(),
            EnvelopeError::ContentChanged
        );
        let truncated = &sealed[..sealed.len() - 3];
        assert_eq!(
            open(truncated, &expect(&key), 1 << 20).unwrap_err(),
            EnvelopeError::ContentChanged
        );
    }

    #[test]
    fn changed_header_byte_breaks_signature() {
        let (key, _, sealed) = setup();
        // Flip one bit in the window field (after magic, version, len, run-id-len, run id, uid).
        let pos = 7 + 1 + "run-a".len() + 4;
        let mut bad = sealed.clone();
        bad[pos] ^= 1;
        assert_eq!(
            open(&bad, &expect(&key), 1 << 20).unwrap_err(),
            EnvelopeError::BadSignature
        );
        // Every single-byte change of the header is detected one way or another.
        for i in 0..(7 + 150).min(sealed.len()) {
            let mut b = sealed.clone();
            b[i] ^= 0x40;
            assert!(
                open(&b, &expect(&key), 1 << 20).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn other_run_and_replayed_window() {
        let (key, _, sealed) = setup();
        let mut e = expect(&key);
        e.run_id = "run-b";
        assert!(matches!(
            open(&sealed, &e, 1 << 20),
            Err(EnvelopeError::WrongRun { .. })
        ));
        let mut e = expect(&key);
        e.window = 43;
        assert_eq!(
            open(&sealed, &e, 1 << 20).unwrap_err(),
            EnvelopeError::WrongWindow {
                expected: 43,
                found: 42
            }
        );
        let mut e = expect(&key);
        e.uid = 8;
        assert!(matches!(
            open(&sealed, &e, 1 << 20),
            Err(EnvelopeError::WrongUid { .. })
        ));
        let mut e = expect(&key);
        e.kind = "fingerprint";
        assert!(matches!(
            open(&sealed, &e, 1 << 20),
            Err(EnvelopeError::WrongKind { .. })
        ));
    }

    #[test]
    fn malformed_and_oversized() {
        let (key, _, sealed) = setup();
        assert!(matches!(
            open(b"", &expect(&key), 100),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            open(b"XXXX\x01\x00\x00", &expect(&key), 100),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            open(&sealed[..20], &expect(&key), 100),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut big_hlen = sealed.clone();
        big_hlen[5] = 0xff;
        big_hlen[6] = 0xff;
        assert!(matches!(
            open(&big_hlen, &expect(&key), 100),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            open(&sealed, &expect(&key), 5),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(Envelope::sign(&key, "", 0, 0, "k", b"").is_err());
        assert!(Envelope::sign(&key, &"r".repeat(200), 0, 0, "k", b"").is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"run_id":"r"}"#).is_err());
    }
}
