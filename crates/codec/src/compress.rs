//! Miner side: error feedback, per-chunk top-k, 2-bit quantisation, subtraction of what is sent.
use crate::config::CodecConfig;
use crate::error::CodecError;
use crate::geometry::{Layout, ModelLayout, TensorLayout};
use crate::par::run_jobs;

/// One tensor's compressed pseudo-gradient, unpacked (the wire format packs it).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorPayload {
    /// In-chunk indices, `k` per chunk, strictly ascending inside each chunk, chunks in order.
    /// Empty when the geometry sends every value (`k == chunk_len`).
    pub idx: Vec<u16>,
    /// One code per selected value (0..bins), aligned with `idx` (or with chunk order when all sent).
    pub codes: Vec<u8>,
    /// Per-bin mean of the centred values (`bins` entries, 0 for an empty bin).
    pub lookup: Vec<f32>,
    /// Mean of the selected values; decoded value = `lookup[code] + shift`.
    pub shift: f32,
}

impl TensorPayload {
    /// A payload that decodes to all zeros (what a null window uploads).
    pub fn zeros(cfg: &CodecConfig, t: &TensorLayout) -> Self {
        let g = &t.geom;
        let idx = if g.sends_all() {
            Vec::new()
        } else {
            (0..g.n_chunks).flat_map(|_| 0..g.k as u16).collect()
        };
        Self {
            idx,
            codes: vec![0; g.n_selected()],
            lookup: vec![0.0; cfg.bins],
            shift: 0.0,
        }
    }

    /// A zero update for every tensor of `layout` (what a null window uploads).
    pub fn zeros_for(layout: &ModelLayout) -> Vec<Self> {
        layout
            .tensors
            .iter()
            .map(|t| Self::zeros(&layout.config, t))
            .collect()
    }

    /// Whether every selected value decodes to exactly zero (a null window's upload, or a
    /// free-rider's): such a payload carries no update. A code without a lookup entry counts
    /// as non-zero (the decoder refuses such payloads anyway).
    pub fn is_zero(&self) -> bool {
        self.codes.iter().all(|&c| {
            self.lookup
                .get(c as usize)
                .is_some_and(|v| *v + self.shift == 0.0)
        })
    }

    /// Decoded value of selected entry `i` (no bounds on the code beyond the lookup length).
    #[inline]
    pub fn value(&self, i: usize) -> f32 {
        self.lookup[self.codes[i] as usize] + self.shift
    }
}

/// Where the pseudo-gradient Δ comes from.
#[derive(Clone, Copy, Debug)]
pub enum DeltaSource<'a> {
    /// Δ given directly.
    Delta(&'a [f32]),
    /// Δ = before − after (θ0 − θ after the inner steps), computed on the fly in f32.
    Diff { before: &'a [f32], after: &'a [f32] },
}

impl<'a> DeltaSource<'a> {
    /// Δ = before − after for every tensor of a model (`before[i]`, `after[i]` of tensor i).
    pub fn diffs(before: &'a [Vec<f32>], after: &'a [Vec<f32>]) -> Vec<DeltaSource<'a>> {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| DeltaSource::Diff {
                before: b,
                after: a,
            })
            .collect()
    }
}

impl DeltaSource<'_> {
    fn check_len(&self, tensor: &str, n: usize) -> Result<(), CodecError> {
        let check = |what, got: usize| {
            if got != n {
                Err(CodecError::LengthMismatch {
                    tensor: tensor.to_string(),
                    what,
                    got,
                    expected: n,
                })
            } else {
                Ok(())
            }
        };
        match self {
            DeltaSource::Delta(d) => check("delta", d.len()),
            DeltaSource::Diff { before, after } => {
                check("delta.before", before.len())?;
                check("delta.after", after.len())
            }
        }
    }
}

/// Per-thread scratch, reused across chunks and tensors (no per-chunk allocation).
#[derive(Default)]
struct Scratch {
    tile: Vec<f32>,
    cand_idx: Vec<u16>,
    cand_key: Vec<u32>,
    sel_key: Vec<u32>,
}

/// Magnitude as an order-preserving integer key (|v| bits; NaN sorts above +inf).
#[inline(always)]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// Number of values whose magnitude key is ≥ `t`.
#[inline(always)]
fn count_ge(tile: &[f32], t: u32) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        simd::count_ge(tile, t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        tile.iter().fold(0u32, |a, &v| a + (key(v) >= t) as u32) as usize
    }
}

/// Bit i set when `key(blk[i]) >= t`, for a block of at most 16 values.
#[inline(always)]
fn mask16(blk: &[f32], t: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if blk.len() == 16 {
            return simd::mask16(blk, t);
        }
    }
    let mut m = 0u32;
    for (i, &v) in blk.iter().enumerate() {
        m |= ((key(v) >= t) as u32) << i;
    }
    m
}

/// SSE2 (baseline on x86_64) compare-and-movemask: magnitude keys are ≤ 0x7fff_ffff, so a signed
/// `key > t − 1` equals the unsigned `key ≥ t` for 1 ≤ t ≤ 0x8000_0000.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    #[inline]
    pub fn count_ge(tile: &[f32], t: u32) -> usize {
        if t == 0 {
            return tile.len();
        }
        if t > 0x8000_0000 {
            return 0;
        }
        let mut chunks = tile.chunks_exact(4);
        // SAFETY: SSE2 is part of the x86_64 baseline; loads are unaligned loads of 4 f32 from
        // a slice of exactly 4 elements.
        let n = unsafe {
            let abs = _mm_set1_epi32(0x7fff_ffff);
            let th = _mm_set1_epi32((t - 1) as i32);
            let mut acc = _mm_setzero_si128();
            for c in &mut chunks {
                let v = _mm_and_si128(_mm_loadu_si128(c.as_ptr() as *const __m128i), abs);
                acc = _mm_sub_epi32(acc, _mm_cmpgt_epi32(v, th));
            }
            let mut lanes = [0u32; 4];
            _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, acc);
            lanes.iter().map(|&x| x as usize).sum::<usize>()
        };
        n + chunks
            .remainder()
            .iter()
            .filter(|&&v| super::key(v) >= t)
            .count()
    }

    #[inline]
    pub fn mask16(blk: &[f32], t: u32) -> u32 {
        debug_assert_eq!(blk.len(), 16);
        if t == 0 {
            return 0xFFFF;
        }
        if t > 0x8000_0000 || blk.len() < 16 {
            return 0;
        }
        // SAFETY: SSE2 baseline; four unaligned 16-byte loads inside a 16-element slice.
        unsafe {
            let abs = _mm_set1_epi32(0x7fff_ffff);
            let th = _mm_set1_epi32((t - 1) as i32);
            let p = blk.as_ptr() as *const __m128i;
            let mut m = 0u32;
            for q in 0..4 {
                let v = _mm_and_si128(_mm_loadu_si128(p.add(q)), abs);
                let c = _mm_castsi128_ps(_mm_cmpgt_epi32(v, th));
                m |= (_mm_movemask_ps(c) as u32) << (4 * q);
            }
            m
        }
    }
}

/// Appends to `out_idx`/`out_val` the `k` entries of `tile` with the largest magnitude, in
/// ascending index order; ties at the k-th magnitude keep the lowest indices.
///
/// Threshold search instead of a sort: counting the values above a threshold is one vectorised
/// pass over the L1-resident chunk. `guess` carries the previous chunk's threshold (chunks of a
/// tensor have similar distributions), so one or two counting passes usually bracket between k
/// and 4k candidates; only those are collected and partially sorted.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn select_topk(
    tile: &[f32],
    k: usize,
    guess: &mut u32,
    s_idx: &mut Vec<u16>,
    s_key: &mut Vec<u32>,
    s_sel: &mut Vec<u32>,
    out_idx: &mut Vec<u16>,
    out_val: &mut Vec<f32>,
) {
    let len = tile.len();
    let cap = (4 * k).max(k + 16).min(len);
    // Invariant: count_ge(lo) >= k (lo = 0 counts everything), count_ge(hi) < k.
    let (mut lo, mut hi) = (0u32, u32::MAX);
    let (mut have_lo, mut have_hi) = (false, false);
    let mut step: u32 = 1 << 21; // ≈ ×1.19 in magnitude
    let mut t = *guess;
    loop {
        let c = count_ge(tile, t);
        if c < k {
            hi = t;
            have_hi = true;
        } else if c > cap {
            lo = t;
            have_lo = true;
        } else {
            break;
        }
        if hi - lo <= 1 {
            t = lo; // heavy ties: take everything at or above lo
            break;
        }
        t = if have_lo && have_hi {
            lo + (hi - lo) / 2
        } else if c < k {
            let n = t.saturating_sub(step);
            if n <= lo {
                lo + (t - lo) / 2
            } else {
                n
            }
        } else {
            let n = t.saturating_add(step);
            if n >= hi {
                t + (hi - t) / 2
            } else {
                n
            }
        };
        step = step.saturating_mul(2);
    }
    // Collect candidates (key >= t) in index order, 16 lanes at a time.
    s_idx.clear();
    s_key.clear();
    for (b, blk) in tile.chunks(16).enumerate() {
        let mut m = mask16(blk, t);
        while m != 0 {
            let j = b * 16 + m.trailing_zeros() as usize;
            s_idx.push(j as u16);
            s_key.push(key(tile[j]));
            m &= m - 1;
        }
    }
    if s_idx.len() < k {
        return; // unreachable: count_ge(t) >= k
    }
    // The k-th largest key among the candidates.
    s_sel.clear();
    s_sel.extend_from_slice(s_key);
    let (_, nth, _) = s_sel.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    let kth = *nth;
    let greater = s_key.iter().filter(|&&x| x > kth).count();
    let mut ties = k - greater;
    for (&j, &kv) in s_idx.iter().zip(s_key.iter()) {
        if kv > kth || (kv == kth && ties > 0) {
            if kv == kth {
                ties -= 1;
            }
            out_idx.push(j);
            out_val.push(tile[j as usize]);
        }
    }
    // Next chunk: start a little below this threshold (≈ ×0.92) so the first count brackets.
    *guess = kth.saturating_sub(1 << 20);
}

/// `e ← β·e + Δ` over `range`.
#[inline(always)]
fn ef_update(beta: f32, e: &mut [f32], delta: &DeltaSource<'_>, range: std::ops::Range<usize>) {
    let e = &mut e[range.clone()];
    match *delta {
        DeltaSource::Delta(d) => {
            for (e, &d) in e.iter_mut().zip(&d[range]) {
                *e = beta * *e + d;
            }
        }
        DeltaSource::Diff { before, after } => {
            for ((e, &b), &a) in e.iter_mut().zip(&before[range.clone()]).zip(&after[range]) {
                *e = beta * *e + (b - a);
            }
        }
    }
}

/// Quantisation parameters of a tensor's selected values (SPEC §3), computed to match the
/// reference's fp32 results: the mean and the standard deviation each in f64 and rounded to f32
/// once (σ = √(Σc²/(n − 1)), as torch's `std()` computes it), then `range·σ` and `/ bins` in
/// f32. Rounding ‖c‖ and √(n − 1) to f32 separately before dividing moves the scale by an ulp
/// for some inputs, which flips a code at an exact .5 tie (tests/vectors-extra).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    /// Mean of the selected values; decoded value = `lookup[code] + shift`.
    pub shift: f32,
    /// `range·σ / bins` (σ unbiased, n − 1); 1.0 if that is 0 or not finite. Not on the wire.
    pub scale: f32,
}

/// The quantisation parameters [`compress_tensor`] uses for the selected values `vals`.
#[inline(always)]
pub fn quant_params(cfg: &CodecConfig, vals: &[f32]) -> QuantParams {
    let n = vals.len();
    if n == 0 {
        return QuantParams {
            shift: 0.0,
            scale: 1.0,
        };
    }
    let sum: f64 = vals.iter().map(|&v| v as f64).sum();
    let shift = (sum / n as f64) as f32;
    let std = if n <= 1 {
        0.0f32
    } else {
        let ss: f64 = vals
            .iter()
            .map(|&v| {
                let c = (v - shift) as f64;
                c * c
            })
            .sum();
        (ss / (n as f64 - 1.0)).sqrt() as f32
    };
    let mut scale = cfg.range_sigma * std / cfg.bins as f32;
    if scale == 0.0 || !scale.is_finite() {
        scale = 1.0;
    }
    QuantParams { shift, scale }
}

/// Codes and lookup table for `vals` (appends codes to `codes`, returns the lookup).
#[inline(always)]
pub(crate) fn quantise(
    cfg: &CodecConfig,
    q: &QuantParams,
    vals: &[f32],
    codes: &mut Vec<u8>,
) -> Vec<f32> {
    let offset = cfg.offset();
    let top = (cfg.bins - 1) as f32;
    let mut sums = [0f64; 4];
    let mut counts = [0u64; 4];
    codes.reserve(vals.len());
    for &v in vals {
        let c = v - q.shift;
        let x = (c / q.scale + offset).round_ties_even();
        // NaN cannot occur for finite inputs; `max`/`min` map it to 0 anyway.
        let code = x.max(0.0).min(top) as u8;
        codes.push(code);
        sums[code as usize] += c as f64;
        counts[code as usize] += 1;
    }
    (0..cfg.bins)
        .map(|b| {
            if counts[b] > 0 {
                (sums[b] / counts[b] as f64) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// Compresses one tensor: `e ← β·e + Δ`, top-k per chunk, 2-bit quantisation of the selected
/// values, `e ← e − scatter(decoded)`. Returns what is uploaded.
pub fn compress_tensor(
    cfg: &CodecConfig,
    t: &TensorLayout,
    ef: &mut [f32],
    delta: DeltaSource<'_>,
) -> Result<TensorPayload, CodecError> {
    let mut s = Scratch::default();
    compress_with(cfg, t, ef, delta, &mut s)
}

fn compress_with(
    cfg: &CodecConfig,
    t: &TensorLayout,
    ef: &mut [f32],
    delta: DeltaSource<'_>,
    s: &mut Scratch,
) -> Result<TensorPayload, CodecError> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { compress_avx2(cfg, t, ef, delta, s) };
        }
    }
    compress_body(cfg, t, ef, delta, s)
}

/// The same code compiled with AVX2 enabled (no FMA: `β·e + Δ` keeps its two roundings, so the
/// results are bit-identical to the baseline build).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn compress_avx2(
    cfg: &CodecConfig,
    t: &TensorLayout,
    ef: &mut [f32],
    delta: DeltaSource<'_>,
    s: &mut Scratch,
) -> Result<TensorPayload, CodecError> {
    compress_body(cfg, t, ef, delta, s)
}

#[inline(always)]
fn compress_body(
    cfg: &CodecConfig,
    t: &TensorLayout,
    ef: &mut [f32],
    delta: DeltaSource<'_>,
    s: &mut Scratch,
) -> Result<TensorPayload, CodecError> {
    let g = &t.geom;
    let n = g.numel();
    if ef.len() != n {
        return Err(CodecError::LengthMismatch {
            tensor: t.name.clone(),
            what: "error feedback",
            got: ef.len(),
            expected: n,
        });
    }
    delta.check_len(&t.name, n)?;
    let beta = cfg.ef_decay;
    let all = g.sends_all();
    let mut idx: Vec<u16> = Vec::with_capacity(if all { 0 } else { g.n_selected() });
    let mut vals: Vec<f32> = Vec::with_capacity(g.n_selected());
    s.tile.clear();
    s.tile.resize(g.chunk_len, 0.0);
    let k = g.k;
    let mut guess: u32 = 0;
    let mut first = true;

    // Phase 1: error feedback over a band of whole rows (contiguous, streaming), then selection
    // tile by tile from the band while it is still in cache.
    let (band_len, tiles_per_band) = match g.layout {
        Layout::Vector { len, w } => (len, len / w),
        Layout::Matrix { cols, h, w, .. } => (h * cols, cols / w),
    };
    let n_bands = n / band_len;
    for band in 0..n_bands {
        ef_update(beta, ef, &delta, band * band_len..(band + 1) * band_len);
        for tb in 0..tiles_per_band {
            let c = band * tiles_per_band + tb;
            let (base, stride, w) = g.chunk_base(c);
            let tile: &[f32] = if stride == w {
                &ef[base..base + g.chunk_len]
            } else {
                for r in 0..g.chunk_len / w {
                    let o = base + r * stride;
                    s.tile[r * w..r * w + w].copy_from_slice(&ef[o..o + w]);
                }
                &s.tile
            };
            if all {
                vals.extend_from_slice(tile);
                continue;
            }
            if first {
                // Initial guess from the chunk's RMS; later chunks start from the last threshold.
                let ss: f32 = tile.iter().map(|v| v * v).sum();
                guess = key((ss / tile.len() as f32).sqrt() * 2.0);
                first = false;
            }
            select_topk(
                tile,
                k,
                &mut guess,
                &mut s.cand_idx,
                &mut s.cand_key,
                &mut s.sel_key,
                &mut idx,
                &mut vals,
            );
        }
    }

    // Phase 2: per-tensor quantisation.
    let q = quant_params(cfg, &vals);
    if !q.shift.is_finite() {
        return Err(CodecError::NonFinite {
            tensor: t.name.clone(),
            what: "mean of the selected values (non-finite error feedback or delta)",
            value: q.shift,
        });
    }
    let mut codes = Vec::with_capacity(vals.len());
    let lookup = quantise(cfg, &q, &vals, &mut codes);
    if let Some(&bad) = lookup.iter().find(|v| !v.is_finite()) {
        return Err(CodecError::NonFinite {
            tensor: t.name.clone(),
            what: "lookup table",
            value: bad,
        });
    }

    // Phase 3: e ← e − scatter(decoded).
    let mut dec = [0f32; 4];
    for (b, l) in lookup.iter().enumerate() {
        dec[b] = l + q.shift;
    }
    if let Some(&bad) = dec.iter().find(|v| !v.is_finite()) {
        // The decoder refuses such a payload (`WireError::NonFiniteValue`): never upload one.
        return Err(CodecError::NonFinite {
            tensor: t.name.clone(),
            what: "decoded value (lookup + shift)",
            value: bad,
        });
    }
    let offs = g.in_chunk_offsets();
    for c in 0..g.n_chunks {
        let (base, _, _) = g.chunk_base(c);
        let cc = &codes[c * k..c * k + k];
        if all {
            for (&o, &code) in offs.iter().zip(cc) {
                ef[base + o as usize] -= dec[code as usize];
            }
        } else {
            for (&j, &code) in idx[c * k..c * k + k].iter().zip(cc) {
                ef[base + offs[j as usize] as usize] -= dec[code as usize];
            }
        }
    }
    Ok(TensorPayload {
        idx,
        codes,
        lookup,
        shift: q.shift,
    })
}

/// Compresses every tensor of the model, in parallel over tensors (`cfg.threads`).
/// On an error (a length mismatch or a non-finite delta) the error-feedback buffers of the
/// tensors already processed have been updated: reset them (as after a null window) before retrying.
/// `ef[i]` and `delta[i]` belong to `layout.tensors[i]`.
pub fn compress_model(
    layout: &ModelLayout,
    ef: &mut [&mut [f32]],
    delta: &[DeltaSource<'_>],
) -> Result<Vec<TensorPayload>, CodecError> {
    let n = layout.tensors.len();
    if ef.len() != n {
        return Err(CodecError::TensorCount {
            what: "error feedback",
            got: ef.len(),
            expected: n,
        });
    }
    if delta.len() != n {
        return Err(CodecError::TensorCount {
            what: "delta",
            got: delta.len(),
            expected: n,
        });
    }
    let cfg = &layout.config;
    let jobs: Vec<(usize, &mut [f32])> = ef.iter_mut().map(|e| &mut **e).enumerate().collect();
    thread_local! {
        static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
    }
    let results = run_jobs(
        cfg.worker_threads(),
        jobs,
        |(i, _)| layout.tensors[*i].geom.numel(),
        |(i, e)| {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                compress_with(cfg, &layout.tensors[i], e, delta[i], &mut s)
            })
        },
    );
    results.into_iter().collect()
}
