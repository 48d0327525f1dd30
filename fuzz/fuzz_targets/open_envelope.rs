//! Fuzzes the signed-envelope parser (covenant_net::envelope). Byte 0 of each input picks the mode:
//! - 0: the rest is a sealed object: `open` it against fixed expectations, and parse the header
//!   region on its own with `Envelope::parse_header`. Anything `open` accepts must be exactly what
//!   `seal` writes for the same fields (no second encoding of one envelope is accepted).
//! - 1: the same, but if the header parses, the fields and content are re-sealed with the
//!   expected key first, so that the checks behind the signature (run, window, uid, kind, content
//!   hash, size limit) are reached; a sealed object must open to exactly what was sealed.
//! - 2: the rest is the JSON form of an envelope: it must round-trip through JSON and the binary
//!   header, and `verify` must give a typed answer.
//!
//! Seeds: `cargo run --release -p covenant-net --example fuzz_seeds_net -- open_envelope DIR`.
#![no_main]

use std::sync::OnceLock;

use covenant_net::envelope::{open, seal, Envelope, EnvelopeError, Expected};
use covenant_net::Keypair;
use libfuzzer_sys::fuzz_target;

/// The key and expectations the seeds are made with (see crates/net/examples/fuzz_seeds_net.rs).
const SEED: [u8; 32] = [7; 32];
const RUN: &str = "fuzz-run";
const UID: u32 = 7;
const WINDOW: u64 = 42;
const KIND: &str = "payload";
const MAX_CONTENT: u64 = 4096;

static KEY: OnceLock<Keypair> = OnceLock::new();

fn header_region(sealed: &[u8]) -> Option<&[u8]> {
    if sealed.len() < 7 {
        return None;
    }
    let hlen = u16::from_le_bytes([sealed[5], sealed[6]]) as usize;
    sealed.get(7..7 + hlen)
}

fn check_open(key: &Keypair, sealed: &[u8], expect: &Expected<'_>) {
    match open(sealed, expect, MAX_CONTENT) {
        Ok((env, content)) => {
            assert_eq!(env.signer, key.public());
            assert!(content.len() as u64 <= MAX_CONTENT);
            let again = seal(key, &env.run_id, env.uid, env.window, &env.kind, content)
                .expect("an accepted envelope re-seals");
            assert_eq!(again, sealed, "accepted envelope is not canonical");
        }
        Err(e) => {
            // Every rejection renders to a message (no panics in Display).
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = KEY.get_or_init(|| Keypair::from_seed(SEED));
    let expect = Expected {
        run_id: RUN,
        uid: UID,
        window: WINDOW,
        kind: KIND,
        signer: key.public(),
    };
    match mode % 3 {
        0 => {
            check_open(key, rest, &expect);
            if let Some(h) = header_region(rest) {
                if let Ok(env) = Envelope::parse_header(h) {
                    assert_eq!(env.header_bytes(), h, "header does not round-trip");
                }
            }
            let _ = Envelope::parse_header(rest);
        }
        1 => {
            let Some(h) = header_region(rest) else { return };
            let Ok(env) = Envelope::parse_header(h) else {
                return;
            };
            let content = &rest[7 + h.len()..];
            let sealed = seal(key, &env.run_id, env.uid, env.window, &env.kind, content)
                .expect("fields of a parsed header are sealable");
            let r = open(&sealed, &expect, MAX_CONTENT);
            let matches =
                env.run_id == RUN && env.uid == UID && env.window == WINDOW && env.kind == KIND;
            match r {
                Ok((got, c)) => {
                    assert!(matches, "opened an envelope for other fields");
                    assert_eq!(c, content);
                    assert_eq!(
                        (got.run_id, got.uid, got.window, got.kind),
                        (env.run_id, env.uid, env.window, env.kind)
                    );
                }
                Err(EnvelopeError::TooLarge { .. }) => assert!(content.len() as u64 > MAX_CONTENT),
                Err(e) => assert!(!matches, "honest envelope rejected: {e}"),
            }
            check_open(key, &sealed, &expect);
        }
        _ => {
            let Ok(env) = serde_json::from_slice::<Envelope>(rest) else {
                return;
            };
            let json = serde_json::to_vec(&env).expect("serialise");
            let back: Envelope = serde_json::from_slice(&json).expect("JSON round-trip");
            assert_eq!(back, env);
            let h = env.header_bytes();
            assert_eq!(Envelope::parse_header(&h).expect("binary round-trip"), env);
            let _ = env.verify(&expect, b"");
        }
    }
});
