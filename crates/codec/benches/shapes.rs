//! Shape lists for the benches and the report example.
#![allow(dead_code)]

/// The `small` preset: vocab 8192, hidden 512, 8 layers, 8 heads × 64, 4 KV heads, MLP 1408,
/// untied embeddings.
pub fn small_preset() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![("embed".to_string(), vec![8192, 512])];
    for l in 0..8 {
        let p = format!("layers.{l}.");
        v.push((p.clone() + "attn_norm", vec![512]));
        v.push((p.clone() + "q", vec![512, 512]));
        v.push((p.clone() + "k", vec![256, 512]));
        v.push((p.clone() + "v", vec![256, 512]));
        v.push((p.clone() + "o", vec![512, 512]));
        v.push((p.clone() + "mlp_norm", vec![512]));
        v.push((p.clone() + "gate", vec![1408, 512]));
        v.push((p.clone() + "up", vec![1408, 512]));
        v.push((p.clone() + "down", vec![512, 1408]));
    }
    v.push(("norm".into(), vec![512]));
    v.push(("lm_head".into(), vec![8192, 512]));
    v
}

/// ../shared/BASELINES.md shape list (33,694,208 params).
pub fn baseline_shapes() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![("tok_embeddings".to_string(), vec![8192, 512])];
    for l in 0..8 {
        let p = format!("layers.{l}.");
        for n in ["wq", "wk", "wv", "wo"] {
            v.push((p.clone() + n, vec![512, 512]));
        }
        v.push((p.clone() + "w1", vec![1376, 512]));
        v.push((p.clone() + "w3", vec![1376, 512]));
        v.push((p.clone() + "w2", vec![512, 1376]));
        v.push((p.clone() + "attention_norm", vec![512]));
        v.push((p.clone() + "ffn_norm", vec![512]));
    }
    v.push(("norm".into(), vec![512]));
    v.push(("output".into(), vec![8192, 512]));
    v
}

/// Cheap deterministic pseudo-normal data (xorshift, sum of 4 uniforms).
pub fn fill_normal(buf: &mut [f32], seed: u64, scale: f32) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for v in buf {
        let mut acc = 0f32;
        for _ in 0..2 {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            acc += (r >> 40) as f32 / (1u64 << 24) as f32
                + (r & 0xFF_FFFF) as f32 / (1u64 << 24) as f32;
        }
        *v = (acc - 2.0) * 1.7 * scale;
    }
}
