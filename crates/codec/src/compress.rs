//! Miner side: error feedback, per-chunk top-k, 2-bit quantisation, subtraction of what is sent.
use crate::config::CodecConfig;
use crate::error::CodecError;
use crate::geometry::{ModelLayout, TensorLayout};
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
    cand: Vec<u32>,
    hist: Vec<u32>,
}

#[inline(always)]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// Appends to `out_idx`/`out_val` the `k` entries of `tile` with the largest magnitude, in ascending
/// index order. Ties at the k-th magnitude keep the lowest indices. `hist` is the 256-bucket
/// histogram of the magnitudes' exponent bits (key >> 23).
fn select_topk(
    tile: &[f32],
    hist: &[u32],
    k: usize,
    cand: &mut Vec<u32>,
    out_idx: &mut Vec<u16>,
    out_val: &mut Vec<f32>,
) {
    // Bucket holding the k-th largest magnitude.
    let mut above = 0usize;
    let mut bucket = 0u32;
    for b in (0..256usize).rev() {
        let h = hist[b] as usize;
        if above + h >= k {
            bucket = b as u32;
            break;
        }
        above += h;
    }
    let need = k - above;
    cand.clear();
    for &v in tile {
        let kv = key(v);
        if kv >> 23 == bucket {
            cand.push(kv);
        }
    }
    if cand.is_empty() {
        return; // unreachable: the bucket holds at least `need` ≥ 1 values
    }
    // `need` ≥ 1 and ≤ cand.len() by construction of the bucket.
    let need = need.clamp(1, cand.len());
    let (_, nth, _) = cand.select_nth_unstable_by(need - 1, |a, b| b.cmp(a));
    let t = *nth;
    let greater = above + cand.iter().filter(|&&x| x > t).count();
    let mut ties = k.saturating_sub(greater);
    for (j, &v) in tile.iter().enumerate() {
        let kv = key(v);
        if kv > t {
            out_idx.push(j as u16);
            out_val.push(v);
        } else if kv == t && ties > 0 {
            ties -= 1;
            out_idx.push(j as u16);
            out_val.push(v);
        }
    }
}

/// Quantisation parameters of a tensor's selected values (SPEC §3), computed to match the
/// reference's fp32 results: sums in f64, rounded once.
pub(crate) struct Quant {
    pub shift: f32,
    pub scale: f32,
}

pub(crate) fn quant_params(cfg: &CodecConfig, vals: &[f32]) -> Quant {
    let n = vals.len();
    if n == 0 {
        return Quant {
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
        (ss.sqrt() as f32) / ((n as f64 - 1.0).sqrt() as f32)
    };
    let mut scale = cfg.range_sigma * std / cfg.bins as f32;
    if scale == 0.0 || !scale.is_finite() {
        scale = 1.0;
    }
    Quant { shift, scale }
}

/// Codes and lookup table for `vals` (appends codes to `codes`, returns the lookup).
pub(crate) fn quantise(cfg: &CodecConfig, q: &Quant, vals: &[f32], codes: &mut Vec<u8>) -> Vec<f32> {
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
    s.hist.clear();
    s.hist.resize(256, 0);

    // Phase 1: error feedback and selection, chunk by chunk (the chunk's tile stays in L1).
    for c in 0..g.n_chunks {
        let (base, stride, w) = g.chunk_base(c);
        let rows = g.chunk_len / w;
        for r in 0..rows {
            let o = base + r * stride;
            let erow = &mut ef[o..o + w];
            let trow = &mut s.tile[r * w..r * w + w];
            match delta {
                DeltaSource::Delta(d) => {
                    for ((e, t), &d) in erow.iter_mut().zip(trow.iter_mut()).zip(&d[o..o + w]) {
                        let v = beta * *e + d;
                        *e = v;
                        *t = v;
                    }
                }
                DeltaSource::Diff { before, after } => {
                    for (((e, t), &b), &a) in erow
                        .iter_mut()
                        .zip(trow.iter_mut())
                        .zip(&before[o..o + w])
                        .zip(&after[o..o + w])
                    {
                        let v = beta * *e + (b - a);
                        *e = v;
                        *t = v;
                    }
                }
            }
        }
        if all {
            vals.extend_from_slice(&s.tile);
        } else {
            s.hist.iter_mut().for_each(|h| *h = 0);
            for &v in &s.tile {
                s.hist[(key(v) >> 23) as usize] += 1;
            }
            select_topk(&s.tile, &s.hist, g.k, &mut s.cand, &mut idx, &mut vals);
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
    let k = g.k;
    for c in 0..g.n_chunks {
        let (base, stride, w) = g.chunk_base(c);
        let cc = &codes[c * k..c * k + k];
        if all {
            for r in 0..g.chunk_len / w {
                let o = base + r * stride;
                for (e, &code) in ef[o..o + w].iter_mut().zip(&cc[r * w..r * w + w]) {
                    *e -= dec[code as usize];
                }
            }
        } else {
            let ci = &idx[c * k..c * k + k];
            for (&j, &code) in ci.iter().zip(cc) {
                let j = j as usize;
                let pos = base + (j / w) * stride + j % w;
                ef[pos] -= dec[code as usize];
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
