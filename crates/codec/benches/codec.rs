//! Criterion benches: compress and 20-peer aggregate on the BASELINES.md shape list, wire
//! encode/decode, and copy bandwidth. `cargo bench -p covenant-codec --bench codec`.
mod common;
mod shapes;

use covenant_codec::{
    aggregate_apply_model, decode, encode, DecodeLimits, EncodeOptions, ExpectedModel, IndexCoding,
    Payload, PayloadHeader, TensorPayload,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::SigningKey;

fn header() -> PayloadHeader {
    PayloadHeader {
        run_id: [1; 32],
        window: 7,
        uid: 3,
    }
}

fn benches(c: &mut Criterion) {
    let base = common::layout(&shapes::baseline_shapes());
    let n = base.numel() as u64;
    let key = SigningKey::from_bytes(&[5; 32]);

    let mut g = c.benchmark_group("baselines_33.7M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    let mut st = common::miner_state(&base, 1);
    g.bench_function("compress", |b| {
        b.iter(|| common::compress_state(&base, &mut st))
    });
    g.bench_function("compress_encode_sign", |b| {
        b.iter(|| {
            let tensors = common::compress_state(&base, &mut st);
            encode(
                &Payload {
                    header: header(),
                    tensors,
                },
                &base,
                &key,
                EncodeOptions::default(),
            )
            .unwrap()
        })
    });
    let peers: Vec<Vec<TensorPayload>> = common::peer_payloads(&base, 20);
    let refs: Vec<&[TensorPayload]> = peers.iter().map(|p| p.as_slice()).collect();
    let mut theta: Vec<Vec<f32>> = base
        .tensors
        .iter()
        .map(|t| vec![0.01f32; t.geom.numel()])
        .collect();
    g.bench_function("aggregate_apply_20_peers", |b| {
        b.iter(|| {
            let mut th: Vec<&mut [f32]> = theta.iter_mut().map(|v| v.as_mut_slice()).collect();
            aggregate_apply_model(&base, &refs, &mut th, Some(0.5)).unwrap()
        })
    });
    for coding in [IndexCoding::Packed, IndexCoding::Entropy] {
        let p = Payload {
            header: header(),
            tensors: peers[0].clone(),
        };
        let bytes = encode(
            &p,
            &base,
            &key,
            EncodeOptions {
                index_coding: coding,
            },
        )
        .unwrap();
        let ex = ExpectedModel {
            layout: &base,
            run_id: [1; 32],
            window: 7,
            uid: 3,
        };
        let limits = DecodeLimits::for_layout(&base);
        let vk = key.verifying_key();
        g.bench_with_input(
            BenchmarkId::new("decode_one_payload", format!("{coding:?}")),
            &bytes,
            |b, bytes| b.iter(|| decode(bytes, &ex, &vk, &limits).unwrap()),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("bandwidth");
    g.sample_size(10);
    let n = 16usize << 20;
    let src = vec![1f32; n];
    let mut dst = vec![0f32; n];
    g.throughput(Throughput::Bytes((2 * 4 * n) as u64));
    g.bench_function("copy_64MiB_1_thread", |b| {
        b.iter(|| dst.copy_from_slice(&src))
    });
    g.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
