//! Aggregation across peers (miners and validators identically, fp32) and the outer SGD step.
use crate::compress::TensorPayload;
use crate::config::CodecConfig;
use crate::error::CodecError;
use crate::geometry::{Layout, ModelLayout, TensorLayout};
use crate::par::run_jobs;

/// Why a peer took no part in one tensor's aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Some code decodes (`lookup[b] + shift`, any bin, used or not) to a non-finite value.
    /// The wire decoder refuses such payloads; one built in memory is dropped here.
    NonFiniteValue,
    /// The L2 norm of its decoded values overflows f32, so it cannot be clipped.
    NonFiniteNorm,
    /// Its largest clipped value is among the largest of a set whose sum could overflow f32.
    Overflow,
}

/// A peer left out of one tensor's aggregate, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedPeer {
    /// Position of the peer in the slice given to the aggregation.
    pub peer: usize,
    pub reason: DropReason,
}

/// What aggregation measured for one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateStats {
    /// ‖v_r‖₂ of each peer's decoded values (non-finite for a peer dropped as
    /// [`DropReason::NonFiniteNorm`]).
    pub norms: Vec<f32>,
    /// Lower median of the norms of the peers not dropped for a non-finite value or norm
    /// (0 with no such peer), or the median given to [`aggregate_tensor_clipped_to`].
    pub median: f32,
    /// Clip factor min(1, M / (n_r + ε)) of each peer; 0 for a dropped peer.
    pub factors: Vec<f32>,
    /// The peers left out of this tensor, in peer order. A peer is dropped, never the tensor.
    pub dropped: Vec<DroppedPeer>,
    /// Peers were given but every one was dropped, so the update is zero.
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

/// One peer's decoding table, which bins it uses, and its norm.
struct Decoded {
    dec: [f32; 4],
    used: [bool; 4],
    norm: f32,
}

impl Decoded {
    fn new(p: &TensorPayload) -> Self {
        let mut dec = [0f32; 4];
        for (d, &l) in dec.iter_mut().zip(&p.lookup) {
            *d = l + p.shift;
        }
        let counts = code_histogram(&p.codes);
        let used = counts.map(|c| c > 0);
        let ss: f64 = (0..4)
            .filter(|&b| used[b])
            .map(|b| counts[b] as f64 * (dec[b] as f64) * (dec[b] as f64))
            .sum();
        Self {
            dec,
            used,
            norm: ss.sqrt() as f32,
        }
    }

    /// Why this peer cannot take part, if it cannot: a table entry or the norm is not finite.
    fn unusable(&self) -> Option<DropReason> {
        if self.dec.iter().any(|v| !v.is_finite()) {
            Some(DropReason::NonFiniteValue)
        } else if !self.norm.is_finite() {
            Some(DropReason::NonFiniteNorm)
        } else {
            None
        }
    }
}

/// min(1, ratio); NaN (0/0: a zero norm with ε = 0, whose values are all 0 anyway) counts as 1
/// and a negative ratio (a negative median given by the caller) as 0.
fn clip_factor(ratio: f32) -> f32 {
    if ratio.is_nan() {
        1.0
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

/// Lower median (the lower of the two middle values for an even count); 0 for none.
fn lower_median(mut v: Vec<f32>) -> f32 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// The largest sum of magnitudes of `n` terms that certainly stays finite when added in f32 in
/// any order: each addition rounds by at most a factor (1 + ε/2), so a sum of magnitudes S
/// never exceeds S·(1 + ε)^n.
fn overflow_limit(n: usize) -> f64 {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    f32::MAX as f64 / (1.0 + f32::EPSILON as f64).powi(n.saturating_add(1))
}

/// The peers that stay after the overflow rule: while the peers' largest clipped magnitudes
/// (`bounds`, per kept peer) could add up to more than f32 holds, the peer with the largest
/// one (the later peer on a tie) is dropped. Returns the positions in `kept` to drop.
fn overflow_drops(kept: &[usize], bounds: &[f64]) -> Vec<usize> {
    let limit = overflow_limit(kept.len());
    if bounds.iter().sum::<f64>() < limit {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by(|&a, &b| bounds[a].total_cmp(&bounds[b]).then(kept[a].cmp(&kept[b])));
    let mut sum = 0f64;
    let fits = order
        .iter()
        .take_while(|&&i| {
            sum += bounds[i];
            sum < limit
        })
        .count();
    order[fits..].to_vec()
}

/// Peers that take part in a tensor's aggregate, their clipped decoding tables, the statistics.
struct Prepared {
    /// Positions (in the given peer slice, ascending) of the peers that take part.
    kept: Vec<usize>,
    /// Clipped decoded value per code, one table per kept peer.
    tables: Vec<[f32; 4]>,
    stats: AggregateStats,
}

/// Decodes, drops the peers that cannot take part (SPEC §3 made total: a peer is dropped, never
/// a tensor), takes the lower median of the remaining norms and clips. Every rule depends only on
/// the peers' payloads and their order, so every replica keeps the same peers.
fn prepare(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    median_override: Option<f32>,
) -> Result<Prepared, CodecError> {
    for (r, p) in peers.iter().enumerate() {
        check_payload(cfg, t, r, p)?;
    }
    let decoded: Vec<Decoded> = peers.iter().map(|p| Decoded::new(p)).collect();
    let mut dropped: Vec<DroppedPeer> = Vec::new();
    let mut kept = Vec::with_capacity(peers.len());
    for (r, d) in decoded.iter().enumerate() {
        match d.unusable() {
            Some(reason) => dropped.push(DroppedPeer { peer: r, reason }),
            None => kept.push(r),
        }
    }
    let median = median_override
        .unwrap_or_else(|| lower_median(kept.iter().map(|&r| decoded[r].norm).collect()));
    let mut factors = vec![0f32; peers.len()];
    let mut tables = Vec::with_capacity(kept.len());
    let mut bounds = Vec::with_capacity(kept.len());
    for &r in &kept {
        let d = &decoded[r];
        let f = clip_factor(median / (d.norm + cfg.clip_eps));
        let tab = d.dec.map(|v| v * f);
        let bound = (0..4)
            .filter(|&b| d.used[b])
            .map(|b| (tab[b] as f64).abs())
            .fold(0f64, f64::max);
        factors[r] = f;
        tables.push(tab);
        bounds.push(bound);
    }
    let over = overflow_drops(&kept, &bounds);
    if !over.is_empty() {
        for &i in &over {
            factors[kept[i]] = 0.0;
            dropped.push(DroppedPeer {
                peer: kept[i],
                reason: DropReason::Overflow,
            });
        }
        dropped.sort_by_key(|d| d.peer);
        (kept, tables) = kept
            .iter()
            .zip(&tables)
            .enumerate()
            .filter(|(i, _)| !over.contains(i))
            .map(|(_, (&r, &tab))| (r, tab))
            .unzip();
    }
    let skipped = !peers.is_empty() && kept.is_empty();
    Ok(Prepared {
        kept,
        tables,
        stats: AggregateStats {
            norms: decoded.iter().map(|d| d.norm).collect(),
            median,
            factors,
            dropped,
            skipped,
        },
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

/// Aggregates one tensor over `peers` into the dense update `out` (zero where nobody selected).
/// A peer whose values or norm are not finite, or whose size could make the sum overflow, is
/// dropped (see [`AggregateStats::dropped`]); the tensor itself is always aggregated, so the
/// update is finite.
pub fn aggregate_tensor(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    out: &mut [f32],
) -> Result<AggregateStats, CodecError> {
    aggregate_inner(cfg, t, peers, out, None)
}

/// The statistics [`aggregate_tensor`] would report for `peers` (norms, lower median, clip
/// factors, dropped peers), without aggregating: what a lone update is clipped to.
pub fn tensor_stats(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
) -> Result<AggregateStats, CodecError> {
    prepare(cfg, t, peers, None).map(|p| p.stats)
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

fn check_len(t: &TensorLayout, what: &'static str, got: usize) -> Result<(), CodecError> {
    let expected = t.geom.numel();
    if got == expected {
        return Ok(());
    }
    Err(CodecError::LengthMismatch {
        tensor: t.name.clone(),
        what,
        got,
        expected,
    })
}

fn aggregate_inner(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    out: &mut [f32],
    median: Option<f32>,
) -> Result<AggregateStats, CodecError> {
    check_len(t, "update", out.len())?;
    let prep = prepare(cfg, t, peers, median)?;
    if prep.kept.is_empty() {
        out.iter_mut().for_each(|v| *v = 0.0);
        return Ok(prep.stats);
    }
    let kept: Vec<&TensorPayload> = prep.kept.iter().map(|&r| peers[r]).collect();
    // Every position is written (the mean, or 0 where nobody selected it).
    accumulate(t, &kept, &prep.tables, |o, band| {
        out[o..o + band.len()].copy_from_slice(band);
    });
    Ok(prep.stats)
}

/// Aggregates one tensor and applies the outer step `θ ← θ − lr·update` in one pass, dropping
/// peers exactly as [`aggregate_tensor`] does.
pub fn aggregate_tensor_apply(
    cfg: &CodecConfig,
    t: &TensorLayout,
    peers: &[&TensorPayload],
    theta: &mut [f32],
    lr: f32,
) -> Result<AggregateStats, CodecError> {
    check_len(t, "parameters", theta.len())?;
    let prep = prepare(cfg, t, peers, None)?;
    if prep.kept.is_empty() {
        return Ok(prep.stats);
    }
    let kept: Vec<&TensorPayload> = prep.kept.iter().map(|&r| peers[r]).collect();
    // θ + (−lr)·0 = θ where nobody selected, so the dense row pass is the reference's step; the
    // overflow rule keeps every partial sum, hence every mean, finite.
    apply_bands(t, &kept, &prep.tables, theta, -lr);
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
