//! Wire format: round trips (proptest) and one test per rejection kind.
mod common;

use covenant_codec::fuzzing::{
    frame_and_sign, fuzz_decode, fuzz_key, fuzz_layout, RUN_ID, UID, WINDOW,
};
use covenant_codec::wire::{FIXED_HEADER_LEN, TRAILER_LEN};
use covenant_codec::{
    decode, encode, CodecConfig, DecodeLimits, EncodeOptions, ExpectedModel, IndexCoding,
    ModelLayout, Payload, PayloadHeader, WireError,
};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn header() -> PayloadHeader {
    PayloadHeader {
        run_id: RUN_ID,
        window: WINDOW,
        uid: UID,
    }
}

fn expected(layout: &ModelLayout) -> ExpectedModel<'_> {
    ExpectedModel {
        layout,
        run_id: RUN_ID,
        window: WINDOW,
        uid: UID,
    }
}

fn enc(layout: &ModelLayout, p: &Payload, coding: IndexCoding) -> Vec<u8> {
    encode(
        p,
        layout,
        &fuzz_key(),
        EncodeOptions {
            index_coding: coding,
        },
    )
    .unwrap()
}

fn dec(layout: &ModelLayout, bytes: &[u8]) -> Result<Payload, WireError> {
    decode(
        bytes,
        &expected(layout),
        &fuzz_key().verifying_key(),
        &DecodeLimits::for_layout(layout),
    )
}

fn sample(layout: &ModelLayout, seed: u64) -> Payload {
    Payload {
        header: header(),
        tensors: common::random_payloads(layout, seed),
    }
}

/// Byte offsets of each tensor's body sections: (lookup, shift, codes, indices, index length).
fn sections(layout: &ModelLayout, bytes: &[u8]) -> Vec<(usize, usize, usize, usize, usize)> {
    let table_len = u32::from_le_bytes(bytes[92..96].try_into().unwrap()) as usize;
    let mut tp = FIXED_HEADER_LEN;
    let mut bp = FIXED_HEADER_LEN + table_len;
    let mut out = Vec::new();
    for t in &layout.tensors {
        let name_len = u16::from_le_bytes(bytes[tp..tp + 2].try_into().unwrap()) as usize;
        tp += 2 + name_len + 1 + 4 * t.geom.shape.len() + 12 + 2;
        let idx_len = u32::from_le_bytes(bytes[tp..tp + 4].try_into().unwrap()) as usize;
        tp += 4;
        let bins = layout.config.bins;
        let lookup = bp;
        let shift = lookup + 4 * bins;
        let codes = shift + 4;
        let idx = codes + t.geom.n_selected().div_ceil(4);
        out.push((lookup, shift, codes, idx, idx_len));
        bp = idx + idx_len;
    }
    out
}

/// Table offset of tensor `i`'s entry.
fn table_entry(layout: &ModelLayout, bytes: &[u8], i: usize) -> usize {
    let mut tp = FIXED_HEADER_LEN;
    for t in &layout.tensors[..i] {
        let name_len = u16::from_le_bytes(bytes[tp..tp + 2].try_into().unwrap()) as usize;
        tp += 2 + name_len + 1 + 4 * t.geom.shape.len() + 12 + 2 + 4;
    }
    tp
}

/// Re-frames and re-signs a tampered message so that checks behind the signature are reached.
fn resign(layout: &ModelLayout, bytes: &[u8]) -> Vec<u8> {
    frame_and_sign(layout, &bytes[..bytes.len() - TRAILER_LEN])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_compressed(seed in any::<u64>(), entropy in any::<bool>()) {
        let layout = fuzz_layout();
        let p = sample(&layout, seed);
        let coding = if entropy { IndexCoding::Entropy } else { IndexCoding::Packed };
        let bytes = enc(&layout, &p, coding);
        prop_assert!(bytes.len() <= DecodeLimits::for_layout(&layout).max_bytes);
        prop_assert_eq!(dec(&layout, &bytes).unwrap(), p);
    }

    #[test]
    fn round_trip_arbitrary(seed in any::<u64>(), entropy in any::<bool>(), bins in 2usize..=4, chunk in 2usize..=64) {
        let cfg = CodecConfig { bins, chunk, ..CodecConfig::default() };
        let shapes: [(&str, &[usize]); 4] = [("a", &[96, 160]), ("b", &[70]), ("c", &[131]), ("d", &[37, 64])];
        let layout = ModelLayout::new(cfg, shapes).unwrap();
        let p = Payload { header: header(), tensors: common::arbitrary_payloads(&layout, seed) };
        let coding = if entropy { IndexCoding::Entropy } else { IndexCoding::Packed };
        let bytes = enc(&layout, &p, coding);
        prop_assert_eq!(dec(&layout, &bytes).unwrap(), p);
    }

    /// Arbitrary bytes, raw or framed and signed, never panic the decoder.
    #[test]
    fn decoder_total_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_decode(&fuzz_layout(), &data);
    }
}

#[test]
fn entropy_mode_is_smaller_and_same_result() {
    let layout = fuzz_layout();
    let p = sample(&layout, 1);
    let packed = enc(&layout, &p, IndexCoding::Packed);
    let rice = enc(&layout, &p, IndexCoding::Entropy);
    assert!(
        rice.len() < packed.len(),
        "{} !< {}",
        rice.len(),
        packed.len()
    );
    assert_eq!(dec(&layout, &rice).unwrap(), dec(&layout, &packed).unwrap());
}

#[test]
fn the_expected_length_is_what_honest_payloads_encode_to() {
    use covenant_codec::wire::{expected_encoded_len, max_encoded_len};
    // A `small`-like layout: chunks of 4096 values, 64 selected in each.
    let shapes: [(&str, &[usize]); 4] = [
        ("embed", &[1024, 512]),
        ("q", &[512, 512]),
        ("mlp", &[1408, 512]),
        ("norm", &[512]),
    ];
    let layout = ModelLayout::new(CodecConfig::default(), shapes).unwrap();
    let opts = |index_coding| EncodeOptions { index_coding };
    let packed_len = expected_encoded_len(&layout, opts(IndexCoding::Packed));
    assert_eq!(packed_len, max_encoded_len(&layout));
    let want = expected_encoded_len(&layout, opts(IndexCoding::Entropy));
    assert!(want < packed_len, "{want} !< {packed_len}");
    for seed in 1..4 {
        let p = sample(&layout, seed);
        assert_eq!(enc(&layout, &p, IndexCoding::Packed).len(), packed_len);
        let got = enc(&layout, &p, IndexCoding::Entropy).len();
        let err = got as f64 / want as f64 - 1.0;
        assert!(
            err.abs() < 0.02,
            "Rice: {got} bytes, expected {want} ({err:+.3})"
        );
    }
}

#[test]
fn smoke_fuzz_mutations() {
    // A few thousand mutated payloads through the fuzz body (bit flips, truncations, splices),
    // both raw and re-signed so the checks behind the signature are exercised.
    let layout = fuzz_layout();
    let base = enc(&layout, &sample(&layout, 5), IndexCoding::Packed);
    let base_rice = enc(&layout, &sample(&layout, 6), IndexCoding::Entropy);
    let mut rng = common::Rng::new(99);
    let mut accepted = 0;
    for it in 0..3000 {
        let src = if it % 2 == 0 { &base } else { &base_rice };
        let mut m = src[..src.len() - TRAILER_LEN].to_vec();
        for _ in 0..1 + rng.below(4) {
            if m.is_empty() {
                m.push(rng.next_u64() as u8);
                continue;
            }
            match rng.below(4) {
                0 => {
                    let i = rng.below(m.len());
                    m[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(m.len());
                    m[i] = rng.next_u64() as u8;
                }
                2 => m.truncate(rng.below(m.len() + 1)),
                _ => {
                    let i = rng.below(m.len() + 1);
                    m.insert(i.min(m.len()), rng.next_u64() as u8);
                }
            }
        }
        let mut data = vec![1u8];
        data.extend_from_slice(&m);
        fuzz_decode(&layout, &data);
        let mut raw = vec![0u8];
        raw.extend_from_slice(&m);
        fuzz_decode(&layout, &raw);
        if dec(&layout, &frame_and_sign(&layout, &m)).is_ok() {
            accepted += 1;
        }
    }
    // Most mutations must be caught (a flipped code or lookup bit can legitimately survive).
    assert!(
        accepted < 2000,
        "{accepted} of 3000 mutated payloads accepted"
    );
}

// ---- one test per rejection kind ----

fn fixture() -> (ModelLayout, Vec<u8>) {
    let layout = fuzz_layout();
    let bytes = enc(&layout, &sample(&layout, 3), IndexCoding::Packed);
    (layout, bytes)
}

#[test]
fn accepts_untampered() {
    let (layout, bytes) = fixture();
    assert!(dec(&layout, &bytes).is_ok());
    // and frame_and_sign of an untampered message is the identity
    assert_eq!(resign(&layout, &bytes), bytes);
}

#[test]
fn rejects_too_large_before_anything_else() {
    let (layout, bytes) = fixture();
    let limits = DecodeLimits {
        max_bytes: bytes.len() - 1,
        ..DecodeLimits::for_layout(&layout)
    };
    let e = decode(
        &bytes,
        &expected(&layout),
        &fuzz_key().verifying_key(),
        &limits,
    )
    .unwrap_err();
    assert!(matches!(e, WireError::TooLarge { .. }), "{e}");
}

#[test]
fn rejects_truncation() {
    let (layout, bytes) = fixture();
    for cut in [0, 5, 50, FIXED_HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
        let e = dec(&layout, &bytes[..cut]).unwrap_err();
        assert!(
            matches!(
                e,
                WireError::Truncated { .. } | WireError::LengthMismatch { .. }
            ),
            "cut {cut}: {e}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    // one extra byte is beyond the limit for this layout
    assert!(matches!(
        dec(&layout, &longer).unwrap_err(),
        WireError::TooLarge { .. }
    ));
}

#[test]
fn rejects_header_fields() {
    let (layout, bytes) = fixture();
    let mut b = bytes.clone();
    b[0] ^= 0xFF;
    assert!(matches!(
        dec(&layout, &b).unwrap_err(),
        WireError::BadMagic(_)
    ));
    let mut b = bytes.clone();
    b[8] = 2;
    assert!(matches!(
        dec(&layout, &b).unwrap_err(),
        WireError::UnsupportedVersion(2)
    ));
    let mut b = bytes.clone();
    b[10] = 1;
    assert!(matches!(
        dec(&layout, &b).unwrap_err(),
        WireError::ReservedFlags(1)
    ));
    let mut b = bytes.clone();
    b[88] = 4;
    assert!(matches!(
        dec(&layout, &b).unwrap_err(),
        WireError::TensorCount {
            expected: 5,
            got: 4
        }
    ));
    b[88] = 9;
    assert!(matches!(
        dec(&layout, &b).unwrap_err(),
        WireError::LimitExceeded {
            what: "tensor count",
            got: 9,
            max: 5
        }
    ));
    let mut b = bytes.clone();
    b[96] ^= 1;
    assert!(matches!(
        dec(&layout, &b).unwrap_err(),
        WireError::LengthMismatch { .. }
    ));
}

#[test]
fn rejects_wrong_sender_or_model() {
    let (layout, bytes) = fixture();
    let key = fuzz_key().verifying_key();
    let limits = DecodeLimits::for_layout(&layout);
    let mut ex = expected(&layout);
    ex.run_id[0] ^= 1;
    assert_eq!(
        decode(&bytes, &ex, &key, &limits).unwrap_err(),
        WireError::RunMismatch
    );
    let mut ex = expected(&layout);
    ex.window += 1;
    assert!(matches!(
        decode(&bytes, &ex, &key, &limits).unwrap_err(),
        WireError::WindowMismatch { .. }
    ));
    let mut ex = expected(&layout);
    ex.uid += 1;
    assert!(matches!(
        decode(&bytes, &ex, &key, &limits).unwrap_err(),
        WireError::UidMismatch { .. }
    ));
    // same shapes, different config → different model hash
    let other = ModelLayout::new(
        CodecConfig {
            ef_decay: 0.9,
            ..CodecConfig::default()
        },
        layout
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.geom.shape.as_slice())),
    )
    .unwrap();
    let e = decode(&bytes, &expected(&other), &key, &limits).unwrap_err();
    assert_eq!(e, WireError::ModelHashMismatch);
}

#[test]
fn rejects_bad_signature_and_hash() {
    let (layout, bytes) = fixture();
    // wrong key
    let other = SigningKey::from_bytes(&[1u8; 32]).verifying_key();
    let e = decode(
        &bytes,
        &expected(&layout),
        &other,
        &DecodeLimits::for_layout(&layout),
    )
    .unwrap_err();
    assert_eq!(e, WireError::BadSignature);
    // tampered table byte (covered by the signature)
    let mut b = bytes.clone();
    b[FIXED_HEADER_LEN + 2] ^= 1;
    assert_eq!(dec(&layout, &b).unwrap_err(), WireError::BadSignature);
    // tampered body byte: the signed hash no longer matches
    let mut b = bytes.clone();
    let (_, _, codes, _, _) = sections(&layout, &bytes)[0];
    b[codes] ^= 1;
    assert_eq!(dec(&layout, &b).unwrap_err(), WireError::BodyHash);
    // tampered signature
    let mut b = bytes.clone();
    let n = b.len();
    b[n - 1] ^= 1;
    assert_eq!(dec(&layout, &b).unwrap_err(), WireError::BadSignature);
}

#[test]
fn rejects_table_mismatches() {
    let (layout, bytes) = fixture();
    // name
    let mut b = bytes.clone();
    b[FIXED_HEADER_LEN + 2] = b'x';
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::TensorName { index: 0, .. }
    ));
    // name not UTF-8
    let mut b = bytes.clone();
    b[FIXED_HEADER_LEN + 2] = 0xFF;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::NameNotUtf8 { index: 0 }
    ));
    // name too long for the limits
    let mut b = bytes.clone();
    b[FIXED_HEADER_LEN] = 200;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::LimitExceeded { .. }
    ));
    // shape: tensor "w" [128,128] → [128,129]
    let t0 = table_entry(&layout, &bytes, 0);
    let dims = t0 + 2 + 1 + 1;
    let mut b = bytes.clone();
    b[dims + 4] = 129;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::TensorShape { .. }
    ));
    // rank
    let mut b = bytes.clone();
    b[t0 + 3] = 1;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::Geometry { field: "rank", .. }
    ));
    // k
    let kpos = dims + 8 + 8;
    let mut b = bytes.clone();
    b[kpos] = 62;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::Geometry { field: "k", .. }
    ));
    // index mode "all" on a sparse tensor
    let mut b = bytes.clone();
    b[kpos + 4] = 0;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::BadIndexMode { mode: 0, .. }
    ));
    // index section length
    let mut b = bytes.clone();
    b[kpos + 6] ^= 1;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::SectionLength { .. }
    ));
}

#[test]
fn rejects_non_finite_lookup_and_shift() {
    let (layout, bytes) = fixture();
    let (lookup, shift, ..) = sections(&layout, &bytes)[1];
    let mut b = bytes.clone();
    b[lookup + 4..lookup + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::NonFiniteLookup { bin: 1, .. }
    ));
    let mut b = bytes.clone();
    b[shift..shift + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::NonFiniteShift { .. }
    ));
}

#[test]
fn rejects_code_padding_and_range() {
    let (layout, bytes) = fixture();
    // "prime" [67]: 67 codes → the last byte has 2 unused bits
    let (_, _, codes, idx, _) = sections(&layout, &bytes)[4];
    assert_eq!(idx - codes, 17);
    let mut b = bytes.clone();
    b[idx - 1] |= 0xC0;
    assert!(matches!(
        dec(&layout, &resign(&layout, &b)).unwrap_err(),
        WireError::BadPadding {
            section: "codes",
            ..
        }
    ));
    // with 3 bins, code 3 is out of range
    let layout3 = ModelLayout::new(
        CodecConfig {
            bins: 3,
            ..CodecConfig::default()
        },
        layout
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.geom.shape.as_slice())),
    )
    .unwrap();
    let p = Payload {
        header: header(),
        tensors: common::arbitrary_payloads(&layout3, 4),
    };
    let b3 = enc(&layout3, &p, IndexCoding::Packed);
    let (_, _, codes, ..) = sections(&layout3, &b3)[0];
    let mut b = b3.clone();
    b[codes] = 0xFF;
    let e = dec(
        &layout3,
        &frame_and_sign(&layout3, &b[..b.len() - TRAILER_LEN]),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            WireError::CodeOutOfRange {
                code: 3,
                bins: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_bad_indices() {
    let (layout, bytes) = fixture();
    // tensor "odd" [90]: chunk length 45, k 44 → 12-bit packed indices
    let (_, _, _, idx, idx_len) = sections(&layout, &bytes)[2];
    assert_eq!(idx_len, 2 * 44 * 3 / 2);
    // first pair of chunk 0 → (50, 51): out of range
    let mut b = bytes.clone();
    b[idx..idx + 3].copy_from_slice(&[50, 0x30, 3]);
    let e = dec(&layout, &resign(&layout, &b)).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::IndexOutOfRange {
                chunk: 0,
                index: 50,
                chunk_len: 45,
                ..
            }
        ),
        "{e}"
    );
    // first pair → (1, 1): duplicate
    let mut b = bytes.clone();
    b[idx..idx + 3].copy_from_slice(&[1, 0x10, 0]);
    let e = dec(&layout, &resign(&layout, &b)).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::IndexOrder {
                chunk: 0,
                index: 1,
                ..
            }
        ),
        "{e}"
    );
    // first pair → (5, 2): descending
    let mut b = bytes.clone();
    b[idx..idx + 3].copy_from_slice(&[5, 0x20, 0]);
    let e = dec(&layout, &resign(&layout, &b)).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::IndexOrder {
                chunk: 0,
                index: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_bad_entropy_indices() {
    let layout = fuzz_layout();
    let bytes = enc(&layout, &sample(&layout, 8), IndexCoding::Entropy);
    let (_, _, _, idx, idx_len) = sections(&layout, &bytes)[0];
    assert!(idx_len > 0);
    // all ones: the unary quotient runs past the chunk
    let mut b = bytes.clone();
    b[idx..idx + 16].iter_mut().for_each(|x| *x = 0xFF);
    let e = dec(&layout, &resign(&layout, &b)).unwrap_err();
    assert!(matches!(e, WireError::IndexOutOfRange { .. }), "{e}");
    // the last byte's padding
    let t = (0..layout.tensors.len())
        .find(|&i| {
            let (_, _, _, p, l) = sections(&layout, &bytes)[i];
            l > 0 && bytes[p + l - 1] & 0x80 == 0
        })
        .unwrap();
    let (_, _, _, p, l) = sections(&layout, &bytes)[t];
    let mut b = bytes.clone();
    b[p + l - 1] |= 0x80;
    let e = dec(&layout, &resign(&layout, &b)).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::IndexTrailing { .. }
                | WireError::IndexOutOfRange { .. }
                | WireError::IndexTruncated { .. }
        ),
        "{e}"
    );
    // zero bytes: every gap is 0 → the section ends early
    let mut b = bytes.clone();
    b[idx..idx + idx_len].iter_mut().for_each(|x| *x = 0);
    let e = dec(&layout, &resign(&layout, &b)).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::IndexTrailing { .. } | WireError::IndexTruncated { .. }
        ),
        "{e}"
    );
}

#[test]
fn encode_refuses_invalid_payloads() {
    let layout = fuzz_layout();
    let mut p = sample(&layout, 2);
    p.tensors[0].idx.swap(0, 1);
    let e = encode(&p, &layout, &fuzz_key(), EncodeOptions::default()).unwrap_err();
    assert!(matches!(e, WireError::Unencodable { .. }));
    let mut p = sample(&layout, 2);
    p.tensors[1].lookup[0] = f32::NAN;
    assert!(encode(&p, &layout, &fuzz_key(), EncodeOptions::default()).is_err());
}

#[test]
fn rice_round_trip_edge_cases() {
    use covenant_codec::rice;
    // gaps of every size incl. long unary runs (p = 0 with a gap of 4000), chunk ends
    let chunk_len = 4096;
    let cases: Vec<Vec<u16>> = vec![
        vec![0, 1, 2, 3],
        vec![4000, 4001, 4094, 4095],
        vec![0, 4095, 4095, 4095][..2].to_vec(),
        (0..64).map(|i| i * 64 + 63).collect(),
    ];
    for idx in cases {
        let k = idx.len();
        for p in 0..=13u8 {
            let mut bytes = Vec::new();
            rice::encode(&idx, k, p, &mut bytes);
            assert_eq!(bytes.len() as u64, rice::cost_bits(&idx, k, p).div_ceil(8));
            let mut back = Vec::new();
            rice::decode(&bytes, 1, k, chunk_len, p, &mut back).unwrap();
            assert_eq!(back, idx, "p {p}");
            // one byte more or less is rejected
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(rice::decode(&longer, 1, k, chunk_len, p, &mut Vec::new()).is_err());
            if !bytes.is_empty() {
                assert!(rice::decode(
                    &bytes[..bytes.len() - 1],
                    1,
                    k,
                    chunk_len,
                    p,
                    &mut Vec::new()
                )
                .is_err());
            }
        }
    }
}

#[test]
fn fuzz_seeds_are_accepted() {
    let layout = fuzz_layout();
    let seeds = covenant_codec::fuzzing::seed_inputs();
    assert_eq!(seeds.len(), 12);
    for s in &seeds {
        let msg = if s[0] == 1 {
            frame_and_sign(&layout, &s[1..])
        } else {
            s[1..].to_vec()
        };
        dec(&layout, &msg).unwrap();
        fuzz_decode(&layout, s);
    }
}

#[test]
fn rejects_table_and_body_length_disagreements() {
    let (layout, bytes) = fixture();
    // table_len one byte longer: the table has a spare byte after its entries
    let mut b = bytes[..bytes.len() - TRAILER_LEN].to_vec();
    let tl = u32::from_le_bytes(b[92..96].try_into().unwrap()) + 1;
    b[92..96].copy_from_slice(&tl.to_le_bytes());
    let e = dec(&layout, &frame_and_sign(&layout, &b)).unwrap_err();
    assert!(matches!(e, WireError::TableLength { .. }), "{e}");
    // a Rice section declared one byte shorter than it is: sections no longer add up to the body
    let rice = enc(&layout, &sample(&layout, 4), IndexCoding::Entropy);
    let t0 = table_entry(&layout, &rice, 0);
    let len_pos = t0 + 2 + 1 + 1 + 8 + 12 + 2;
    assert_eq!(rice[len_pos - 2], 3, "tensor 0 is Rice-coded");
    let mut b = rice[..rice.len() - TRAILER_LEN].to_vec();
    let l = u32::from_le_bytes(b[len_pos..len_pos + 4].try_into().unwrap()) - 1;
    b[len_pos..len_pos + 4].copy_from_slice(&l.to_le_bytes());
    let e = dec(&layout, &frame_and_sign(&layout, &b)).unwrap_err();
    assert!(matches!(e, WireError::BodyLength { .. }), "{e}");
}

/// lookup[b] and shift are each finite, but their sum overflows: the decoder must refuse it
/// (issue 14, item 2), for a used or an unused bin, whichever sign.
#[test]
fn rejects_values_that_decode_to_non_finite() {
    let layout = fuzz_layout();
    for (lookup, shift) in [(HUGE, HUGE), (-HUGE, -HUGE), (f32::MAX, f32::MAX)] {
        let mut p = sample(&layout, 4);
        p.tensors[1].lookup[2] = lookup;
        p.tensors[1].shift = shift;
        for l in [0, 1, 3] {
            p.tensors[1].lookup[l] = -shift; // the other bins decode to exactly 0
        }
        let bytes = covenant_codec::wire::encode_unchecked(&p, &layout, &fuzz_key()).unwrap();
        let e = dec(&layout, &bytes).expect_err("lookup + shift overflows");
        let WireError::NonFiniteValue {
            tensor, bin, value, ..
        } = &e
        else {
            panic!("wrong error: {e}");
        };
        assert_eq!(
            (tensor.as_str(), *bin),
            (layout.tensors[1].name.as_str(), 2)
        );
        assert!(
            value.is_infinite() && value.signum() == shift.signum(),
            "{e}"
        );
        let e = encode(&p, &layout, &fuzz_key(), EncodeOptions::default()).unwrap_err();
        assert!(matches!(e, WireError::NonFiniteValue { bin: 2, .. }), "{e}");
    }
    // the largest finite sums are still accepted
    let mut p = sample(&layout, 4);
    p.tensors[1].lookup = vec![f32::MAX / 2.0, -f32::MAX, 0.0, 1.0];
    p.tensors[1].shift = f32::MAX / 2.0; // bin 0 decodes to exactly f32::MAX
    let bytes = enc(&layout, &p, IndexCoding::Packed);
    assert_eq!(dec(&layout, &bytes).unwrap(), p);
}

const HUGE: f32 = f32::MAX * 0.75;
