//! Test-only misbehaviour of a miner (`covenant miner --behaviour …`), to measure the defences
//! (docs/SECURITY.md). Honest miners never call into this with anything but `Honest`.

use anyhow::Result;
use covenant_codec::{wire, DeltaSource, ModelLayout, TensorPayload};
use covenant_core::rng::{derive_seed, SplitMix64};
use ed25519_dalek::SigningKey;

use crate::runtime::Behaviour;

/// Changes the compressed update according to `b` (noise, scaled, sign-flip, free-rider).
pub fn tamper_payload(
    b: Behaviour,
    payload: &mut [TensorPayload],
    layout: &ModelLayout,
    uid: u32,
    w: u64,
) {
    match b {
        Behaviour::Noise => {
            let mut rng = SplitMix64::new(derive_seed(u64::from(uid), &[w, 0x4E015E]));
            let bins = layout.config.bins as u64;
            for p in payload.iter_mut() {
                let scale = p.lookup.iter().fold(1e-4f32, |m, v| m.max(v.abs()));
                for c in p.codes.iter_mut() {
                    *c = rng.below(bins) as u8;
                }
                for v in p.lookup.iter_mut() {
                    *v = (rng.normal() as f32) * scale;
                }
                p.shift = 0.0;
            }
        }
        Behaviour::Scaled | Behaviour::SignFlip => {
            let f = if b == Behaviour::Scaled { 100.0 } else { -1.0 };
            for p in payload.iter_mut() {
                p.lookup.iter_mut().for_each(|v| *v *= f);
                p.shift *= f;
            }
        }
        Behaviour::FreeRider => {
            for (p, z) in payload.iter_mut().zip(TensorPayload::zeros_for(layout)) {
                *p = z;
            }
        }
        _ => {}
    }
}

/// The update that the outer step from `before` to `after` applied: `(before − after) / lr`,
/// what the `echo` adversary re-uploads as its own.
pub fn echo_update(before: &[Vec<f32>], after: &[Vec<f32>], lr: f32) -> Vec<Vec<f32>> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| b.iter().zip(a).map(|(b, a)| (b - a) / lr).collect())
        .collect()
}

/// The `echo` adversary's payload: the last aggregate compressed like an honest update (top-k
/// per chunk, fresh error feedback), or a zero update when nothing has been aggregated yet.
pub fn echo_payload(layout: &ModelLayout, update: Option<&[Vec<f32>]>) -> Vec<TensorPayload> {
    let Some(update) = update else {
        return TensorPayload::zeros_for(layout);
    };
    let mut ef: Vec<Vec<f32>> = update.iter().map(|u| vec![0.0; u.len()]).collect();
    let mut efs: Vec<&mut [f32]> = ef.iter_mut().map(|e| e.as_mut_slice()).collect();
    let deltas: Vec<DeltaSource> = update.iter().map(|u| DeltaSource::Delta(u)).collect();
    covenant_codec::compress_model(layout, &mut efs, &deltas)
        .unwrap_or_else(|_| TensorPayload::zeros_for(layout))
}

/// Encodes the payload, then breaks it according to `b`: the bytes (malformed, truncated,
/// oversized), the signer (bad signature), the shapes (wrong shape), or the values behind a
/// valid signature (NaN in a lookup table, indices not ascending).
pub fn encode_as(
    b: Behaviour,
    layout: &ModelLayout,
    key: &SigningKey,
    header: wire::PayloadHeader,
    tensors: Vec<TensorPayload>,
) -> Result<Vec<u8>> {
    let opts = wire::EncodeOptions::default();
    match b {
        Behaviour::BadSignature => {
            let other = SigningKey::from_bytes(&[0xBA; 32]);
            Ok(wire::encode(
                &wire::Payload { header, tensors },
                layout,
                &other,
                opts,
            )?)
        }
        Behaviour::WrongShape => {
            // The same tensors with the first one's shape transposed.
            let shapes: Vec<(String, Vec<usize>)> = layout
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut s = t.geom.shape.clone();
                    if i == 0 {
                        s.reverse();
                        if s.len() == 1 {
                            s.push(1);
                        }
                    }
                    (t.name.clone(), s)
                })
                .collect();
            let other = ModelLayout::new(
                layout.config.clone(),
                shapes.iter().map(|(n, s)| (n.clone(), s.as_slice())),
            )?;
            let zeros: Vec<TensorPayload> = TensorPayload::zeros_for(&other);
            Ok(wire::encode(
                &wire::Payload {
                    header,
                    tensors: zeros,
                },
                &other,
                key,
                opts,
            )?)
        }
        Behaviour::Nan | Behaviour::BadIndex => {
            let mut tensors = tensors;
            if b == Behaviour::Nan {
                if let Some(v) = tensors.first_mut().and_then(|t| t.lookup.first_mut()) {
                    *v = f32::NAN;
                }
            } else if let Some((t, p)) = layout
                .tensors
                .iter()
                .zip(tensors.iter_mut())
                .find(|(t, _)| !t.geom.sends_all() && t.geom.k >= 2)
            {
                // The first chunk's indices in descending order.
                p.idx[..t.geom.k].reverse();
            }
            Ok(wire::encode_unchecked(
                &wire::Payload { header, tensors },
                layout,
                key,
            )?)
        }
        _ => {
            let mut bytes = wire::encode(&wire::Payload { header, tensors }, layout, key, opts)?;
            match b {
                Behaviour::Malformed => {
                    let n = bytes.len();
                    bytes[n / 2..].iter_mut().for_each(|x| *x ^= 0x5A);
                }
                Behaviour::Truncated => bytes.truncate(bytes.len() / 2),
                Behaviour::Oversized => bytes.resize(wire::max_encoded_len(layout) + 4096, 0xEE),
                _ => {}
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_codec::CodecConfig;

    fn layout() -> ModelLayout {
        let shapes: [(&str, &[usize]); 2] = [("a", &[128, 64]), ("n", &[64])];
        ModelLayout::new(CodecConfig::default(), shapes).unwrap()
    }

    #[test]
    fn every_broken_encoding_is_refused_by_the_decoder_and_honest_is_not() {
        let l = layout();
        let key = SigningKey::from_bytes(&[1; 32]);
        let header = wire::PayloadHeader {
            run_id: [3; 32],
            window: 5,
            uid: 2,
        };
        let zeros = || TensorPayload::zeros_for(&l);
        let expected = wire::ExpectedModel {
            layout: &l,
            run_id: [3; 32],
            window: 5,
            uid: 2,
        };
        let limits = wire::DecodeLimits::for_layout(&l);
        for b in [
            Behaviour::Honest,
            Behaviour::Malformed,
            Behaviour::Truncated,
            Behaviour::Oversized,
            Behaviour::BadSignature,
            Behaviour::WrongShape,
            Behaviour::Nan,
            Behaviour::BadIndex,
        ] {
            let bytes = encode_as(b, &l, &key, header, zeros()).unwrap();
            let r = wire::decode(&bytes, &expected, &key.verifying_key(), &limits);
            assert_eq!(r.is_ok(), b == Behaviour::Honest, "{b:?}: {r:?}");
            // The value attacks pass the signature and are caught by the checks behind it.
            let why = r.err().map(|e| e.to_string()).unwrap_or_default();
            match b {
                Behaviour::Nan => assert!(why.contains("lookup[0] is not finite"), "{why}"),
                Behaviour::BadIndex => assert!(why.contains("not ascending"), "{why}"),
                _ => {}
            }
        }
    }

    #[test]
    fn tampering_changes_values_as_named() {
        let l = layout();
        let mut p: Vec<TensorPayload> = TensorPayload::zeros_for(&l);
        for q in &mut p {
            q.lookup = vec![-1.0, -0.5, 0.5, 1.0];
            q.shift = 0.25;
        }
        let mut s = p.clone();
        tamper_payload(Behaviour::Scaled, &mut s, &l, 1, 1);
        assert_eq!(s[0].lookup[3], 100.0);
        let mut f = p.clone();
        tamper_payload(Behaviour::SignFlip, &mut f, &l, 1, 1);
        assert_eq!((f[0].lookup[0], f[0].shift), (1.0, -0.25));
        let mut z = p.clone();
        tamper_payload(Behaviour::FreeRider, &mut z, &l, 1, 1);
        assert!(z[0].lookup.iter().all(|v| *v == 0.0));
        let mut n = p.clone();
        tamper_payload(Behaviour::Noise, &mut n, &l, 1, 1);
        assert_ne!(n[0].lookup, p[0].lookup);
        let mut h = p.clone();
        tamper_payload(Behaviour::Honest, &mut h, &l, 1, 1);
        assert_eq!(h, p);
    }

    #[test]
    fn echo_re_uploads_the_last_aggregate() {
        let l = layout();
        // Nothing aggregated yet: a zero update.
        assert!(echo_payload(&l, None).iter().all(|p| p.is_zero()));
        // θ moved by −lr·u: the echo recovers u, and its payload keeps u's largest entries.
        let lr = 0.5f32;
        let u: Vec<Vec<f32>> = l
            .tensors
            .iter()
            .map(|t| {
                (0..t.geom.numel())
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                    .collect()
            })
            .collect();
        let before: Vec<Vec<f32>> = u.iter().map(|t| vec![1.0; t.len()]).collect();
        let after: Vec<Vec<f32>> = before
            .iter()
            .zip(&u)
            .map(|(b, u)| b.iter().zip(u).map(|(b, u)| b - lr * u).collect())
            .collect();
        let got = echo_update(&before, &after, lr);
        for (g, u) in got.iter().zip(&u) {
            for (g, u) in g.iter().zip(u) {
                assert!((g - u).abs() < 1e-5, "{g} vs {u}");
            }
        }
        let p = echo_payload(&l, Some(&got));
        assert!(p.iter().all(|p| !p.is_zero()));
        for ((t, p), u) in l.tensors.iter().zip(&p).zip(&u) {
            let mut out = vec![0f32; t.geom.numel()];
            covenant_codec::decode_dense(&l.config, t, p, &mut out).unwrap();
            // The (quantized) values sent point the way of the update where they are sent,
            // and they are sent where the update is large.
            let on: Vec<(f32, f32)> = out
                .iter()
                .zip(u)
                .filter(|(o, _)| **o != 0.0)
                .map(|(o, u)| (*o, *u))
                .collect();
            assert!(!on.is_empty());
            let dot: f32 = on.iter().map(|(o, u)| o * u).sum();
            let n_o = on.iter().map(|(o, _)| o * o).sum::<f32>().sqrt();
            let n_u = on.iter().map(|(_, u)| u * u).sum::<f32>().sqrt();
            assert!(
                dot / (n_o * n_u) > 0.8,
                "{}: cosine {}",
                t.name,
                dot / (n_o * n_u)
            );
            let mean_abs = |v: &mut dyn Iterator<Item = f32>| {
                let (s, n) = v.fold((0.0, 0), |(s, n), x| (s + x.abs(), n + 1));
                s / n as f32
            };
            let sent = mean_abs(&mut on.iter().map(|(_, u)| *u));
            let all = mean_abs(&mut u.iter().copied());
            assert!(
                t.geom.sends_all() || sent > 1.2 * all,
                "{}: sent |u| {sent}, all {all}",
                t.name
            );
        }
    }
}
