//! Conformance against the reference vectors: `$COVENANT_VECTORS` when set (other sets in the
//! same format exist), else the reference set shipped verbatim in `tests/vectors/` (a copy of the
//! reference implementation's vectors, never edited). A missing vector directory is a failure,
//! not a skip.
use std::path::PathBuf;

use covenant_codec::{
    aggregate_tensor, compress_tensor, decode_dense, pack, CodecConfig, DeltaSource, ModelLayout,
    TensorPayload,
};
use safetensors::{Dtype, SafeTensors};

fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os("COVENANT_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"),
    };
    assert!(
        dir.join("cases.json").is_file(),
        "conformance vectors not found at {} (set COVENANT_VECTORS); refusing to pass without them",
        dir.display()
    );
    dir
}

struct Case {
    bytes: Vec<u8>,
}

impl Case {
    fn load(name: &str) -> Self {
        let p = vectors_dir().join(format!("case_{name}.safetensors"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        Case { bytes }
    }
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors")
    }
    fn shape(&self, n: &str) -> Vec<usize> {
        self.st()
            .tensor(n)
            .unwrap_or_else(|_| panic!("missing {n}"))
            .shape()
            .to_vec()
    }
    fn f32s(&self, n: &str) -> Vec<f32> {
        let st = self.st();
        let t = st.tensor(n).unwrap_or_else(|_| panic!("missing {n}"));
        assert_eq!(t.dtype(), Dtype::F32, "{n}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn i64s(&self, n: &str) -> Vec<i64> {
        let st = self.st();
        let t = st.tensor(n).unwrap_or_else(|_| panic!("missing {n}"));
        assert_eq!(t.dtype(), Dtype::I64, "{n}");
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn u8s(&self, n: &str) -> Vec<u8> {
        let st = self.st();
        let t = st.tensor(n).unwrap_or_else(|_| panic!("missing {n}"));
        assert_eq!(t.dtype(), Dtype::U8, "{n}");
        t.data().to_vec()
    }
}

fn close(what: &str, got: &[f32], want: &[f32], mag: Option<&[f32]>) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let m = mag.map_or(w.abs(), |m| m[i].abs());
        let tol = 1e-6 * m.max(1.0);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, expected {w} (tolerance {tol})"
        );
        worst = worst.max((g - w).abs() / m.max(1.0));
    }
    eprintln!("{what}: max relative error {worst:e}");
}

fn layout_for(shape: &[usize]) -> ModelLayout {
    ModelLayout::new(CodecConfig::default(), [("t", shape)]).unwrap()
}

fn run_compress_case(name: &str) {
    let c = Case::load(name);
    let shape = c.shape("delta");
    let layout = layout_for(&shape);
    let t = &layout.tensors[0];
    let cfg = &layout.config;
    let ef_in = c.f32s("ef_in");
    let delta = c.f32s("delta");
    let mut ef = ef_in.clone();
    let p = compress_tensor(cfg, t, &mut ef, DeltaSource::Delta(&delta)).unwrap();

    // geometry
    let xshape: Vec<usize> = c.i64s("xshape").iter().map(|&v| v as usize).collect();
    let idx_shape = c.shape("idx");
    let k = *idx_shape.last().unwrap();
    assert_eq!(t.geom.k, k, "{name}: k");
    assert_eq!(
        t.geom.n_selected(),
        idx_shape.iter().product::<usize>(),
        "{name}: n_selected"
    );
    match xshape.len() {
        4 => assert_eq!(t.geom.chunk_len, xshape[2] * xshape[3], "{name}: chunk_len"),
        _ => assert_eq!(t.geom.chunk_len, xshape[1], "{name}: chunk_len"),
    }

    // indices (implicit in "all" mode) and codes: exact
    let want_idx: Vec<u16> = c.i64s("idx").iter().map(|&v| v as u16).collect();
    let got_idx: Vec<u16> = if t.geom.sends_all() {
        assert!(p.idx.is_empty());
        (0..t.geom.n_chunks)
            .flat_map(|_| 0..t.geom.k as u16)
            .collect()
    } else {
        p.idx.clone()
    };
    assert_eq!(got_idx, want_idx, "{name}: idx");
    assert_eq!(p.codes, c.u8s("codes"), "{name}: codes");

    // 12-bit packing: exact bytes
    let mut packed = Vec::new();
    pack::pack12(&got_idx, &mut packed);
    assert_eq!(packed, c.u8s("idx_packed"), "{name}: idx_packed");
    let mut back = Vec::new();
    assert!(pack::unpack12(&packed, got_idx.len(), &mut back));
    assert_eq!(back, got_idx);

    // floats
    close(
        &format!("{name}: lookup"),
        &p.lookup,
        &c.f32s("lookup"),
        None,
    );
    close(
        &format!("{name}: shift"),
        &[p.shift],
        &c.f32s("shift"),
        None,
    );
    let q = covenant_codec_scale(cfg, &p, &c);
    close(&format!("{name}: scale"), &[q], &c.f32s("scale"), None);
    let pre: Vec<f32> = ef_in
        .iter()
        .zip(&delta)
        .map(|(&e, &d)| 0.95f32 * e + d)
        .collect();
    close(
        &format!("{name}: ef_out"),
        &ef,
        &c.f32s("ef_out"),
        Some(&pre),
    );
    let mut dense = vec![0f32; t.geom.numel()];
    decode_dense(cfg, t, &p, &mut dense).unwrap();
    close(
        &format!("{name}: dense_decoded"),
        &dense,
        &c.f32s("dense_decoded"),
        None,
    );
    // the residual is exactly e − decoded
    for i in 0..dense.len() {
        assert_eq!(
            ef[i],
            pre[i] - dense[i],
            "{name}: ef_out[{i}] is not pre − decoded"
        );
    }
}

/// The scale is not on the wire; recompute it from the selected values as the codec does.
fn covenant_codec_scale(cfg: &CodecConfig, p: &TensorPayload, c: &Case) -> f32 {
    let vals = c.f32s("vals_selected");
    let n = vals.len();
    let sum: f64 = vals.iter().map(|&v| v as f64).sum();
    let shift = (sum / n as f64) as f32;
    assert_eq!(
        shift, p.shift,
        "scale helper and codec disagree on the shift"
    );
    let ss: f64 = vals.iter().map(|&v| ((v - shift) as f64).powi(2)).sum();
    let std = (ss.sqrt() as f32) / ((n as f64 - 1.0).sqrt() as f32);
    cfg.range_sigma * std / cfg.bins as f32
}

#[test]
fn compress_mat128x256() {
    run_compress_case("mat128x256");
}
#[test]
fn compress_mat200x96() {
    run_compress_case("mat200x96");
}
#[test]
fn compress_vec256() {
    run_compress_case("vec256");
}
#[test]
fn compress_vec90() {
    run_compress_case("vec90");
}
#[test]
fn compress_vec256_rounding_ties() {
    run_compress_case("vec256_qties");
    // the pinned tie codes
    let c = Case::load("vec256_qties");
    let layout = layout_for(&[256]);
    let mut ef = c.f32s("ef_in");
    let p = compress_tensor(
        &layout.config,
        &layout.tensors[0],
        &mut ef,
        DeltaSource::Delta(&c.f32s("delta")),
    )
    .unwrap();
    assert_eq!(&p.codes[..4], &[2, 0, 2, 0]);
}

fn run_agg_case(name: &str, n_peers: usize) {
    let c = Case::load(name);
    let layout = layout_for(&[128, 256]);
    let t = &layout.tensors[0];
    let peers: Vec<TensorPayload> = (0..n_peers)
        .map(|r| TensorPayload {
            idx: c
                .i64s(&format!("peer{r}_idx"))
                .iter()
                .map(|&v| v as u16)
                .collect(),
            codes: c.u8s(&format!("peer{r}_codes")),
            lookup: c.f32s(&format!("peer{r}_lookup")),
            shift: c.f32s(&format!("peer{r}_shift"))[0],
        })
        .collect();
    let refs: Vec<&TensorPayload> = peers.iter().collect();
    let mut update = vec![0f32; t.geom.numel()];
    let stats = aggregate_tensor(&layout.config, t, &refs, &mut update).unwrap();
    assert!(!stats.skipped);
    close(
        &format!("{name}: peer_norms"),
        &stats.norms,
        &c.f32s("peer_norms"),
        None,
    );
    close(
        &format!("{name}: median_norm"),
        &[stats.median],
        &c.f32s("median_norm"),
        None,
    );
    close(
        &format!("{name}: agg_update"),
        &update,
        &c.f32s("agg_update"),
        None,
    );

    // the fused aggregate + SGD path gives θ − lr·update
    let theta0: Vec<f32> = (0..update.len()).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut theta = theta0.clone();
    covenant_codec::aggregate_tensor_apply(&layout.config, t, &refs, &mut theta, 0.7).unwrap();
    for i in 0..theta.len() {
        assert_eq!(
            theta[i],
            theta0[i] + (-0.7f32) * update[i],
            "{name}: fused θ[{i}]"
        );
    }
}

#[test]
fn aggregate_5_peers() {
    run_agg_case("agg5_mat128x256", 5);
}

#[test]
fn aggregate_4_peers_lower_median() {
    run_agg_case("agg4_mat128x256", 4);
}
