//! The decoder fuzz body, shared by `fuzz/fuzz_targets/decode_payload.rs` and the `cargo test`
//! smoke harness. Not part of the stable API.
use ed25519_dalek::{Signer, SigningKey};

use crate::config::CodecConfig;
use crate::geometry::ModelLayout;
use crate::wire::{self, DecodeLimits, ExpectedModel, FIXED_HEADER_LEN};

/// A small model with every index mode and edge case: 64×64 tiles, divisor fallback, odd chunk
/// (k rounded down), all-sent vector, prime length (dense, chunk length 1).
pub fn fuzz_layout() -> ModelLayout {
    let shapes: [(&str, &[usize]); 5] = [
        ("w", &[128, 128]),
        ("f", &[100, 96]),
        ("odd", &[90]),
        ("norm", &[64]),
        ("prime", &[67]),
    ];
    ModelLayout::new(CodecConfig::default(), shapes).expect("static layout is valid")
}

pub const RUN_ID: [u8; 32] = [7; 32];
pub const WINDOW: u64 = 42;
pub const UID: u32 = 3;

pub fn fuzz_key() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

/// Rewrites `data` into a correctly framed and signed message for the fuzz layout: identity fields,
/// lengths, body hash and signature are fixed up so that the decoder's table and body validation
/// (behind the signature) is reachable. `data` is treated as header + table + body.
pub fn frame_and_sign(layout: &ModelLayout, data: &[u8]) -> Vec<u8> {
    let mut m = data.to_vec();
    if m.len() < FIXED_HEADER_LEN {
        m.resize(FIXED_HEADER_LEN, 0);
    }
    m[0..8].copy_from_slice(&wire::MAGIC);
    m[8..10].copy_from_slice(&wire::VERSION.to_le_bytes());
    m[12..44].copy_from_slice(&RUN_ID);
    m[44..52].copy_from_slice(&WINDOW.to_le_bytes());
    m[52..56].copy_from_slice(&UID.to_le_bytes());
    m[56..88].copy_from_slice(&layout.hash);
    m[88..92].copy_from_slice(&(layout.tensors.len() as u32).to_le_bytes());
    let rest = m.len() - FIXED_HEADER_LEN;
    let table_len = (u32::from_le_bytes([m[92], m[93], m[94], m[95]]) as usize).min(rest);
    m[92..96].copy_from_slice(&(table_len as u32).to_le_bytes());
    let body_len = rest - table_len;
    m[96..104].copy_from_slice(&(body_len as u64).to_le_bytes());
    let signed_end = FIXED_HEADER_LEN + table_len;
    let hash = blake3::hash(&m[signed_end..]);
    let mut msg = m[..signed_end].to_vec();
    msg.extend_from_slice(hash.as_bytes());
    let sig = fuzz_key().sign(&msg);
    m.extend_from_slice(hash.as_bytes());
    m.extend_from_slice(&sig.to_bytes());
    m
}

/// One fuzz iteration. Byte 0 picks the mode: even = decode the rest as is; odd = frame and sign
/// the rest first. Panics only if the decoder misbehaves (a panic inside it, or an accepted payload
/// that does not re-encode to the same bytes).
pub fn fuzz_decode(layout: &ModelLayout, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = fuzz_key();
    let expected = ExpectedModel {
        layout,
        run_id: RUN_ID,
        window: WINDOW,
        uid: UID,
    };
    let limits = DecodeLimits::for_layout(layout);
    let msg = if mode & 1 == 1 {
        frame_and_sign(layout, rest)
    } else {
        rest.to_vec()
    };
    if let Ok(p) = wire::decode(&msg, &expected, &key.verifying_key(), &limits) {
        // Anything accepted must be canonical: it re-encodes to exactly the same bytes with
        // the same coding choices, or at least decodes to the same payload.
        let coding = if msg.len() < wire::max_encoded_len(layout) {
            wire::IndexCoding::Entropy
        } else {
            wire::IndexCoding::Packed
        };
        let again = wire::encode(
            &p,
            layout,
            &key,
            wire::EncodeOptions {
                index_coding: coding,
            },
        )
        .expect("an accepted payload must be encodable");
        let back = wire::decode(&again, &expected, &key.verifying_key(), &limits)
            .expect("a re-encoded payload must decode");
        assert_eq!(back, p, "decode(encode(decode(x))) != decode(x)");
    }
}

/// Valid inputs for the fuzzer's corpus: compressed pseudo-random tensors, encoded with packed and
/// with Rice indices, in the "frame and sign" mode (byte 0 = 1, trailer stripped).
pub fn seed_inputs() -> Vec<Vec<u8>> {
    use crate::compress::{compress_tensor, DeltaSource};
    use crate::wire::{EncodeOptions, IndexCoding, Payload, PayloadHeader, TRAILER_LEN};
    let layout = fuzz_layout();
    let key = fuzz_key();
    let mut out = Vec::new();
    for seed in 0..3u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let mut tensors = Vec::new();
        for t in &layout.tensors {
            let n = t.geom.numel();
            let mut ef: Vec<f32> = (0..n).map(|_| next()).collect();
            let d: Vec<f32> = (0..n).map(|_| next()).collect();
            match compress_tensor(&layout.config, t, &mut ef, DeltaSource::Delta(&d)) {
                Ok(p) => tensors.push(p),
                Err(_) => return out,
            }
        }
        let p = Payload {
            header: PayloadHeader {
                run_id: RUN_ID,
                window: WINDOW,
                uid: UID,
            },
            tensors,
        };
        for coding in [IndexCoding::Packed, IndexCoding::Entropy] {
            if let Ok(bytes) = wire::encode(
                &p,
                &layout,
                &key,
                EncodeOptions {
                    index_coding: coding,
                },
            ) {
                let mut input = vec![1u8];
                input.extend_from_slice(&bytes[..bytes.len() - TRAILER_LEN]);
                out.push(input);
                let mut raw = vec![0u8];
                raw.extend_from_slice(&bytes);
                out.push(raw);
            }
        }
    }
    out
}
