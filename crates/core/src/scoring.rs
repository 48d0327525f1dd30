//! The Gauntlet's per-peer measurements (SPEC §5): loss score, own-vs-random indicator and its
//! binary moving average, and the sync score from fingerprints.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::params::RunParams;
use crate::{Uid, Window};

/// One evaluation: the losses, and the update's norm over the window's clip norm (the median
/// over tensors of `‖v_t‖ / M_t`, tensors with `M_t = 0` left out; 1 if none is left).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub probe: LossProbe,
    pub norm_ratio: f64,
}

/// The four losses a validator measures for one peer (before/after applying the peer's update
/// alone, on the peer's own assigned pool and on a random unassigned pool).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossProbe {
    pub rand_before: f64,
    pub rand_after: f64,
    pub own_before: f64,
    pub own_after: f64,
    /// How much more the update improved the sender's own sequences than random ones, in
    /// standard errors ([`own_data_z`] of the per-sequence losses); `None`: not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_z: Option<f64>,
}

impl LossProbe {
    fn check(&self) -> Result<()> {
        for (what, v) in [
            ("rand_before", self.rand_before),
            ("rand_after", self.rand_after),
            ("own_before", self.own_before),
            ("own_after", self.own_after),
        ] {
            if !v.is_finite() {
                return Err(CoreError::NonFinite { what, value: v });
            }
        }
        if self.rand_before <= 0.0 || self.own_before <= 0.0 {
            return Err(CoreError::NonFinite {
                what: "loss before (must be > 0)",
                value: self.rand_before.min(self.own_before),
            });
        }
        Ok(())
    }

    /// `s_u = (L_rand_before − L_rand_after) / L_rand_before`.
    pub fn loss_score(&self) -> Result<f64> {
        self.check()?;
        Ok((self.rand_before - self.rand_after) / self.rand_before)
    }

    /// `b_u`: +1 if the relative improvement on the peer's own data exceeds that on random data,
    /// else −1 (a tie is −1: no proof of training on the assigned data).
    pub fn own_vs_random(&self) -> Result<i8> {
        self.check()?;
        let own = (self.own_before - self.own_after) / self.own_before;
        let rand = (self.rand_before - self.rand_after) / self.rand_before;
        Ok(if own > rand { 1 } else { -1 })
    }
}

/// Largest |z| [`own_data_z`] reports: a set whose improvements happen to agree to the last
/// digit must not outweigh many evaluations.
pub const MAX_OWN_Z: f64 = 6.0;

/// Welch's z of the per-sequence relative improvements `(before − after) / before`, the
/// sender's own sequences minus random ones: how many standard errors more the update helped
/// the data its sender was assigned. About N(0, 1) for an update trained on other data, above 0
/// for one trained on the assigned data. Clamped to ±[`MAX_OWN_Z`]. `None` with fewer than two
/// sequences in a set or a loss that is not finite and positive.
pub fn own_data_z(own: &[(f64, f64)], rand: &[(f64, f64)]) -> Option<f64> {
    let (mo, vo) = improvement_stats(own)?;
    let (mr, vr) = improvement_stats(rand)?;
    let se = (vo / own.len() as f64 + vr / rand.len() as f64).sqrt();
    let d = mo - mr;
    let z = if se > 0.0 {
        d / se
    } else if d == 0.0 {
        0.0
    } else {
        d.signum() * MAX_OWN_Z
    };
    Some(z.clamp(-MAX_OWN_Z, MAX_OWN_Z))
}

/// Mean and sample variance of `(before − after) / before` over (before, after) pairs.
fn improvement_stats(pairs: &[(f64, f64)]) -> Option<(f64, f64)> {
    if pairs.len() < 2 {
        return None;
    }
    let mut x = Vec::with_capacity(pairs.len());
    for &(b, a) in pairs {
        if !(b.is_finite() && a.is_finite() && b > 0.0) {
            return None;
        }
        x.push((b - a) / b);
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    Some((mean, var))
}

/// Bound of [`OwnDataEvidence::llr`] either way, so that old evidence cannot outweigh a few
/// new evaluations: with δ = 2 a peer that starts training on other data loses its pay by its
/// fourth evaluation after, and one that mends its ways regains it within about two.
pub const OWN_DATA_LLR_CAP: f64 = 8.0;

/// The evidence on whether a peer trains on its assigned data: the log-likelihood ratio of its
/// [`own_data_z`]s under "other data" (z ~ N(0, 1)) against "its own data" (z ~ N(δ, 1), δ =
/// `own_data_effect`), summed over its evaluations: `llr ← clamp(llr + δ²/2 − δ·z, ±cap)`. It
/// falls about δ²/2 per evaluation of a peer on its own data (faster: δ·(z − δ/2)) and climbs
/// about as fast for one on other data. A peer earns only while `llr ≤ −own_data_margin` (2):
/// the evidence must favour its own data, so a newcomer is paid once an evaluation shows it
/// (z ≥ 2 with δ 2), and not while the validators wait to see it again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnDataEvidence {
    pub llr: f64,
}

impl OwnDataEvidence {
    pub fn update(&mut self, z: f64, effect: f64) {
        let step = effect * effect / 2.0 - effect * z.clamp(-MAX_OWN_Z, MAX_OWN_Z);
        self.llr = (self.llr + step).clamp(-OWN_DATA_LLR_CAP, OWN_DATA_LLR_CAP);
    }

    /// The evidence after one more evaluation with this z.
    pub fn after(mut self, z: f64, effect: f64) -> Self {
        self.update(z, effect);
        self
    }

    /// Whether the evidence favours the peer's own data by at least `margin`.
    pub fn favours_own(&self, margin: f64) -> bool {
        self.llr <= -margin
    }

    /// Whether the evidence favours other data (the peer trains on data it was not assigned)
    /// by more than `margin`.
    pub fn favours_other(&self, margin: f64) -> bool {
        self.llr > margin
    }
}

/// Binary moving average of the own-vs-random indicator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bma {
    pub value: f64,
    /// Indicators folded in so far.
    pub count: u32,
}

impl Bma {
    /// `BMA ← decay·BMA + (1 − decay)·b`.
    pub fn update(&mut self, b: i8, decay: f64) {
        self.value = decay * self.value + (1.0 - decay) * f64::from(b.signum());
        self.count = self.count.saturating_add(1);
    }

    /// The factor used in the final score: `max(0, BMA)`, and 0 below `threshold` once
    /// `count ≥ warmup`.
    pub fn effective(&self, warmup: u32, threshold: f64) -> f64 {
        if self.count >= warmup && self.value < threshold {
            0.0
        } else {
            self.value.max(0.0)
        }
    }
}

/// Interquartile mean: sort, drop ⌊n/4⌋ values at each end, average the rest. Non-finite values
/// sort as +∞ (so they are dropped first from the top). Empty input gives `None`.
pub fn interquartile_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values
        .iter()
        .map(|&x| if x.is_nan() { f64::INFINITY } else { x })
        .collect();
    v.sort_by(f64::total_cmp);
    let cut = v.len() / 4;
    let mid = &v[cut..v.len() - cut];
    Some(mid.iter().sum::<f64>() / mid.len() as f64)
}

/// Purpose tag of fingerprint positions.
const TAG_FINGERPRINT: u64 = 0xF1F1;
const TAG_PEER_FINGERPRINT: u64 = 0xF1F2;

/// The seed of the fingerprint positions of `uid`'s window-`window` fingerprint. Positions
/// differ per peer and window, so a fingerprint copied from another peer or from a validator's
/// record says nothing about the copier's model: only holding the model gives its values.
pub fn fingerprint_seed(run_seed: u64, window: Window, uid: Uid) -> u64 {
    crate::rng::derive_seed(run_seed, &[TAG_PEER_FINGERPRINT, window, u64::from(uid)])
}

/// Where a fingerprint samples each tensor (the same for every node of a run): `per_tensor`
/// positions per tensor from SplitMix64 over (run seed, tensor index, j), modulo the tensor's
/// length; none for an empty tensor.
pub fn fingerprint_positions(seed: u64, lens: &[usize], per_tensor: usize) -> Vec<Vec<usize>> {
    lens.iter()
        .enumerate()
        .map(|(i, &n)| {
            if n == 0 {
                return Vec::new();
            }
            let mut rng = crate::rng::SplitMix64::new(crate::rng::derive_seed(
                seed,
                &[TAG_FINGERPRINT, i as u64],
            ));
            (0..per_tensor)
                .map(|_| rng.below(n as u64) as usize)
                .collect()
        })
        .collect()
}

/// A model fingerprint: a few values sampled at agreed positions of every parameter tensor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    pub tensors: Vec<Vec<f32>>,
}

impl Fingerprint {
    fn same_shape(&self, other: &Fingerprint) -> Result<()> {
        if self.tensors.len() != other.tensors.len() {
            return Err(CoreError::FingerprintShape {
                reason: format!("{} tensors vs {}", self.tensors.len(), other.tensors.len()),
            });
        }
        for (i, (a, b)) in self.tensors.iter().zip(&other.tensors).enumerate() {
            if a.len() != b.len() {
                return Err(CoreError::FingerprintShape {
                    reason: format!("tensor {i}: {} values vs {}", a.len(), b.len()),
                });
            }
        }
        Ok(())
    }

    /// Mean absolute difference per tensor.
    fn mean_abs_diff(&self, other: &Fingerprint) -> Vec<f64> {
        self.tensors
            .iter()
            .zip(&other.tensors)
            .map(|(a, b)| {
                if a.is_empty() {
                    return 0.0;
                }
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
                    .sum::<f64>()
                    / a.len() as f64
            })
            .collect()
    }
}

/// The validator's own recent fingerprints (one per outer step), giving the average per-step
/// change of every tensor's sampled values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FingerprintHistory {
    recent: VecDeque<Fingerprint>,
}

impl FingerprintHistory {
    /// Appends the fingerprint after an outer step and keeps the last `keep + 1` (so `keep` steps).
    pub fn push(&mut self, fp: Fingerprint, keep: usize) -> Result<()> {
        if let Some(last) = self.recent.back() {
            last.same_shape(&fp)?;
        }
        self.recent.push_back(fp);
        while self.recent.len() > keep.max(1) + 1 {
            self.recent.pop_front();
        }
        Ok(())
    }

    pub fn latest(&self) -> Option<&Fingerprint> {
        self.recent.back()
    }

    /// Average per-step mean |change| of every tensor over the kept steps (`None` before two
    /// fingerprints exist).
    pub fn step_change(&self) -> Option<Vec<f64>> {
        if self.recent.len() < 2 {
            return None;
        }
        let steps = (self.recent.len() - 1) as f64;
        let mut acc = vec![0.0; self.recent[0].tensors.len()];
        for (a, b) in self.recent.iter().zip(self.recent.iter().skip(1)) {
            for (s, d) in acc.iter_mut().zip(a.mean_abs_diff(b)) {
                *s += d;
            }
        }
        Some(acc.into_iter().map(|s| s / steps).collect())
    }
}

/// Sync distance `x` in outer steps: interquartile mean over tensors of
/// mean|miner − validator| / (average per-step change). A tensor whose step change is 0 counts
/// 0 when the fingerprints agree and `cap` otherwise; non-finite miner values count `cap`.
pub fn sync_distance(
    miner: &Fingerprint,
    validator: &Fingerprint,
    step_change: &[f64],
    cap: f64,
) -> Result<f64> {
    miner.same_shape(validator)?;
    if step_change.len() != validator.tensors.len() {
        return Err(CoreError::FingerprintShape {
            reason: format!(
                "{} step changes for {} tensors",
                step_change.len(),
                validator.tensors.len()
            ),
        });
    }
    let per_tensor: Vec<f64> = miner
        .mean_abs_diff(validator)
        .into_iter()
        .zip(step_change)
        .map(|(d, &s)| {
            if !d.is_finite() {
                cap
            } else if s > 0.0 && s.is_finite() {
                (d / s).min(cap)
            } else if d == 0.0 {
                0.0
            } else {
                cap
            }
        })
        .collect();
    Ok(interquartile_mean(&per_tensor).unwrap_or(0.0))
}

/// `sync = max(0, 1 − min(x, max)/max)^exponent` ((ref) max 3, exponent 2.5).
pub fn sync_score(x: f64, params: &RunParams) -> f64 {
    let m = params.sync_max_steps;
    let x = if x.is_nan() { m } else { x.max(0.0) };
    (1.0 - x.min(m) / m).max(0.0).powf(params.sync_exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (before, after) pairs whose relative improvements are `gains`.
    fn pairs(gains: &[f64]) -> Vec<(f64, f64)> {
        gains.iter().map(|g| (4.0, 4.0 * (1.0 - g))).collect()
    }

    #[test]
    fn own_data_z_is_welch_s_z_of_the_relative_improvements() {
        let own = pairs(&[0.03, 0.05, 0.04, 0.04]);
        let rand = pairs(&[0.01, 0.02, 0.00, 0.01]);
        // Means 0.04 and 0.01; sample variances 2/3·10⁻⁴ each; SE = sqrt(2·(2/3)·10⁻⁴ / 4).
        let se = (2.0 * (2.0 / 3.0) * 1e-4 / 4.0f64).sqrt();
        let z = own_data_z(&own, &rand).unwrap();
        assert!((z - 0.03 / se).abs() < 1e-9, "{z}");
        assert!(own_data_z(&rand, &own).unwrap() < 0.0);
        // Identical gains: no evidence either way; all equal but different: clamped.
        assert_eq!(own_data_z(&own, &own), Some(0.0));
        let flat = pairs(&[0.02, 0.02]);
        assert_eq!(own_data_z(&pairs(&[0.05, 0.05]), &flat), Some(MAX_OWN_Z));
        // Too few sequences or a loss that is not positive: not measured.
        assert_eq!(own_data_z(&own[..1], &rand), None);
        assert_eq!(own_data_z(&[(0.0, 1.0), (1.0, 1.0)], &rand), None);
        assert_eq!(own_data_z(&[(f64::NAN, 1.0), (1.0, 1.0)], &rand), None);
    }

    #[test]
    fn own_data_evidence_pays_own_data_and_not_other_data() {
        // The defaults: δ 2, margin 2.
        let (delta, margin) = (2.0, 2.0);
        let p = crate::RunParams::local();
        assert_eq!((p.own_data_effect, p.own_data_margin), (delta, margin));
        let mut e = OwnDataEvidence::default();
        assert!(!e.favours_own(margin), "no evidence yet: not paid");
        // On its own data (z 4): −6 per evaluation, paid at once, down to the cap.
        e.update(4.0, delta);
        assert!(e.favours_own(margin) && e.llr == -6.0, "{e:?}");
        for _ in 0..5 {
            e.update(4.0, delta);
        }
        assert_eq!(e.llr, -OWN_DATA_LLR_CAP);
        // Switching to other data (z 0: +2 each): unpaid from the fourth evaluation.
        for i in 1..=5 {
            e.update(0.0, delta);
            assert_eq!(e.favours_own(margin), i < 4, "{i}: {e:?}");
        }
        // A first evaluation barely above noise is not enough.
        let mut f = OwnDataEvidence::default();
        f.update(1.5, delta);
        assert!(!f.favours_own(margin), "{f:?}");
        f.update(MAX_OWN_Z * 10.0, delta);
        assert_eq!(f.llr, -OWN_DATA_LLR_CAP, "capped");
    }

    fn probe(rb: f64, ra: f64, ob: f64, oa: f64) -> LossProbe {
        LossProbe {
            rand_before: rb,
            rand_after: ra,
            own_before: ob,
            own_after: oa,
            own_z: None,
        }
    }

    #[test]
    fn loss_score_is_relative_improvement() {
        assert!((probe(4.0, 3.0, 4.0, 3.0).loss_score().unwrap() - 0.25).abs() < 1e-12);
        assert!(probe(4.0, 4.4, 4.0, 3.0).loss_score().unwrap() < 0.0);
        assert!(matches!(
            probe(f64::NAN, 3.0, 4.0, 3.0).loss_score(),
            Err(CoreError::NonFinite { .. })
        ));
        assert!(probe(0.0, 0.0, 4.0, 3.0).loss_score().is_err());
    }

    #[test]
    fn indicator_compares_relative_improvements() {
        // own improves 25%, random 10%.
        assert_eq!(probe(10.0, 9.0, 4.0, 3.0).own_vs_random().unwrap(), 1);
        // own improves 5%, random 10%.
        assert_eq!(probe(10.0, 9.0, 4.0, 3.8).own_vs_random().unwrap(), -1);
        // equal: no proof.
        assert_eq!(probe(10.0, 9.0, 5.0, 4.5).own_vs_random().unwrap(), -1);
    }

    #[test]
    fn bma_moves_by_five_percent_and_thresholds_after_warmup() {
        let mut b = Bma::default();
        b.update(1, 0.95);
        assert!((b.value - 0.05).abs() < 1e-12);
        assert!(
            (b.effective(10, 0.10) - 0.05).abs() < 1e-12,
            "warm-up: below threshold still counts"
        );
        for _ in 0..9 {
            b.update(1, 0.95);
        }
        // 1 − 0.95^10 = 0.401…
        assert!((b.value - (1.0 - 0.95f64.powi(10))).abs() < 1e-12);
        assert_eq!(b.effective(10, 0.10), b.value);
        let mut n = Bma::default();
        for _ in 0..10 {
            n.update(-1, 0.95);
        }
        assert!(n.value < 0.0);
        assert_eq!(n.effective(10, 0.10), 0.0);
        let small = Bma {
            value: 0.09,
            count: 10,
        };
        assert_eq!(small.effective(10, 0.10), 0.0);
        let small_warm = Bma {
            value: 0.09,
            count: 9,
        };
        assert_eq!(small_warm.effective(10, 0.10), 0.09);
    }

    #[test]
    fn iqm_drops_quartiles() {
        assert_eq!(interquartile_mean(&[]), None);
        assert_eq!(interquartile_mean(&[5.0]), Some(5.0));
        assert_eq!(interquartile_mean(&[1.0, 2.0, 3.0]), Some(2.0));
        // n = 8: sorted −50,1,…,6,100; drop 2 each side → mean(2,3,4,5) = 3.5, outliers ignored.
        assert_eq!(
            interquartile_mean(&[100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0]),
            Some(3.5)
        );
        assert_eq!(interquartile_mean(&[1.0, 2.0, 3.0, f64::NAN]), Some(2.5));
    }

    #[test]
    fn sync_score_curve() {
        let p = RunParams::reference();
        assert_eq!(sync_score(0.0, &p), 1.0);
        assert_eq!(sync_score(3.0, &p), 0.0);
        assert_eq!(sync_score(10.0, &p), 0.0);
        assert!((sync_score(1.0, &p) - (2.0f64 / 3.0).powf(2.5)).abs() < 1e-12);
        assert_eq!(sync_score(f64::NAN, &p), 0.0);
        assert_eq!(sync_score(-1.0, &p), 1.0);
    }

    fn fp(v: &[&[f32]]) -> Fingerprint {
        Fingerprint {
            tensors: v.iter().map(|t| t.to_vec()).collect(),
        }
    }

    #[test]
    fn history_averages_step_change() {
        let mut h = FingerprintHistory::default();
        assert_eq!(h.step_change(), None);
        h.push(fp(&[&[0.0, 0.0], &[1.0]]), 2).unwrap();
        h.push(fp(&[&[0.1, 0.1], &[1.0]]), 2).unwrap();
        h.push(fp(&[&[0.4, 0.4], &[1.0]]), 2).unwrap();
        let s = h.step_change().unwrap();
        assert!((s[0] - 0.2).abs() < 1e-6 && s[1] == 0.0);
        h.push(fp(&[&[0.5, 0.5], &[1.0]]), 2).unwrap();
        let s = h.step_change().unwrap();
        assert!(
            (s[0] - 0.2).abs() < 1e-6,
            "window of 2 steps: (0.3 + 0.1)/2"
        );
        assert!(h.push(fp(&[&[0.5]]), 2).is_err());
    }

    #[test]
    fn sync_distance_in_steps() {
        let v = fp(&[&[1.0, 1.0], &[2.0], &[3.0], &[4.0]]);
        let step = [0.1, 0.1, 0.1, 0.1];
        assert_eq!(sync_distance(&v, &v, &step, 3.0).unwrap(), 0.0);
        // One step behind in every tensor.
        let m = fp(&[&[0.9, 0.9], &[1.9], &[2.9], &[3.9]]);
        assert!((sync_distance(&m, &v, &step, 3.0).unwrap() - 1.0).abs() < 1e-5);
        // A garbage tensor is an outlier the IQM drops.
        let m2 = fp(&[&[0.9, 0.9], &[1.9], &[2.9], &[f32::NAN]]);
        let x = sync_distance(&m2, &v, &step, 3.0).unwrap();
        assert!(x < 2.0, "{x}");
        // Zero step change: equal → 0, different → cap.
        let zero = [0.0; 4];
        assert_eq!(sync_distance(&v, &v, &zero, 3.0).unwrap(), 0.0);
        assert_eq!(sync_distance(&m, &v, &zero, 3.0).unwrap(), 3.0);
        assert!(sync_distance(&fp(&[&[1.0]]), &v, &step, 3.0).is_err());
        assert!(sync_distance(&v, &v, &[0.1], 3.0).is_err());
    }
}
