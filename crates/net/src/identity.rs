//! Participant identities: ed25519 key pairs, stored in key files readable only by their owner.
//!
//! The public key is the participant's identity on chain and in every signed envelope.
//!
//! Key file format (JSON, one object, at most [`MAX_KEY_FILE_BYTES`]):
//! `{"type":"covenant-ed25519","version":1,"public":"<64 hex>","secret":"<64 hex>"}`.
//! The file is created with mode 0600 and refused on load when group or others can read it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hex;

/// Largest key file accepted on load (a real one is about 180 bytes).
pub const MAX_KEY_FILE_BYTES: u64 = 4096;
const KEY_TYPE: &str = "covenant-ed25519";

/// What went wrong with a key or a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} already exists (use --force to overwrite)")]
    Exists { path: PathBuf },
    // Not a `source`: the message already holds the OS error (no repetition in error chains).
    #[error("key file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("key file {path}: public key does not match the secret key")]
    Mismatch { path: PathBuf },
    #[error("could not get randomness from the OS: {0}")]
    Randomness(String),
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
}

/// A participant's public key (its identity).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
    /// Parses 64 hex digits and checks that they are a valid ed25519 point.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode_array::<32>(s.trim())
            .ok_or_else(|| KeyError::InvalidPublicKey(format!("not 64 hex digits: {s:?}")))?;
        VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?;
        Ok(PublicKey(bytes))
    }
    /// The dalek verifying key, or `None` if the bytes are not a valid point.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
    /// Verifies `sig` over `msg` (strict verification: no malleable signatures).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        match self.verifying_key() {
            Some(vk) => vk
                .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok(),
            None => false,
        }
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}
impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 key pair. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair(public {})", self.public().to_hex())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    public: String,
    secret: String,
}

impl Keypair {
    /// A fresh key pair from the OS's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Randomness(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }
    /// A key pair from a 32-byte secret seed (deterministic; for tests and simulations).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
    /// The ed25519 signing key (the codec's wire format signs payloads with it directly).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Writes the key file with mode 0600; refuses to replace an existing file unless `force`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), KeyError> {
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        let body = serde_json::to_string(&KeyFile {
            kind: KEY_TYPE.into(),
            version: 1,
            public: self.public().to_hex(),
            secret: hex::encode(self.signing.as_bytes()),
        })
        .map_err(|e| KeyError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if path.exists() && !force {
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        // Write a private temporary file beside the target, then rename it into place.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path.file_name().ok_or_else(|| KeyError::Malformed {
            path: path.to_path_buf(),
            reason: "path has no file name".into(),
        })?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let _ = fs::remove_file(&tmp);
        let mut f = opts.open(&tmp).map_err(io)?;
        let written = f
            .write_all(body.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all());
        drop(f);
        if let Err(e) = written {
            // A full disk: leave no partial key file behind.
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        if !force && path.exists() {
            let _ = fs::remove_file(&tmp);
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Loads a key file, checking its permissions (unix: no group/other access), size and format,
    /// and that the stored public key matches the secret.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let p = || path.to_path_buf();
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        let f = fs::File::open(path).map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path: p(), mode });
            }
        }
        if meta.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge { path: p() });
        }
        let mut body = String::new();
        f.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_string(&mut body)
            .map_err(io)?;
        if body.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge { path: p() });
        }
        let kf: KeyFile = serde_json::from_str(&body).map_err(|e| KeyError::Malformed {
            path: p(),
            reason: e.to_string(),
        })?;
        if kf.kind != KEY_TYPE || kf.version != 1 {
            return Err(KeyError::Malformed {
                path: p(),
                reason: format!("unsupported key type {:?} version {}", kf.kind, kf.version),
            });
        }
        let secret = hex::decode_array::<32>(&kf.secret).ok_or_else(|| KeyError::Malformed {
            path: p(),
            reason: "secret is not 64 hex digits".into(),
        })?;
        let public = hex::decode_array::<32>(&kf.public).ok_or_else(|| KeyError::Malformed {
            path: p(),
            reason: "public is not 64 hex digits".into(),
        })?;
        let kp = Keypair::from_seed(secret);
        if kp.public().0 != public {
            return Err(KeyError::Mismatch { path: p() });
        }
        Ok(kp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_roundtrip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let kp = Keypair::generate().unwrap();
        kp.save(&path, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let back = Keypair::load(&path).unwrap();
        assert_eq!(back.public(), kp.public());
        assert_eq!(back.sign(b"x"), kp.sign(b"x"));
        // Refuses to overwrite without force, keeps the old key.
        let other = Keypair::generate().unwrap();
        assert!(matches!(
            other.save(&path, false),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(Keypair::load(&path).unwrap().public(), kp.public());
        other.save(&path, true).unwrap();
        assert_eq!(Keypair::load(&path).unwrap().public(), other.public());
    }

    #[cfg(unix)]
    #[test]
    fn load_rejects_open_permissions_and_bad_content() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        Keypair::generate().unwrap().save(&path, false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keypair::load(&path),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));

        let write = |body: &[u8]| {
            fs::write(&path, body).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        };
        write(b"not json");
        assert!(matches!(
            Keypair::load(&path),
            Err(KeyError::Malformed { .. })
        ));
        write(&vec![b' '; 5000]);
        assert!(matches!(
            Keypair::load(&path),
            Err(KeyError::TooLarge { .. })
        ));
        // A public key that does not belong to the secret.
        let a = Keypair::from_seed([1; 32]);
        let b = Keypair::from_seed([2; 32]);
        let body = format!(
            r#"{{"type":"covenant-ed25519","version":1,"public":"{}","secret":"{}"}}"#,
            b.public().to_hex(),
            hex::encode(&[1u8; 32])
        );
        write(body.as_bytes());
        assert!(matches!(
            Keypair::load(&path),
            Err(KeyError::Mismatch { .. })
        ));
        let body = format!(
            r#"{{"type":"covenant-ed25519","version":1,"public":"{}","secret":"{}"}}"#,
            a.public().to_hex(),
            hex::encode(&[1u8; 32])
        );
        write(body.as_bytes());
        assert_eq!(Keypair::load(&path).unwrap().public(), a.public());
        assert!(matches!(
            Keypair::load(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn public_key_hex_validation() {
        let kp = Keypair::from_seed([7; 32]);
        assert_eq!(
            PublicKey::from_hex(&kp.public().to_hex()).unwrap(),
            kp.public()
        );
        assert!(PublicKey::from_hex("zz").is_err());
        let sig = kp.sign(b"m");
        assert!(kp.public().verify(b"m", &sig));
        assert!(!kp.public().verify(b"n", &sig));
    }
}
