//! Aggregation across peers (miners and validators identically, fp32) and the outer SGD step.
use crate::compress::TensorPayload;
use crate::config::CodecConfig;
use crate::error::CodecError;
use crate::geometry::{Layout, ModelLayout, TensorLayout};
use crate::par::run_jobs;

/// What aggregation measured for one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateStats {
    /// ‖v_r‖₂ of each peer's decoded values.
    pub norms: Vec<f32>,
    /// Lower median of `norms` (0 with no peers).
    pub median: f32,
    /// Clip factor min(1, M / (n_r + ε)) of each peer.
    pub factors: Vec<f32>,
    /// The result was not finite: the tensor was left unchanged (its update is zero).
    pub skipped: bool,
}

/// A tensor's aggregate: the dense update plus its statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorAggregate {
    pub update: Vec<f32>,
    pub stats: AggregateStats,
}

/// Checks a payload against the geometry so that the hot loops can index without panicking.
fn check_payload(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peer: usize,
    p: &TensorPayload,
) -> Result<(), CodecError> {
    let g = &t.geom;
    let bad = |reason: String| CodecError::MalformedPayload {
        tensor: t.name.clone(),
        peer,
        reason,
    };
    if p.codes.len() != g.n_selected() {
        return Err(bad(format!(
            "{} codes, expected {}",
            p.codes.len(),
            g.n_selected()
        )));
    }
    let want_idx = if g.sends_all() { 0 } else { g.n_selected() };
    if p.idx.len() != want_idx {
        return Err(bad(format!(
            "{} indices, expected {}",
            p.idx.len(),
            want_idx
        )));
    }
    if p.lookup.len() != cfg.bins {
        return Err(bad(format!(
            "lookup has {} entries, expected {}",
            p.lookup.len(),
            cfg.bins
        )));
    }
    let max_code = p.codes.iter().copied().fold(0u8, u8::max);
    if max_code as usize >= cfg.bins {
        return Err(bad(format!(
            "code {max_code} out of range for {} bins",
            cfg.bins
        )));
    }
    let max_idx = p.idx.iter().copied().fold(0u16, u16::max);
    if !p.idx.is_empty() && max_idx as usize >= g.chunk_len {
        return Err(bad(format!(
            "index {max_idx} out of range for chunk length {}",
            g.chunk_len
        )));
    }
    Ok(())
}

/// Number of codes 0..3, counted in 16-bit lanes of a u64 (no store-forwarding chains).
fn code_histogram(codes: &[u8]) -> [u64; 4] {
    let mut total = [0u64; 4];
    for block in codes.chunks(65535) {
        let packed: u64 = block
            .iter()
            .fold(0u64, |a, &c| a + (1u64 << (16 * (c & 3) as u32)));
        for (b, t) in total.iter_mut().enumerate() {
            *t += (packed >> (16 * b)) & 0xFFFF;
        }
    }
    total
}

/// Per-peer decoding tables (clipped decoded value per code) plus the statistics.
struct Prepared {
    tables: Vec<[f32; 4]>,
    stats: AggregateStats,
    /// An upper bound on |sum over peers| of any coordinate, in f64.
    bound: f64,
}

fn prepare(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    median_override: Option<f32>,
) -> Result<Prepared, CodecError> {
    for (r, p) in peers.iter().enumerate() {
        check_payload(cfg, t, r, p)?;
    }
    let mut decs = Vec::with_capacity(peers.len());
    let mut norms = Vec::with_capacity(peers.len());
    for p in peers {
        let mut dec = [0f32; 4];
        for (b, &l) in p.lookup.iter().enumerate() {
            dec[b] = l + p.shift;
        }
        let counts = code_histogram(&p.codes);
        let ss: f64 = (0..4)
            .map(|b| counts[b] as f64 * (dec[b] as f64) * (dec[b] as f64))
            .sum();
        norms.push(ss.sqrt() as f32);
        decs.push(dec);
    }
    let median = if let Some(m) = median_override {
        m
    } else if norms.is_empty() {
        0.0
    } else {
        let mut sorted = norms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        sorted[(sorted.len() - 1) / 2]
    };
    let mut skipped = false;
    let mut factors = Vec::with_capacity(peers.len());
    let mut tables = Vec::with_capacity(peers.len());
    let mut bound = 0f64;
    for (dec, &n) in decs.iter().zip(&norms) {
        let ratio = median / (n + cfg.clip_eps);
        if ratio.is_nan() {
            skipped = true;
        }
        let f = ratio.min(1.0);
        let mut tab = [0f32; 4];
        let mut m = 0f64;
        for b in 0..4 {
            tab[b] = dec[b] * f;
            m = m.max((tab[b] as f64).abs());
            if !tab[b].is_finite() {
                skipped = true;
            }
        }
        bound += m;
        factors.push(f);
        tables.push(tab);
    }
    Ok(Prepared {
        tables,
        stats: AggregateStats {
            norms,
            median,
            factors,
            skipped,
        },
        bound,
    })
}

/// The core loop. Per chunk, every peer's clipped values are accumulated into an L1-resident sum
/// and count per in-chunk position; the chunk's means (0 where nobody selected) are written into
/// a buffer covering one band of whole rows (h rows × all columns, L2-resident); each finished
/// band is handed to `on_band(offset in the tensor, means)`, so the caller's pass over the
/// parameters is a contiguous stream.
#[inline(always)]
fn accumulate(
    t: &TensorLayout,
    peers: &[&TensorPayload],
    tables: &[[f32; 4]],
    mut on_band: impl FnMut(usize, &[f32]),
) {
    let g = &t.geom;
    let k = g.k;
    let (band_len, tiles_per_band) = match g.layout {
        Layout::Vector { len, w } => (len, len / w),
        Layout::Matrix { cols, h, w, .. } => (h * cols, cols / w),
    };
    let n_bands = g.numel() / band_len;
    let mut sums = vec![0f32; g.chunk_len];
    let mut counts = vec![0f32; g.chunk_len];
    let mut band = vec![0f32; band_len];
    for b in 0..n_bands {
        let band_start = b * band_len;
        for tb in 0..tiles_per_band {
            let c = b * tiles_per_band + tb;
            let r = c * k..c * k + k;
            for (p, tab) in peers.iter().zip(tables) {
                let codes = &p.codes[r.clone()];
                if g.sends_all() {
                    for ((s, n), &code) in sums.iter_mut().zip(counts.iter_mut()).zip(codes) {
                        *s += tab[(code & 3) as usize];
                        *n += 1.0;
                    }
                } else {
                    for (&j, &code) in p.idx[r.clone()].iter().zip(codes) {
                        let j = j as usize;
                        sums[j] += tab[(code & 3) as usize];
                        counts[j] += 1.0;
                    }
                }
            }
            let (base, stride, w) = g.chunk_base(c);
            let rel = base - band_start;
            for (row, (s, n)) in sums
                .chunks_exact_mut(w)
                .zip(counts.chunks_exact_mut(w))
                .enumerate()
            {
                let o = rel + row * stride;
                for ((u, s), n) in band[o..o + w]
                    .iter_mut()
                    .zip(s.iter_mut())
                    .zip(n.iter_mut())
                {
                    *u = *s / n.max(1.0);
                    *s = 0.0;
                    *n = 0.0;
                }
            }
        }
        on_band(band_start, &band);
    }
}

/// `θ ← θ + neg·mean`, band by band.
fn apply_bands(
    t: &TensorLayout,
    peers: &[&TensorPayload],
    tables: &[[f32; 4]],
    theta: &mut [f32],
    neg: f32,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { apply_bands_avx2(t, peers, tables, theta, neg) };
        }
    }
    apply_bands_body(t, peers, tables, theta, neg)
}

/// The same code compiled with AVX2 enabled (no FMA, so results are bit-identical).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_bands_avx2(
    t: &TensorLayout,
    peers: &[&TensorPayload],
    tables: &[[f32; 4]],
    theta: &mut [f32],
    neg: f32,
) {
    apply_bands_body(t, peers, tables, theta, neg)
}

#[inline(always)]
fn apply_bands_body(
    t: &TensorLayout,
    peers: &[&TensorPayload],
    tables: &[[f32; 4]],
    theta: &mut [f32],
    neg: f32,
) {
    accumulate(t, peers, tables, |o, band| {
        for (p, &u) in theta[o..o + band.len()].iter_mut().zip(band) {
            *p += neg * u;
        }
    });
}

/// Largest sum of finite values that certainly stays finite in f32 (with room for rounding).
const SAFE_BOUND: f64 = (f32::MAX as f64) * 0.5;

/// Aggregates one tensor over `peers` into the dense update `out` (zero where nobody selected;
/// all zero when the result is non-finite and the tensor is skipped).
pub fn aggregate_tensor(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    out: &mut [f32],
) -> Result<AggregateStats, CodecError> {
    aggregate_inner(cfg, t, peers, out, None)
}

/// Like [`aggregate_tensor`], but clips every peer to a given norm `median` instead of the lower
/// median of `peers` (the Gauntlet evaluates one peer's update alone, clipped to the median of
/// the whole gathered set, SPEC §5).
pub fn aggregate_tensor_clipped_to(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    median: f32,
    out: &mut [f32],
) -> Result<AggregateStats, CodecError> {
    aggregate_inner(cfg, t, peers, out, Some(median))
}

fn aggregate_inner(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    out: &mut [f32],
    median: Option<f32>,
) -> Result<AggregateStats, CodecError> {
    let n = t.geom.numel();
    if out.len() != n {
        return Err(CodecError::LengthMismatch {
            tensor: t.name.clone(),
            what: "update",
            got: out.len(),
            expected: n,
        });
    }
    let mut prep = prepare(cfg, t, peers, median)?;
    if prep.stats.skipped || peers.is_empty() {
        out.iter_mut().for_each(|v| *v = 0.0);
        return Ok(prep.stats);
    }
    // Every position is written (the mean, or 0 where nobody selected it).
    accumulate(t, peers, &prep.tables, |o, band| {
        out[o..o + band.len()].copy_from_slice(band);
    });
    if prep.bound >= SAFE_BOUND && out.iter().any(|v| !v.is_finite()) {
        out.iter_mut().for_each(|v| *v = 0.0);
        prep.stats.skipped = true;
    }
    Ok(prep.stats)
}

/// Aggregates one tensor and applies the outer step `θ ← θ − lr·update` in one pass, touching
/// only the coordinates some peer selected. A non-finite result leaves `theta` unchanged.
pub fn aggregate_tensor_apply(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    theta: &mut [f32],
    lr: f32,
) -> Result<AggregateStats, CodecError> {
    let n = t.geom.numel();
    if theta.len() != n {
        return Err(CodecError::LengthMismatch {
            tensor: t.name.clone(),
            what: "parameters",
            got: theta.len(),
            expected: n,
        });
    }
    let mut prep = prepare(cfg, t, peers, None)?;
    if prep.stats.skipped || peers.is_empty() {
        return Ok(prep.stats);
    }
    let neg = -lr;
    if prep.bound < SAFE_BOUND {
        // θ + (−lr)·0 = θ where nobody selected, so the dense row pass is the reference's step.
        apply_bands(t, peers, &prep.tables, theta, neg);
    } else {
        // Rare: values so large that the mean could overflow. Build the update, check, apply.
        let mut update = vec![0f32; n];
        accumulate(t, peers, &prep.tables, |o, band| {
            update[o..o + band.len()].copy_from_slice(band);
        });
        if update.iter().any(|v| !v.is_finite()) {
            prep.stats.skipped = true;
            return Ok(prep.stats);
        }
        for (p, u) in theta.iter_mut().zip(&update) {
            *p += neg * u;
        }
    }
    Ok(prep.stats)
}

/// Outer SGD step `θ ← θ − lr·update` on a dense update.
pub fn apply_outer_step(
    tensor: &str,
    theta: &mut [f32],
    update: &[f32],
    lr: f32,
) -> Result<(), CodecError> {
    if theta.len() != update.len() {
        return Err(CodecError::LengthMismatch {
            tensor: tensor.to_string(),
            what: "update",
            got: update.len(),
            expected: theta.len(),
        });
    }
    let neg = -lr;
    for (p, u) in theta.iter_mut().zip(update) {
        *p += neg * u;
    }
    Ok(())
}

/// Scatters one payload's decoded values into `out` (zeros elsewhere).
pub fn decode_dense(
    cfg: &CodecConfig,
    t: &TensorLayout,
    p: &TensorPayload,
    out: &mut [f32],
) -> Result<(), CodecError> {
    check_payload(cfg, t, 0, p)?;
    let g = &t.geom;
    if out.len() != g.numel() {
        return Err(CodecError::LengthMismatch {
            tensor: t.name.clone(),
            what: "output",
            got: out.len(),
            expected: g.numel(),
        });
    }
    out.iter_mut().for_each(|v| *v = 0.0);
    let offs = g.in_chunk_offsets();
    let k = g.k;
    for c in 0..g.n_chunks {
        let (base, _, _) = g.chunk_base(c);
        for i in 0..k {
            let j = if g.sends_all() {
                i
            } else {
                p.idx[c * k + i] as usize
            };
            out[base + offs[j] as usize] = p.value(c * k + i);
        }
    }
    Ok(())
}

/// Aggregates every tensor over the peers and applies the outer step with `cfg.outer_lr`
/// (or `lr` when given), in parallel over tensors. `peers[r][i]` is peer r's payload for
/// `layout.tensors[i]`; `theta[i]` the parameters of that tensor.
pub fn aggregate_apply_model(
    layout: &ModelLayout,
    peers: &[&[TensorPayload]],
    theta: &mut [&mut [f32]],
    lr: Option<f32>,
) -> Result<Vec<AggregateStats>, CodecError> {
    let n = layout.tensors.len();
    if theta.len() != n {
        return Err(CodecError::TensorCount {
            what: "parameters",
            got: theta.len(),
            expected: n,
        });
    }
    for p in peers {
        if p.len() != n {
            return Err(CodecError::TensorCount {
                what: "a peer payload",
                got: p.len(),
                expected: n,
            });
        }
    }
    let cfg = &layout.config;
    let lr = lr.unwrap_or(cfg.outer_lr);
    let jobs: Vec<(usize, &mut [f32])> = theta.iter_mut().map(|e| &mut **e).enumerate().collect();
    let results = run_jobs(
        cfg.worker_threads(),
        jobs,
        |(i, _)| layout.tensors[*i].geom.numel(),
        |(i, th)| {
            let ps: Vec<&TensorPayload> = peers.iter().map(|p| &p[i]).collect();
            aggregate_tensor_apply(cfg, &layout.tensors[i], &ps, th, lr)
        },
    );
    results.into_iter().collect()
}
