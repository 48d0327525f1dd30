//! Conformance against vector sets in the reference's format (tests/vectors/README.md), driven by
//! each set's `cases.json`: every case it lists runs, whatever its name, with the codec
//! configuration its `hparams` give. Two sets run:
//! * the reference set: `$COVENANT_VECTORS` when set (other sets in the same format exist), else
//!   the set shipped verbatim in `tests/vectors/` (a copy of the reference implementation's
//!   vectors, never edited);
//! * `tests/vectors-extra/`: our own cases with exact quantisation ties (README there).
//!
//! A missing directory, an unknown case kind or a case file that `cases.json` does not list is a
//! failure, not a skip.
#[path = "common/json.rs"]
mod json;

use std::path::{Path, PathBuf};

use covenant_codec::{
    aggregate_tensor, aggregate_tensor_apply, compress_tensor, decode_dense, pack, quant_params,
    CodecConfig, DeltaSource, ModelLayout, TensorPayload,
};
use json::Json;
use safetensors::{Dtype, SafeTensors};

fn reference_dir() -> PathBuf {
    match std::env::var_os("COVENANT_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"),
    }
}

fn extra_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors-extra")
}

#[test]
fn reference_vectors() {
    run_set(&reference_dir());
}

#[test]
fn extra_tie_vectors() {
    run_set(&extra_dir());
}

// ---- the set and its index ----

struct Set {
    dir: PathBuf,
    index: Json,
}

impl Set {
    fn load(dir: &Path) -> Set {
        let path = dir.join("cases.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "conformance vectors not found at {} ({e}; set COVENANT_VECTORS); refusing to pass without them",
                path.display()
            )
        });
        let index = Json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Set {
            dir: dir.to_path_buf(),
            index,
        }
    }

    fn cases(&self) -> &[(String, Json)] {
        let cases = self.index.get("cases").and_then(Json::as_obj);
        let cases = cases.unwrap_or_else(|| panic!("{}: no \"cases\" object", self.dir.display()));
        assert!(!cases.is_empty(), "{}: no cases", self.dir.display());
        cases
    }

    /// The codec configuration the set was produced with.
    fn config(&self) -> CodecConfig {
        let h = self.index.get("hparams").expect("cases.json: hparams");
        let num = |k: &str| {
            h.get(k)
                .and_then(Json::as_f64)
                .unwrap_or_else(|| panic!("hparams.{k}"))
        };
        let int = |k: &str| {
            h.get(k)
                .and_then(Json::as_usize)
                .unwrap_or_else(|| panic!("hparams.{k}"))
        };
        assert_eq!(
            h.get("use_dct").and_then(Json::as_bool),
            Some(false),
            "the codec has no DCT"
        );
        let cfg = CodecConfig {
            topk: int("topk_compression"),
            chunk: int("target_chunk"),
            bins: int("quantization_bins"),
            range_sigma: num("quantization_range") as f32,
            ef_decay: num("momentum_decay") as f32,
            ..CodecConfig::default()
        };
        cfg.validate().expect("hparams give a valid codec config");
        cfg
    }

    /// Every `case_*.safetensors` in the directory must be listed, so nothing is silently skipped.
    fn check_listed(&self) {
        let listed: Vec<&str> = self.cases().iter().map(|(n, _)| n.as_str()).collect();
        let entries = std::fs::read_dir(&self.dir).expect("vector directory");
        for e in entries {
            let name = e.expect("directory entry").file_name();
            let name = name.to_string_lossy();
            if let Some(case) = name
                .strip_prefix("case_")
                .and_then(|n| n.strip_suffix(".safetensors"))
            {
                assert!(listed.contains(&case), "{name} is not listed in cases.json");
            }
        }
    }
}

/// Runs every case of the set, then fails listing each case that failed.
fn run_set(dir: &Path) {
    let set = Set::load(dir);
    set.check_listed();
    let cfg = set.config();
    let mut failed = Vec::new();
    for (name, meta) in set.cases() {
        let run = || run_case(&cfg, &set.dir, name, meta);
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let named = msg.starts_with(name.as_str());
            failed.push(if named { msg } else { format!("{name}: {msg}") });
        }
    }
    let n = set.cases().len();
    assert!(
        failed.is_empty(),
        "{} of {n} cases failed in {}:\n{}",
        failed.len(),
        dir.display(),
        failed.join("\n")
    );
    eprintln!("{}: {n} cases passed", dir.display());
}

fn run_case(cfg: &CodecConfig, dir: &Path, name: &str, meta: &Json) {
    let case = Case::load(dir, name);
    match meta.get("kind").and_then(Json::as_str) {
        Some("compress") => run_compress_case(cfg, name, meta, &case),
        Some("aggregate") => run_agg_case(cfg, name, meta, &case),
        other => panic!("unknown case kind {other:?}"),
    }
}

// ---- one case's tensors ----

struct Case {
    bytes: Vec<u8>,
}

impl Case {
    fn load(dir: &Path, name: &str) -> Self {
        let p = dir.join(format!("case_{name}.safetensors"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        Case { bytes }
    }
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors")
    }
    fn raw(&self, n: &str, dtype: Dtype) -> (Vec<usize>, Vec<u8>) {
        let st = self.st();
        let t = st.tensor(n).unwrap_or_else(|_| panic!("missing {n}"));
        assert_eq!(t.dtype(), dtype, "{n}");
        (t.shape().to_vec(), t.data().to_vec())
    }
    fn shape(&self, n: &str) -> Vec<usize> {
        self.st()
            .tensor(n)
            .unwrap_or_else(|_| panic!("missing {n}"))
            .shape()
            .to_vec()
    }
    fn f32s(&self, n: &str) -> Vec<f32> {
        let (_, d) = self.raw(n, Dtype::F32);
        d.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn i64s(&self, n: &str) -> Vec<i64> {
        let (_, d) = self.raw(n, Dtype::I64);
        d.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn u8s(&self, n: &str) -> Vec<u8> {
        self.raw(n, Dtype::U8).1
    }
    fn indices(&self, n: &str) -> Vec<u16> {
        self.i64s(n)
            .iter()
            .map(|&v| u16::try_from(v).unwrap_or_else(|_| panic!("{n}: index {v}")))
            .collect()
    }
}

fn meta_usizes(meta: &Json, key: &str) -> Option<Vec<usize>> {
    meta.get(key)
        .map(|v| v.usizes().unwrap_or_else(|| panic!("{key}: not integers")))
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

fn layout_for(cfg: &CodecConfig, shape: &[usize]) -> ModelLayout {
    ModelLayout::new(cfg.clone(), [("t", shape)]).unwrap()
}

// ---- compress cases ----

fn run_compress_case(cfg: &CodecConfig, name: &str, meta: &Json, c: &Case) {
    let shape = c.shape("delta");
    if let Some(s) = meta_usizes(meta, "shape") {
        assert_eq!(s, shape, "cases.json shape");
    }
    let layout = layout_for(cfg, &shape);
    let t = &layout.tensors[0];
    let ef_in = c.f32s("ef_in");
    let delta = c.f32s("delta");
    let mut ef = ef_in.clone();
    let p = compress_tensor(cfg, t, &mut ef, DeltaSource::Delta(&delta)).unwrap();

    check_geometry(name, meta, c, t);
    let got_idx = check_indices(name, c, t, &p);
    check_ties(cfg, name, meta, c, &p);
    assert_eq!(p.codes, c.u8s("codes"), "{name}: codes");
    if let Some(h) = meta_usizes(meta, "codes_hist") {
        let mut got = vec![0usize; h.len()];
        p.codes.iter().for_each(|&k| got[k as usize] += 1);
        assert_eq!(got, h, "{name}: codes_hist");
    }

    // 12-bit packing: exact bytes
    let mut packed = Vec::new();
    pack::pack12(&got_idx, &mut packed);
    assert_eq!(packed, c.u8s("idx_packed"), "{name}: idx_packed");
    let mut back = Vec::new();
    assert!(pack::unpack12(&packed, got_idx.len(), &mut back));
    assert_eq!(back, got_idx);

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
    let q = quant_params(cfg, &c.f32s("vals_selected"));
    assert_eq!(
        q.shift, p.shift,
        "{name}: quant_params and compress disagree"
    );
    close(
        &format!("{name}: scale"),
        &[q.scale],
        &c.f32s("scale"),
        None,
    );
    check_residual(cfg, name, c, t, &p, &ef_in, &delta, &ef);
}

fn check_geometry(name: &str, meta: &Json, c: &Case, t: &covenant_codec::TensorLayout) {
    let xshape: Vec<usize> = c.i64s("xshape").iter().map(|&v| v as usize).collect();
    if let Some(x) = meta_usizes(meta, "xshape") {
        assert_eq!(x, xshape, "{name}: cases.json xshape");
    }
    let idx_shape = c.shape("idx");
    let k = *idx_shape.last().unwrap();
    assert_eq!(t.geom.k, k, "{name}: k");
    let n_sel: usize = idx_shape.iter().product();
    assert_eq!(t.geom.n_selected(), n_sel, "{name}: n_selected");
    let chunk_len = match xshape.len() {
        4 => xshape[2] * xshape[3],
        _ => xshape[1],
    };
    assert_eq!(t.geom.chunk_len, chunk_len, "{name}: chunk_len");
    for (key, want) in [("k", k), ("n_selected", n_sel), ("totalk", chunk_len)] {
        if let Some(v) = meta.get(key) {
            assert_eq!(v.as_usize(), Some(want), "{name}: cases.json {key}");
        }
    }
}

/// Indices (implicit when every value is sent) must match exactly; returns them.
fn check_indices(
    name: &str,
    c: &Case,
    t: &covenant_codec::TensorLayout,
    p: &TensorPayload,
) -> Vec<u16> {
    let want: Vec<u16> = c.indices("idx");
    let got: Vec<u16> = if t.geom.sends_all() {
        assert!(p.idx.is_empty());
        (0..t.geom.n_chunks)
            .flat_map(|_| 0..t.geom.k as u16)
            .collect()
    } else {
        p.idx.clone()
    };
    assert_eq!(got, want, "{name}: idx");
    got
}

/// Cases with exact rounding ties: the codes there must be `tie_codes`. On a mismatch the message
/// says where the stored values sit (c/scale + offset with the stored shift and scale) and how far
/// the codec's scale is from the stored one, since a tie moves with the last bit of the scale.
fn check_ties(cfg: &CodecConfig, name: &str, meta: &Json, c: &Case, p: &TensorPayload) {
    let Some(want) = meta_usizes(meta, "tie_codes") else {
        return;
    };
    let got: Vec<usize> = p.codes[..want.len()].iter().map(|&k| k as usize).collect();
    if got == want {
        return;
    }
    let vals = c.f32s("vals_selected");
    let (shift, scale) = (c.f32s("shift")[0], c.f32s("scale")[0]);
    let at: Vec<f32> = vals[..want.len()]
        .iter()
        .map(|&v| (v - shift) / scale + cfg.offset())
        .collect();
    let ours = quant_params(cfg, &vals).scale;
    let ulps = ours.to_bits() as i64 - scale.to_bits() as i64;
    panic!(
        "{name}: codes at the rounding ties are {got:?}, expected {want:?}; the stored values sit \
         at {at:?}; the codec's scale {ours} is {ulps} ulp from the stored {scale}"
    );
}

#[allow(clippy::too_many_arguments)]
fn check_residual(
    cfg: &CodecConfig,
    name: &str,
    c: &Case,
    t: &covenant_codec::TensorLayout,
    p: &TensorPayload,
    ef_in: &[f32],
    delta: &[f32],
    ef: &[f32],
) {
    let beta = cfg.ef_decay;
    let pre: Vec<f32> = ef_in
        .iter()
        .zip(delta)
        .map(|(&e, &d)| beta * e + d)
        .collect();
    close(
        &format!("{name}: ef_out"),
        ef,
        &c.f32s("ef_out"),
        Some(&pre),
    );
    let mut dense = vec![0f32; t.geom.numel()];
    decode_dense(cfg, t, p, &mut dense).unwrap();
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

// ---- aggregation cases ----

fn run_agg_case(cfg: &CodecConfig, name: &str, meta: &Json, c: &Case) {
    let shape = meta_usizes(meta, "shape").unwrap_or_else(|| c.shape("agg_update"));
    let n_peers = match meta.get("n_peers") {
        Some(v) => v.as_usize().expect("n_peers"),
        None => (0..)
            .take_while(|r| c.st().tensor(&format!("peer{r}_codes")).is_ok())
            .count(),
    };
    assert!(n_peers > 0, "{name}: no peers");
    let layout = layout_for(cfg, &shape);
    let t = &layout.tensors[0];
    let peers: Vec<TensorPayload> = (0..n_peers)
        .map(|r| TensorPayload {
            idx: if t.geom.sends_all() {
                Vec::new()
            } else {
                c.indices(&format!("peer{r}_idx"))
            },
            codes: c.u8s(&format!("peer{r}_codes")),
            lookup: c.f32s(&format!("peer{r}_lookup")),
            shift: c.f32s(&format!("peer{r}_shift"))[0],
        })
        .collect();
    let refs: Vec<&TensorPayload> = peers.iter().collect();
    let mut update = vec![0f32; t.geom.numel()];
    let stats = aggregate_tensor(cfg, t, &refs, &mut update).unwrap();
    assert!(
        stats.dropped.is_empty(),
        "{name}: dropped {:?}",
        stats.dropped
    );
    let norms = c.f32s("peer_norms");
    close(&format!("{name}: peer_norms"), &stats.norms, &norms, None);
    let median = c.f32s("median_norm");
    close(
        &format!("{name}: median_norm"),
        &[stats.median],
        &median,
        None,
    );
    if let Some(clipped) = meta_usizes(meta, "clipped_peers") {
        let got: Vec<usize> = (0..n_peers).filter(|&r| stats.factors[r] < 1.0).collect();
        assert_eq!(got, clipped, "{name}: clipped peers");
    }
    let want = c.f32s("agg_update");
    close(&format!("{name}: agg_update"), &update, &want, None);

    // the fused aggregate + SGD path gives θ − lr·update
    let theta0: Vec<f32> = (0..update.len()).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut theta = theta0.clone();
    aggregate_tensor_apply(cfg, t, &refs, &mut theta, 0.7).unwrap();
    for i in 0..theta.len() {
        assert_eq!(
            theta[i],
            theta0[i] + (-0.7f32) * update[i],
            "{name}: fused θ[{i}]"
        );
    }
}
